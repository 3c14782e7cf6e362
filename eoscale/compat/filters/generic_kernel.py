"""EOScale 1.0 API: ``generic_kernel_filter``, a function of each pixel's square neighbourhood."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import DTypeLike
from scipy.ndimage import generic_filter

from eoscale.compat.executors import n_images_to_m_images_filter
from eoscale.compat.filters import opened
from eoscale.compat.manager import EOContextManager
from eoscale.compat.types import VirtualPath

Mode = Literal["reflect", "constant", "nearest", "mirror", "wrap"]


def kernel_filter(input_buffers: list, input_profiles: list, params: dict) -> list[np.ndarray]:
    """``scipy.ndimage.generic_filter`` on each input, band by band."""
    return [generic_filter(image, params["func"], size=params["kernel_shape"], mode=params["mode"],
                           cval=params["cval"], extra_keywords=params["func_kwarg"] or {}
                           ).astype(params["np_type"]) for image in input_buffers]


def generic_profile(input_profiles: list, params: dict) -> list[dict]:
    """Each input's profile with the output dtype."""
    return [dict(profile, dtype=params["np_type"]) for profile in input_profiles]


def generic_kernel_filter(context: EOContextManager, inputs: list[str | Path | VirtualPath],
                          func: Callable, kernel_radius: int = 1, mode: Mode = "constant",
                          cval: float = 0.0, dtype: DTypeLike = np.float32,
                          func_kwarg: dict[str, Any] | None = None) -> list[VirtualPath]:
    """``func`` over the (2 r + 1)² window of every pixel of each input; one output per input.

    ``inputs`` are file paths or keys; borders follow scipy's ``mode`` (``wrap`` is not tile-exact:
    a tile has no opposite edge). Returns the keys of the outputs, of ``dtype``.
    """
    size = 1 + 2 * kernel_radius
    with opened(context, inputs) as keys:
        return n_images_to_m_images_filter(
            inputs=keys, image_filter=kernel_filter,
            filter_parameters={"func": func, "kernel_shape": (1, size, size), "mode": mode,
                               "cval": cval, "np_type": dtype, "func_kwarg": func_kwarg},
            generate_output_profiles=generic_profile, context_manager=context,
            stable_margin=kernel_radius, filter_desc="Generic processing...")
