"""Quicklooks drawn from the coarsest overview that has their size, a row of blocks at a time.

The oracle is the way quicklooks were read before: GDAL's own decimated read of the whole
raster (``read(out_shape=..., resampling=nearest)`` and its masks). Both take the same source
pixels (each target pixel's centre), so the pictures must be equal pixel for pixel. What the
new read must not do is decode the full resolution again and again: it reads each row of blocks
once (counted), and a raster with overviews is read at the overview level only (its full
resolution's blocks are made unreadable, and the quicklook must still be drawn).
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rasterio.io
import tifffile
from rasterio.enums import Resampling

from eoscale.io.quicklook import (
    QuicklookStyle,
    decimated_shape,
    render_quicklook,
    shown_bands,
    to_rgba,
)

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def gdal_decimated(path, style: QuicklookStyle, **open_options) -> np.ndarray:
    """The quicklook as it was drawn before: GDAL's decimated read of the whole raster."""
    with rasterio.open(path, **open_options) as dataset:
        bands = shown_bands(dataset.count, style.bands)
        shape = (len(bands), *decimated_shape(dataset.height, dataset.width, style.size))
        data = dataset.read(bands, out_shape=shape, resampling=Resampling.nearest)
        masks = dataset.read_masks(bands, out_shape=shape, resampling=Resampling.nearest)
    return to_rgba(data, np.all(masks > 0, axis=0), style.colormap)


@pytest.fixture
def rows_read(monkeypatch) -> list[int]:
    """The rows of every windowed read of a raster (and -1 for a read of masks)."""
    seen: list[int] = []
    read, read_masks = rasterio.io.DatasetReader.read, rasterio.io.DatasetReader.read_masks

    def counted(self, *args, window=None, **kwargs):
        seen.append(int(window.height) if window is not None else self.height)
        return read(self, *args, window=window, **kwargs)

    def counted_masks(self, *args, **kwargs):
        seen.append(-1)
        return read_masks(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", counted)
    monkeypatch.setattr(rasterio.io.DatasetReader, "read_masks", counted_masks)
    return seen


def test_nz_elev_s_quicklook_decodes_each_row_of_blocks_once(shared_data, tmp_path, rows_read):
    """nz_elev written as eoscale writes outputs (512 px deflate tiles), under a GDAL cache of
    2 MiB (an eighth of a 16 MiB budget): before, the decimated read decoded the blocks of a
    row again for every picked row."""
    with rasterio.open(shared_data / "nz_elev.tif") as source:
        profile, data = source.profile, source.read()
    profile.update(tiled=True, blockxsize=512, blockysize=512, compress="deflate")
    path = tmp_path / "nz.tif"
    with rasterio.open(path, "w", **profile) as out:
        out.write(data)
    style = QuicklookStyle()
    expected = gdal_decimated(path, style)  # the same with any cache, faster with the default
    rows_read.clear()
    with rasterio.Env(GDAL_CACHEMAX=2 << 20):
        picture = render_quicklook(path, style)
    assert np.array_equal(picture, expected)
    assert -1 not in rows_read  # validity from the NaN nodata, no second decoding for masks
    assert sum(rows_read) <= profile["height"]  # each row of blocks once at most


def with_unreadable_full_resolution(path) -> None:
    """Overwrite every full-resolution block of ``path`` with bytes that are no deflate
    stream, leaving the overviews readable."""
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        blocks = list(zip(page.dataoffsets, page.databytecounts))
    with open(path, "r+b") as out:
        for offset, length in blocks:
            out.seek(offset)
            out.write(b"\xff" * length)


def test_a_quicklook_is_drawn_from_the_coarsest_overview_that_has_its_size(tmp_path):
    rng = np.random.default_rng(4)
    data = rng.integers(1, 250, (3, 400, 600)).astype(np.uint8)
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", width=600, height=400, count=3, dtype="uint8",
                       nodata=0, tiled=True, blockxsize=64, blockysize=64,
                       compress="deflate") as out:
        out.write(data)
    with rasterio.open(path, "r+") as dataset:
        dataset.build_overviews([2, 4, 8], Resampling.nearest)
    with_unreadable_full_resolution(path)
    with pytest.raises(rasterio.errors.RasterioError), rasterio.open(path) as dataset:
        dataset.read(1)
    style = QuicklookStyle(size=140)  # 93 x 140: factor 4 (100 x 150) has it, 8 not
    picture = render_quicklook(path, style)
    assert picture.shape == (4, 93, 140)
    assert np.array_equal(picture, gdal_decimated(path, style, overview_level=1))
