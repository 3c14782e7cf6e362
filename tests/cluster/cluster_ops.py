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


def same_profile(profiles, params):
    """The input's profile: a map with it runs every tile on the workers (none is probed)."""
    return [dict(profiles[0])]


def slow_marked(arrays, profiles, params):
    """Its input, after ``seconds`` of sleep per tile; a tile leaves ``started`` in the folder
    ``marks`` as it starts (its pid and start time) and ``done-<index>`` once it has slept, just
    before its blocks are written. Tile ``tile`` (if given) sleeps not: once a tile of another
    worker has just started (within 0.2 s) it raises, so that the step fails while that tile
    still runs (or after 10 s)."""
    marks = params["marks"]
    index = tile_context().index
    if index == params.get("tile"):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _just_started(marks):
            time.sleep(0.01)
        _user_helper({})
    with open(os.path.join(marks, f"started-{os.getpid()}"), "w") as mark:
        mark.write(f"{os.getpid()} {time.time()}")
    os.replace(os.path.join(marks, f"started-{os.getpid()}"), os.path.join(marks, "started"))
    time.sleep(params.get("seconds", 1.0))
    with open(os.path.join(marks, f"done-{index}"), "w"):
        pass
    return arrays[0]


def _just_started(marks):
    """Whether a tile of another process started within the last 0.2 s."""
    try:
        with open(os.path.join(marks, "started")) as mark:
            pid, at = mark.read().split()
    except (OSError, ValueError):
        return False
    return int(pid) != os.getpid() and time.time() - float(at) < 0.2
