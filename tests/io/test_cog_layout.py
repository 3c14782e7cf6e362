"""Overview levels computed as GDAL computes them, and files of several levels in GDAL's COG
layout (:mod:`eoscale.io.cog`).

The levels' oracle is GDAL: the image written by rasterio, ``build_overviews`` with factors 2,
4, 8, 16, read back level by level. ``nearest`` must be equal; ``average`` equal within the
rounding of the dtype: floats to a relative 1e-6 (float32) or 1e-12 (float64), since GDAL sums
in its own order; integers exactly on levels made from even sizes (2 x 2 means rounded half up)
and at most 1 apart on levels made from an odd size, where GDAL weights the pixels a target
covers in part and an exact half rounds by its float error. The sizes GDAL's COG driver rounds
down (where ``build_overviews`` rounds up) are checked against that driver's own levels. The files' oracle is rio-cogeo's
validator (valid, no warning), GDAL's own report of the layout, and the pixels of every level
read back through GDAL.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.enums import Resampling
from rio_cogeo.cogeo import cog_validate

from eoscale.io.blocks import BlockEncodingError, geotiff_metadata
from eoscale.io.cog import (
    assemble_levels,
    cog_layout,
    cog_level_count,
    ghost_header,
    halves_exactly,
    level_shape,
    overview_layout,
    reduce_level,
)

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

NAN = float("nan")
GRID = {"crs": "EPSG:32631", "transform": Affine(10, 0, 500000, 0, -10, 4000000)}


def image(dtype: str, bands: int, shape: tuple[int, int], nodata, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = (rng.random((bands, *shape)) * 200).astype(dtype)
    if nodata is not None:
        data[rng.random(data.shape) < 0.15] = nodata
    elif data.dtype.kind == "f":
        data[0, :5, :7] = np.nan  # NaN without a nodata: GDAL lets it spread
    return data


def gdal_levels(data: np.ndarray, nodata, resampling: str, levels: int, path) -> list:
    _, height, width = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height,
                       count=data.shape[0], dtype=data.dtype, nodata=nodata) as out:
        out.write(data)
    with rasterio.open(path, "r+") as dataset:
        dataset.build_overviews([2 ** k for k in range(1, levels + 1)], Resampling[resampling])
    found = []
    for level in range(levels):
        with rasterio.open(path, OVERVIEW_LEVEL=level) as dataset:
            found.append(dataset.read())
    return found


def assert_level(level: np.ndarray, gdal: np.ndarray, resampling: str, exact: bool,
                 where: str) -> None:
    """Equal as the module's docstring says."""
    assert level.shape == gdal.shape and level.dtype == gdal.dtype, where
    if resampling == "nearest":
        assert np.array_equal(level, gdal, equal_nan=True), where
    elif level.dtype.kind == "f":
        rtol = 1e-6 if level.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(level, gdal, rtol=rtol, atol=0, equal_nan=True, err_msg=where)
    elif exact:
        assert np.array_equal(level, gdal), where
    else:
        assert np.abs(level.astype(np.int64) - gdal).max() <= 1, where


@pytest.mark.parametrize("shape", [(64, 48), (37, 53), (100, 91), (300, 257)])
@pytest.mark.parametrize("dtype,nodata", [("uint8", None), ("uint8", 0), ("int16", -5),
                                          ("uint16", None), ("int32", 3), ("float32", None),
                                          ("float32", NAN), ("float64", None),
                                          ("float64", -9999.0), ("float64", NAN)])
