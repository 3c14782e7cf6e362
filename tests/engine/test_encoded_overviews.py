"""Overviews computed and encoded by the workers in the same pass as the pixels.

A map writes an output with overviews (a COG, or a GeoTIFF with ``overviews: [2, 4...]``): the
worker that computed a tile encodes its blocks and its own overview blocks; the coarser levels
are made from the small arrays the tiles keep. The oracle for every level is GDAL itself: the
same full-resolution image written by rasterio in one go, then, for a GeoTIFF,
``build_overviews`` with the same factors and resampling, for a COG, GDAL's COG driver with the
same block size and resampling (its levels' sizes are rounded down where ``build_overviews``
rounds them up), read back level by level (``OVERVIEW_LEVEL``). ``nearest`` must be equal
pixel for pixel; ``average`` equal within the rounding of the dtype: for floats, a relative
1e-6 (float32) or 1e-12 (float64), because GDAL sums in its own order; for integers, equal on
the levels made from even sizes (a plain 2 x 2 mean rounded half up), and at most 1 apart on
those made from an odd size (GDAL weights the pixels a target covers in part, and rounds an
exact half by its own float error). Nodata and NaN pixels take part as GDAL makes them.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from callables import float_result, identity
from rasterio.enums import Resampling
from rio_cogeo.cogeo import cog_validate

import eoscale.engine.overviews as overviews_module
from eoscale.engine import Engine, Tiling
from eoscale.engine.encoded import PART_MARK, writer_name
from eoscale.engine.filed import OutputFile
from eoscale.engine.overviews import EncodedPyramid, pyramid_target
from eoscale.engine.tiling import plan_step
from eoscale.io.cog import Pyramid, cog_level_count, halves_exactly, reduce_level
from eoscale.io.raster import creation_profile

GRID = {"transform": Affine(10, 0, 1000, 0, -10, 2000), "crs": "EPSG:32631"}
NAN = float("nan")
#: name: (dtype, bands, nodata, creation options, shape, tile size)
CASES = {
    "uint8 deflate": ("uint8", 1, None, {"compress": "deflate"}, (200, 168), 64),
    "uint8 3 bands nodata lzw": ("uint8", 3, 0, {"compress": "lzw"}, (200, 168), 64),
    "int16 zstd nodata": ("int16", 1, -5, {"compress": "zstd"}, (136, 200), 128),
    "uint16 none": ("uint16", 2, None, {"compress": "none"}, (200, 168), 64),
    "float32 NaN nodata predictor": ("float32", 1, NAN, {"predictor": "yes"}, (200, 168), 64),
    "float32 3 bands NaN no nodata": ("float32", 3, None, {"compress": "zstd"}, (136, 200), 64),
    "float64 value nodata lzw": ("float64", 2, -9999.0, {"compress": "lzw"}, (200, 168), 128),
    # levels 1 and 2 in the tiles, 3 from level 2 (33 x 25) when the map ends
    "int32 kept level encoded by the tiles": ("int32", 1, None, {}, (132, 100), 128),
    "float32 kept level encoded by the tiles": ("float32", 1, NAN, {}, (132, 100), 128),
    # level 1 kept (tiles of 48 x 48 in it, blocks of 32): on 2 workers, strips of 64 rows of
    # it, which tiles straddle
    "float32 kept tiles straddle the strips": ("float32", 2, None, {}, (384, 320), 96),
    # W1's COG in small (blocks of 32): level 1 in the tiles, level 2 kept, levels 3 and 4
    # made a round a level, by several tasks
    "float32 coarser levels in rounds": ("float32", 1, None, {}, (512, 512), 64),
    "uint16 nodata coarser levels in rounds": ("uint16", 2, 7, {}, (512, 384), 64),
    # level 2 (66 x 50) kept, level 3 (33 x 25) from its strips, then read whole for level 4
    "float32 NaN a round then a level read whole": ("float32", 1, NAN, {}, (264, 200), 64),
    # a row of level 2's blocks (32 x 256 or 192) is more than a tile of the map (64 x 64):
    # that round in square tiles of 2 x 2 blocks, the next ones in strips
    "float32 NaN predictor rounds in square tiles": ("float32", 1, NAN, {"predictor": "yes"},
                                                     (1024, 1024), 64),
    "uint8 2 bands nodata lzw rounds in square tiles": ("uint8", 2, 0, {"compress": "lzw"},
                                                        (1024, 768), 64),
}


def make_image(dtype: str, bands: int, nodata, shape, seed=3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        image = rng.normal(100, 30, (bands, *shape)).astype(dtype)
        image[rng.random(image.shape) < 0.05] = np.nan if nodata is None or np.isnan(nodata) \
            else nodata
        return image
    image = rng.integers(0, 250, (bands, *shape)).astype(dtype)
    if nodata is not None:
        image[rng.random(image.shape) < 0.2] = nodata
    return image


def profile_of(image: np.ndarray, nodata) -> dict:
    return dict(GRID, nodata=nodata, count=image.shape[0], dtype=image.dtype.name,
                height=image.shape[1], width=image.shape[2])


@pytest.fixture
def assembled(monkeypatch) -> list[list[set[str]]]:
    """For every file with overviews whose header this process wrote: the part files of each
    level's blocks (every block is in a part file: the coarsest levels' too, encoded by a
    worker)."""
    seen: list[list[set[str]]] = []
    write_header = overviews_module.write_levels_header

    def spy(path, layouts, metadata, blocks, **kwargs):
        seen.append([{record.part for record in level.values()} for level in blocks])
        return write_header(path, layouts, metadata, blocks, **kwargs)

    monkeypatch.setattr(overviews_module, "write_levels_header", spy)
    return seen


def run_map(workers: int, tile: int, image: np.ndarray, nodata, pyramid: Pyramid,
            fn=identity) -> None:
    with Engine(workers, tiling=Tiling("tiles", tile)) as engine:
        source = engine.from_array(image, dict(GRID, nodata=nodata))
        # No profile function: the dtype is learnt from the first tile.
        engine.map(fn, [source], margin=0, files=[OutputFile(
            pyramid.path.with_name("unused.tif"), {}, "out", EncodedPyramid(pyramid))])


def gdal_levels(image: np.ndarray, nodata, path: Path, options: dict, levels: int,
                resampling: str) -> list[np.ndarray]:
    """The image and its overview levels as GDAL makes them (see the module's docstring)."""
    with rasterio.open(path, "w", **creation_profile(profile_of(image, nodata), options)) as out:
        out.write(image)
    with rasterio.open(path, "r+") as dataset:
        dataset.build_overviews([2 ** k for k in range(1, levels + 1)], Resampling[resampling])
    return [read_level(path, level) for level in range(levels + 1)]


def gdal_cog_levels(image: np.ndarray, nodata, folder: Path, options: dict,
                    resampling: str) -> list[np.ndarray]:
    """The image and its overview levels as GDAL's COG driver makes them from it (sizes
    rounded down, see :mod:`eoscale.io.cog`), stored with the COG's blocks (GDAL's chunks, and
    so how it averages, follow the blocks of the image it is given)."""
    plain, cog = folder / "gdal_plain.tif", folder / "gdal.tif"
    block = options.get("blocksize", 512)
    layout = {"tiled": True, "blockxsize": block, "blockysize": block}
    with rasterio.open(plain, "w", **creation_profile(profile_of(image, nodata), layout)) as out:
        out.write(image)
    rasterio.shutil.copy(plain, cog, driver="COG", resampling=resampling, **options)
    plain.unlink()
    with rasterio.open(cog) as dataset:
        levels = len(dataset.overviews(1))
    return [read_level(cog, level) for level in range(levels + 1)]


def read_level(path: Path, level: int) -> np.ndarray:
    options = {} if level == 0 else {"OVERVIEW_LEVEL": level - 1}
    with rasterio.open(path, **options) as dataset:
        return dataset.read()


def assert_level_equal(mine: np.ndarray, gdal: np.ndarray, resampling: str, exact: bool,
                       where: str) -> None:
    assert mine.shape == gdal.shape, where
    if resampling == "nearest" or (exact and mine.dtype.kind != "f"):
        assert np.array_equal(mine, gdal, equal_nan=True), where
    elif mine.dtype.kind == "f":
        rtol = 1e-6 if mine.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(mine, gdal, rtol=rtol, atol=0, equal_nan=True, err_msg=where)
    else:
        assert np.abs(mine.astype(np.int64) - gdal).max() <= 1, where


def assert_levels(path: Path, expected: list[np.ndarray], resampling: str) -> None:
    height, width = expected[0].shape[1:]
    with rasterio.open(path) as dataset:
        assert dataset.overviews(1) == [2 ** k for k in range(1, len(expected))] or \
            len(dataset.overviews(1)) == len(expected) - 1
    for level, gdal in enumerate(expected):
        assert_level_equal(read_level(path, level), gdal, resampling,
                           halves_exactly(height, width, level), f"level {level}")


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("case", list(CASES))
def test_a_cog_s_levels_equal_gdal_s_overviews_of_the_same_image(tmp_path, assembled, workers,
                                                                 case):
    dtype, bands, nodata, options, shape, tile = CASES[case]
    image = make_image(dtype, bands, nodata, shape)
    cog_options = {**options, "blocksize": 32}
    pyramid = Pyramid(tmp_path / "out.tif", "COG", cog_options, None, None)
    run_map(workers, tile, image, nodata, pyramid)

    resampling = "average" if image.dtype.kind == "f" else "nearest"
    expected = gdal_cog_levels(image, nodata, tmp_path, {"blocksize": 32}, resampling)
    assert len(expected) == cog_level_count(*shape, 32) + 1
    assert_levels(tmp_path / "out.tif", expected, resampling)
    valid, errors, warnings = cog_validate(str(tmp_path / "out.tif"))
    assert valid and not errors and not warnings, (errors, warnings)
    with rasterio.open(tmp_path / "out.tif") as dataset:
        assert dataset.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert dataset.block_shapes[0] == (32, 32)
        compression = dataset.compression.value.lower() if dataset.compression else "none"
        assert compression == cog_options.get("compress", "deflate")
        assert dataset.nodata == nodata or (np.isnan(nodata) and np.isnan(dataset.nodata))
        assert dataset.crs == "EPSG:32631" and dataset.transform == GRID["transform"]
    [parts] = assembled
    mine = f"out.tif{PART_MARK}{writer_name()}"  # this process's: the first tile's blocks
    if workers > 1:  # a level the tiles complete was encoded by a worker, not this process,
        assert {Path(p).name for p in parts[1]} - {mine}
        # and the coarsest level (made from the tiles' kept pixels) by one worker task
        assert mine not in {Path(p).name for p in parts[-1]} and len(parts[-1]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gdal.tif", "out.tif"]  # no part


#: name: (dtype, bands, nodata, shape, tile size, summed levels), on blocks of 512: level 2's
#: chunk is (2 + 2 min(512, its width)) x 1026 px of every band (see eoscale.io.cog); over
#: GDAL_OVR_CHUNK_MAX_SIZE (10 MiB), GDAL averages every level from 2 up from the full
#: resolution.
SUMMED_CASES = {
    # 12 bytes a pixel, 1026 x 1026 x 12 over it: level 1 encoded in the tiles (1024 px),
    # level 2 made in a round from the sums and counts the tiles kept
    "float32 3 bands NaN": ("float32", 3, NAN, (1024, 2048), 1024, (2,)),
    # the same from tiles of 512 px: levels 1 and 2 in the rounds (level 1 kept, with sums)
    "float32 3 bands NaN, level 1 kept": ("float32", 3, NAN, (1024, 2048), 512, (2,)),
    # uint16 works in its own type, 2 bytes: 6 bands, rounded half up from the sums
    "uint16 6 bands nodata": ("uint16", 6, 7, (1024, 2048), 1024, (2,)),
    # level 2 384 px wide: 770 x 1026 x 12 under the limit, every level from the one below
    "float32 3 bands NaN, chunks under the limit": ("float32", 3, NAN, (1024, 1536), 512, ()),
}


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("case", list(SUMMED_CASES))
def test_levels_gdal_averages_from_the_full_resolution_equal_gdal_s(tmp_path, workers, case):
    """Where level 2's chunk is over GDAL_OVR_CHUNK_MAX_SIZE, GDAL averages levels 2 and up
    from the full resolution, not from the level below: with nodata the two differ, and the
    workers' levels are GDAL's, whether the tiles or the rounds make them."""
    dtype, bands, nodata, shape, tile, summed = SUMMED_CASES[case]
    image = make_image(dtype, bands, nodata, shape)
    pyramid = Pyramid(tmp_path / "out.tif", "COG", {}, None, "average")
    tiles = plan_step(*shape, margin=0, tiling=Tiling("tiles", tile), workers=2).tiles()
    target = pyramid_target(pyramid, profile_of(image, nodata), tiles, "out")
    assert target is not None and target.summed == summed
    run_map(workers, tile, image, nodata, pyramid)
    expected = gdal_cog_levels(image, nodata, tmp_path, {"blocksize": 512}, "average")
    assert len(expected) == 3
    assert_levels(tmp_path / "out.tif", expected, "average")
    with np.errstate(invalid="ignore"):  # from level 1 as GDAL made it, level 2 would be:
        below = reduce_level(expected[1], "average", nodata)
    assert np.allclose(below, expected[2], equal_nan=True, rtol=1e-6, atol=0.5) != bool(summed)


@pytest.mark.parametrize("resampling", ["nearest", "average"])
def test_geotiff_overviews_asked_for_equal_gdal_s(tmp_path, assembled, resampling):
    image = make_image("uint16", 2, 0, (256, 192))
    options = {"blockxsize": 32, "blockysize": 32, "compress": "zstd", "predictor": 2}
    pyramid = Pyramid(tmp_path / "out.tif", "GTiff", options, 3, resampling)
    run_map(2, 64, image, 0, pyramid)
    expected = gdal_levels(image, 0, tmp_path / "gdal.tif", options, 3, resampling)
    assert_levels(tmp_path / "out.tif", expected, resampling)
    with rasterio.open(tmp_path / "out.tif") as dataset:
        assert dataset.overviews(1) == [2, 4, 8]
        assert dataset.tags(ns="rio_overview") == {"resampling": resampling}
        assert "LAYOUT" not in dataset.tags(ns="IMAGE_STRUCTURE")  # a plain GeoTIFF, not a COG
    assert len(assembled) == 1
    with rasterio.open(tmp_path / "out.tif", "r+") as dataset:  # GDAL refuses to update a COG
        dataset.update_tags(note="updated")
    with rasterio.open(tmp_path / "out.tif") as dataset:
        assert dataset.tags()["note"] == "updated"
    assert_levels(tmp_path / "out.tif", expected, resampling)


def test_overviews_follow_the_dtype_learnt_from_the_first_tile(tmp_path, assembled):
    """uint8 in, float64 out (``+ 0.5``), no profile function: the default resampling is the
    float's, ``average``."""
    image = make_image("uint8", 1, None, (128, 128))
    pyramid = Pyramid(tmp_path / "out.tif", "COG", {"blocksize": 32}, None, None)
    with Engine(2, tiling=Tiling("tiles", 64)) as engine:
        source = engine.from_array(image, dict(GRID, nodata=None))
        engine.map(float_result, [source], margin=0, files=[OutputFile(
            tmp_path / "unused.tif", {}, "out", EncodedPyramid(pyramid))])
    expected = gdal_cog_levels(image + 0.5, None, tmp_path, {"blocksize": 32}, "average")
    assert_levels(tmp_path / "out.tif", expected, "average")


def test_which_levels_the_workers_encode(tmp_path):
    def target(shape, tile, block=32, levels=None):
        profile = profile_of(np.zeros((1, *shape), np.float32), None)
        tiles = plan_step(*shape, margin=0, tiling=Tiling("tiles", tile), workers=2).tiles()
        pyramid = Pyramid(tmp_path / "x.tif", "COG", {"blocksize": block}, levels, None)
        return pyramid_target(pyramid, profile, tiles, "x")

    made = target((256, 256), 128)  # 3 levels; level 1 and 2 blocks lie whole in a tile
    assert (made.encoded_levels, made.kept_level, len(made.levels)) == (2, 3, 3)
    made = target((256, 256), 32)  # level 1 blocks span 2 x 2 tiles: the tiles keep level 1
    assert (made.encoded_levels, made.kept_level) == (0, 1)
    made = target((200, 168), 64)  # levels 1-3 halve exactly, level 4 (25 x 21) does not
    assert (made.encoded_levels, made.kept_level, len(made.levels)) == (1, 2, 3)
    made = target((132, 100), 128)  # levels 1-2 in the tiles, level 3 from 33 x 25
    assert (made.encoded_levels, made.kept_level, len(made.levels)) == (2, 2, 3)
    assert target((64, 64), 64, levels=1).kept_level == 0  # every level in its tile
    assert target((201, 168), 64) is None  # an odd side: made after the image, as before
    assert target((256, 256), 48) is None  # tiles not whole blocks


def test_the_levels_rounds_read_each_level_once_in_strips(tmp_path):
    """W1's COG in small (8192 px, blocks of 512, tiles of 1024: level 2 kept, levels 3 and 4
    above it): a round a level, in strips of whole block rows (two a worker at most), each
    keeping its rows of the next level; where the next level does not halve exactly, one task
    reads the level whole and no round follows."""
    from eoscale.engine.overviews import levels_round

    def target_for(shape, tile):
        profile = profile_of(np.zeros((1, *shape), np.float32), None)
        tiles = plan_step(*shape, margin=0, tiling=Tiling("tiles", tile), workers=2).tiles()
        pyramid = Pyramid(tmp_path / "x.tif", "COG", {"blocksize": 32}, None, None)
        return pyramid_target(pyramid, profile, tiles, "x")

    target = target_for((512, 512), 64)
    assert (target.encoded_levels, target.kept_level, len(target.levels)) == (1, 2, 4)
    rounds = [levels_round(target, level, [], 2) for level in (2, 3, 4)]
    assert [[(int(t.core.row_off), int(t.core.height)) for t in job.tiles] for job in rounds] \
        == [[(0, 32), (32, 32), (64, 32), (96, 32)], [(0, 32), (32, 32)], [(0, 32)]]
    assert [(job.reduces, job.whole) for job in rounds] == \
        [(True, False), (True, False), (False, False)]
    assert [(job.level, job.layout.width) for job in rounds] == [(2, 128), (3, 64), (4, 32)]
    wide = replace(target, task_pixels=128 * 128)  # the map's tiles as large as the level
    assert levels_round(wide, 2, [], 1).layout.tile_count == 2  # two strips a worker
    # no task holds more pixels than the map's largest tile: strips of fewer block rows,
    # then square tiles of whole blocks where a row of blocks is more
    assert target.task_pixels == 64 * 64

    def tiles_of(made, pixels):
        job = levels_round(replace(made, task_pixels=pixels), 2, [], 1)
        return [(int(t.core.row_off), int(t.core.col_off), int(t.core.height),
                 int(t.core.width)) for t in job.tiles]
    assert tiles_of(target, 128 * 64) == [(0, 0, 64, 128), (64, 0, 64, 128)]
    assert tiles_of(target, 128 * 32) == [(row, 0, 32, 128) for row in (0, 32, 64, 96)]
    assert tiles_of(target, 1) == [(row, col, 32, 32) for row in range(0, 128, 32)
                                   for col in range(0, 128, 32)]  # never less than a block
    large = target_for((2048, 2048), 64)  # level 2: 512 x 512, a row of blocks 16,384 px
    assert tiles_of(large, 64 * 64) == [(row, col, 64, 64) for row in range(0, 512, 64)
                                        for col in range(0, 512, 64)]

    target = target_for((264, 200), 64)  # level 2 (66 x 50) kept, 3 (33 x 25) odd, then 4
    assert (target.kept_level, len(target.levels)) == (2, 4)
    assert [(job.reduces, job.whole, job.layout.tile_count) for job in (
        levels_round(target, 2, [], 2), levels_round(target, 3, [], 2))] == \
        [(True, False, 3), (False, True, 1)]

    target = target_for((132, 100), 128)  # level 2 (33 x 25) kept, encoded by the tiles
    job = levels_round(target, 2, [], 2)
    assert (job.reduces, job.whole, job.layout.tile_count) == (False, True, 1)
    assert (job.tiles[0].core.height, job.tiles[0].core.width) == (33, 25)  # all of it


def test_only_a_level_read_whole_is_bounded(tmp_path, monkeypatch):
    """The kept level of a large image is read a strip at a time: only a level that a task
    reads whole (the levels above it do not halve it) must fit MAX_KEPT_BYTES."""
    profile = profile_of(np.zeros((1, 1024, 1024), np.float32), None)
    tiles = plan_step(1024, 1024, margin=0, tiling=Tiling("tiles", 64), workers=2).tiles()
    pyramid = Pyramid(tmp_path / "x.tif", "COG", {"blocksize": 32}, None, None)
    monkeypatch.setattr(overviews_module, "MAX_KEPT_BYTES", 1024)  # less than level 2
    made = pyramid_target(pyramid, profile, tiles, "x")  # 5 levels, each halving the last
    assert made is not None and made.kept_level == 2
    odd = profile_of(np.zeros((1, 1000, 1000), np.float32), None)  # level 3: 125 x 125
    tiles = plan_step(1000, 1000, margin=0, tiling=Tiling("tiles", 64), workers=2).tiles()
    assert overviews_module.pyramid_refusal(pyramid, odd, [
        (int(t.core.row_off), int(t.core.col_off), int(t.core.height), int(t.core.width))
        for t in tiles]) == ("its overview level 3 would take 0 MiB in the worker making the "
                             "levels above it, which do not halve it exactly (at most 0 MiB)")


def test_a_failing_map_leaves_no_part_and_no_file(tmp_path, assembled):
    from callables import raises

    from eoscale.errors import StepError

    image = make_image("uint8", 1, None, (128, 128))
    pyramid = Pyramid(tmp_path / "out.tif", "COG", {"blocksize": 32}, None, None)
    with pytest.raises(StepError), Engine(2, tiling=Tiling("tiles", 32)) as engine:
        source = engine.from_array(image, dict(GRID, nodata=None))
        engine.map(raises, [source], params={"bad_tile": 9}, margin=0, files=[OutputFile(
            tmp_path / "unused.tif", {}, "out", EncodedPyramid(pyramid))])
    assert assembled == []
    assert list(tmp_path.iterdir()) == []


def test_float_results_with_nan_keep_gdal_s_nan_rule(tmp_path, assembled):
    """Without a NaN nodata a NaN makes its overview pixel NaN, as GDAL makes it."""
    image = make_image("float32", 1, None, (128, 96))
    pyramid = Pyramid(tmp_path / "out.tif", "GTiff", {"blockxsize": 32, "blockysize": 32}, 2,
                      "average")
    run_map(2, 32, image, None, pyramid, fn=float_result)
    expected = gdal_levels(image + 0.5, None, tmp_path / "gdal.tif",
                           {"blockxsize": 32, "blockysize": 32}, 2, "average")
    assert_levels(tmp_path / "out.tif", expected, "average")
    assert np.isnan(read_level(tmp_path / "out.tif", 1)).sum() > np.isnan(image).sum() / 4


OPS = '''import numpy as np


def third(arrays, profiles, params):
    return arrays[0].astype(np.float32) / 3


def plus_one(arrays, profiles, params):
    return arrays[0] + 1
'''

SPILLED = '''version: 1
inputs: {src: in.tif}
steps:
  - {name: third, map: cog_ops.third, inputs: [src]}
  - {name: more, map: cog_ops.plus_one, inputs: [third]}
outputs:
  third: {path: out/third.tif, format: COG, options: {blocksize: 64}, quicklook: {size: 300}}
  more: out/more.tif
'''


def eoscale_command(*args, cwd):
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    return subprocess.run([sys.executable, "-m", "eoscale", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("width", [768, 767])
def test_a_spilled_cog_learnt_float_from_its_first_tile_gets_gdal_s_average(tmp_path, width):
    """The fault of issue 19: uint8 in, float32 out with no ``profile:``, read by a later step
    so spilled under a small ``--memory``: its overviews are averages (the README's default for
    floats), equal to GDAL's average overviews of the same full-resolution image (read back
    from the file itself), and the run's COG is valid; no part file is left. Width 768: the
    workers make the overviews; 767 (odd): GDAL makes them after the image, as before, with
    the resampling of the dtype the file has."""
    rng = np.random.default_rng(1)
    with rasterio.open(tmp_path / "in.tif", "w", driver="GTiff", width=width, height=1024,
                       count=1, dtype="uint8", **GRID) as out:
        out.write(rng.integers(0, 250, (1, 1024, width)).astype(np.uint8))
    (tmp_path / "cog_ops.py").write_text(OPS)
    (tmp_path / "p.yaml").write_text(SPILLED)
    # 1600 KiB: spilled, not held; and room for the rows of its 512-px blocks that wait in the
    # main process's writer (128-px tiles are not whole blocks of it: the main process writes it)
    args = ("run", "p.yaml", "-w", "2", "--tile-size", "128", "--memory", "1600KiB")
    plan = eoscale_command(*args, "--dry-run", cwd=tmp_path)
    assert f"third: 1 x 1024 x {width} uint8 (assumed; the first tile tells)" in plan.stdout
    assert "lives spilled" in plan.stdout.split("third:")[1].split("\n")[0]
    run = eoscale_command(*args, "-q", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    cog = tmp_path / "out" / "third.tif"
    valid, errors, warnings = cog_validate(str(cog))
    assert valid and not errors and not warnings, (errors, warnings)
    full = read_level(cog, 0)
    assert full.dtype == np.float32
    expected = gdal_cog_levels(full, None, tmp_path, {"blocksize": 64}, "average")
    assert len(expected) == cog_level_count(1024, width, 64) + 1
    assert_levels(cog, expected, "average")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "more.tif", "third.png", "third.tif"]


def test_a_cog_with_the_factors_asked_for_has_build_overviews_sizes(tmp_path, assembled):
    """A COG with ``overviews: [2, 4, 8]``: GDAL builds them on the GeoTIFF it copies (sizes
    rounded up), so the workers' levels are ``build_overviews``' (200 x 168: 25 x 21 -> 13 x 11,
    where the COG driver's own levels would be 12 x 10)."""
    image = make_image("float32", 1, NAN, (200, 168))
    pyramid = Pyramid(tmp_path / "out.tif", "COG", {"blocksize": 32}, 4, "average")
    run_map(2, 64, image, NAN, pyramid)
    expected = gdal_levels(image, NAN, tmp_path / "gdal.tif",
                           {"blockxsize": 32, "blockysize": 32}, 4, "average")
    assert expected[4].shape == (1, 13, 11)
    assert_levels(tmp_path / "out.tif", expected, "average")
    assert cog_validate(str(tmp_path / "out.tif"))[0] and len(assembled) == 1


@pytest.mark.parametrize("workers", [1, 2])
def test_kept_pixels_unreadable_fail_the_run_naming_the_output(tmp_path, monkeypatch, workers):
    """The tiles' kept pixels cut short in their part files before the strips' tasks read them:
    the run fails with a RasterError naming the output and the part, and leaves no file, no
    part."""
    from eoscale.errors import RasterError

    finish = overviews_module.PyramidAssembly.finish

    def cut_short(self, run, workers=1):
        for part in tmp_path.glob(f"out.tif{PART_MARK}*"):
            os.truncate(part, 10)
        return finish(self, run, workers)

    monkeypatch.setattr(overviews_module.PyramidAssembly, "finish", cut_short)
    image = make_image("float32", 1, None, (256, 256))
    pyramid = Pyramid(tmp_path / "out.tif", "COG", {"blocksize": 32}, None, None)
    with pytest.raises(RasterError, match=r"^out: cannot read the overviews' pixels kept in "
                                          r".*out\.tif" + PART_MARK):
        run_map(workers, 64, image, None, pyramid)  # level 2 kept: 2 strips of 32 rows
    assert list(tmp_path.iterdir()) == []
