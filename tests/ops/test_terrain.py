"""slope, aspect, hillshade: planes with known answers, a geographic DEM, tiles, nodata."""

from __future__ import annotations

import math

import numpy as np
import pytest
from affine import Affine
from scipy import ndimage

from eoscale.errors import ConfigError
from eoscale.ops import aspect, hillshade, slope

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _plane(east: float, north: float, cell: float = 10.0, shape: tuple[int, int] = (9, 12)):
    """A DEM of the plane z = east * x + north * y (x, y in metres) on a north-up grid."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    z = east * (cols * cell) + north * (-rows * cell)
    transform = Affine(cell, 0.0, 500000.0, 0.0, -cell, 4000000.0)
    return z[np.newaxis].astype(np.float64), transform


@pytest.mark.parametrize("east, north, expected_aspect", [
    (0.5, 0.0, 270.0), (-0.5, 0.0, 90.0), (0.0, 0.5, 180.0), (0.0, -0.5, 0.0), (0.3, 0.3, 225.0),
])
def test_planes_have_known_slope_aspect_and_hillshade(whole, profile_for, east, north,
                                                      expected_aspect) -> None:
    z, transform = _plane(east, north)
    profile = profile_for(z, transform=transform)
    inner = (0, slice(1, -1), slice(1, -1))
    rise = math.hypot(east, north)
    degrees = whole(slope, [z], [profile], {})[inner]
    np.testing.assert_allclose(degrees, math.degrees(math.atan(rise)), rtol=1e-6)
    percent = whole(slope, [z], [profile], {"units": "percent", "z_factor": 2})[inner]
    np.testing.assert_allclose(percent, 200 * rise, rtol=1e-6)
    np.testing.assert_allclose(whole(aspect, [z], [profile], {})[inner], expected_aspect, atol=1e-4)
    # the light from the azimuth the slope faces, at altitude 90 - slope, falls straight on it
    params = {"azimuth": expected_aspect, "altitude": 90 - math.degrees(math.atan(rise))}
    np.testing.assert_array_equal(whole(hillshade, [z], [profile], params)[inner], 255)
    params = {"azimuth": (expected_aspect + 180) % 360, "altitude": 10}
    shade = whole(hillshade, [z], [profile], params)
    np.testing.assert_array_equal(shade[inner], 1)


def test_flat_ground(whole, profile_for) -> None:
    z, transform = _plane(0.0, 0.0)
    profile = profile_for(z, transform=transform)
    inner = (0, slice(1, -1), slice(1, -1))
    assert (whole(slope, [z], [profile], {})[inner] == 0).all()
    assert np.isnan(whole(aspect, [z], [profile], {})).all()
    # gdaldem: 1 + 254 * sin(45 degrees) = 180.6
    assert (whole(hillshade, [z], [profile], {})[inner] == 181).all()


def test_ring_and_nodata_neighbourhoods_are_nodata(raster, whole) -> None:
    dtm, profile = raster("dtm.tif")
    holes = ndimage.binary_dilation(dtm[0] == -9999, np.ones((3, 3), bool))
    holes[[0, -1], :] = holes[:, [0, -1]] = True
    np.testing.assert_array_equal(np.isnan(whole(slope, [dtm], [profile], {})[0]), holes)
    np.testing.assert_array_equal(whole(hillshade, [dtm], [profile], {})[0] == 0, holes)


@pytest.mark.parametrize("name", ["srtm_zion.tif", "dtm.tif", "nz_elev.tif"])
@pytest.mark.parametrize("op, params", [
    (slope, {}), (aspect, {}), (hillshade, {"azimuth": 200, "altitude": 30, "z_factor": 2})])
def test_tiles_match_the_whole_image(raster, tiled, whole, name, op, params) -> None:
    dem, profile = raster(name)
    result = whole(op, [dem], [profile], params)
    for tile_size, mode in [(53, "tiles"), (7, "strips")]:
        np.testing.assert_array_equal(tiled(op, [dem], [profile], params, tile_size, mode), result)


def _independent_slope(dem: np.ndarray, transform: Affine) -> np.ndarray:
    """gdaldem's Horn slope with the metres in a degree from the radii of curvature of WGS 84."""
    a, f = 6378137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    z = dem.astype(np.float64)
    lat = np.radians(transform.f + transform.e * (np.arange(z.shape[0]) + 0.5))[1:-1, None]
    prime_vertical = a / np.sqrt(1 - e2 * np.sin(lat) ** 2)
    meridional = a * (1 - e2) / (1 - e2 * np.sin(lat) ** 2) ** 1.5
    ew_res = prime_vertical * np.cos(lat) * np.radians(transform.a)
    ns_res = meridional * np.radians(-transform.e)
    win = [[z[r:z.shape[0] - 2 + r, c:z.shape[1] - 2 + c] for c in range(3)] for r in range(3)]
    right, left = win[0][2] + 2 * win[1][2] + win[2][2], win[0][0] + 2 * win[1][0] + win[2][0]
    bottom, top = win[2][0] + 2 * win[2][1] + win[2][2], win[0][0] + 2 * win[0][1] + win[0][2]
    dx = (right - left) / (8 * ew_res)
    dy = (bottom - top) / (8 * ns_res)
    return np.degrees(np.arctan(np.sqrt(dx * dx + dy * dy)))


