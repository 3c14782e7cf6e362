"""After the whole suite, no eoscale shared-memory segment is left in /dev/shm."""


def test_no_segment_left_after_the_suite(leaks: list[str]) -> None:
    assert leaks == []