@pytest.mark.parametrize("resampling", ["nearest", "average"])
def test_levels_equal_gdal_s_overviews(tmp_path, shape, dtype, nodata, resampling):
    data = image(dtype, 2, shape, nodata)
    expected = gdal_levels(data, nodata, resampling, 4, tmp_path / "gdal.tif")
    level = data
    for number, gdal in enumerate(expected, start=1):
        level = reduce_level(level, resampling, nodata)
        assert_level(level, gdal, resampling, halves_exactly(*shape, number), f"level {number}")


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int32", "float32", "float64"])
def test_an_even_average_without_nodata_equals_gdal_s_bit_for_bit(tmp_path, dtype):
    """Both sides even, no nodata, GDAL's row a multiple of 4 target pixels wide (its vectorised
    float32 path has no scalar tail there): the same bits as GDAL's, float32 included (each
    quarter of the two rows' sum, then the two columns'; a float64 copy would round otherwise).
    Values spread over many binades so that the order of the sums shows."""
    rng = np.random.default_rng(7)
    data = rng.random((2, 96, 128)) * 200
    if np.dtype(dtype).kind == "f":
        data *= np.exp(rng.normal(0, 4, data.shape))
    data = data.astype(dtype)
    gdal = gdal_levels(data, None, "average", 1, tmp_path / "gdal.tif")[0]
    assert np.array_equal(reduce_level(data, "average"), gdal)


@pytest.mark.parametrize("shape", [(512, 383), (201, 130), (131, 200)])
@pytest.mark.parametrize("dtype,nodata", [("uint8", None), ("int16", 0), ("float32", None),
                                          ("float32", NAN), ("float64", -9999.0)])
@pytest.mark.parametrize("resampling", ["nearest", "average"])
def test_levels_of_rounded_down_sizes_equal_the_cog_driver_s(tmp_path, shape, dtype, nodata,
                                                             resampling):
    data = image(dtype, 3, shape, nodata)
    with rasterio.open(tmp_path / "in.tif", "w", driver="GTiff", width=shape[1],
                       height=shape[0], count=3, dtype=dtype, nodata=nodata) as out:
        out.write(data)
    rasterio.shutil.copy(tmp_path / "in.tif", tmp_path / "cog.tif", driver="COG",
                         blocksize=32, resampling=resampling)
    count = cog_level_count(*shape, 32)
    level = data
    for number in range(1, count + 1):
        with rasterio.open(tmp_path / "cog.tif", OVERVIEW_LEVEL=number - 1) as dataset:
            gdal = dataset.read()
        level = reduce_level(level, resampling, nodata, level_shape(*shape, number, floor=True))
        assert_level(level, gdal, resampling, halves_exactly(*shape, number), f"level {number}")
    with pytest.raises(rasterio.errors.RasterioError):  # no level beyond them
        rasterio.open(tmp_path / "cog.tif", OVERVIEW_LEVEL=count).close()


@pytest.mark.parametrize("shape", [(512, 512), (513, 100), (1025, 1025), (2048, 600),
                                   (300, 257)])
def test_the_cog_level_count_is_the_cog_driver_s(tmp_path, shape):
    block = 64 if shape == (300, 257) else 512
    with rasterio.open(tmp_path / "in.tif", "w", driver="GTiff", width=shape[1],
                       height=shape[0], count=1, dtype="uint8") as out:
        out.write(np.zeros((1, *shape), np.uint8))
    rasterio.shutil.copy(tmp_path / "in.tif", tmp_path / "cog.tif", driver="COG",
                         blocksize=block)
    with rasterio.open(tmp_path / "cog.tif") as dataset:
        assert len(dataset.overviews(1)) == cog_level_count(*shape, block)


#: name: (dtype, bands, nodata, COG options, shape)
FILES = {
    "uint8 deflate": ("uint8", 1, None, {}, (300, 257)),
    "uint8 3 bands lzw nodata": ("uint8", 3, 0, {"compress": "lzw"}, (130, 100)),
    "int16 zstd level 3": ("int16", 1, -5, {"compress": "zstd", "level": 3}, (100, 70)),
    "uint16 none": ("uint16", 2, None, {"compress": "none"}, (96, 96)),
    "float32 NaN predictor yes": ("float32", 1, NAN, {"predictor": "yes"}, (200, 131)),
    "float64 3 bands zstd": ("float64", 3, -9999.0, {"compress": "zstd", "predictor": 3},
                             (77, 140)),
    "int32 bigtiff": ("int32", 1, None, {"bigtiff": "yes"}, (100, 100)),
}


