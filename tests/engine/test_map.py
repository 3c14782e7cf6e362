"""Map (N -> M images) through the tiled engine equals the same function on the whole array."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import rasterio
from affine import Affine

from eoscale.engine import Engine, Tiling
from eoscale.engine.shared import list_segments

from callables import (geocode_x, identity, ndvi, pid_and_core, scipy_filter, sum_diff_max,
                       sum_diff_max_profiles)

DTYPES = ["uint8", "int16", "uint16", "float32", "float64"]
FILTERS = ["uniform", "median", "gaussian", "maximum"]
#: scipy border modes that are local; "wrap" needs the far side of the image (see test below).
MODES = ["reflect", "constant", "nearest", "mirror", "grid-constant", "grid-mirror"]
CASES = list(itertools.product(FILTERS, MODES, DTYPES))


def make_image(dtype: str, shape=(2, 37, 53), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return (rng.normal(100, 30, shape) + np.linspace(0, 50, shape[2])).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -3000), min(info.max, 3000), shape, endpoint=True).astype(dtype)


@pytest.fixture(scope="module", params=[1, 2, 3], ids=lambda w: f"workers{w}")
def engine(request):
    with Engine(request.param) as engine:
        yield engine


@pytest.mark.parametrize("case", range(len(CASES)),
                         ids=["-".join(CASES[i]) for i in range(len(CASES))])
def test_filters_are_tile_exact(engine, case):
    name, mode, dtype = CASES[case]
    margin = 1 + case % 10
    tiling = Tiling("strips" if case % 3 == 0 else "tiles", tile_size=3 + case % 11)
    image = make_image(dtype, seed=case)
    params = {"filter": name, "radius": margin, "mode": mode}
    expected = scipy_filter([image], [{}], params)
    engine.tiling = tiling
    source = engine.from_array(image, {"nodata": None})
    [result] = engine.map(scipy_filter, [source], params=params, margin=margin)
    assert result.array.dtype == expected.dtype
    if name == "uniform" and np.dtype(dtype).kind == "f":
        # scipy's uniform filter is a running sum along each line: its rounding depends on where
        # the line starts, so no tiling can match it bit for bit (see the correlate test below).
        np.testing.assert_allclose(result.array, expected, rtol=1e-12)
    else:
        assert np.array_equal(result.array, expected), f"{tiling}, margin {margin}"
    engine.release(result)
    engine.release(source)


@pytest.mark.parametrize("margin", range(1, 11))
@pytest.mark.parametrize("tile_size", [1, 2, 5, 16, 100])
def test_every_margin_and_tile_size_down_to_one_pixel(engine, margin, tile_size):
    """A uniform kernel applied by correlation (no running sum) is exact at every margin."""
    image = make_image("float32", shape=(1, 23, 29), seed=margin)
    params = {"filter": "box", "radius": margin, "mode": "reflect"}
    engine.tiling = Tiling("tiles", tile_size)
    source = engine.from_array(image)
    [result] = engine.map(scipy_filter, [source], params=params, margin=margin)
    assert np.array_equal(result.array, scipy_filter([image], [{}], params))
    engine.release(result)
    engine.release(source)


def test_without_margin_the_same_filter_differs(engine):
    image = make_image("float32", seed=3)
    params = {"filter": "uniform", "radius": 2, "mode": "reflect"}
    engine.tiling = Tiling("tiles", 8)
    source = engine.from_array(image)
    [with_margin] = engine.map(scipy_filter, [source], params=params, margin=2)
    [without] = engine.map(scipy_filter, [source], params=params, margin=0)
    expected = scipy_filter([image], [{}], params)
    assert np.array_equal(with_margin.array, expected)
    assert not np.array_equal(without.array, expected)
    for raster in (with_margin, without, source):
        engine.release(raster)


def test_wrap_mode_is_not_local_so_tiles_differ():
    """'wrap' reads the far side of the image, which no margin holds: documented as unsupported."""
    image = make_image("float64", seed=4)
    params = {"filter": "uniform", "radius": 2, "mode": "wrap"}
    with Engine(1, tiling=Tiling("tiles", 10)) as engine:
        [result] = engine.map(scipy_filter, [engine.from_array(image)], params=params, margin=2)
        assert not np.array_equal(result.array, scipy_filter([image], [{}], params))


def test_multi_input_multi_output_with_profiles(engine):
    a, b = make_image("int16", seed=5), make_image("int16", seed=6)
    engine.tiling = Tiling("tiles", 7)
    ra, rb = engine.from_array(a, {"nodata": -1}), engine.from_array(b, {"nodata": -1})
    outputs = engine.map(sum_diff_max, [ra, rb], profile_fn=sum_diff_max_profiles,
                         output_names=["sum", "diff", "max"])
    expected = sum_diff_max([a, b], [], {})
    assert [o.name for o in outputs] == ["sum", "diff", "max"]
    assert [o.array.dtype.name for o in outputs] == ["float64", "float32", "int16"]
    for out, ref in zip(outputs, expected):
        assert np.array_equal(out.array, ref.astype(out.array.dtype))
        engine.release(out)
    engine.release(ra)
    engine.release(rb)


def test_default_profile_takes_the_results_band_count_and_dtype(engine):
    image = make_image("uint16", seed=7)
    engine.tiling = Tiling("strips", 5)
    source = engine.from_array(image, {"nodata": 0, "crs": None})
    [result] = engine.map(scipy_filter, [source],
                          params={"filter": "gaussian", "radius": 2, "mode": "nearest"}, margin=2)
    assert result.ref.profile["dtype"] == "uint16" and result.ref.profile["count"] == 2
    assert result.ref.profile["nodata"] == 0
    engine.release(result)
    engine.release(source)


def test_tiles_know_their_place_and_workers_1_runs_in_process():
    image = make_image("uint8", shape=(1, 20, 30))
    with Engine(1, tiling=Tiling("strips", 6)) as engine:
        pids, rows = engine.map(pid_and_core, [engine.from_array(image)])
        assert (pids.array == os.getpid()).all()
        expected_rows = (np.arange(20) // 6 * 6)[:, None] * np.ones((1, 30), dtype=np.int64)
        assert np.array_equal(rows.array[0], expected_rows)
    with Engine(2, tiling=Tiling("strips", 6)) as engine:
        pids, rows = engine.map(pid_and_core, [engine.from_array(image)])
        # Without a profile function the first tile is probed too, on a worker: no user code
        # runs in the main process when there are workers.
        assert os.getpid() not in set(np.unique(pids.array))
        assert len(set(np.unique(pids.array))) >= 1
        assert np.array_equal(rows.array[0], expected_rows)


@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
def test_start_methods(start_method):
    image = make_image("float32", seed=8)
    params = {"filter": "median", "radius": 3, "mode": "reflect"}
    with Engine(2, tiling=Tiling("tiles", 9), start_method=start_method) as engine:
        [result] = engine.map(scipy_filter, [engine.from_array(image)], params=params, margin=3)
        assert np.array_equal(result.array, scipy_filter([image], [{}], params))


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 1, 7), (1, 2, 1), (3, 2, 2)])
@pytest.mark.parametrize("workers", [1, 3])
def test_tiny_images_and_more_workers_than_rows(shape, workers):
    image = make_image("float64", shape=shape)
    params = {"filter": "uniform", "radius": 4, "mode": "mirror"}
    with Engine(workers) as engine:
        [result] = engine.map(scipy_filter, [engine.from_array(image)], params=params, margin=4)
        assert np.array_equal(result.array, scipy_filter([image], [{}], params))


def test_chained_steps_release_intermediates():
    image = make_image("float32", seed=9)
    params = {"filter": "uniform", "radius": 1, "mode": "reflect"}
    with Engine(2, tiling=Tiling("tiles", 10)) as engine:
        source = engine.from_array(image)
        [first] = engine.map(scipy_filter, [source], params=params, margin=1)
        [second] = engine.map(scipy_filter, [first], params=params, margin=1)
        engine.release(first)
        assert first.ref.segment not in {name for name, _ in list_segments()}
        expected = scipy_filter([scipy_filter([image], [{}], params)], [{}], params)
        assert np.array_equal(second.array, expected)
        mine = {name for name, pid in list_segments() if pid == os.getpid()}
        assert mine == {source.ref.segment, second.ref.segment}
    assert not any(pid == os.getpid() for _, pid in list_segments())


def test_windowed_transform_in_tile_context(tmp_path):
    transform = Affine(10.0, 0.0, 1000.0, 0.0, -10.0, 2000.0)
    image = np.zeros((1, 9, 25), dtype=np.uint8)
    with Engine(2, tiling=Tiling("tiles", 4)) as engine:
        [xs] = engine.map(geocode_x, [engine.from_array(image, {"transform": transform})], margin=1)
        assert np.allclose(xs.array[0], 1000.0 + (np.arange(25) + 0.5) * 10.0)


# -- real rasters --------------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2])
def test_rgb_byte_gaussian_and_median(shared_data, workers):
    path = shared_data / "RGB.byte.tif"
    with rasterio.open(path) as src:
        whole = src.read()
    with Engine(workers, tiling=Tiling("tiles", 64)) as engine:
        rgb = engine.load(path)
        assert np.array_equal(rgb.array, whole)
        for name in ("gaussian", "median"):
            params = {"filter": name, "radius": 3, "mode": "reflect"}
            [result] = engine.map(scipy_filter, [rgb], params=params, margin=3)
            assert np.array_equal(result.array, scipy_filter([whole], [{}], params))


def test_nz_elev_nan_nodata_and_wkt_only_crs(shared_data, tmp_path):
    path = shared_data / "nz_elev.tif"
    with rasterio.open(path) as src:
        whole, crs = src.read(), src.crs
    assert crs.to_epsg() is None
    params = {"filter": "gaussian", "radius": 2, "mode": "nearest"}
    with Engine(2, tiling=Tiling("strips", 100)) as engine:
        dem = engine.load(path)
        [result] = engine.map(scipy_filter, [dem], params=params, margin=2)
        expected = scipy_filter([whole], [{}], params)
        np.testing.assert_array_equal(result.array, expected)  # NaN where expected is NaN
        assert np.isnan(result.ref.profile["nodata"])
        out = engine.write(result, tmp_path / "max.tif")
    with rasterio.open(out) as written:
        assert written.crs == crs and written.transform == src.transform
        assert np.isnan(written.nodata)
        np.testing.assert_array_equal(written.read(), expected)


def test_ls5_ndvi_over_two_aligned_inputs_with_different_masks(shared_data):
    nir_path = shared_data / "ls5_nbar_19920323_B40_nir.tif"
    red_path = shared_data / "ls5_nbar_19920323_B30_red.tif"
    with rasterio.open(nir_path) as a, rasterio.open(red_path) as b:
        nir, red, profile = a.read(), b.read(), a.profile
    expected = ndvi([nir, red], [profile, profile], {})
    with Engine(3, tiling=Tiling("tiles", 50)) as engine:
        [result] = engine.map(ndvi, [engine.load(nir_path), engine.load(red_path)])
        np.testing.assert_array_equal(result.array[0], expected)
    union = (nir[0] == -999) | (red[0] == -999)
    assert np.isnan(expected[union]).all() and (red[0] == -999).sum() < union.sum()


def test_identity_through_many_tiles_keeps_every_pixel(engine):
    image = make_image("uint16", shape=(3, 101, 77), seed=11)
    engine.tiling = Tiling("tiles", 2)
    source = engine.from_array(image)
    [result] = engine.map(identity, [source])
    assert np.array_equal(result.array, image)
    engine.release(result)
    engine.release(source)


@pytest.mark.parametrize("workers", [1, 2])
def test_inputs_read_from_their_file_tile_by_tile(shared_data, workers):
    """An opened (not loaded) raster gives the same results, and takes no shared memory."""
    path = shared_data / "RGB.byte.tif"
    with rasterio.open(path) as src:
        whole = src.read()
    params = {"filter": "median", "radius": 2, "mode": "reflect"}
    with Engine(workers, tiling=Tiling("tiles", 100)) as engine:
        streamed = engine.open(path)
        mine = {name for name, pid in list_segments() if pid == os.getpid()}
        [result] = engine.map(scipy_filter, [streamed], params=params, margin=2)
        assert np.array_equal(result.array, scipy_filter([whole], [{}], params))
        assert {name for name, pid in list_segments() if pid == os.getpid()} - mine == {
            result.ref.segment}
        [copy] = engine.map(identity, [streamed])
        assert np.array_equal(copy.array, whole)
        assert [r.kind for r in engine.reports] == ["map", "map"]  # no load phase


def _fails_to_write(path):
    from eoscale.errors import RasterError

    raise RasterError(f"{path}: cannot write as COG (no space left on device)")


def _pid_to(path):
    with open(path, "w") as out:
        out.write(str(os.getpid()))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_large_file_s_gdal_pass_runs_apart_and_its_write_error_is_the_same(tmp_path, workers):
    """Engine.apart runs GDAL's pass over a large file in a process of its own (a small file's,
    or any with one worker, here); a write error there is the same error here."""
    from eoscale.engine.core import APART_PIXELS
    from eoscale.errors import RasterError

    with Engine(workers) as engine:
        engine.apart(_pid_to, tmp_path / "small", name="pass", pixels=APART_PIXELS - 1)
        engine.apart(_pid_to, tmp_path / "large", name="pass", pixels=APART_PIXELS)
        with pytest.raises(RasterError, match=r"^out\.tif: cannot write as COG \(no space left"):
            engine.apart(_fails_to_write, "out.tif", name="COG of out.tif", pixels=APART_PIXELS)
    assert int((tmp_path / "small").read_text()) == os.getpid()
    assert (int((tmp_path / "large").read_text()) == os.getpid()) == (workers == 1)


def _cache_to(path):
    from rasterio.env import get_gdal_config

    with open(path, "w") as out:
        out.write(str(get_gdal_config("GDAL_CACHEMAX")))


def test_a_pass_run_apart_keeps_the_run_s_gdal_cache(tmp_path):
    """The process a large file's pass runs in is capped as this one is (the plan's cache),
    not at GDAL's default of 5 % of the machine's memory."""
    from eoscale.engine.core import APART_PIXELS

    with Engine(2) as engine, rasterio.Env(GDAL_CACHEMAX=33554432):
        engine.apart(_cache_to, tmp_path / "cache", name="pass", pixels=APART_PIXELS)
    assert int((tmp_path / "cache").read_text()) == 33554432
