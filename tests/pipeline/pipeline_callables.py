"""Small callables that the pipeline tests' YAML files name by dotted path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

THRESHOLD = 0.5


def ndvi(arrays: Sequence[np.ndarray], profiles: Sequence[dict], params: dict) -> np.ndarray:
    red = arrays[0][params.get("red", 1) - 1].astype("float32")
    nir = arrays[-1][params.get("nir", 1) - 1].astype("float32")
    return ((nir - red) / np.maximum(nir + red, 1e-6))[np.newaxis]


def ndvi_profile(profiles: Sequence[dict], params: dict) -> dict:
    return {**profiles[0], "count": 1, "dtype": "float32"}


def split_bands(arrays: Sequence[np.ndarray], profiles: Sequence[dict],
                params: dict) -> list[np.ndarray]:
    return [band[np.newaxis] for band in arrays[0]]


def bad_profile(profiles: Sequence[dict], params: dict) -> dict:
    raise KeyError("nodata")


def band_profiles(profiles: Sequence[dict], params: dict) -> list[dict]:
    return [{**profiles[0], "count": 1}] * profiles[0]["count"]


def pixel_profile(profiles: Sequence[dict], params: dict) -> dict:
    return {"dtype": "pixels"}


def smooth(arrays: Sequence[np.ndarray], profiles: Sequence[dict], params: dict) -> np.ndarray:
    return arrays[0]


smooth.margin = lambda params: params.get("radius", 4)  # type: ignore[attr-defined]


def tile_stats(arrays: Sequence[np.ndarray], profiles: Sequence[dict], params: dict) -> dict:
    return {"min": float(arrays[0].min()), "max": float(arrays[0].max())}


def merge_stats(a: dict, b: dict) -> dict:
    return {"min": min(a["min"], b["min"]), "max": max(a["max"], b["max"])}


def final_stats(partial: dict, params: dict) -> dict:
    return partial


def tile_sum(arrays: Sequence[np.ndarray], profiles: Sequence[dict], params: dict) -> float:
    return float(arrays[0].sum())


tile_sum.combine = lambda a, b: a + b  # type: ignore[attr-defined]


class Filters:
    """Callables as static methods, named as 'module:Filters.identity'."""

    @staticmethod
    def identity(arrays: Sequence[np.ndarray], profiles: Sequence[dict], params: dict) -> Any:
        return arrays[0]


def one_per_tile(arrays: Sequence[np.ndarray], profiles: Sequence[dict], params: dict) -> int:
    return 1


one_per_tile.combine = lambda a, b: a + b  # type: ignore[attr-defined]


def clip_in_place(arrays: Sequence[np.ndarray], profiles: Sequence[dict], params: dict) -> Any:
    """An EOScale 1.0 habit: writes into its input."""
    image = arrays[0]
    image[image > params["high"]] = params["high"]
    return image


def constant(arrays, profiles, params):
    """A band of 5 in ``params['dtype']``."""
    return np.full(arrays[0].shape[1:], 5, params["dtype"])[None]


def constant_profile(profiles, params):
    """The profile of :func:`constant`, with ``params['nodata']``."""
    return dict(profiles[0], dtype=params["dtype"], nodata=params["nodata"], count=1)
