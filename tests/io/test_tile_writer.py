"""GeoTIFFs written by :class:`~eoscale.io.raster.TileWriter` from tiles that are not whole
blocks of the file, arriving in any order, under a small GDAL block cache (as a run under a
memory budget caps it): the file must hold the pixels rasterio writes for the whole array in one
go, be about the size of its blocks (no block written twice), and be the same bytes whatever
the order the tiles came in, on one compression thread or two."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import tifffile
from rasterio.transform import Affine
from rasterio.windows import Window

from eoscale.io.raster import TileWriter, creation_profile

#: A cache far smaller than the image, as ``--memory 8MiB`` gives the main process (bytes).
SMALL_CACHE = 200_000
HEIGHT, WIDTH = 203, 237  # partial blocks at the right and bottom edges
#: name: creation options (blocks of 64 x 64, or strips of 8 rows)
LAYOUTS = {
    "tiled": {"blockxsize": 64, "blockysize": 64},
    "striped": {"tiled": False, "blockysize": 8},
    "tiled band-interleaved": {"blockxsize": 64, "blockysize": 64, "interleave": "band"},
}


def make_image(bands: int, seed: int = 0) -> np.ndarray:
    """Smooth float32 data with noise: blocks compress to different sizes."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([np.sin(rows / 9 + band) * 50 + cols * 0.3 for band in range(bands)])
    return (base + rng.normal(scale=2, size=base.shape)).astype("float32")


def profile_of(image: np.ndarray) -> dict[str, Any]:
    return {"count": image.shape[0], "height": HEIGHT, "width": WIDTH, "dtype": "float32",
            "crs": "EPSG:32631", "transform": Affine(10, 0, 500000, 0, -10, 4600000),
            "nodata": -9999.0}


def tiles(size: int) -> list[Window]:
    """Square tiles of ``size`` px over the image, in tile order (row by row)."""
    return [Window(col, row, min(size, WIDTH - col), min(size, HEIGHT - row))
            for row in range(0, HEIGHT, size) for col in range(0, WIDTH, size)]


def nearly_in_order(windows: list[Window], seed: int) -> list[Window]:
    """``windows`` as workers return them: each at most 4 places from its own."""
    rng = random.Random(seed)
    keys = [index + rng.uniform(0, 4) for index in range(len(windows))]
    return [window for _, window in sorted(zip(keys, windows), key=lambda pair: pair[0])]


def write_tiles(path: Path, image: np.ndarray, options: dict[str, Any], order: list[Window],
                *, threads: int = 1, **writer: Any) -> TileWriter:
    """Write ``image``'s windows in ``order`` through a TileWriter (made with
    ``writer``'s keywords), under a small GDAL cache."""
    with rasterio.Env(GDAL_CACHEMAX=SMALL_CACHE), \
            TileWriter(profile_of(image), path, options=options, threads=threads,
                       **writer) as tile_writer:
        for window in order:
            rows, cols = window.toslices()
            tile_writer.write(window, image[:, rows, cols])
    return tile_writer


def written_in_one_go(path: Path, image: np.ndarray, options: dict[str, Any]) -> Path:
    with rasterio.open(path, "w", **creation_profile(profile_of(image), options)) as dataset:
        dataset.write(image)
    return path


def block_bytes(path: Path) -> tuple[int, int]:
    """The number of blocks of the file and the bytes they hold."""
    with tifffile.TiffFile(path) as tiff:
        counts = tiff.pages[0].databytecounts
        return len(counts), sum(counts)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bands", [1, 3])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("tile_size", [40, 150])  # smaller than blocks; whole blocks and parts
def test_tiles_in_any_order_give_the_same_compact_file_as_one_go(
        tmp_path, layout, bands, threads, tile_size):
    image = make_image(bands)
    options = LAYOUTS[layout]
    oracle = written_in_one_go(tmp_path / "oracle.tif", image, options)
    in_order = tiles(tile_size)
    orders = [in_order, in_order[::-1], nearly_in_order(in_order, 1),
              random.Random(2).sample(in_order, len(in_order))]
    digests, sizes = set(), []
    for number, order in enumerate(orders):
        path = tmp_path / f"order{number}.tif"
        write_tiles(path, image, options, order, threads=threads)
        with rasterio.open(path) as mine, rasterio.open(oracle) as theirs:
            assert np.array_equal(mine.read(), theirs.read())
            assert mine.profile == theirs.profile
        digests.add(digest(path))
        sizes.append((os.path.getsize(path), *block_bytes(path)))
    assert len(digests) == 1
    for size, blocks, held in sizes:  # the header: the tags, 8 bytes a block (offset, count)
        assert size <= held + 1024 + 8 * blocks, sizes


def test_the_buffer_holds_about_a_row_of_blocks_and_two_rows_of_tiles(tmp_path, monkeypatch):
    """Tiles nearly in order: what waits for its block is at most the rows of a block and of
    two tiles across the image (a tile of the next row may come before the last of its own),
    and nothing once the last tile is in."""
    held = []
    write = TileWriter.write

    def spy(self, window, data):
        write(self, window, data)
        held.append(self.held_bytes)

    monkeypatch.setattr(TileWriter, "write", spy)
    image = make_image(3)
    write_tiles(tmp_path / "out.tif", image, LAYOUTS["tiled"], nearly_in_order(tiles(40), 3))
    row_bytes = WIDTH * 3 * image.itemsize
    assert 64 * row_bytes <= max(held) <= (64 + 2 * 40) * row_bytes
    assert held[-1] == 0


def test_blocks_the_windows_leave_out_are_filled_as_gdal_fills_them(tmp_path):
    """Windows that do not cover the image (an explicit layout may leave pixels out): the
    blocks they touch are written when their windows are in, nodata elsewhere, as rasterio
    leaves them when it writes the same windows; the blocks they miss are GDAL's to fill."""
    image = make_image(1)
    options = LAYOUTS["tiled"]
    windows = [Window(0, 0, 40, 40), Window(100, 70, 90, 100), Window(40, 0, 20, 40)]
    write_tiles(tmp_path / "out.tif", image, options, windows, windows=windows)
    with rasterio.open(tmp_path / "oracle.tif", "w",
                       **creation_profile(profile_of(image), options)) as dataset:
        for window in windows:
            rows, cols = window.toslices()
            dataset.write(image[:, rows, cols], window=window)
    with rasterio.open(tmp_path / "out.tif") as mine, \
            rasterio.open(tmp_path / "oracle.tif") as theirs:
        assert np.array_equal(mine.read(), theirs.read())


def test_a_window_over_a_block_already_written_is_written_as_it_is(tmp_path):
    """A tile written again after its blocks went to GDAL: the file has the later pixels."""
    image = make_image(1)
    again = image + 1
    path = tmp_path / "out.tif"
    with TileWriter(profile_of(image), path, options=LAYOUTS["tiled"]) as writer:
        for window in tiles(40):
            rows, cols = window.toslices()
            writer.write(window, image[:, rows, cols])
        writer.write(Window(30, 30, 50, 50), again[:, 30:80, 30:80])
    expected = image.copy()
    expected[:, 30:80, 30:80] = again[:, 30:80, 30:80]
    with rasterio.open(path) as dataset:
        assert np.array_equal(dataset.read(), expected)
