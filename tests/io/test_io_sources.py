"""Sources: grids, band stacks and warped reads equal their oracles (reading each file; one
``rasterio.warp.reproject`` of the whole image onto the same grid)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window

from eoscale.engine import Engine, Tiling
from eoscale.io.grid import grid_differences
from eoscale.errors import RasterError
from eoscale.io.sources import RESAMPLINGS, Grid, Source, common_dtype, warp_options, warp_scale

NAIP_2012 = "naip_m_4709963_se_14_1_20120731.tif"
NAIP_2020 = "naip_m_4709963_se_14_1_20200831.tif"
RED = "ls5_nbar_19920323_B30_red.tif"
NIR = "ls5_nbar_19920323_B40_nir.tif"
#: How far a window read may be from the same window of one warp of the whole image: nothing,
#: for every resampling. Measured, over tiles of 37, 64, 100 and 256 pixels, for nearest,
#: bilinear, cubic, cubic_spline, lanczos, average, mode, max, med, sum and rms: a maximum
#: difference of 0 on NAIP 2020 onto the 2012 grid, dsm.tif at 4 m, LS5 red (int16) at 10 m, SRTM
#: onto UTM 12N at 40 m and nz_elev onto EPSG:4326. Before the reader fixed the resampling scale
#: and read whole-row strips (see eoscale.io.sources), the same reads differed by up to 0.74 m
#: (dsm.tif, bilinear), 1 unit on 2 % of the pixels (LS5 int16, bilinear ties) and on 1.6 % of
#: the nearest picks (SRTM at 40 m, a wider grid than GDAL's 512-column blocks).
TOLERANCE = 0
TILE_SIZES = [64, 100, 256]


def identity(arrays, profiles, params):
    return arrays[0]


def whole_warp(path: Path, grid: Grid, resampling: str, dtype: str | None = None,
               nodata=None) -> np.ndarray:
    """The oracle: one reproject of the whole file onto the grid (with the same options)."""
    with rasterio.open(path) as src:
        out = np.zeros((src.count, grid.height, grid.width), dtype or src.dtypes[0])
        options = warp_options(src.profile, grid, resampling)
        kwargs = {key: value for key, value in options.items()
                  if key in ("XSCALE", "YSCALE")}
        reproject(rasterio.band(src, list(range(1, src.count + 1))), out,
                  dst_transform=grid.transform, dst_crs=grid.crs,
                  resampling=Resampling[resampling], dst_nodata=nodata, **kwargs)
    return out


def assert_close(result: np.ndarray, expected: np.ndarray) -> None:
    """Equal within :data:`TOLERANCE` (NaN where the other is NaN)."""
    assert result.shape == expected.shape and result.dtype == expected.dtype
    np.testing.assert_allclose(result, expected, rtol=0, atol=TOLERANCE)


def read_tiled(source: Source, size: int) -> np.ndarray:
    """Read a source window by window with one reader, as a worker does."""
    profile = source.profile()
    out = np.zeros((profile["count"], profile["height"], profile["width"]), profile["dtype"])
    with source.open() as reader:
        for row in range(0, profile["height"], size):
            for col in range(0, profile["width"], size):
                window = Window(col, row, min(size, profile["width"] - col),
                                min(size, profile["height"] - row))
                out[:, row:row + window.height, col:col + window.width] = reader.read(window)
    return out


# -- grids -------------------------------------------------------------------------------------

def test_grid_of_a_profile_is_the_profile_grid(shared_data):
    with rasterio.open(shared_data / NAIP_2012) as src:
        profile = src.profile
    grid = Grid.of(profile)
    assert (grid.crs, grid.transform, grid.width, grid.height) == (
        profile["crs"], profile["transform"], profile["width"], profile["height"])
    assert grid.differences(profile) == [] and grid.resolution == (5.0, 5.0)
    assert Grid.of({**grid.profile(), "transform": tuple(grid.transform)}) == grid
    assert pickle.loads(pickle.dumps(grid)) == grid


def test_grids_differ_as_the_one_grid_check_says(shared_data):
    with rasterio.open(shared_data / NAIP_2012) as a, rasterio.open(shared_data / NAIP_2020) as b:
        first, other = a.profile, b.profile
    assert Grid.of(first).differences(Grid.of(other)) == grid_differences(first, other)
    assert Grid.of(first).differences(other) == ["origin (485899, 5209246), not (485900, 5209245)"]


@pytest.mark.parametrize("bounds, resolution", [
    ((600003.2, 4799001.0, 600997.9, 4800000.0), 10),
    ((600000.0, 4799000.0, 601000.0, 4800000.0), (20, 10)),
    ((-74.72, -8.59, -74.16, -8.28), 0.001),
])
def test_grid_from_bounds_covers_them_on_multiples_of_the_resolution(bounds, resolution):
    grid = Grid.from_bounds("EPSG:32631", resolution, bounds)
    xres, yres = (resolution, resolution) if np.isscalar(resolution) else resolution
    left, bottom, right, top = grid.bounds
    assert grid.resolution == pytest.approx((xres, yres))
    assert left <= bounds[0] + 1e-9 and bottom <= bounds[1] + 1e-9
    assert right >= bounds[2] - 1e-9 and top >= bounds[3] - 1e-9
    assert right - left < bounds[2] - bounds[0] + 2 * xres
    assert top - bottom < bounds[3] - bounds[1] + 2 * yres
    for edge, res in ((left, xres), (right, xres), (bottom, yres), (top, yres)):
        assert edge / res == pytest.approx(round(edge / res), abs=1e-6)
    assert grid.crs == CRS.from_epsg(32631)


def test_grids_of_nested_resolutions_share_their_edges():
    bounds = (600001.0, 4799005.0, 600999.0, 4799995.0)
    fine, coarse = (Grid.from_bounds("EPSG:32631", res, bounds) for res in (10, 20))
    assert fine.bounds == coarse.bounds
    assert (fine.width, fine.height) == (2 * coarse.width, 2 * coarse.height)


@pytest.mark.parametrize("resolution, bounds, message", [
    (0, (0, 0, 1, 1), "must be positive"),
    (-5, (0, 0, 1, 1), "must be positive"),
    ([1, 2, 3], (0, 0, 1, 1), "expected a number or [x, y]"),
    (1, (0, 0, 0, 1), "are empty"),
    (1, (0, 5, 1, 1), "are empty"),
])
def test_bad_grids_are_refused(resolution, bounds, message):
    with pytest.raises(ValueError) as error:
        Grid.from_bounds("EPSG:32631", resolution, bounds)
    assert message in str(error.value)


def test_the_warp_scale_is_the_ratio_of_pixel_sizes(shared_data):
    with rasterio.open(shared_data / "dsm.tif") as src:
        profile = src.profile
    assert warp_scale(profile, Grid.from_bounds(profile["crs"], (4, 1), (0, 0, 8, 8))) == (0.5, 2.0)
    with rasterio.open(shared_data / "srtm_zion.tif") as src:
        profile = src.profile
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:32612", src.width, src.height, *src.bounds)
    grid = Grid(CRS.from_epsg(32612), transform, width, height)
    xscale, yscale = warp_scale(profile, grid)
    # calculate_default_transform keeps about as many pixels as the source has, so about 1:1
    assert xscale == pytest.approx(1, rel=0.25) and yscale == pytest.approx(1, rel=0.25)
    options = warp_options(profile, grid, "bilinear")
    assert (options["XSCALE"], options["YSCALE"]) == (repr(xscale), repr(yscale))
    assert "XSCALE" not in warp_options(profile, grid, "nearest")


# -- sources: profiles and plain reads ---------------------------------------------------------

def test_a_path_is_a_one_file_source_read_plainly(shared_data):
    source = Source.of(shared_data / RED)
    assert source.paths == (str(shared_data / RED),) and source.warped() == []
    with rasterio.open(shared_data / RED) as src:
        whole, profile = src.read(), src.profile
    got = source.profile()
    assert {k: got[k] for k in profile} == dict(profile)
    assert got["block_shape"] == (8, 456)
    np.testing.assert_array_equal(read_tiled(source, 100), whole)
    assert pickle.loads(pickle.dumps(source)) == source


def test_a_band_stack_on_one_grid_equals_reading_each_file(shared_data):
    source = Source((shared_data / RED, shared_data / NIR))
    with rasterio.open(shared_data / RED) as red, rasterio.open(shared_data / NIR) as nir:
        expected = np.concatenate([red.read(), nir.read()])
        profile = red.profile
    got = source.profile()
    assert (got["count"], got["dtype"], got["nodata"]) == (2, "int16", -999)
    assert Grid.of(got).differences(profile) == [] and source.warped() == []
    for size in (37, 128, 1000):
        np.testing.assert_array_equal(read_tiled(source, size), expected)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_engine_loads_and_opens_a_band_stack(shared_data, workers):
    source = Source((shared_data / RED, shared_data / NIR))
    with rasterio.open(shared_data / RED) as red, rasterio.open(shared_data / NIR) as nir:
        expected = np.concatenate([red.read(), nir.read()])
    with Engine(workers, tiling=Tiling("tiles", 100)) as engine:
        loaded = engine.load(source, name="ls5")
        assert loaded.name == "ls5" and loaded.ref.profile["count"] == 2
        np.testing.assert_array_equal(loaded.array, expected)
        [copy] = engine.map(identity, [engine.open(source)])
        np.testing.assert_array_equal(copy.array, expected)


def write(path: Path, array: np.ndarray, *, nodata=None, transform=None, crs="EPSG:32631",
          driver="GTiff") -> Path:
    count, height, width = array.shape
    with rasterio.open(path, "w", driver=driver, width=width, height=height, count=count,
                       dtype=array.dtype, crs=crs, nodata=nodata,
                       transform=transform or Affine(10, 0, 600000, 0, -10, 4800000)) as dst:
        dst.write(array)
    return path


def test_band_files_of_different_dtypes_and_nodata_stack_in_a_common_one(tmp_path):
    rng = np.random.default_rng(0)
    first = rng.integers(1, 250, (1, 30, 40)).astype("uint8")
    second = rng.integers(-2000, 2000, (1, 30, 40)).astype("int16")
    first[0, :3] = 0
    second[0, -4:] = -999
    second[0, 10, 10] = 0  # a valid 0 in the second band: it becomes nodata in the stack
    source = Source((write(tmp_path / "a.tif", first, nodata=0),
                     write(tmp_path / "b.tif", second, nodata=-999)))
    profile = source.profile()
    assert (profile["dtype"], profile["nodata"], profile["count"]) == ("int16", 0, 2)
    expected = np.concatenate([first.astype("int16"), np.where(second == -999, 0, second)])
    np.testing.assert_array_equal(read_tiled(source, 7), expected)
    assert common_dtype(["uint16", "int16"]) == "int32"
    assert common_dtype(["int16", "float32"]) == "float32"


def test_errors_name_the_file_and_the_window(tmp_path):
    with pytest.raises(RasterError, match="file not found: .*missing.tif"):
        Source.of(tmp_path / "missing.tif").profile()
    path = write(tmp_path / "whole.tif", np.ones((1, 64, 64), "uint8"))
    data = path.read_bytes()
    source = Source.of(path)
    profile = source.profile()
    path.write_bytes(data[:len(data) // 2])
    reader = source.open(profile)
    with pytest.raises(RasterError, match=r"whole.tif: cannot read rows 0:64, cols 0:64"):
        reader.read(Window(0, 0, 64, 64))
    reader.close()
    with pytest.raises(ValueError, match="unknown resampling 'bilinar'"):
        Source(("a.tif",), resampling="bilinar")
    assert "bilinear" in RESAMPLINGS and "gauss" not in RESAMPLINGS


# -- warped reads ------------------------------------------------------------------------------

@pytest.mark.parametrize("resampling", ["nearest", "bilinear", "cubic", "average", "mode"])
def test_naip_2020_read_on_the_2012_grid_equals_one_warp_of_the_whole_image(shared_data,
                                                                            resampling):
    with rasterio.open(shared_data / NAIP_2012) as src:
        grid = Grid.of(src.profile)
    source = Source((shared_data / NAIP_2020,), grid, resampling)
    assert source.warped() == [str(shared_data / NAIP_2020)]
    profile = source.profile()
    assert Grid.of(profile) == grid and (profile["count"], profile["dtype"]) == (4, "uint8")
    expected = whole_warp(shared_data / NAIP_2020, grid, resampling)
    for size in TILE_SIZES:
        assert_close(read_tiled(source, size), expected)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
def test_the_engine_loads_and_opens_a_warped_source_exactly(shared_data, workers, resampling):
    """Engine.load (windows decoded into shared memory) and Engine.open (windows read by a map
    step) of NAIP 2020 onto the 2012 grid equal one warp of the whole image, whatever the tiles."""
    with rasterio.open(shared_data / NAIP_2012) as src:
        grid = Grid.of(src.profile)
    source = Source((shared_data / NAIP_2020,), grid, resampling)
    expected = whole_warp(shared_data / NAIP_2020, grid, resampling)
    for size in TILE_SIZES:
        with Engine(workers, tiling=Tiling("tiles", size)) as engine:
            loaded = engine.load(source)
            assert_close(loaded.array, expected)
            [copy] = engine.map(identity, [engine.open(source)])
            assert_close(copy.array, expected)
            assert Grid.of(copy.ref.profile) == grid


@pytest.mark.parametrize("resampling", ["average", "bilinear", "cubic", "lanczos", "nearest"])
def test_dsm_on_a_grid_of_twice_its_pixel_size(shared_data, resampling):
    with rasterio.open(shared_data / "dsm.tif") as src:
        grid = Grid.from_bounds(src.crs, 2 * src.res[0], src.bounds)
    assert grid.resolution == (4.0, 4.0)
    source = Source((shared_data / "dsm.tif",), grid, resampling)
    expected = whole_warp(shared_data / "dsm.tif", grid, resampling, nodata=-9999.0)
    for size in (16, 50, 64, 100):
        assert_close(read_tiled(source, size), expected)
    with Engine(2, tiling=Tiling("tiles", 32)) as engine:
        assert_close(engine.load(source).array, expected)


@pytest.mark.parametrize("resampling", ["nearest", "bilinear", "cubic"])
def test_upsampled_integer_reads_round_their_ties_alike(shared_data, resampling):
    with rasterio.open(shared_data / RED) as src:
        t = src.transform
        grid = Grid(src.crs, Affine(t.a * 0.4, 0, t.c, 0, t.e * 0.4, t.f), 1140, 1010)
    source = Source((shared_data / RED,), grid, resampling)
    expected = whole_warp(shared_data / RED, grid, resampling)
    for size in (64, 300):
        assert_close(read_tiled(source, size), expected)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("resampling", ["nearest", "bilinear", "cubic", "average"])
def test_a_geographic_dem_read_on_a_wide_utm_grid(shared_data, workers, resampling):
    """Across CRSs, on a grid wider than GDAL's 512-column warp blocks: GDAL's approximate
    transformer interpolates across each chunk's columns, so only whole-row strips give the
    coordinates of the whole-image warp."""
    with rasterio.open(shared_data / "srtm_zion.tif") as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:32612", src.width, src.height, *src.bounds, resolution=40)
    grid = Grid(CRS.from_epsg(32612), transform, width, height)
    assert grid.width > 512
    source = Source((shared_data / "srtm_zion.tif",), grid, resampling)
    expected = whole_warp(shared_data / "srtm_zion.tif", grid, resampling)
    for size in (64, 300):
        assert_close(read_tiled(source, size), expected)
        with Engine(workers, tiling=Tiling("tiles", size)) as engine:
            [copy] = engine.map(identity, [engine.open(source)])
            assert_close(copy.array, expected)


def coarse_copy(path: Path, out: Path, driver: str = "GTiff") -> Path:
    """``path`` at twice its pixel size (average), written as ``driver``: a band of a 2 x
    coarser resolution, like Sentinel-2's 20 m bands beside its 10 m ones."""
    with rasterio.open(path) as src:
        grid = Grid.from_bounds(src.crs, 2 * src.res[0], src.bounds)
        array = np.full((1, grid.height, grid.width), src.nodata, src.dtypes[0])
        reproject(rasterio.band(src, 1), array, dst_transform=grid.transform, dst_crs=grid.crs,
                  resampling=Resampling.average)
    options = {"QUALITY": 100, "REVERSIBLE": "YES"} if driver == "JP2OpenJPEG" else {}
    with rasterio.open(out, "w", driver=driver, width=grid.width, height=grid.height, count=1,
                       dtype=array.dtype, crs=grid.crs, transform=grid.transform,
                       nodata=src.nodata, **options) as dst:
        dst.write(array)
    return out


@pytest.mark.parametrize("driver, suffix", [("GTiff", "tif"), ("JP2OpenJPEG", "jp2")])
def test_a_coarser_band_file_is_warped_onto_the_first_bands_grid(shared_data, tmp_path, driver,
                                                                   suffix):
    if driver not in rasterio.drivers.raster_driver_extensions().values():
        pytest.skip(f"rasterio's GDAL has no {driver} driver")
    coarse = coarse_copy(shared_data / NIR, tmp_path / f"nir_50m.{suffix}", driver)
    source = Source((shared_data / RED, coarse), resampling="bilinear")
    assert source.warped() == [str(coarse)]
    with rasterio.open(shared_data / RED) as red:
        grid, red_pixels = Grid.of(red.profile), red.read()
    profile = source.profile()
    assert Grid.of(profile) == grid and profile["count"] == 2
    expected = np.concatenate([red_pixels, whole_warp(coarse, grid, "bilinear", nodata=-999)])
    for size in (50, 128):
        assert_close(read_tiled(source, size), expected)
    with Engine(2, tiling=Tiling("tiles", 64)) as engine:
        assert_close(engine.load(source).array, expected)