@pytest.mark.parametrize("case", list(FILES))
def test_a_file_of_levels_is_a_valid_cog_gdal_reads_back(tmp_path, case):
    dtype, bands, nodata, options, shape = FILES[case]
    data = image(dtype, bands, shape, nodata)
    profile = dict(GRID, dtype=dtype, count=bands, height=shape[0], width=shape[1],
                   nodata=nodata)
    layout = cog_layout(profile, {**options, "blocksize": 32})
    count = cog_level_count(*shape, 32)
    layouts = [layout] + [overview_layout(layout, level, floor=True)
                          for level in range(1, count + 1)]
    levels = [data]
    for each in layouts[1:]:
        levels.append(reduce_level(levels[-1], "nearest", shape=(each.height, each.width)))
    blocks = []
    for each, pixels in zip(layouts, levels):
        encoded = {}
        for row, col, (top, left, rows, cols) in each.windows():
            encoded.update(each.encode(row, col, pixels[:, top:top + rows, left:left + cols]))
        blocks.append(encoded)
    path = tmp_path / "out.tif"
    assemble_levels(path, layouts, geotiff_metadata(profile), blocks)

    valid, errors, warnings = cog_validate(str(path))
    assert valid and not errors and not warnings, (errors, warnings)
    head = 16 if options.get("bigtiff") else 8
    start = path.read_bytes()[:head + len(ghost_header())]
    assert start[head:] == ghost_header()
    assert start[:4] == (b"II+\0" if options.get("bigtiff") else b"II*\0")
    with rasterio.open(path) as dataset:
        assert dataset.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert len(dataset.overviews(1)) == count and dataset.block_shapes[0] == (32, 32)
        assert dataset.crs == "EPSG:32631" and dataset.transform == GRID["transform"]
        assert np.array_equal(dataset.read(), data, equal_nan=True)
        assert dataset.nodata == nodata or (np.isnan(nodata) and np.isnan(dataset.nodata))
    for level in range(1, count + 1):
        with rasterio.open(path, OVERVIEW_LEVEL=level - 1) as dataset:
            assert np.array_equal(dataset.read(), levels[level], equal_nan=True)


def test_a_missing_block_is_an_error_never_an_empty_block(tmp_path):
    profile = dict(GRID, dtype="uint8", count=1, height=64, width=64, nodata=None)
    layout = cog_layout(profile, {"blocksize": 32})
    overview = overview_layout(layout, 1)
    full = {index: b"x" for index in range(3)}  # block 3 of 4 missing
    with pytest.raises(ValueError, match="1 of 4 blocks of level 0 missing"):
        assemble_levels(tmp_path / "out.tif", [layout, overview], [], [full, {0: b"y"}])


def test_cog_options_as_the_cog_driver_reads_them():
    floats = dict(GRID, dtype="float32", count=1, height=64, width=64)
    integers = dict(floats, dtype="uint16")
    assert cog_layout(floats, {"predictor": "yes"}).predictor == 3
    assert cog_layout(integers, {"predictor": "YES"}).predictor == 2
    assert cog_layout(floats, {"predictor": "standard"}).predictor == 2
    assert cog_layout(floats, {}).predictor == 1 and cog_layout(floats, {}).compression == \
        "deflate"
    layout = cog_layout(floats, {"compress": "zstd", "level": 15, "blocksize": 256})
    assert (layout.level, layout.block_width, layout.tiled) == (15, 256, True)
    with pytest.raises(BlockEncodingError, match="COG options not handled"):
        cog_layout(floats, {"compress": "jpeg", "quality": 90})
    with pytest.raises(BlockEncodingError, match="compression webp"):
        cog_layout(floats, {"compress": "webp"})


