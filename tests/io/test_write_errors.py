"""What a failed write says: a full filesystem only when it is one (raster.write_error)."""

from __future__ import annotations

import errno
import os

import pytest

from eoscale.io import raster
from eoscale.io.raster import disk_full, write_error


@pytest.fixture
def nearly_full(monkeypatch):
    """Every filesystem counts as nearly full (its free space under FULL_BELOW)."""
    monkeypatch.setattr(raster, "FULL_BELOW", 2 ** 62)


def test_a_system_error_of_another_kind_is_not_a_full_disk(tmp_path, nearly_full):
    missing = OSError(errno.ENOENT, os.strerror(errno.ENOENT))
    assert not disk_full(tmp_path / "x.tif", missing)
    error = write_error(tmp_path / "x.tif", "x.tif", "cannot write", [missing.strerror], missing)
    assert str(error) == "x.tif: cannot write (No such file or directory)"


def test_enospc_or_gdal_saying_so_is_a_full_disk(tmp_path):
    assert disk_full(tmp_path / "x.tif", OSError(errno.ENOSPC, "full"))
    assert disk_full(tmp_path / "x.tif", RuntimeError("GDAL"),
                     ["_tiffWriteProc: No space left on device."])
    assert not disk_full(tmp_path / "x.tif", RuntimeError("GDAL"), ["TIFFAppendToStrip"])


def test_an_error_without_errno_on_a_nearly_full_filesystem_is_a_full_disk(tmp_path,
                                                                          nearly_full):
    error = write_error(tmp_path / "x.tif", None, "cannot write as COG", ["TIFF write error"],
                        RuntimeError("GDAL"))
    assert "no space left on device (the filesystem holding it is full)" in str(error)
