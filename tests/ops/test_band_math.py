"""band_math: checked expressions, nodata union, division by zero, tiles equal to the whole."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from eoscale.errors import ConfigError
from eoscale.ops import band_math, check_expression

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

NAMES = ["nir", "red", "scene"]


@pytest.mark.parametrize("expression, column, words", [
    ("nir.real", 1, "attribute access"),
    ("nir + __import__('os')", 7, "cannot call '__import__'"),
    ("[x for x in nir]", 1, "comprehension"),
    ("(lambda: 1)()", 1, "cannot call"),
    ("1 + (lambda: 1)", 6, "lambda"),
    ("scene[0]", 7, "from 1"),
    ("scene[1:3]", 7, "from 1"),
    ("(nir + red)[1]", 1, "only an input can be indexed"),
    ("nri + red", 1, "did you mean 'nir'"),
    ("where(nir > 0, 1)", 1, "takes 3 arguments"),
    ("clip(nir, 0, a_max=1)", 14, "keyword"),
    ("nir and red", 1, "use & and |"),
    ("not nir", 1, "use ~"),
    ("1 if nir else 2", 1, "where(c, a, b)"),
    ("abs + 1", 1, "must be called"),
    ("red * 'a'", 7, "only numbers"),
    ("nir +", 6, "invalid syntax"),
    ("import os", 1, "invalid syntax"),
    ("{nir: 1}", 1, "is not allowed"),
    ("nir * 1" + "0" * 400, 7, "too large"),
])
def test_check_expression_names_the_column(expression: str, column: int, words: str) -> None:
    problems = check_expression(expression, NAMES)
    assert len(problems) == 1
    assert problems[0].startswith(f"column {column}: ")
    assert words in problems[0]


def test_check_expression_gives_the_line_of_multiline_expressions() -> None:
    assert check_expression("(nir +\n   red.x)", NAMES) == [
        "line 2, column 4: attribute access is not allowed"]


@pytest.mark.parametrize("expression", [
    "(nir - red) / (nir + red)", "scene[4] - scene[1]", "where((nir > 0) & ~(red < 0), nir, 0)",
    "0 < nir <= 1", "clip(sqrt(abs(nir)), 0, 1) ** 2 + log(maximum(red, 1)) - pi",
    "-nir // 3 % 2", "isnan(red) | (nir != red) ^ (nir == red)",
])
def test_check_expression_accepts_the_grammar(expression: str) -> None:
    assert check_expression(expression, NAMES) == []


def test_check_expression_reports_every_problem() -> None:
    assert len(check_expression("nir.x + red.y + foo", NAMES)) == 3


def _pair(profile_for, red: np.ndarray, nir: np.ndarray, nodata: float | None = -999):
    return [red, nir], [profile_for(red, nodata), profile_for(nir, nodata)]


def test_ndvi_masks_the_union_and_tiles_match(raster, tiled, whole) -> None:
    red, red_profile = raster("ls5_nbar_19920323_B30_red.tif")
    nir, nir_profile = raster("ls5_nbar_19920323_B40_nir.tif")
    arrays, profiles = [nir, red], [nir_profile, red_profile]
    params = {"expression": "(nir - red) / (nir + red)", "_inputs": ["nir", "red"]}
    result = whole(band_math, arrays, profiles, params)
    assert result.shape == (1, *red.shape[1:]) and result.dtype == np.float32
    union = (red[0] == -999) | (nir[0] == -999)
    assert (red[0] == -999).sum() != (nir[0] == -999).sum()
    np.testing.assert_array_equal(np.isnan(result[0]), union)
    n, r = nir[0].astype(np.float64), red[0].astype(np.float64)
    expected = ((n - r) / (n + r)).astype(np.float32)
    np.testing.assert_array_equal(result[0][~union], expected[~union])
    assert 0.5 < np.nanmedian(result) < 0.6
    for tile_size, mode in [(37, "tiles"), (5, "strips")]:
        np.testing.assert_array_equal(tiled(band_math, arrays, profiles, params, tile_size, mode),
                                      result)


def test_band_numbers_of_a_multiband_input(raster, whole) -> None:
    naip, profile = raster("naip_m_4709963_se_14_1_20120731.tif")
    params = {"expression": "(scene[4] - scene[1]) / (scene[4] + scene[1])", "names": ["scene"]}
    result = whole(band_math, [naip], [profile], params)
    b4, b1 = naip[3].astype(np.float64), naip[0].astype(np.float64)
    np.testing.assert_array_equal(result[0], ((b4 - b1) / (b4 + b1)).astype(np.float32))
    assert 0.2 < np.median(result) < 0.3


def test_division_by_zero_is_nodata_without_warnings(profile_for, whole) -> None:
    a = np.array([[[0, 1, -1, 2]]], dtype=np.int16)
    params = {"expression": "a / (a - a)", "names": ["a"]}
    result = whole(band_math, [a], [profile_for(a)], params)
    assert np.isnan(result).all()
    params = {"expression": "log(a) + 1 / (a - 1)", "names": ["a"], "dtype": "float64"}
    result = whole(band_math, [a], [profile_for(a)], params)
    assert np.isnan(result[0, 0, :3]).all() and result[0, 0, 3] == math.log(2) + 1


def test_integer_output_rounds_and_uses_the_dtype_minimum(profile_for, whole) -> None:
    a = np.array([[[10, 25, -999, 0]]], dtype=np.int16)
    params = {"expression": "100 / a", "names": ["a"], "dtype": "int16"}
    result = whole(band_math, [a], [profile_for(a, -999)], params)
    np.testing.assert_array_equal(result, [[[10, 4, -32768, -32768]]])
    assert result.dtype == np.int16
    params = {**params, "dtype": "uint8", "nodata": 255}
    np.testing.assert_array_equal(whole(band_math, [a], [profile_for(a, -999)], params),
                                  [[[10, 4, 255, 255]]])


def test_values_out_of_an_integer_range_are_an_error(profile_for, whole) -> None:
    a = np.array([[[1, 300]]], dtype=np.int16)
    with pytest.raises(ConfigError, match=r"band_math: 1 values fall outside the uint8 range"):
        whole(band_math, [a], [profile_for(a)],
              {"expression": "a", "names": ["a"], "dtype": "uint8"})


def test_nan_nodata_and_float_inputs(profile_for, whole) -> None:
    a = np.array([[[1.0, np.nan, 3.0]]], dtype=np.float32)
    b = np.array([[[2.0, 2.0, -9999.0]]], dtype=np.float32)
    params = {"expression": "a * b", "names": ["a", "b"], "nodata": -1}
    result = whole(band_math, [a, b], [profile_for(a), profile_for(b, -9999)], params)
    np.testing.assert_array_equal(result, [[[2.0, -1.0, -1.0]]])


def test_only_the_bands_used_count_for_the_mask(profile_for, whole) -> None:
    scene = np.array([[[1, 0]], [[-5, -5]]], dtype=np.int16)
    params = {"expression": "scene[2] * 2", "names": ["scene"]}
    result = whole(band_math, [scene], [profile_for(scene, 0)], params)
    np.testing.assert_array_equal(result, [[[-10.0, -10.0]]])


def test_constant_expressions_fill_the_window_without_integer_wrap_around(profile_for,
                                                                        whole) -> None:
    a = np.zeros((1, 2, 3), dtype=np.uint8)
    result = whole(band_math, [a], [profile_for(a)], {"expression": "2 * pi", "names": ["a"]})
    np.testing.assert_array_equal(result, np.full((1, 2, 3), np.float32(2 * math.pi)))
    result = whole(band_math, [a], [profile_for(a)],
                   {"expression": "2 ** 64 // 2 ** 63", "names": ["a"]})
    np.testing.assert_array_equal(result, np.full((1, 2, 3), 2.0, np.float32))


@pytest.mark.parametrize("expression, message", [
    ("scene", "'scene' has 2 bands; pick one with scene[1] .. scene[2]"),
    ("scene[3]", "'scene' has 2 bands, no band 3"),
    ("scene.T", "attribute access"),
])
def test_run_time_and_profile_checks(profile_for, whole, expression: str, message: str) -> None:
    scene = np.zeros((2, 2, 2), dtype=np.uint8)
    params = {"expression": expression, "_inputs": ["scene"]}
    with pytest.raises(ConfigError, match=r"band_math: invalid expression .*" + re.escape(message)):
        whole(band_math, [scene], [profile_for(scene)], params)
    with pytest.raises(ConfigError, match="band_math: invalid expression"):
        band_math.profile([profile_for(scene)], params)


def test_names_override_inputs_and_must_match_the_inputs(profile_for, whole) -> None:
    a = np.ones((1, 1, 1), dtype=np.uint8)
    params = {"expression": "x + 1", "names": ["x"], "_inputs": ["step_a"]}
    assert whole(band_math, [a], [profile_for(a)], params)[0, 0, 0] == 2
    with pytest.raises(ConfigError, match="band_math: param 'names'"):
        whole(band_math, [a], [profile_for(a)], {"expression": "x"})
    with pytest.raises(ConfigError, match="band_math: 2 input names for 1 inputs"):
        whole(band_math, [a], [profile_for(a)], {"expression": "x", "names": ["x", "y"]})


def test_profile_declares_dtype_count_and_nodata(profile_for) -> None:
    scene = np.zeros((3, 2, 2), dtype=np.uint16)
    params = {"expression": "scene[1] + scene[3]", "_inputs": ["scene"]}
    profile = band_math.profile([profile_for(scene, 0)], params)
    assert profile["dtype"] == "float32" and profile["count"] == 1 and math.isnan(profile["nodata"])
    profile = band_math.profile([profile_for(scene, 0)], {**params, "dtype": "uint16"})
    assert profile["dtype"] == "uint16" and profile["nodata"] == 0
    assert band_math.margin == 0 and band_math.wants_input_names is True
