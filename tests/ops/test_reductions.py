"""stats, histogram, percentiles, unique_counts: tiled folds against numpy on the whole image."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eoscale.errors import ConfigError
from eoscale.ops import histogram, percentiles, stats, unique_counts
from eoscale.ops.reductions import combine_stats

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

RASTERS = ["ls5_nbar_19920323_B30_red.tif", "nz_elev.tif", "dtm.tif", "RGB.byte.tif",
           "srtm_zion.tif"]
Q = [0, 2.5, 10, 50, 97.3, 99.9, 100]


def _valid(array: np.ndarray, nodata: float | None) -> list[np.ndarray]:
    out = []
    for band in array:
        mask = ~np.isnan(band) if band.dtype.kind == "f" else np.ones(band.shape, bool)
        if nodata is not None and not math.isnan(nodata):
            mask &= band != nodata
        out.append(band[mask])
    return out


def _json(result: object) -> object:
    return json.loads(json.dumps(result, allow_nan=False))


@pytest.mark.parametrize("name", RASTERS)
def test_stats(raster, tiled, whole, name) -> None:
    array, profile = raster(name)
    result = tiled(stats, [array], [profile], {}, 41)
    assert _json(result) == result
    for band, values in zip(result, _valid(array, profile["nodata"])):
        values = values.astype(np.float64)
        assert band["count"] == values.size
        assert band["min"] == values.min() and band["max"] == values.max()
        assert band["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert band["std"] == pytest.approx(values.std(), rel=1e-10)
    whole_result = whole(stats, [array], [profile], {})
    assert [b["count"] for b in whole_result] == [b["count"] for b in result]


def test_stats_merge_is_stable_far_from_zero(tiled, profile_for) -> None:
    rng = np.random.default_rng(3)
    array = (1e9 + rng.random((1, 64, 64))).astype(np.float64)
    band = tiled(stats, [array], [profile_for(array)], {}, 5)[0]
    assert band["std"] == pytest.approx(array.std(), rel=1e-7)


def test_stats_of_an_empty_band_is_none(whole, tiled, profile_for) -> None:
    array = np.full((2, 4, 4), -1, dtype=np.int16)
    array[1, 0, 0] = 5
    result = tiled(stats, [array], [profile_for(array, -1)], {}, 2)
    assert result[0] == {"count": 0, "min": None, "max": None, "mean": None, "std": None}
    assert result[1] == {"count": 1, "min": 5.0, "max": 5.0, "mean": 5.0, "std": 0.0}


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), sizes=st.lists(st.integers(0, 30), min_size=3, max_size=3))
def test_stats_combine_is_associative(profile_for, seed, sizes) -> None:
    rng = np.random.default_rng(seed)
    parts = []
    for size in sizes:
        array = rng.normal(50, 10, (2, 1, size)) if size else np.full((2, 1, 1), np.nan)
        parts.append(stats([array], [profile_for(array)], {}))
    a, b, c = parts
    np.testing.assert_allclose(combine_stats(combine_stats(a, b), c),
                               combine_stats(a, combine_stats(b, c)), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("name", RASTERS)
def test_histogram_with_the_range_of_a_stats_result(raster, tiled, whole, name) -> None:
    array, profile = raster(name)
    summary = whole(stats, [array], [profile], {})
    params = {"bins": 50, "range": summary}
    result = tiled(histogram, [array], [profile], params, 64)
    assert _json(result) == result
    for band, values, s in zip(result, _valid(array, profile["nodata"]), summary):
        counts, edges = np.histogram(values.astype(np.float64), 50, (s["min"], s["max"]))
        assert band["counts"] == counts.tolist() and band["edges"] == edges.tolist()
        assert band["below"] == band["above"] == 0


def test_histogram_range_forms_and_out_of_range_counts(whole, tiled, profile_for) -> None:
    array = np.array([[[0, 1, 2, 3, 4, 5]], [[10, 11, 12, 13, 14, 15]]], dtype=np.uint8)
    profile = profile_for(array)
    one = tiled(histogram, [array], [profile], {"bins": 2, "range": [1, 3]}, 2)
    assert one[0] == {"edges": [1.0, 2.0, 3.0], "counts": [1, 2], "below": 1, "above": 2}
    assert one[1]["above"] == 6
    params = {"bins": 2, "range": [{"min": 1, "max": 3}, [10, 20]]}
    per_band = whole(histogram, [array], [profile], params)
    assert per_band[0] == one[0] and per_band[1]["counts"] == [5, 1]
    for bad in ([3, 1], [[1, 3]], {"min": 1}, [1, 3, 5], "1..3"):
        with pytest.raises(ConfigError, match="histogram: param 'range' must be"):
            whole(histogram, [array], [profile], {"range": bad})
    with pytest.raises(ConfigError, match="histogram: param 'range' is required"):
        whole(histogram, [array], [profile], {})


@pytest.mark.parametrize("name", ["RGB.byte.tif", "ls5_nbar_19920323_B30_red.tif", "srtm_zion.tif"])
def test_percentiles_are_exact_for_8_and_16_bit_images(raster, tiled, name) -> None:
    array, profile = raster(name)
    result = tiled(percentiles, [array], [profile], {"q": Q}, 77)
    assert _json(result) == result
    for band, values in zip(result, _valid(array, profile["nodata"])):
        assert band == np.percentile(values, Q).tolist()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), dtype=st.sampled_from(["uint8", "int8", "uint16", "int16"]),
       size=st.integers(1, 200), q=st.lists(st.floats(0, 100), min_size=1, max_size=5))
def test_percentiles_exact_on_random_integers(tiled, profile_for, seed, dtype, size, q) -> None:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    array = rng.integers(info.min, info.max, (1, 1, size), endpoint=True).astype(dtype)
    result = tiled(percentiles, [array], [profile_for(array)], {"q": q}, 7)
    # The oracle interpolates in float64: numpy's percentile of an int8 or int16 array
    # interpolates in the array's dtype, which overflows ([123, -57] gives -57.76 at q=1).
    assert result == [np.percentile(array.ravel().astype(np.float64), q).tolist()]


def test_percentiles_of_floats_stay_within_half_a_bin(raster, tiled, whole) -> None:
    dem, profile = raster("nz_elev.tif")
    values = _valid(dem, profile["nodata"])[0]
    summary = whole(stats, [dem], [profile], {})
    for bins in (100, 65536):
        result = tiled(percentiles, [dem], [profile], {"q": Q, "range": summary, "bins": bins}, 300)
        bound = (summary[0]["max"] - summary[0]["min"]) / (2 * bins)
        error = np.abs(np.array(result[0]) - np.percentile(values, Q))
        assert (error <= bound * (1 + 1e-9)).all()
        assert error.max() > 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), size=st.integers(1, 300), bins=st.integers(1, 50),
       q=st.lists(st.floats(0, 100), min_size=1, max_size=5),
       spread=st.sampled_from([1e-3, 1.0, 1e6]))
def test_percentiles_error_bound_on_random_floats(tiled, profile_for, seed, size, bins, q,
                                                  spread) -> None:
    rng = np.random.default_rng(seed)
    array = (rng.standard_normal((1, 1, size)) * spread).astype(np.float32)
    low, high = float(array.min()) - spread, float(array.max()) + spread
    params = {"q": q, "range": [low, high], "bins": bins}
    result = tiled(percentiles, [array], [profile_for(array)], params, 9)
    bound = (high - low) / (2 * bins)
    error = np.abs(np.array(result[0]) - np.percentile(array.ravel().astype(np.float64), q))
    assert (error <= bound * (1 + 1e-9) + 1e-12 * (abs(low) + abs(high))).all()


def test_percentiles_outside_the_range_and_missing_range(whole, profile_for) -> None:
    array = np.arange(10, dtype=np.float32).reshape(1, 2, 5)
    profile = profile_for(array)
    with pytest.raises(ConfigError, match=r"percentiles: the 90th percentile of band 1 lies above "
                                          r"param 'range'"):
        whole(percentiles, [array], [profile], {"q": [50, 90], "range": [0, 5]})
    with pytest.raises(ConfigError, match=r"the 0th percentile of band 1 lies below"):
        whole(percentiles, [array], [profile], {"q": [0], "range": [3, 20]})
    with pytest.raises(ConfigError, match=r"percentiles: param 'range' is required for float32 "):
        whole(percentiles, [array], [profile], {"q": [50]})
    with pytest.raises(ConfigError, match=r"percentiles: param 'q' must be a non-empty list"):
        whole(percentiles, [array], [profile], {"q": [101]})
    empty = np.full((1, 2, 2), np.nan, dtype=np.float32)
    params = {"q": [5, 50], "range": [0, 1]}
    assert whole(percentiles, [empty], [profile_for(empty)], params) == [[None, None]]


def test_percentiles_range_from_percentiles_feeds_a_histogram(raster, whole) -> None:
    array, profile = raster("RGB.byte.tif")
    stretch = whole(percentiles, [array], [profile], {"q": [2, 98]})
    result = whole(histogram, [array], [profile], {"bins": 4, "range": stretch})
    assert [band["edges"][0] for band in result] == [band[0] for band in stretch]


def test_unique_counts(raster, tiled) -> None:
    array, profile = raster("RGB.byte.tif")
    classes = array // 64
    result = tiled(unique_counts, [classes], [profile], {}, 100)
    for band, source, values in zip(result, array, _valid(classes, 0)):
        expected_values, expected_counts = np.unique(values, return_counts=True)
        assert band == dict(zip(expected_values.tolist(), expected_counts.tolist()))
        assert sum(band.values()) == np.count_nonzero(source // 64)
    assert json.loads(json.dumps(result))[0] == {str(k): v for k, v in result[0].items()}


def test_unique_counts_of_floats_skip_nan(tiled, profile_for) -> None:
    array = np.array([[[0.5, np.nan, 0.5, -1.0]]], dtype=np.float32)
    assert tiled(unique_counts, [array], [profile_for(array)], {}, 1) == [{-1.0: 1, 0.5: 2}]


def test_reductions_declare_what_the_engine_needs() -> None:
    for op in (stats, histogram, percentiles, unique_counts):
        assert op.margin == 0 and callable(op.combine) and callable(op.finalize)


@pytest.mark.parametrize("op, params, message", [
    ("histogram", {"range": [5, 1]}, "histogram: param 'range' must be [low, high] with low < "
                                     "high, {min: low, max: high}, or a list of those with one "
                                     "per band, not [5, 1]"),
    ("histogram", {"bins": 0, "range": [0, 9]}, "histogram: param 'bins' must be an integer "
                                                ">= 1, not 0"),
    ("percentiles", {"q": [101]}, "percentiles: param 'q' must be a non-empty list of "
                                  "percentiles from 0 to 100, not [101]"),
    ("percentiles", {"q": [50], "bins": -2}, "percentiles: param 'bins' must be an integer >= 1"),
])
def test_binned_reductions_check_their_params_before_any_pixel(op, params, message) -> None:
    """What ``eoscale validate`` asks of them (their ``check``), the same error the run gives."""
    fn = {"histogram": histogram, "percentiles": percentiles}[op]
    [found] = fn.check(params, ["red"])
    assert found.startswith(message), found
    assert fn.check({"q": [5, 95], "range": [[0, 1], {"min": 2, "max": 3}]} if op == "percentiles"
                    else {"range": {"min": 0, "max": 9}, "bins": 3}, ["red"]) == []
