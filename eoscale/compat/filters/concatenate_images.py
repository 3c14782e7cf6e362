"""EOScale 1.0 API: ``concatenate_images``, the bands of several images as one image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

from eoscale.compat.executors import n_images_to_m_images_filter
from eoscale.compat.filters import opened
from eoscale.compat.manager import EOContextManager
from eoscale.compat.types import VirtualPath


def concatenate_filter(input_buffers: list, input_profiles: list, params: dict) -> list[np.ndarray]:
    """The inputs' bands, in order, as one array of ``params["np_type"]``."""
    return [np.concatenate(input_buffers, axis=0, dtype=params["np_type"])]


def concatenate_profile(input_profiles: list, params: dict) -> list[dict]:
    """The first input's profile with every input's bands, of ``params["np_type"]``."""
    return [dict(input_profiles[0], dtype=params["np_type"],
                 count=sum(profile["count"] for profile in input_profiles))]


def concatenate_images(context: EOContextManager, inputs: list[str | Path | VirtualPath],
                       as_type: DTypeLike = np.float32) -> VirtualPath:
    """One image holding the bands of ``inputs`` (file paths or keys), of ``as_type``; its key."""
    with opened(context, inputs) as keys:
        [key] = n_images_to_m_images_filter(
            inputs=keys, image_filter=concatenate_filter, filter_parameters={"np_type": as_type},
            generate_output_profiles=concatenate_profile, context_manager=context,
            filter_desc="Concatenate processing...")
    return key
