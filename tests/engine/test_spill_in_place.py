"""Spilled images written in place by the workers: a scratch file (uncompressed, tiled, its
blocks the step's tiles) is made with its header and every block's place first, by the main
process, and each worker writes the blocks of the tiles it computed straight there (no part
file, no assembly, no pixels through the main process). Read back by window, it holds exactly
what the map computed, for every dtype, 1 and N bands, nodata and NaN."""

from __future__ import annotations

import errno
import itertools
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from affine import Affine

import eoscale.engine.assembly as assembly_module
from eoscale.engine import Engine, Tiling
from eoscale.engine.encoded import PART_MARK, EncodedTarget
from eoscale.engine.filed import OutputFile
from eoscale.engine.tiling import plan_step
from eoscale.errors import RasterError
from eoscale.io.blocks import BlockLayout, geotiff_metadata, preallocate_geotiff
from eoscale.pipeline.plan.files import image_file

from callables import float_result

PROFILE = {"transform": Affine(10, 0, 1000, 0, -10, 2000), "crs": "EPSG:32631"}
SHAPE = (83, 101)
DTYPES = ["uint8", "int16", "uint16", "int32", "float32", "float64"]


def make_image(dtype: str, bands: int, seed: int = 0) -> np.ndarray:
    """Random values across the dtype's range; NaN pixels when float."""
    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype)
    if kind.kind == "f":
        image = rng.normal(0, 1e3, (bands, *SHAPE)).astype(dtype)
        image[rng.random(image.shape) < 0.1] = np.nan
        return image
    info = np.iinfo(kind)
    return rng.integers(info.min, info.max, (bands, *SHAPE), endpoint=True).astype(dtype)


def scratch_options(tiling: Tiling, dtype: str = "float32", bands: int = 1) -> dict:
    """The creation options the plan gives a scratch file for a step tiled as ``tiling``."""
    layout = plan_step(*SHAPE, margin=0, tiling=tiling, workers=2)
    profile = {"count": bands, "height": SHAPE[0], "width": SHAPE[1], "dtype": dtype}
    return dict(image_file(SimpleNamespace(outputs={}), "spilled", layout, profile).options)


def identity(arrays, profiles, params):
    return arrays[0]


@pytest.fixture
def in_place(monkeypatch) -> list[int]:
    """How many tiles this process wrote in place (the pool's workers are other processes: a
    call there does not count here)."""
    calls: list[int] = []
    write = EncodedTarget._write

    def spy(self, offsets, encoded):
        calls.append(len(encoded))
        return write(self, offsets, encoded)

    monkeypatch.setattr(EncodedTarget, "_write", spy)
    monkeypatch.setattr(assembly_module, "write_geotiff_header", _never_assembled)
    return calls


