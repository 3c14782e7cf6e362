"""Fixtures shared by every test: the shared real rasters, and the check that nothing leaks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eoscale.engine.shared import list_segments, pid_alive

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
NEEDS_SHARED = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason="needs ../shared/data (the project's shared test rasters)")

_segments_at_start: set[str] = set()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("needs ../shared/data (the project's shared test rasters)")
    return SHARED_DATA


def leaked_segments() -> list[str]:
    """Segments made since the session began by this process or by a process now dead."""
    return [name for name, pid in list_segments()
            if name not in _segments_at_start and (pid == os.getpid() or not pid_alive(pid))]


@pytest.fixture
def leaks() -> list[str]:
    """The segments leaked so far (see :func:`leaked_segments`)."""
    return leaked_segments()


def pytest_sessionstart(session: pytest.Session) -> None:
    _segments_at_start.update(name for name, _ in list_segments())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the shared-memory leak check after every other test."""
    last = [item for item in items if item.name == "test_no_segment_left_after_the_suite"]
    items[:] = [item for item in items if item not in last] + last
