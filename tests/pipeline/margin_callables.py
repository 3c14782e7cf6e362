"""Callables of the margin-resolution test: a filter whose margin is a function that counts its
calls, by the ``tag`` param of the step that asked, and a reduce whose result a step reads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

#: How many times each step's margin was resolved, by the step's ``tag`` param.
CALLS: Counter[str] = Counter()


def counted(arrays: Sequence[np.ndarray], profiles: Sequence[dict], params: dict) -> np.ndarray:
    """The maximum over a square of ``radius``: exact whatever the window."""
    size = (1, 2 * params["radius"] + 1, 2 * params["radius"] + 1)
    return ndimage.maximum_filter(arrays[0], size=size, mode="nearest")


def _margin(params: dict) -> int:
    CALLS[params["tag"]] += 1
    return params["radius"]


counted.margin = _margin  # type: ignore[attr-defined]


def radius(arrays: Sequence[np.ndarray], profiles: Sequence[dict], params: dict) -> dict:
    """A radius for a later step: 2, whatever the image."""
    return {"radius": 2}


radius.combine = lambda a, b: a  # type: ignore[attr-defined]
