"""After the whole suite, no eoscale shared-memory segment is left in /dev/shm."""

from conftest import leaked_segments


def test_no_segment_left_after_the_suite() -> None:
    assert leaked_segments() == []