def test_a_gdal_error_while_the_cog_is_made_names_the_output(tmp_path, monkeypatch) -> None:
    """GDAL's own errors (a seek error on a full disk, say) are raised by rasterio as
    ``CPLE_*`` exceptions, not RasterioError: the COG's conversion failing with one is the
    write error naming the output, not an internal error; nothing is left."""
    import eoscale.io.layout as layout_module
    from rasterio._err import CPLE_AppDefinedError

    from eoscale.errors import RasterError
    from eoscale.io.layout import ImageLayout, image_file

    def fails(*args, **kwargs):
        raise CPLE_AppDefinedError(1, 1, "TIFFAppendToStrip:Seek error at scanline 512")

    monkeypatch.setattr(layout_module.rasterio.shutil, "copy", fails)
    path = tmp_path / "out.tif"
    with pytest.raises(RasterError) as raised:
        with image_file(path, ImageLayout("COG", (), "nearest"), {}, display="out.tif") as target:
            with rasterio.open(target.path, "w", driver="GTiff", width=64, height=64, count=1,
                               dtype="uint8", transform=Affine(1, 0, 0, 0, -1, 64)) as dataset:
                dataset.write(np.zeros((1, 64, 64), np.uint8))
    assert str(raised.value) == ("out.tif: cannot write as COG (TIFFAppendToStrip:Seek error at "
                                 "scanline 512)")
    assert list(tmp_path.iterdir()) == []


#: 2 x 2 blocks whose means GDAL rounds or moves in its own way: a mean that only rounds to
#: the nodata 7 (7.25), a mean exactly 7, negative and positive halves, a nodata among them.
PROBES = [[6, 9, 5, 9], [6, 8, 6, 8], [-5, -6, -5, -6], [0, -1, 0, -1], [1, 2, 1, 2],
          [2, 3, 2, 3], [7, 7, 7, 8], [-3, -4, -4, -4]]


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "uint32", "uint8", "uint16"])
@pytest.mark.parametrize("nodata", [7, None])
def test_integer_averages_round_and_keep_nodata_as_gdal_does(tmp_path, dtype, nodata):
    """GDAL 3.10 averages uint8 and uint16 in integers (half up, a rounded mean equal to
    nodata moved off it), every other integer type in floating point (a mean exactly nodata
    moved off it, then converted: halves away from zero, so 7.25 is stored as the nodata 7).
    The probes, then random signed values: every level of an even size equal; the first
    level of an odd one within 1 (GDAL's weights there are not exact binary fractions: a
    mean near a half, or near nodata, may fall either side, and the levels above inherit
    it)."""
    probes = np.abs(PROBES) if np.dtype(dtype).kind == "u" else np.array(PROBES)
    data = np.zeros((1, 16, 2 * len(PROBES)), dtype)
    for index, (a, b, c, d) in enumerate(probes):
        data[0, 0::2, 2 * index:2 * index + 2] = a, b
        data[0, 1::2, 2 * index:2 * index + 2] = c, d
    gdal = gdal_levels(data, nodata, "average", 1, tmp_path / "probes.tif")[0]
    assert np.array_equal(reduce_level(data, "average", nodata), gdal), (
        reduce_level(data, "average", nodata)[0, 0], gdal[0, 0])
    rng = np.random.default_rng(3)
    low = 0 if np.dtype(dtype).kind == "u" else -100
    for shape, levels in (((64, 48), 3), ((37, 53), 1)):
        data = rng.integers(low, 100, (2, *shape)).astype(dtype)
        expected = gdal_levels(data, nodata, "average", levels, tmp_path / f"{shape[0]}.tif")
        level = data
        for number, found in enumerate(expected, start=1):
            level = reduce_level(level, "average", nodata)
            assert_level(level, found, "average", halves_exactly(*shape, number),
                         f"{shape} level {number}")
