"""Fixtures shared by every test: the shared real rasters, and the check that nothing leaks."""

from __future__ import annotations

from pathlib import Path

import pytest

from leak_checks import leaked_scratch, leaked_segments, note_session_start, record_commands

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
NEEDS_SHARED = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason="needs ../shared/data (the project's shared test rasters)")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("needs ../shared/data (the project's shared test rasters)")
    return SHARED_DATA


@pytest.fixture
def leaks() -> list[str]:
    """The segments this session's own processes leaked so far (see ``leak_checks``)."""
    return leaked_segments()


@pytest.fixture
def scratch_leaks() -> list[Path]:
    """The scratch files this session's own processes leaked so far (see ``leak_checks``)."""
    return leaked_scratch()


def pytest_configure(config: pytest.Config) -> None:
    record_commands()


def pytest_sessionstart(session: pytest.Session) -> None:
    note_session_start()
    byte_compile_eoscale()


def byte_compile_eoscale() -> None:
    """Byte-compile the eoscale package, as ``pip install`` does: where PYTHONDONTWRITEBYTECODE
    is set (as on the project's machines), each of the suite's many ``eoscale`` commands and
    spawned workers would compile its 80-odd modules again (0.2 s of CPU each)."""
    import compileall

    import eoscale

    compileall.compile_dir(str(Path(eoscale.__file__).parent), quiet=2)


#: The checks of the whole suite's leaks, run after every other test.
LAST = ("test_no_segment_left_after_the_suite", "test_no_scratch_file_left_after_the_suite")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the leak checks of the whole suite after every other test."""
    last = [item for item in items if item.name in LAST]
    items[:] = [item for item in items if item not in last] + last
