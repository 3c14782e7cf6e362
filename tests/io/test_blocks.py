"""GeoTIFFs written block by block (eoscale.io.blocks) against the same arrays written by rasterio
in one go: the pixels, the metadata GDAL reads, every TIFF tag but the block offsets and byte
counts, and every block decoded (edge padding included) are the same."""

from __future__ import annotations

import errno
import logging
import math
import os
import random
import warnings
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.enums import ColorInterp
from rasterio.transform import Affine

from eoscale.errors import RasterError
from eoscale.io import blocks as blk
from eoscale.io.raster import creation_profile

OFFSET_TAGS = {blk.STRIP_OFFSETS, blk.STRIP_BYTE_COUNTS, blk.TILE_OFFSETS, blk.TILE_BYTE_COUNTS}


def make_array(dtype: str, count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth data with noise (so predictors matter), spanning the dtype's range where small."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    base = np.stack([np.sin(rows / 7 + band) * 40 + cols * 0.5 for band in range(count)])
    data = base + rng.normal(scale=3, size=base.shape)
    kind = np.dtype(dtype)
    if kind.kind in "iu":
        info = np.iinfo(kind)
        data = np.clip(data * (info.max / 300), info.min, info.max)
    return data.astype(dtype)


def profile_of(array: np.ndarray, **extra: Any) -> dict[str, Any]:
    count, height, width = array.shape
    return {"driver": "GTiff", "height": height, "width": width, "count": count,
            "dtype": array.dtype.name, "crs": "EPSG:32631",
            "transform": Affine(10, 0, 500000, 0, -10, 4600000), "nodata": None, **extra}


def write_reference(path: Path, array: np.ndarray, profile: Mapping[str, Any],
                    options: Mapping[str, Any]) -> None:
    """The oracle: rasterio writes the whole array, with eoscale's creation options."""
    kwargs = creation_profile(profile, options)
    with rasterio.open(path, "w", **kwargs) as dataset:
        dataset.write(array)
        for band, description in enumerate(profile.get("descriptions") or (), start=1):
            if description:
                dataset.set_band_description(band, description)
        if profile.get("tags"):
            dataset.update_tags(**profile["tags"])
        if profile.get("colorinterp"):
            dataset.colorinterp = profile["colorinterp"]


def encode_all(layout: blk.BlockLayout, array: np.ndarray) -> dict[int, bytes]:
    encoded: dict[int, bytes] = {}
    for row, col, (row_off, col_off, rows, cols) in layout.windows():
        encoded.update(layout.encode(row, col, array[:, row_off:row_off + rows,
                                                     col_off:col_off + cols]))
    return encoded


def write_by_blocks(path: Path, array: np.ndarray, profile: Mapping[str, Any],
                    options: Mapping[str, Any]) -> blk.BlockLayout:
    layout = blk.BlockLayout.from_profile(profile, options)
    blk.assemble_geotiff(path, layout, blk.geotiff_metadata(profile, options),
                         encode_all(layout, array))
    return layout


def tiff_tags(path: Path) -> dict[int, Any]:
    with tifffile.TiffFile(path) as tiff:
        assert len(tiff.pages) == 1
        return {tag.code: tag.value for tag in tiff.pages[0].tags if tag.code not in OFFSET_TAGS}


def decoded_blocks(path: Path) -> list[np.ndarray]:
    """Every block of the file by number, decoded, with its padding (as tifffile decodes it),
    whatever their order in the file."""
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        handle = tiff.filehandle
        decoded = {index: page.decode(data, index)[0].copy()
                   for data, index in handle.read_segments(page.dataoffsets, page.databytecounts)}
        return [decoded[index] for index in sorted(decoded)]


class GdalWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def read_back(path: Path) -> dict[str, Any]:
    """What GDAL reads of ``path``, with no warning allowed (Python's or GDAL's)."""
    handler = GdalWarnings()
    logger = logging.getLogger("rasterio")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with rasterio.Env(CPL_DEBUG=False), rasterio.open(path) as dataset:
                seen = {
                    "pixels": dataset.read(), "crs": dataset.crs, "transform": dataset.transform,
                    "nodata": dataset.nodata, "dtypes": dataset.dtypes,
                    "descriptions": dataset.descriptions, "tags": dataset.tags(),
                    "colorinterp": dataset.colorinterp, "block_shapes": dataset.block_shapes,
                    "compression": dataset.compression, "interleave": dataset.interleaving,
                    "tiled": dataset.profile.get("tiled"),
                    "structure": dataset.tags(ns="IMAGE_STRUCTURE"),
                    "checksums": [dataset.checksum(band) for band in dataset.indexes],
                }
    finally:
        logger.removeHandler(handler)
    assert handler.messages == []
    return seen


def assert_same_file(mine: Path, reference: Path) -> None:
    ours, theirs = read_back(mine), read_back(reference)
    assert np.array_equal(ours.pop("pixels"), theirs.pop("pixels"), equal_nan=True)
    nodata_ours, nodata_theirs = ours.pop("nodata"), theirs.pop("nodata")
    assert (nodata_ours == nodata_theirs
            or (math.isnan(nodata_ours) and math.isnan(nodata_theirs)))
    assert ours == theirs
    assert tiff_tags(mine) == tiff_tags(reference)
    ours_blocks, theirs_blocks = decoded_blocks(mine), decoded_blocks(reference)
    assert len(ours_blocks) == len(theirs_blocks)
    for index, (block, expected) in enumerate(zip(ours_blocks, theirs_blocks)):
        assert block.shape == expected.shape, index
        assert np.array_equal(block, expected, equal_nan=True), index


DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"]
LAYOUTS = {
    "tiled": {"tiled": True, "blockxsize": 32, "blockysize": 48},
    "strips": {"tiled": False},
    "strips-given": {"tiled": False, "blockysize": 16},
    "tiled-band": {"tiled": True, "blockxsize": 64, "blockysize": 16, "interleave": "band"},
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("compress", ["deflate", "zstd", "lzw", "none"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_equals_rasterio_for_dtypes_compressions_layouts(tmp_path: Path, dtype: str,
                                                         compress: str, layout: str) -> None:
    array = make_array(dtype, 3 if layout != "strips" else 1, 75, 101)
    profile = profile_of(array)
    options = {**LAYOUTS[layout], "compress": compress}
    write_by_blocks(tmp_path / "mine.tif", array, profile, options)
    write_reference(tmp_path / "reference.tif", array, profile, options)
    assert_same_file(tmp_path / "mine.tif", tmp_path / "reference.tif")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("predictor", [2, 3])
@pytest.mark.parametrize("compress", ["deflate", "zstd", "lzw"])
def test_predictors(tmp_path: Path, dtype: str, predictor: int, compress: str) -> None:
    if predictor == 3 and not dtype.startswith("float"):
        pytest.skip("predictor 3 is for floating-point data")
    array = make_array(dtype, 2, 40, 70)
    profile = profile_of(array)
    options = {"tiled": True, "blockxsize": 32, "blockysize": 32, "compress": compress,
               "predictor": predictor}
    write_by_blocks(tmp_path / "mine.tif", array, profile, options)
    write_reference(tmp_path / "reference.tif", array, profile, options)
    assert_same_file(tmp_path / "mine.tif", tmp_path / "reference.tif")
    assert read_back(tmp_path / "mine.tif")["structure"]["PREDICTOR"] == str(predictor)


@pytest.mark.parametrize("level", [{"zlevel": 1}, {"zlevel": 9}, {"compress": "zstd",
                                                                  "zstd_level": 19}])
def test_levels_give_the_same_pixels(tmp_path: Path, level: dict[str, Any]) -> None:
    array = make_array("float32", 1, 50, 50)
    profile = profile_of(array)
    options = {"compress": "deflate", **level}
    write_by_blocks(tmp_path / "mine.tif", array, profile, options)
    write_reference(tmp_path / "reference.tif", array, profile, options)
    assert_same_file(tmp_path / "mine.tif", tmp_path / "reference.tif")


def test_level_changes_the_bytes() -> None:
    array = make_array("float32", 1, 64, 64)
    fast = blk.BlockLayout.from_profile(profile_of(array), {"zlevel": 1})
    small = blk.BlockLayout.from_profile(profile_of(array), {"zlevel": 9})
    assert (fast.level, small.level) == (1, 9)
    assert len(encode_all(fast, array)[0]) > len(encode_all(small, array)[0])


@pytest.mark.parametrize("dtype,nodata", [("float32", float("nan")), ("float64", -9999.0),
                                          ("uint8", 255), ("int16", -32768),
                                          ("uint16", 0)])
def test_nodata(tmp_path: Path, dtype: str, nodata: float) -> None:
    array = make_array(dtype, 1, 60, 60)
    array[0, :5, :7] = nodata
    profile = profile_of(array, nodata=nodata)
    write_by_blocks(tmp_path / "mine.tif", array, profile, {})
    write_reference(tmp_path / "reference.tif", array, profile, {})
    assert_same_file(tmp_path / "mine.tif", tmp_path / "reference.tif")
    seen = read_back(tmp_path / "mine.tif")["nodata"]
    assert seen == nodata or (math.isnan(seen) and math.isnan(nodata))


def test_descriptions_tags_colour_interpretation(tmp_path: Path) -> None:
    array = make_array("uint8", 4, 70, 90)
    profile = profile_of(
        array, descriptions=["red", "green", None, "mask"],
        tags={"SENSOR": "test", "PROCESSING": "eoscale é"},
        colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha])
    options = {"tiled": True, "blockxsize": 64, "blockysize": 64, "compress": "deflate"}
    write_by_blocks(tmp_path / "mine.tif", array, profile, options)
    write_reference(tmp_path / "reference.tif", array, profile, options)
    assert_same_file(tmp_path / "mine.tif", tmp_path / "reference.tif")
    seen = read_back(tmp_path / "mine.tif")
    assert seen["descriptions"] == ("red", "green", None, "mask")
    assert seen["tags"]["PROCESSING"] == "eoscale é"
    assert seen["colorinterp"] == (ColorInterp.red, ColorInterp.green, ColorInterp.blue,
                                   ColorInterp.alpha)


def test_rotated_transform_and_geographic_crs(tmp_path: Path) -> None:
    array = make_array("float32", 1, 40, 50)
    profile = profile_of(array, crs="EPSG:4326",
                         transform=Affine(0.001, 0.0002, 2.0, 0.0001, -0.001, 48.0))
    write_by_blocks(tmp_path / "mine.tif", array, profile, {})
    write_reference(tmp_path / "reference.tif", array, profile, {})
    assert_same_file(tmp_path / "mine.tif", tmp_path / "reference.tif")


@pytest.mark.parametrize("bigtiff", ["yes", "no", "if_safer", "if_needed"])
def test_bigtiff_option(tmp_path: Path, bigtiff: str) -> None:
    array = make_array("int16", 2, 80, 70)
    profile = profile_of(array)
    options = {"bigtiff": bigtiff, "blockxsize": 32, "blockysize": 32}
    write_by_blocks(tmp_path / "mine.tif", array, profile, options)
    write_reference(tmp_path / "reference.tif", array, profile, options)
    assert_same_file(tmp_path / "mine.tif", tmp_path / "reference.tif")
    with tifffile.TiffFile(tmp_path / "mine.tif") as mine, \
            tifffile.TiffFile(tmp_path / "reference.tif") as reference:
        assert mine.is_bigtiff == reference.is_bigtiff == (bigtiff == "yes")


@pytest.mark.parametrize("bigtiff,compress,size,expected", [
    ("if_safer", "deflate", 2_000_000_000, False), ("if_safer", "deflate", 2_000_000_004, True),
    ("if_needed", "deflate", 8_000_000_000, False), ("if_needed", "none", 4_200_000_000, False),
    ("if_needed", "none", 4_200_000_004, True), ("yes", "deflate", 4, True),
    ("no", "none", 4_000_000_000, False)])
def test_bigtiff_rule_is_gdals(bigtiff: str, compress: str, size: int, expected: bool) -> None:
    """GDAL's rule on the uncompressed size (IF_SAFER over 2 GB, IF_NEEDED over 4.2 GB and
    uncompressed only), without writing gigabytes: the encoded size given is small."""
    profile = {"height": 1, "width": size // 4, "count": 1, "dtype": "float32"}
    layout = blk.BlockLayout.from_profile(profile, {"compress": compress, "bigtiff": bigtiff,
                                                    "tiled": False})
    assert layout.is_bigtiff(1000) is expected


def test_bigtiff_when_the_blocks_would_not_fit_in_a_classic_tiff() -> None:
    layout = blk.BlockLayout.from_profile(
        {"height": 1, "width": 16, "count": 1, "dtype": "uint8"}, {"bigtiff": "if_needed"})
    assert layout.is_bigtiff(2**32) is True
    no = blk.BlockLayout.from_profile(
        {"height": 1, "width": 16, "count": 1, "dtype": "uint8"}, {"bigtiff": "no"})
    with pytest.raises(blk.BlockEncodingError, match="exceed 4 GB"):
        no.is_bigtiff(2**32)


def _encode_into_part(task: tuple[blk.BlockLayout, str, list[tuple[int, int]], np.ndarray,
                                  str]) -> list[tuple[int, blk.BlockRecord]]:
    """A worker: encode the given cells of ``array`` and append them to its own part file."""
    layout, folder, cells, array, name = task
    records = []
    with blk.PartFile(Path(folder) / f"{name}-{os.getpid()}.part") as part:
        for row, col in cells:
            row_off, col_off, rows, cols = layout.window(row, col)
            encoded = layout.encode(row, col, array[:, row_off:row_off + rows,
                                                   col_off:col_off + cols])
            records += [(index, part.append(data)) for index, data in encoded.items()]
    return records


def test_part_files_written_by_worker_processes_in_another_order(tmp_path: Path) -> None:
    array = make_array("float32", 2, 150, 170)
    profile = profile_of(array, nodata=float("nan"), descriptions=["a", "b"])
    options = {"blockxsize": 32, "blockysize": 32, "compress": "zstd", "predictor": 3,
               "interleave": "band"}
    layout = blk.BlockLayout.from_profile(profile, options)
    cells = [(row, col) for row, col, _ in layout.windows()]
    random.Random(1).shuffle(cells)
    tasks = [(layout, str(tmp_path), cells[start::3], array, f"w{start}") for start in range(3)]
    with ProcessPoolExecutor(2) as pool:
        records = dict(record for found in pool.map(_encode_into_part, tasks)
                       for record in found)
    assert sorted(records) == list(range(layout.block_count))
    assert all(records[index].offset >= 0 for index in records)
    blk.assemble_geotiff(tmp_path / "mine.tif", layout, blk.geotiff_metadata(profile, options),
                         records)
    write_reference(tmp_path / "reference.tif", array, profile, options)
    assert_same_file(tmp_path / "mine.tif", tmp_path / "reference.tif")


def test_bytes_and_records_mixed_and_copied_without_copy_file_range(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs of records contiguous in a part are copied at once; the buffered copy (no
    ``copy_file_range``) gives the same file."""
    array = make_array("uint16", 1, 100, 100)
    profile = profile_of(array)
    options = {"blockxsize": 16, "blockysize": 16, "compress": "lzw"}
    layout = blk.BlockLayout.from_profile(profile, options)
    encoded = encode_all(layout, array)
    sources: dict[int, bytes | blk.BlockRecord] = {}
    with blk.PartFile(tmp_path / "one.part") as one, blk.PartFile(tmp_path / "two.part") as two:
        for index, data in encoded.items():
            sources[index] = (data if index % 5 == 0 else
                              (one if index % 3 else two).append(data))
    metadata = blk.geotiff_metadata(profile, options)
    blk.assemble_geotiff(tmp_path / "kernel.tif", layout, metadata, sources)
    monkeypatch.delattr(os, "copy_file_range", raising=False)
    blk.assemble_geotiff(tmp_path / "buffered.tif", layout, metadata, sources)
    assert (tmp_path / "kernel.tif").read_bytes() == (tmp_path / "buffered.tif").read_bytes()
    write_reference(tmp_path / "reference.tif", array, profile, options)
    assert_same_file(tmp_path / "kernel.tif", tmp_path / "reference.tif")


def test_assembly_is_reproducible_and_blocks_are_copied_as_they_are(tmp_path: Path) -> None:
    array = make_array("int32", 1, 64, 64)
    profile = profile_of(array)
    layout = blk.BlockLayout.from_profile(profile, {"blockxsize": 32, "blockysize": 32})
    encoded = encode_all(layout, array)
    metadata = blk.geotiff_metadata(profile, {})
    blk.assemble_geotiff(tmp_path / "a.tif", layout, metadata, encoded)
    blk.assemble_geotiff(tmp_path / "b.tif", layout, metadata, dict(reversed(encoded.items())))
    content = (tmp_path / "a.tif").read_bytes()
    assert content == (tmp_path / "b.tif").read_bytes()
    with tifffile.TiffFile(tmp_path / "a.tif") as tiff:
        page = tiff.pages[0]
        for index, (offset, length) in enumerate(zip(page.dataoffsets, page.databytecounts)):
            assert content[offset:offset + length] == encoded[index]


def test_a_missing_block_is_an_error_not_an_empty_block(tmp_path: Path) -> None:
    array = make_array("uint8", 1, 64, 64)
    layout = blk.BlockLayout.from_profile(profile_of(array), {"blockxsize": 32,
                                                              "blockysize": 32})
    encoded = encode_all(layout, array)
    del encoded[2]
    with pytest.raises(ValueError, match="1 of 4 blocks missing .the first: block 2"):
        blk.assemble_geotiff(tmp_path / "out.tif", layout, [], encoded)
    assert not (tmp_path / "out.tif").exists()


def test_a_short_part_file_is_an_error(tmp_path: Path) -> None:
    array = make_array("uint8", 1, 32, 32)
    layout = blk.BlockLayout.from_profile(profile_of(array), {"blockxsize": 32,
                                                              "blockysize": 32})
    with blk.PartFile(tmp_path / "p.part") as part:
        record = part.append(encode_all(layout, array)[0])
    truncated = blk.BlockRecord(record.part, record.offset, record.length + 10)
    with pytest.raises(Exception, match="shorter than its records"):
        blk.assemble_geotiff(tmp_path / "out.tif", layout, [], {0: truncated})


def test_wrong_block_shape_is_refused() -> None:
    layout = blk.BlockLayout.from_profile({"height": 40, "width": 40, "count": 1,
                                           "dtype": "uint8"}, {"blockxsize": 32,
                                                               "blockysize": 32})
    assert layout.window(1, 1) == (32, 32, 8, 8)
    with pytest.raises(ValueError, match=r"block \(1, 1\) holds \(1, 8, 8\) pixels"):
        layout.encode(1, 1, np.zeros((1, 32, 32), "uint8"))


@pytest.mark.parametrize("options,message", [
    ({"compress": "jpeg"}, "compression jpeg"), ({"compress": "deflate", "predictor": 3},
                                                 "predictor 3 applies to floating-point"),
    ({"sparse_ok": True}, "sparse_ok"), ({"blockxsize": 20}, "multiples of 16")])
def test_options_it_cannot_encode_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(blk.BlockEncodingError, match=message):
        blk.BlockLayout.from_profile({"height": 4, "width": 4, "count": 1, "dtype": "int16"},
                                     options)


def test_grid_and_block_numbers() -> None:
    layout = blk.BlockLayout.from_profile(
        {"height": 100, "width": 70, "count": 3, "dtype": "uint8"},
        {"blockxsize": 32, "blockysize": 48, "interleave": "band"})
    assert layout.grid == (3, 3)
    assert layout.block_count == 27
    assert layout.indices(1, 2) == [5, 14, 23]
    assert layout.window(2, 2) == (96, 64, 4, 6)
    strips = blk.BlockLayout.from_profile(
        {"height": 100, "width": 70, "count": 3, "dtype": "uint8"}, {"tiled": False})
    assert (strips.block_height, strips.block_width) == (39, 70)  # 8192 // (70 * 3) rows
    assert strips.window(2, 0) == (78, 0, 22, 70)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(height=st.integers(1, 140), width=st.integers(1, 140), count=st.integers(1, 3),
       block_height=st.sampled_from([16, 32, 48, 128]),
       block_width=st.sampled_from([16, 64, 80, 256]), tiled=st.booleans(),
       interleave=st.sampled_from(["pixel", "band"]), seed=st.integers(0, 10))
def test_shapes_and_block_sizes(tmp_path: Path, height: int, width: int, count: int,
                                block_height: int, block_width: int, tiled: bool,
                                interleave: str, seed: int) -> None:
    array = make_array("int16", count, height, width, seed)
    profile = profile_of(array)
    options = {"tiled": tiled, "blockysize": block_height, "compress": "deflate",
               "predictor": 2, "interleave": interleave}
    if tiled:
        options["blockxsize"] = block_width
    layout = blk.BlockLayout.from_profile(profile, options)
    cells = [(row, col, window) for row, col, window in layout.windows()]
    random.Random(seed).shuffle(cells)
    with blk.PartFile(tmp_path / f"{seed}.part") as part:
        records = {}
        for row, col, (row_off, col_off, rows, cols) in cells:
            encoded = layout.encode(row, col, array[:, row_off:row_off + rows,
                                                   col_off:col_off + cols])
            records.update({index: part.append(data) for index, data in encoded.items()})
    blk.assemble_geotiff(tmp_path / "mine.tif", layout, blk.geotiff_metadata(profile, options),
                         records)
    write_reference(tmp_path / "reference.tif", array, profile, options)
    assert_same_file(tmp_path / "mine.tif", tmp_path / "reference.tif")
    (tmp_path / f"{seed}.part").unlink()


@pytest.mark.parametrize("width,count,dtype,interleave", [
    (5000, 1, "uint8", "pixel"), (400, 3, "float64", "pixel"), (400, 3, "float64", "band"),
    (8193, 1, "uint8", "pixel"), (1000, 2, "int16", "pixel")])
def test_default_rows_per_strip_are_gdals(tmp_path: Path, width: int, count: int, dtype: str,
                                          interleave: str) -> None:
    array = make_array(dtype, count, 9, width)
    profile = profile_of(array)
    options = {"tiled": False, "compress": "zstd", "interleave": interleave}
    write_by_blocks(tmp_path / "mine.tif", array, profile, options)
    write_reference(tmp_path / "reference.tif", array, profile, options)
    assert_same_file(tmp_path / "mine.tif", tmp_path / "reference.tif")


def test_several_ifds_chain_and_gdal_reads_the_second_as_an_overview(tmp_path: Path) -> None:
    """The header writer holds several IFDs (what a COG needs): a full-resolution image and a
    half-resolution one (NewSubfileType 1), every IFD first, the overview's blocks before the
    full resolution's, as GDAL's COG layout puts them."""
    array = make_array("uint16", 1, 100, 90)
    profile = profile_of(array)
    options = {"blockxsize": 32, "blockysize": 32, "compress": "deflate", "predictor": 2}
    full = blk.BlockLayout.from_profile(profile, options)
    half_array = np.ascontiguousarray(array[:, ::2, ::2])
    half = blk.BlockLayout.from_profile(profile_of(half_array), options)
    images = [(full, encode_all(full, array)), (half, encode_all(half, half_array))]
    metadata = blk.geotiff_metadata(profile, options)
    reduced = blk.Tag.of(254, blk.LONG, [1])

    def ifds(offsets: list[list[int]]) -> list[list[blk.Tag]]:
        tags = []
        for number, ((layout, encoded), at) in enumerate(zip(images, offsets)):
            lengths = [len(encoded[index]) for index in range(layout.block_count)]
            own = layout.layout_tags(at, lengths, bigtiff=False)
            tags.append(own + (metadata if number == 0 else [reduced, *[
                tag for tag in metadata if tag.code in (258, 262, 277, 339)]]))
        return tags

    position = blk.header_size(ifds([[0] * layout.block_count for layout, _ in images]), False)
    offsets: list[list[int]] = [[], []]
    content = bytearray()
    for number in (1, 0):
        layout, encoded = images[number]
        for index in range(layout.block_count):
            offsets[number].append(position + len(content))
            content += encoded[index]
    header = blk.tiff_header(ifds(offsets), bigtiff=False)
    assert len(header) == position
    (tmp_path / "two.tif").write_bytes(header + content)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with rasterio.open(tmp_path / "two.tif") as dataset:
            assert dataset.overviews(1) == [2]
            assert np.array_equal(dataset.read(), array)
        with rasterio.open(tmp_path / "two.tif", overview_level=0) as overview:
            assert overview.shape == (50, 45)
            assert np.array_equal(overview.read(), half_array)


def test_a_full_disk_while_assembling_says_so(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    array = make_array("uint8", 1, 64, 64)
    layout = blk.BlockLayout.from_profile(profile_of(array), {"blockxsize": 32,
                                                              "blockysize": 32})
    encoded = encode_all(layout, array)

    def full(*args: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(RasterError, match="out.tif: cannot write: no space left on device"):
        blk.assemble_geotiff(tmp_path / "out.tif", layout, [], encoded)


def test_windows_of_whole_blocks_are_encoded_as_their_blocks(tmp_path: Path) -> None:
    """A tile core made of whole blocks (clipped ones at the edge) is encoded by itself; four
    such cores give the file rasterio writes."""
    array = make_array("float32", 2, 100, 90)
    profile = profile_of(array)
    options = {"blockxsize": 32, "blockysize": 16, "compress": "deflate", "predictor": 3}
    layout = blk.BlockLayout.from_profile(profile, options)
    encoded: dict[int, bytes] = {}
    for row_off, rows in ((0, 48), (48, 52)):
        for col_off, cols in ((0, 64), (64, 26)):
            assert layout.is_aligned(row_off, col_off, rows, cols)
            encoded.update(layout.encode_window(
                row_off, col_off, array[:, row_off:row_off + rows, col_off:col_off + cols]))
    assert encoded == encode_all(layout, array)
    blk.assemble_geotiff(tmp_path / "mine.tif", layout, blk.geotiff_metadata(profile, options),
                         encoded)
    write_reference(tmp_path / "reference.tif", array, profile, options)
    assert_same_file(tmp_path / "mine.tif", tmp_path / "reference.tif")


@pytest.mark.parametrize("window", [(8, 0, 16, 32), (0, 0, 20, 32), (0, 32, 16, 40),
                                    (96, 64, 8, 26), (0, 0, 0, 32)])
def test_windows_not_of_whole_blocks_are_refused(window: tuple[int, int, int, int]) -> None:
    layout = blk.BlockLayout.from_profile({"height": 100, "width": 90, "count": 1,
                                           "dtype": "uint8"},
                                          {"blockxsize": 32, "blockysize": 16})
    row_off, col_off, rows, cols = window
    assert not layout.is_aligned(*window)
    with pytest.raises(ValueError, match="not made of whole blocks of 16 x 32"):
        layout.encode_window(row_off, col_off, np.zeros((1, rows, cols), "uint8"))


@pytest.mark.parametrize("bigtiff", ["NO", "YES"])
def test_first_ifd_entries_read_what_tifffile_reads(tmp_path: Path, bigtiff: str) -> None:
    """The header's tags are read without tifffile in the process that writes headers: the same
    entries, values and places as tifffile finds in a GeoTIFF with long and inline values."""
    path = tmp_path / "tags.tif"
    profile = {"driver": "GTiff", "width": 3, "height": 2, "count": 2, "dtype": "float32",
               "nodata": -9999.0, "crs": "EPSG:32631", "tiled": True, "blockxsize": 16,
               "transform": rasterio.Affine(10, 0, 500000, 0, -10, 4e6), "blockysize": 16,
               "BIGTIFF": bigtiff}
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.set_band_description(1, "red")
        dataset.update_tags(SENSOR="é" * 40)
    content = path.read_bytes()
    with tifffile.TiffFile(path) as tiff:
        expected = [(tag.code, int(tag.dtype), tag.count, tag.valueoffset)
                    for tag in tiff.pages[0].tags]
    assert list(blk.first_ifd_entries(content)) == expected
    assert any(count * blk.TYPE_SIZES[type_] > 8 for _, type_, count, _ in expected)
    with pytest.raises(ValueError, match="not a little-endian TIFF"):
        list(blk.first_ifd_entries(b"MM\x00*" + content[4:]))


# -- files whose blocks follow each other in tile order, finished in place --------------------

def tiles_of(layout: blk.BlockLayout) -> list[tuple[int, int, int, int]]:
    """A map's tile cores, row by row: 2 x 2 blocks, or 2 strips (whole blocks)."""
    rows = 2 * layout.block_height
    cols = 2 * layout.block_width if layout.tiled else layout.width
    return [(row, col, min(rows, layout.height - row), min(cols, layout.width - col))
            for row in range(0, layout.height, rows) for col in range(0, layout.width, cols)]


def write_in_order(path: Path, layout: blk.BlockLayout, array: np.ndarray,
                   how: str) -> dict[int, bytes | blk.BlockRecord]:
    """What a map's workers do: each tile's blocks encoded, then written at their place in
    ``path`` (after the head and the earlier tiles' blocks), or ("mixed") every third tile
    appended to a part file instead and every fifth given as bytes; every block's source."""
    path.write_bytes(bytes(blk.IN_ORDER_HEAD))
    sources: dict[int, bytes | blk.BlockRecord] = {}
    at = blk.IN_ORDER_HEAD
    with blk.PartFile(path.with_name(path.name + ".part")) as part, open(path, "r+b") as out:
        for number, (row, col, rows, cols) in enumerate(tiles_of(layout)):
            encoded = layout.encode_window(row, col, array[:, row:row + rows, col:col + cols])
            assert list(encoded) == layout.window_indices(row, col, rows, cols)
            for index, data in encoded.items():
                if how == "mixed" and number % 3 == 1:
                    sources[index] = part.append(data)
                elif how == "mixed" and number % 5 == 2:
                    sources[index] = data
                else:
                    out.seek(at)
                    out.write(data)
                    sources[index] = blk.BlockRecord(str(path), at, len(data))
                at += len(data)
    return sources


@pytest.mark.parametrize("options", [
    {"blockxsize": 32, "blockysize": 32, "compress": "deflate", "predictor": 2},
    {"blockxsize": 16, "blockysize": 32, "compress": "zstd", "bigtiff": "yes"},
    {"tiled": False, "blockysize": 8, "compress": "lzw", "interleave": "band"},
], ids=["tiles", "BigTIFF", "strips by band"])
def test_a_file_finished_in_place_is_rasterio_s_and_the_same_whoever_wrote_its_blocks(
        tmp_path: Path, options: dict[str, Any]) -> None:
    array = make_array("int16", 3, 100, 90)
    profile = profile_of(array, nodata=-1)
    layout = blk.BlockLayout.from_profile(profile, options)
    metadata = blk.geotiff_metadata(profile, options)
    order = [index for row, col, rows, cols in tiles_of(layout)
             for index in layout.window_indices(row, col, rows, cols)]
    assert sorted(order) == list(range(layout.block_count))
    files = {}
    for how in ("in place", "mixed"):
        path = tmp_path / f"{how}.tif"
        sources = write_in_order(path, layout, array, how)
        copies = blk.finish_in_order_geotiff(path, layout, metadata, sources, order)
        assert copies is not None
        assert (copies == {}) == (how == "in place")  # none moved: only the others copied
        blk.copy_blocks(path, list(copies.values()))
        files[how] = path.read_bytes()
    write_reference(tmp_path / "reference.tif", array, profile, options)
    assert_same_file(tmp_path / "in place.tif", tmp_path / "reference.tif")
    assert files["in place"] == files["mixed"]  # the same bytes, whoever wrote which block
    content = files["in place"]
    with tifffile.TiffFile(tmp_path / "in place.tif") as tiff:
        assert tiff.is_bigtiff == (options.get("bigtiff") == "yes")
        page = tiff.pages[0]
        offsets = list(page.dataoffsets)
        assert min(offsets) == blk.IN_ORDER_HEAD  # the blocks right after the head,
        first_ifd = int.from_bytes(content[8:16] if tiff.is_bigtiff else content[4:8], "little")
        assert first_ifd >= max(o + n for o, n in zip(offsets, page.databytecounts))  # then it


def test_a_block_written_elsewhere_than_its_place_leaves_the_file_to_be_written_anew(
        tmp_path: Path) -> None:
    array = make_array("uint8", 1, 64, 64)
    profile = profile_of(array)
    layout = blk.BlockLayout.from_profile(profile, {"blockxsize": 32, "blockysize": 32})
    path = tmp_path / "out.tif"
    sources = write_in_order(path, layout, array, "in place")
    moved = sources[2]
    assert isinstance(moved, blk.BlockRecord)
    sources[2] = moved._replace(offset=moved.offset + 1)  # a tile encoded twice, another size
    before = path.read_bytes()
    assert blk.finish_in_order_geotiff(path, layout, [], sources, [0, 1, 2, 3]) is None
    assert path.read_bytes() == before
    with pytest.raises(ValueError, match="1 of 4 blocks missing"):
        blk.finish_in_order_geotiff(path, layout, [], {i: sources[i] for i in range(3)},
                                    [0, 1, 2, 3])
