"""Callables for the resume tests: deterministic, distinct per step, slow enough (``seconds``
per tile) for a kill to land in the middle of a step. With ``EOSCALE_TEST_NO_PAUSE`` set in
the environment they do not sleep (an uninterrupted reference run, a final resume): the pause
changes when a kill lands, never what is computed."""

from __future__ import annotations

import os
import time

import numpy as np

from eoscale.engine import tile_context


def pause(params) -> None:
    if not os.environ.get("EOSCALE_TEST_NO_PAUSE"):
        time.sleep(params.get("seconds", 0.0))


def scaled(arrays, profiles, params):
    """``input * factor + 1`` as float32, after sleeping ``seconds``; notes ``<step> <tile>``
    in ``calls.log`` (in the run's folder), so a test counts the tiles computed."""
    pause(params)
    line = f"{params.get('name', '?')} {tile_context().index}\n".encode()
    descriptor = os.open("calls.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)
    return arrays[0].astype(np.float32) * np.float32(params.get("factor", 2.0)) + np.float32(1)


def float32_profile(profiles, params):
    return dict(profiles[0], dtype="float32")


def tile_sum(arrays, profiles, params):
    """A tile's partial: the sum and count of its pixels."""
    pause(params)
    return [float(arrays[0].sum(dtype=np.float64)), int(arrays[0].size)]


def add(a, b):
    return [a[0] + b[0], a[1] + b[1]]


def mean(partial, params):
    return {"sum": partial[0], "pixels": partial[1], "mean": partial[0] / partial[1]}
