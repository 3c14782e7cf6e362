"""The header's writer gives an assembled file's bytes their disk blocks before the blocks are
copied in (:func:`eoscale.io.assembled.preallocate`): where the filesystem can, the file is no
longer sparse once its header is written; where it cannot, it is left sparse and the copies
fill it as before; a disk without the room fails then, naming the file, before any copy."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from eoscale.errors import RasterError
from eoscale.io import assembled
from eoscale.io import blocks as blk


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


@pytest.fixture
def can_preallocate(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    with open(probe, "wb") as out:
        out.truncate(1 << 20)
        if not assembled.preallocate(out.fileno(), 1 << 20):
            pytest.skip(f"the filesystem of {tmp_path} cannot allocate ahead (fallocate)")
    probe.unlink()


def fake_fallocate(code: int) -> Any:
    """A stand-in for fallocate(2) that fails with ``code``, and the calls it got."""
    calls: list[tuple[int, ...]] = []

    def fallocate(*args: int) -> int:
        calls.append(args)
        ctypes.set_errno(code)
        return -1

    fallocate.calls = calls  # type: ignore[attr-defined]
    return fallocate


def parts_of(tmp_path: Path) -> tuple[blk.BlockLayout, dict[str, Any], np.ndarray, dict]:
    """A 2-band float32 image's blocks appended to a part file, and their records."""
    array = np.random.default_rng(1).random((2, 200, 150)).astype(np.float32)
    profile = {"driver": "GTiff", "count": 2, "height": 200, "width": 150, "dtype": "float32",
               "crs": "EPSG:32631", "transform": rasterio.Affine(10, 0, 500000, 0, -10, 4e6)}
    options = {"blockxsize": 64, "blockysize": 64, "compress": "deflate", "predictor": 3}
    layout = blk.BlockLayout.from_profile(profile, options)
    part = tmp_path / "blocks.part"
    records = {}
    with open(part, "wb") as out:
        for row, col, (top, left, rows, cols) in layout.windows():
            for index, data in layout.encode(row, col, array[:, top:top + rows,
                                                             left:left + cols]).items():
                records[index] = blk.BlockRecord(str(part), out.tell(), len(data))
                out.write(data)
    return layout, blk.geotiff_metadata(profile, options), array, records


def test_the_header_writer_allocates_the_blocks_the_copies_fill(
        tmp_path: Path, can_preallocate: None) -> None:
    layout, metadata, array, records = parts_of(tmp_path)
    path = tmp_path / "out.tif"
    copies = blk.write_geotiff_header(path, layout, metadata, records)
    size = path.stat().st_size
    assert size > sum(record.length for record in records.values())
    assert allocated(path) >= size  # no hole left for the copies to fill
    assembled.copy_blocks(path, list(copies.values()))
    assert path.stat().st_size == size
    with rasterio.open(path) as written:
        assert np.array_equal(written.read(), array)


def test_a_filesystem_that_cannot_allocate_ahead_gets_the_file_as_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unsupported = fake_fallocate(errno.EOPNOTSUPP)
    monkeypatch.setattr(assembled, "_FALLOCATE", [unsupported])
    layout, metadata, array, records = parts_of(tmp_path)
    path = tmp_path / "out.tif"
    copies = blk.write_geotiff_header(path, layout, metadata, records)
    assert len(unsupported.calls) == 1
    assert allocated(path) < path.stat().st_size  # sparse, as the copies find it
    assembled.copy_blocks(path, list(copies.values()))
    with rasterio.open(path) as written:
        assert np.array_equal(written.read(), array)


def test_a_disk_without_the_room_fails_when_the_header_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assembled, "_FALLOCATE", [fake_fallocate(errno.ENOSPC)])
    layout, metadata, _, records = parts_of(tmp_path)
    with pytest.raises(RasterError, match=r"^result\.tif: cannot write: no space left on device"):
        blk.write_geotiff_header(tmp_path / "out.tif", layout, metadata, records,
                                 display="result.tif")


def test_an_interrupted_allocation_is_asked_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [errno.EINTR, 0]

    def fallocate(*args: int) -> int:
        code = answers.pop(0)
        ctypes.set_errno(code)
        return -1 if code else 0

    monkeypatch.setattr(assembled, "_FALLOCATE", [fallocate])
    with open(tmp_path / "file", "wb") as out:
        assert assembled.preallocate(out.fileno(), 4096)
    assert answers == []
