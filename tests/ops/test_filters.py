"""Filters: nodata-aware oracles on the whole image, and tiles bit-identical to the whole image."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from eoscale.errors import ConfigError
from eoscale.ops import (convolve, gaussian_filter, max_filter, mean_filter, median_filter,
                         min_filter)

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

MODES = ["reflect", "nearest", "mirror", "constant"]


def _image(seed: int, dtype: str, height: int, width: int, bands: int = 1,
           holes: float = 0.2) -> tuple[np.ndarray, float]:
    """A random image with about ``holes`` of nodata pixels, and its nodata value."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 200, size=(bands, height, width)).astype(dtype)
    if dtype.startswith("float"):
        values += rng.random(values.shape).astype(dtype)
    nodata = (-9999.0 if seed % 2 else np.nan) if dtype.startswith("float") else 255
    values[rng.random(values.shape) < holes] = nodata
    return values, nodata


def _nan_aware(fn: Callable[[np.ndarray], float]) -> Callable[[np.ndarray], float]:
    return lambda window: fn(window) if not np.isnan(window).all() else np.nan


def _oracle(array: np.ndarray, nodata: float, size: int, fn: Callable[[np.ndarray], float],
            mode: str, cval: float) -> np.ndarray:
    """``fn`` over each pixel's window of valid values (NaN elsewhere), on a float64 copy."""
    data = array.astype(np.float64)
    data[(array == nodata) | np.isnan(data)] = np.nan
    return np.stack([ndimage.generic_filter(band, _nan_aware(fn), size=size, mode=mode, cval=cval)
                     for band in data])


def _gaussian_weights(sigma: float, truncate: float) -> np.ndarray:
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    w = np.exp(-0.5 / sigma ** 2 * x ** 2)
    return np.outer(w, w).ravel()


def _weighted(weights: np.ndarray, scale: float = 1.0) -> Callable[[np.ndarray], float]:
    def fn(window: np.ndarray) -> float:
        ok = ~np.isnan(window)
        total = weights[ok].sum()
        return float(np.sum(window[ok] * weights[ok]) / total * scale) if total else np.nan
    return fn


def _mask(array: np.ndarray, nodata: float) -> np.ndarray:
    return (array == nodata) | np.isnan(array)


CASES = {
    "mean": (mean_filter, lambda p: {"size": p["size"]}, lambda p: np.nanmean),
    "median": (median_filter, lambda p: {"size": p["size"]}, lambda p: np.nanmedian),
    "min": (min_filter, lambda p: {"size": p["size"]}, lambda p: np.nanmin),
    "max": (max_filter, lambda p: {"size": p["size"]}, lambda p: np.nanmax),
    "gaussian": (gaussian_filter, lambda p: {"sigma": p["sigma"], "truncate": 2.0},
                 lambda p: _weighted(_gaussian_weights(p["sigma"], 2.0))),
}


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from(sorted(CASES)), seed=st.integers(0, 2**16),
       dtype=st.sampled_from(["float32", "int16", "uint8", "float64"]),
       height=st.integers(1, 24), width=st.integers(1, 24), bands=st.integers(1, 2),
       size=st.sampled_from([1, 3, 5]), sigma=st.sampled_from([0.5, 1.0, 1.6]),
       mode=st.sampled_from(MODES), cval=st.sampled_from([0.0, 7.0]),
       tile_size=st.integers(1, 9), tiling=st.sampled_from(["tiles", "strips"]))
def test_tiles_match_the_whole_image_which_matches_the_oracle(
        tiled, whole, profile_for, case, seed, dtype, height, width, bands, size, sigma, mode,
        cval, tile_size, tiling) -> None:
    op, make_params, oracle_fn = CASES[case]
    params = {**make_params({"size": size, "sigma": sigma}), "mode": mode, "cval": cval}
    array, nodata = _image(seed, dtype, height, width, bands)
    profile = profile_for(array, nodata)
    result = whole(op, [array], [profile], params)
    np.testing.assert_array_equal(tiled(op, [array], [profile], params, tile_size, tiling), result)
    expected_dtype = op.profile([profile], params)["dtype"]
    assert result.dtype == expected_dtype
    invalid = _mask(array, nodata)
    np.testing.assert_array_equal(_mask(result, nodata), invalid)
    window = op.margin(params) * 2 + 1
    if min(height, width) < window:
        return  # numpy's and scipy's padding differ on images smaller than the window
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = _oracle(array, nodata, window, oracle_fn({"sigma": sigma}), mode, cval)
    if case in ("min", "max", "median"):
        np.testing.assert_array_equal(result[~invalid], expected[~invalid].astype(result.dtype))
    else:
        np.testing.assert_allclose(result[~invalid], expected[~invalid], rtol=1e-6, atol=1e-4)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**16), height=st.integers(3, 20), width=st.integers(3, 20),
       kernel=st.sampled_from([[[1, 2, 1], [2, 4, 2], [1, 2, 1]], [[0, 1, 0], [1, 0, 1], [0, 1, 0]],
                               [[1, 1, 1, 1, 1]], [[0, -1, 0], [-1, 4, -1], [0, -1, 0]],
                               [[-1, 0, 1]]]),
       mode=st.sampled_from(MODES), tile_size=st.integers(1, 7))
