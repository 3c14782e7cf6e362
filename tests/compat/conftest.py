"""Fixtures of the EOScale 1.0 API tests: the shared rasters, and no segment left by any test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from compat_helpers import own_segments


@pytest.fixture(autouse=True)
def no_segment_left() -> Iterator[None]:
    """Every test leaves /dev/shm as it found it: leaving a manager's ``with`` frees everything."""
    before = own_segments()
    yield
    assert own_segments() - before == set()


@pytest.fixture
def dsm(shared_data: Path) -> Path:
    """EOScale 1.0's test DSM: 512 x 512 float32, nodata -32768 on 50 pixels."""
    return shared_data / "eoscale_dsm.tif"
