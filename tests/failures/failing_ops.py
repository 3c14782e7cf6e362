"""Callables that fail in every way a user's code or a machine can, for the failure tests."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

import numpy as np

from eoscale.engine import tile_context


def _index() -> int:
    return tile_context().index


def slow(arrays, profiles, params):
    """Sleeps ``seconds`` per tile, then returns its input as float32."""
    time.sleep(params.get("seconds", 0.5))
    return arrays[0].astype(np.float32)


def raises_at(arrays, profiles, params):
    if _index() == params["tile"]:
        _user_helper({"pixels": 0})
    return arrays[0]


def _user_helper(values):
    raise KeyError(f"no band named {values.get('band', 'nir')!r}")


def sys_exits_at(arrays, profiles, params):
    """``sys.exit(code)`` at tile ``tile``: a SystemExit, which a tile failure reports."""
    if _index() == params["tile"]:
        sys.exit(params.get("code", 2))
    return arrays[0]


def exits_at(arrays, profiles, params):
    if _index() == params["tile"]:
        os._exit(params.get("code", 3))
    return arrays[0]


def killed_at(arrays, profiles, params):
    if _index() == params["tile"]:
        os.kill(os.getpid(), signal.SIGKILL)
    return arrays[0]


def segfaults_at(arrays, profiles, params):
    if _index() == params["tile"]:
        ctypes.string_at(0)
    return arrays[0]


def float32_profile(profiles, params):
    return dict(profiles[0], dtype="float32")


def two_results(arrays, profiles, params):
    return [arrays[0], arrays[0]]


def short_result(arrays, profiles, params):
    return arrays[0][:, :-1]


def float_result(arrays, profiles, params):
    return arrays[0] * 1.5


def keep_dtype(profiles, params):
    return dict(profiles[0])


def identity(arrays, profiles, params):
    return arrays[0]


def tile_count(arrays, profiles, params):
    return 1


tile_count.combine = lambda a, b: a + b
