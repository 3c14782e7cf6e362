"""Callables of the fused-chain tests: exact local filters (no rounding that depends on where a
window starts), a two-in two-out step, and a reduce whose result a later step reads."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def pair(arrays: Sequence[np.ndarray], profiles: Sequence[dict], params: dict) -> list:
    """Two images -> their sum (float64) and difference (float32)."""
    a, b = (array.astype(np.float64) for array in arrays)
    return [a + b, (a - b).astype(np.float32)]


pair.margin = 0  # type: ignore[attr-defined]
pair.profile = lambda profiles, params: [dict(profiles[0], dtype="float64", nodata=None),  # type: ignore[attr-defined]
                                         dict(profiles[0], dtype="float32", nodata=None)]


def extreme(arrays: Sequence[np.ndarray], profiles: Sequence[dict], params: dict) -> np.ndarray:
    """The maximum (or minimum, ``low``) over a square of ``radius``, plus a second input's
    pixel when there is one: exact whatever the window."""
    size = (1, 2 * params["radius"] + 1, 2 * params["radius"] + 1)
    found = (ndimage.minimum_filter if params.get("low") else ndimage.maximum_filter)(
        arrays[0], size=size, mode="nearest")
    return found + arrays[1] if len(arrays) > 1 else found


extreme.margin = lambda params: params["radius"]  # type: ignore[attr-defined]


def scale(arrays: Sequence[np.ndarray], profiles: Sequence[dict], params: dict) -> np.ndarray:
    """The image less a level (a reduce's result), in float32; no profile function: the first
    tile tells the dtype."""
    return (arrays[0] - params["level"]).astype(np.float32)


def level(arrays: Sequence[np.ndarray], profiles: Sequence[dict], params: dict) -> dict:
    """The largest value of the image, NaN left out (exact in any order)."""
    return {"max": float(np.nanmax(arrays[0]))}


level.combine = lambda a, b: {"max": max(a["max"], b["max"])}  # type: ignore[attr-defined]