def test_slope_on_a_geographic_dem_uses_metres(raster, whole) -> None:
    dem, profile = raster("srtm_zion.tif")
    assert profile["crs"].is_geographic
    result = whole(slope, [dem], [profile], {})[0]
    expected = _independent_slope(dem[0], profile["transform"])
    np.testing.assert_allclose(result[1:-1, 1:-1], expected, atol=2e-5)
    # treating degrees as metres (or ignoring the latitude) would be badly wrong
    t = profile["transform"]
    equator = Affine(t.a / math.cos(math.radians(t.f)), 0, t.c, 0, t.e, t.f)
    naive = _independent_slope(dem[0], equator)
    assert np.nanmean(np.abs(naive - expected)) > 1.0
    assert 10 < np.nanmean(result) < 30


def test_without_a_tile_context_the_profile_transform_places_the_rows(raster, whole) -> None:
    dem, profile = raster("srtm_zion.tif")
    half = dem[:, 200:, :]
    t = profile["transform"]
    shifted = {**profile, "transform": Affine(t.a, 0, t.c, 0, t.e, t.f + 200 * t.e)}
    np.testing.assert_allclose(whole(slope, [half], [shifted], {})[0, 1:-1],
                               whole(slope, [dem], [profile], {})[0, 201:-1], atol=1e-5)


def test_projected_units_are_converted_to_metres(whole, profile_for) -> None:
    z, _ = _plane(0.1, 0.0, cell=10.0)
    feet = Affine(10 / 0.3048006096012192, 0, 1000, 0, -10 / 0.3048006096012192, 5000)
    profile = profile_for(z, crs="EPSG:2272", transform=feet)  # NAD83 / Pennsylvania South (ftUS)
    percent = whole(slope, [z], [profile], {"units": "percent"})
    np.testing.assert_allclose(percent[0, 1:-1, 1:-1], 10, rtol=1e-6)


@pytest.mark.parametrize("op, params, message", [
    (slope, {"units": "radians"}, "slope: param 'units' must be one of degrees, percent"),
    (slope, {"z_factor": 0}, "slope: param 'z_factor' must be a positive number"),
    (hillshade, {"altitude": 95}, "hillshade: param 'altitude' must be a number of degrees from 0"),
    (hillshade, {"azimuth": "north"}, "hillshade: param 'azimuth' must be a finite number"),
    (aspect, {"z_factor": 2}, "aspect: unknown param 'z_factor' \\(expected: none\\)"),
])
def test_bad_params(whole, profile_for, op, params, message) -> None:
    z = np.zeros((1, 3, 3))
    with pytest.raises(ConfigError, match=message):
        op.profile([profile_for(z)], params)
    with pytest.raises(ConfigError, match=message):
        whole(op, [z], [profile_for(z)], params)


def test_rotated_grids_are_refused(whole, profile_for) -> None:
    z = np.zeros((1, 3, 3))
    profile = profile_for(z, transform=Affine(10, 1, 0, 1, -10, 0))
    with pytest.raises(ConfigError, match="slope: rotated or sheared geotransforms are not"):
        whole(slope, [z], [profile], {})


def test_profiles_and_margins(profile_for) -> None:
    z = np.zeros((2, 3, 3), dtype=np.int16)
    assert slope.margin == aspect.margin == hillshade.margin == 1
    assert slope.profile([profile_for(z, -1)], {})["dtype"] == "float32"
    assert math.isnan(aspect.profile([profile_for(z, -1)], {})["nodata"])
    assert hillshade.profile([profile_for(z, -1)], {}) == {**profile_for(z, -1), "dtype": "uint8",
                                                           "nodata": 0}
