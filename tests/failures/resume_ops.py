"""Callables for the resume tests: deterministic, distinct per step, slow enough (``seconds``
per tile) for a kill to land in the middle of a step."""

from __future__ import annotations

import time

import numpy as np


def scaled(arrays, profiles, params):
    """``input * factor + 1`` as float32, after sleeping ``seconds``."""
    time.sleep(params.get("seconds", 0.0))
    return arrays[0].astype(np.float32) * np.float32(params.get("factor", 2.0)) + np.float32(1)


def float32_profile(profiles, params):
    return dict(profiles[0], dtype="float32")


def tile_sum(arrays, profiles, params):
    """A tile's partial: the sum and count of its pixels."""
    time.sleep(params.get("seconds", 0.0))
    return [float(arrays[0].sum(dtype=np.float64)), int(arrays[0].size)]


def add(a, b):
    return [a[0] + b[0], a[1] + b[1]]


def mean(partial, params):
    return {"sum": partial[0], "pixels": partial[1], "mean": partial[0] / partial[1]}
