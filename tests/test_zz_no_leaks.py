"""After the whole suite, no eoscale shared-memory segment is left in /dev/shm, and no scratch
file in the system's temporary folder, by this session's own processes (see ``leak_checks``)."""

from pathlib import Path


def test_no_segment_left_after_the_suite(leaks: list[str]) -> None:
    assert leaks == []


def test_no_scratch_file_left_after_the_suite(scratch_leaks: list[Path]) -> None:
    assert scratch_leaks == []