def _never_assembled(*args, **kwargs):
    raise AssertionError("an uncompressed file is not assembled")


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("bands", [1, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_spill_reads_back_exactly(tmp_path, in_place, workers, bands, dtype):
    image = make_image(dtype, bands)
    nodata = float("nan") if image.dtype.kind == "f" else 0
    tiling = Tiling("tiles", 32)
    options = scratch_options(tiling)
    assert options["compress"] == "none" and options["blockxsize"] == 32
    path = tmp_path / "spilled.tif"
    with Engine(workers, tiling=tiling, start_method="fork") as engine:
        source = engine.from_array(image, dict(PROFILE, nodata=nodata))
        # A profile function: no first tile is probed here, every block is the workers'.
        engine.map(identity, [source], margin=0, profile_fn=lambda profiles, _: [profiles[0]],
                   files=[OutputFile(path, options, "spilled")])
        spilled = engine.open(path)
        for window in (rasterio.windows.Window(0, 0, 101, 83),
                       rasterio.windows.Window(30, 17, 40, 50),
                       rasterio.windows.Window(96, 64, 5, 19)):
            rows, cols = window.toslices()
            assert np.array_equal(spilled.read(window), image[:, rows, cols], equal_nan=True)
        engine.release(spilled)
    with rasterio.open(path) as dataset:
        assert dataset.block_shapes == [(32, 32)] * bands and dataset.compression is None
        assert dataset.dtypes == (dtype,) * bands
        assert (np.isnan(dataset.nodata) if np.isnan(nodata) else dataset.nodata == nodata)
        assert dataset.crs == PROFILE["crs"] and dataset.transform == PROFILE["transform"]
    if workers == 1:
        assert sum(in_place) == 12  # 3 x 4 blocks, written by this process: it is the worker
    else:
        assert in_place == []  # written by the workers only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spilled.tif"]


@pytest.mark.parametrize("options", [
    {"tiled": False, "compress": "none", "interleave": "band"},  # shorter last strip per band
    {"tiled": False, "compress": "none"},
    {"tiled": True, "blockxsize": 16, "blockysize": 16, "compress": "none", "bigtiff": "yes"},
    {"tiled": True, "blockxsize": 32, "blockysize": 32, "compress": "none",
     "interleave": "band"},
])
def test_every_uncompressed_layout_is_written_in_place_as_rasterio_writes_it(tmp_path, options):
    image = make_image("float32", 3, seed=4)
    tiling = Tiling("tiles", 32) if options["tiled"] else Tiling("strips", 21)
    path = tmp_path / "written.tif"
    with Engine(2, tiling=tiling, start_method="fork") as engine:
        source = engine.from_array(image, dict(PROFILE, nodata=float("nan")))
        # No profile function: the first tile is probed, and written in place by this process.
        engine.map(float_result, [source], margin=0, files=[OutputFile(path, options)])
    oracle = tmp_path / "oracle.tif"
    with rasterio.open(oracle, "w", driver="GTiff", height=SHAPE[0], width=SHAPE[1], count=3,
                       dtype="float32", nodata=float("nan"), **PROFILE,
                       **{key: value for key, value in options.items()}) as dataset:
        dataset.write(image + 0.5)
    with rasterio.open(path) as mine, rasterio.open(oracle) as theirs:
        assert np.array_equal(mine.read(), theirs.read(), equal_nan=True)
        assert mine.block_shapes == theirs.block_shapes
        assert mine.tags(ns="IMAGE_STRUCTURE") == theirs.tags(ns="IMAGE_STRUCTURE")
    assert (path.read_bytes()[2:4] == b"\x2b\x00") == (options.get("bigtiff") == "yes")


def test_the_header_fixes_every_block_s_place_before_any_is_written(tmp_path):
    import tifffile

    profile = dict(PROFILE, height=83, width=101, count=2, dtype="int16", nodata=-1)
    options = {"tiled": False, "compress": "none", "interleave": "band"}
    layout = BlockLayout.from_profile(profile, options)
    path = tmp_path / "empty.tif"
    start = preallocate_geotiff(path, layout, geotiff_metadata(profile, options))
    assert path.stat().st_size == start + 2 * 83 * 101 * 2
    with rasterio.open(path) as dataset:  # a valid file already, all zeros
        assert dataset.count == 2 and not dataset.read().any()
    with tifffile.TiffFile(path) as tiff:
        offsets = list(tiff.pages[0].dataoffsets)
        lengths = list(tiff.pages[0].databytecounts)
    assert offsets == [layout.fixed_offset(start, index) for index in range(layout.block_count)]
    assert offsets[0] == start and lengths == [layout.block_bytes(index)
                                               for index in range(layout.block_count)]
    # Each block follows the one before it; the last strip of each band is shorter.
    assert [b - a for a, b in itertools.pairwise(offsets)] == lengths[:-1]
    assert lengths[layout.grid[0] - 1] < lengths[0]


def test_a_full_disk_while_a_spill_is_written_names_it_and_leaves_nothing(tmp_path, monkeypatch):
    pwrite, pwritev = os.pwrite, os.pwritev
    written = []

    def full_after_some(descriptor, data, offset):
        written.append(len(data))
        if len(written) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return pwrite(descriptor, data, offset)

    def full_after_some_blocks(descriptor, buffers, offset):
        written.append(sum(len(buffer) for buffer in buffers))
        if len(written) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return pwritev(descriptor, buffers, offset)

    monkeypatch.setattr(os, "pwrite", full_after_some)  # the pool's workers fork after
    monkeypatch.setattr(os, "pwritev", full_after_some_blocks)  # a tile's blocks at once
    image = make_image("uint8", 1)
    path = tmp_path / "spilled.tif"
    with pytest.raises(RasterError) as raised, \
            Engine(2, tiling=Tiling("tiles", 32), start_method="fork") as engine:
        source = engine.from_array(image, dict(PROFILE, nodata=0))
        engine.map(identity, [source], margin=0, profile_fn=lambda profiles, _: [profiles[0]],
                   files=[OutputFile(path, scratch_options(Tiling("tiles", 32)),
                                     "spilled (spilled to scratch)")])
    assert str(raised.value) == ("spilled (spilled to scratch): cannot write: no space left on "
                                 "device (the filesystem holding it is full)")
    assert [p for p in tmp_path.iterdir() if PART_MARK in p.name] == []


def test_a_pipeline_s_spilled_image_is_written_in_place(tmp_path, monkeypatch):
    """A run whose intermediate is spilled to a scratch file: the file is preallocated, never
    assembled, and the run's results equal those of the run in memory."""
    from eoscale.pipeline import Resources, load_pipeline, plan_run
    from eoscale.pipeline.plan import Residence
    from eoscale.pipeline.runner import run_pipeline

    rows, cols = np.mgrid[0:300, 0:260]
    surface = (50 + 10 * np.sin(rows / 17.0) + cols * 0.1).astype("float32")
    surface[np.random.default_rng(1).random(surface.shape) < 0.05] = np.nan
    with rasterio.open(tmp_path / "dem.tif", "w", driver="GTiff", width=260, height=300,
                       count=1, dtype="float32", nodata=float("nan"), **PROFILE) as dataset:
        dataset.write(surface[np.newaxis])
    (tmp_path / "scratch").mkdir()
    (tmp_path / "p.yaml").write_text(
        "version: 1\nscratch: scratch\ninputs: {dem: dem.tif}\nsteps:\n"
        "  - {name: median, map: eoscale.ops.median_filter, inputs: [dem], params: {size: 3}}\n"
        "  - {name: stats, reduce: eoscale.ops.stats, inputs: [median]}\n"
        "  - {name: smooth, map: eoscale.ops.gaussian_filter, inputs: [median],"
        " params: {sigma: 1.0}}\n"
        "outputs: {smooth: out/smooth.tif, stats: out/stats.json}\n", encoding="utf-8")
    spec = load_pipeline(tmp_path / "p.yaml")
    roomy = plan_run(spec, Resources(2, 1 << 34, base=0, executor="processes", given=True))
    run_pipeline(roomy)
    with rasterio.open(tmp_path / "out" / "smooth.tif") as dataset:
        expected = dataset.read()
    expected_stats = (tmp_path / "out" / "stats.json").read_text()

    low, high = 1024, 1 << 32
    while high - low > 1024:  # the least budget the plan fits: the median is spilled
        middle = (low + high) // 2
        fits = plan_run(spec, Resources(2, middle, base=0, executor="processes",
                                        given=True)).fits
        low, high = (low, middle) if fits else (middle, high)
    tight = plan_run(spec, Resources(2, high, base=0, executor="processes", given=True))
    assert tight.images["median"].lives is Residence.SPILLED
    assert tight.images["median"].file.scratch
    made: dict[str, list[str]] = {"preallocated": [], "assembled": []}
    prealloc, assemble = assembly_module.preallocate_geotiff, assembly_module.write_geotiff_header

    def spy(kind, function):
        def called(path, *args, **kwargs):
            made[kind].append(Path(path).parent.name)
            return function(path, *args, **kwargs)
        return called

    monkeypatch.setattr(assembly_module, "preallocate_geotiff", spy("preallocated", prealloc))
    monkeypatch.setattr(assembly_module, "write_geotiff_header", spy("assembled", assemble))
    run_pipeline(tight, overwrite=True)
    assert made["preallocated"] == ["scratch"] and "scratch" not in made["assembled"]
    with rasterio.open(tmp_path / "out" / "smooth.tif") as dataset:
        assert np.array_equal(dataset.read(), expected, equal_nan=True)
    if tight.steps[1].tiling == roomy.steps[1].tiling:
        assert (tmp_path / "out" / "stats.json").read_text() == expected_stats
    assert list((tmp_path / "scratch").iterdir()) == []
