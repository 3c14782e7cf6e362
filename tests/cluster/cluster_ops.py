"""Callables of the cluster tests: imported by the Dask workers from the pipeline's folder."""

from __future__ import annotations

import os
import time

import numpy as np

from eoscale.engine import tile_context


def split_bands(arrays, profiles, params):
    """Two outputs: the first two bands, and the others."""
    return [arrays[0][:2], arrays[0][2:]]


def standardise(arrays, profiles, params):
    """(x - mean) / std of band 1, from an earlier reduce's ``${stats}``."""
    band = params["stats"][0]
    return ((arrays[0].astype(np.float64) - band["mean"]) / band["std"]).astype(np.float32)


def slow_copy(arrays, profiles, params):
    """Its input, after ``seconds`` of sleep per tile."""
    time.sleep(params.get("seconds", 0.2))
    return arrays[0]


def raises_at(arrays, profiles, params):
    if tile_context().index == params["tile"]:
        _user_helper({"pixels": 0})
    return arrays[0]


def _user_helper(values):
    raise KeyError(f"no band named {values.get('band', 'nir')!r}")


def exits_at(arrays, profiles, params):
    if tile_context().index == params["tile"]:
        os._exit(3)
    return arrays[0]


def exits_once_at(arrays, profiles, params):
    """Kills its worker at tile ``tile`` the first time (it leaves the file ``marker``), then
    returns its input."""
    if tile_context().index == params["tile"] and not os.path.exists(params["marker"]):
        with open(params["marker"], "w"):
            pass
        os._exit(3)
    return arrays[0]


def gdal_option(arrays, profiles, params):
    """Every pixel set to the worker's GDAL option EOSCALE_TEST_VALUE (0 when unset)."""
    from rasterio.env import get_gdal_config

    value = int(get_gdal_config("EOSCALE_TEST_VALUE") or 0)
    return np.full(arrays[0].shape, value, dtype=np.uint8)


def as_dtype(arrays, profiles, params):
    """Its input plus ``add``, as ``dtype`` (NaN pixels stay NaN)."""
    return (arrays[0] + params.get("add", 0)).astype(params["dtype"])