def test_convolve(tiled, whole, profile_for, seed, height, width, kernel, mode, tile_size) -> None:
    array, nodata = _image(seed, "float32", height, width, holes=0.15)
    profile = profile_for(array, nodata)
    params = {"kernel": kernel, "mode": mode, "cval": 3.0}
    result = whole(convolve, [array], [profile], params)
    np.testing.assert_array_equal(tiled(convolve, [array], [profile], params, tile_size), result)
    k = np.array(kernel, dtype=np.float64)
    flipped = k[::-1, ::-1]
    data = array.astype(np.float64)
    data[_mask(array, nodata)] = np.nan
    if (k >= 0).all():
        fn = _weighted(flipped.ravel(), k.sum())
        expected = np.stack([ndimage.generic_filter(band, _nan_aware(fn), footprint=np.ones_like(k),
                                                    mode=mode, cval=3.0) for band in data])
    else:
        expected = np.stack([ndimage.convolve(band, k, mode=mode, cval=3.0) for band in data])
    computed = ~_mask(result, nodata)
    assert not (computed & _mask(array, nodata)).any()
    np.testing.assert_allclose(result[computed], expected[computed], rtol=1e-6, atol=1e-4)
    if (k < 0).any():  # scipy skips zero weights, so NaN marks the windows with nodata
        np.testing.assert_array_equal(computed, ~np.isnan(expected) & ~_mask(array, nodata))


def test_fully_valid_images_give_scipy_results(whole, profile_for) -> None:
    rng = np.random.default_rng(1)
    array = rng.random((1, 30, 40)).astype(np.float64) * 100
    profile = profile_for(array)
    for op, params, expected in [
        (mean_filter, {"size": 5}, ndimage.uniform_filter(array[0], 5)),
        (gaussian_filter, {"sigma": 1.5}, ndimage.gaussian_filter(array[0], 1.5)),
        (median_filter, {"size": 3, "mode": "nearest"},
         ndimage.median_filter(array[0], 3, mode="nearest")),
        (min_filter, {"size": 3}, ndimage.minimum_filter(array[0], 3)),
        (convolve, {"kernel": [[1, 2, 3], [0, 1, 0], [0, 0, 5]]},
         ndimage.convolve(array[0], np.array([[1, 2, 3], [0, 1, 0], [0, 0, 5]], dtype=float))),
    ]:
        np.testing.assert_allclose(whole(op, [array], [profile], params)[0], expected, rtol=1e-12)


def test_real_dem_with_nan_and_numeric_nodata(raster, tiled, whole) -> None:
    for name, op, params in [("nz_elev.tif", median_filter, {"size": 5}),
                             ("nz_elev.tif", gaussian_filter, {"sigma": 2.0}),
                             ("dtm.tif", mean_filter, {"size": 7, "mode": "constant", "cval": 1}),
                             ("dtm.tif", max_filter, {"size": 3})]:
        array, profile = raster(name)
        result = whole(op, [array], [profile], params)
        np.testing.assert_array_equal(tiled(op, [array], [profile], params, 97), result)
        invalid = _mask(array, profile["nodata"])
        np.testing.assert_array_equal(_mask(result, profile["nodata"]), invalid)
        assert invalid.any() and not np.isnan(result[~invalid]).any()


def test_margins_and_profiles(profile_for) -> None:
    array = np.zeros((2, 4, 4), dtype=np.int16)
    assert mean_filter.margin({"size": 7}) == 3
    assert gaussian_filter.margin({"sigma": 2.0}) == 8
    assert gaussian_filter.margin({"sigma": 1.3, "truncate": 3.0}) == 4
    assert convolve.margin({"kernel": [[1, 1, 1, 1, 1]]}) == 2
    assert mean_filter.profile([profile_for(array, -1)], {}) == {
        **profile_for(array, -1), "dtype": "float32", "nodata": -1.0}
    assert min_filter.profile([profile_for(array)], {})["dtype"] == "int16"
    assert median_filter.profile([profile_for(array.astype(np.float64))], {})["dtype"] == "float64"


@pytest.mark.parametrize("op, params, message", [
    (mean_filter, {"size": 4}, "mean_filter: param 'size' must be an odd integer >= 1, not 4"),
    (median_filter, {"size": 3.0}, "median_filter: param 'size' must be an odd integer"),
    (min_filter, {"mode": "wrap"}, "min_filter: param 'mode' cannot be 'wrap'"),
    (max_filter, {"mode": "edge"}, "max_filter: param 'mode' must be one of reflect, nearest"),
    (gaussian_filter, {}, "gaussian_filter: param 'sigma' is required"),
    (gaussian_filter, {"sigma": -1}, "gaussian_filter: param 'sigma' must be a positive number"),
    (convolve, {"kernel": [[1, 1]]}, "convolve: param 'kernel' must be rows of numbers"),
    (convolve, {"kernel": [[1, 1, 1], [1, 1]]}, "convolve: param 'kernel' must be rows"),
    (convolve, {"kernel": [[0]]}, "convolve: param 'kernel' must be rows"),
    (mean_filter, {"sise": 3}, r"mean_filter: unknown param 'sise' \(expected: size, mode, cval\)"),
])
def test_bad_params(whole, profile_for, op, params, message) -> None:
    array = np.zeros((1, 5, 5), dtype=np.uint8)
    with pytest.raises(ConfigError, match=message):
        op.margin(params)
    with pytest.raises(ConfigError, match=message):
        whole(op, [array], [profile_for(array)], params)


def test_min_filter_cval_must_fit_the_dtype(whole, profile_for) -> None:
    array = np.zeros((1, 5, 5), dtype=np.uint8)
    with pytest.raises(ConfigError, match="min_filter: param 'cval' must fit uint8"):
        whole(min_filter, [array], [profile_for(array)], {"mode": "constant", "cval": -1})
