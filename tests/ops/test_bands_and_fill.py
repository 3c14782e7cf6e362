"""fill_nodata, select_bands, stack and cast."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.fill import fillnodata

from eoscale.errors import ConfigError
from eoscale.ops import cast, fill_nodata, select_bands, stack

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


@pytest.mark.parametrize("name, params, tile_size", [
    ("dtm.tif", {"max_distance": 10}, 31),
    ("dtm.tif", {"max_distance": 6.5, "smoothing_iterations": 2}, 17),
    ("eoscale_dsm.tif", {}, 64),
    ("nz_elev.tif", {"max_distance": 4, "smoothing_iterations": 1}, 101),
])
def test_fill_nodata_tiles_match_gdal_on_the_whole_image(raster, tiled, whole, name, params,
                                                         tile_size) -> None:
    array, profile = raster(name)
    nodata = profile["nodata"]
    result = whole(fill_nodata, [array], [profile], params)
    valid = ~np.isnan(array) if math.isnan(nodata) else array != nodata
    expected = fillnodata(array[0].copy(), mask=valid[0].astype(np.uint8),
                          max_search_distance=params.get("max_distance", 100),
                          smoothing_iterations=params.get("smoothing_iterations", 0))
    np.testing.assert_array_equal(result[0], expected)
    np.testing.assert_array_equal(result[valid], array[valid])
    assert result.dtype == array.dtype
    np.testing.assert_array_equal(tiled(fill_nodata, [array], [profile], params, tile_size), result)


def test_fill_nodata_fills_every_hole_in_reach(raster, whole) -> None:
    array, profile = raster("dtm.tif")
    assert (array == -9999).sum() == 276
    assert not (whole(fill_nodata, [array], [profile], {}) == -9999).any()


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**16), height=st.integers(1, 30), width=st.integers(1, 30),
       max_distance=st.sampled_from([1, 2.5, 5]), smoothing=st.integers(0, 2),
       holes=st.sampled_from([0.1, 0.5, 0.9]), tile_size=st.integers(1, 12))
def test_fill_nodata_is_tile_exact(tiled, whole, profile_for, seed, height, width, max_distance,
                                   smoothing, holes, tile_size) -> None:
    rng = np.random.default_rng(seed)
    array = (rng.random((1, height, width)) * 100).astype(np.float32)
    array[rng.random(array.shape) < holes] = np.nan
    params = {"max_distance": max_distance, "smoothing_iterations": smoothing}
    profile = profile_for(array, np.nan)
    np.testing.assert_array_equal(tiled(fill_nodata, [array], [profile], params, tile_size),
                                  whole(fill_nodata, [array], [profile], params))


def test_fill_nodata_margin() -> None:
    assert fill_nodata.margin({}) == 100
    assert fill_nodata.margin({"max_distance": 2.5, "smoothing_iterations": 3}) == 6


def test_select_bands(raster, whole) -> None:
    naip, profile = raster("naip_m_4709963_se_14_1_20120731.tif")
    result = whole(select_bands, [naip], [profile], {"bands": [4, 1, 1]})
    np.testing.assert_array_equal(result, naip[[3, 0, 0]])
    assert select_bands.profile([profile], {"bands": [4, 1, 1]})["count"] == 3
    with pytest.raises(ConfigError, match="select_bands: param 'bands' asks for band 5 but the "
                                          "input has 4 bands"):
        select_bands.profile([profile], {"bands": [5]})
    with pytest.raises(ConfigError, match="select_bands: param 'bands' must be a non-empty list"):
        whole(select_bands, [naip], [profile], {"bands": [0]})


def test_stack_promotes_and_keeps_masks(profile_for, whole) -> None:
    a = np.array([[[1, -999]]], dtype=np.int16)
    b = np.array([[[np.nan, 2.5]], [[3.0, 4.0]]], dtype=np.float32)
    profiles = [profile_for(a, -999), profile_for(b, np.nan)]
    with pytest.raises(ConfigError, match=r"stack: the inputs' nodata values differ "
                                          r"\(-999.0, nan\); set param 'nodata'"):
        stack.profile(profiles, {})
    result = whole(stack, [a, b], profiles, {"nodata": -1})
    np.testing.assert_array_equal(result, [[[1, -1]], [[-1, 2.5]], [[3, 4]]])
    assert result.dtype == np.float32
    assert stack.profile(profiles, {"nodata": -1}) == profile_for(result, -1.0)
    same = [profile_for(a, -999), profile_for(a, -999)]
    np.testing.assert_array_equal(whole(stack, [a, a], same, {}), np.concatenate([a, a]))


@pytest.mark.parametrize("source, params, expected, dtype", [
    ([[[1.4, 2.6, -3.5]]], {"dtype": "int16"}, [[[1, 3, -4]]], "int16"),
    ([[[0.5, 1.0]]], {"dtype": "uint8", "scale": 100, "offset": 10}, [[[60, 110]]], "uint8"),
    ([[[-5.0, 300.0, 20.0]]], {"dtype": "uint8", "clip": True}, [[[0, 255, 20]]], "uint8"),
    ([[[1e39, -1.0]]], {"dtype": "float32", "clip": True}, [[[np.finfo(np.float32).max, -1.0]]],
     "float32"),
    ([[[np.nan, 1.0]]], {"dtype": "uint8", "nodata": 0}, [[[0, 1]]], "uint8"),
    ([[[np.nan, np.inf]]], {"dtype": "float32"}, [[[np.nan, np.inf]]], "float32"),
])
def test_cast(whole, profile_for, source, params, expected, dtype) -> None:
    array = np.array(source, dtype=np.float64)
    result = whole(cast, [array], [profile_for(array)], params)
    np.testing.assert_array_equal(result, np.array(expected, dtype=dtype))
    assert result.dtype == dtype


def test_cast_keeps_integers_exact_and_maps_nodata(whole, profile_for) -> None:
    big = np.array([[[2**62 + 1, 7]]], dtype=np.int64)
    result = whole(cast, [big], [profile_for(big)], {"dtype": "uint64"})
    assert result.dtype == np.uint64 and result[0, 0, 0] == 2**62 + 1
    assert cast.profile([profile_for(big, -999)], {"dtype": "uint64"})["nodata"] is None
    red = np.array([[[218, -999, 4795]]], dtype=np.int16)
    profile = profile_for(red, -999)
    reflectance = whole(cast, [red], [profile], {"dtype": "float32", "scale": 1e-4})
    np.testing.assert_array_equal(reflectance, np.array([[[0.0218, -999, 0.4795]]], np.float32))
    assert cast.profile([profile], {"dtype": "uint8", "nodata": 0})["nodata"] == 0
    assert math.isnan(cast.profile([profile_for(np.zeros((1, 1, 1), np.float32))],
                                   {"dtype": "float64"})["nodata"])


@pytest.mark.parametrize("source, nodata, params, message", [
    ([[[10, 300]]], None, {"dtype": "uint8"},
     r"cast: 1 values fall outside the uint8 range \[0, 255\] \(from 300 to 300\); set param "
     "'clip' to true"),
    ([[[-1, 3]]], None, {"dtype": "uint16"}, "outside the uint16 range"),
    ([[[1.0, np.nan]]], None, {"dtype": "int16"},
     "cast: 1 pixels are nodata or NaN but the output has no nodata value; set param 'nodata'"),
    ([[[1, -999]]], -999, {"dtype": "uint8"}, "no nodata value"),
    ([[[1e39]]], None, {"dtype": "float32"}, "outside the float32 range"),
    ([[[1]]], None, {"dtype": "uint8", "nodata": 256},
     "cast: param 'nodata' must be a number that fits uint8"),
    ([[[1]]], None, {"dtype": "bool"}, "cast: param 'dtype' must be one of uint8"),
    ([[[1]]], None, {"dtype": "int8", "clip": 1}, "cast: param 'clip' must be true or false"),
    ([[[1]]], None, {}, "cast: param 'dtype' is required"),
])
def test_cast_refuses_silent_wrap_around(whole, profile_for, source, nodata, params,
                                         message) -> None:
    array = np.array(source, dtype=np.float64 if isinstance(source[0][0][0], float) else np.int32)
    with pytest.raises(ConfigError, match=message):
        whole(cast, [array], [profile_for(array, nodata)], params)
