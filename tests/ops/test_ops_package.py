"""The ops package: dotted paths resolve, ops declare the contract and name themselves in errors."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import eoscale.ops
from eoscale.engine.contract import declared, declared_margin
from eoscale.errors import ConfigError

MAPS = ["band_math", "mean_filter", "median_filter", "min_filter", "max_filter", "gaussian_filter",
        "convolve", "fill_nodata", "select_bands", "stack", "cast", "slope", "aspect", "hillshade"]
REDUCTIONS = ["stats", "histogram", "percentiles", "unique_counts"]
#: Params each op accepts, enough for its margin and profile functions.
VALID = {"band_math": {"expression": "a", "names": ["a"]}, "gaussian_filter": {"sigma": 1},
         "convolve": {"kernel": [[1]]}, "select_bands": {"bands": [1]}, "cast": {"dtype": "uint8"},
         "histogram": {"range": [0, 1]}, "percentiles": {"q": [50], "range": [0, 1]}}


def _resolve(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_every_op_is_exported_and_resolves_by_dotted_path() -> None:
    assert sorted(eoscale.ops.__all__) == sorted([*MAPS, *REDUCTIONS, "check_expression"])
    for name in MAPS + REDUCTIONS:
        assert callable(_resolve(f"eoscale.ops.{name}"))


@pytest.mark.parametrize("name", MAPS)
def test_maps_declare_margin_and_profile(profile_for, name) -> None:
    op = getattr(eoscale.ops, name)
    params = VALID.get(name, {})
    assert isinstance(declared_margin(op, params), int)
    array = np.zeros((1, 4, 4), dtype=np.float32)
    profile = declared(op, "profile")([profile_for(array)], params)
    assert {"dtype", "count", "nodata", "transform", "crs"} <= set(profile)


@pytest.mark.parametrize("name", MAPS + REDUCTIONS)
def test_unknown_params_are_refused_naming_the_op(whole, profile_for, name) -> None:
    op = getattr(eoscale.ops, name)
    array = np.zeros((1, 4, 4), dtype=np.float32)
    params = {**VALID.get(name, {}), "colour": "red", "_inputs": ["a"]}
    with pytest.raises(ConfigError, match=rf"^{name}: unknown param 'colour' \(expected: "):
        whole(op, [array], [profile_for(array)], params)


@pytest.mark.parametrize("name", [n for n in MAPS + REDUCTIONS if n not in ("band_math", "stack")])
def test_one_input_ops_refuse_two(whole, profile_for, name) -> None:
    op = getattr(eoscale.ops, name)
    array = np.zeros((1, 4, 4), dtype=np.float32)
    with pytest.raises(ConfigError, match=rf"^{name}: takes one input, got 2"):
        whole(op, [array, array], [profile_for(array)] * 2, VALID.get(name, {}))
