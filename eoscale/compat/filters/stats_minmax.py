"""EOScale 1.0 API: ``minmax_filter``, the minimum and maximum of images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eoscale.compat.executors import n_images_to_m_scalars
from eoscale.compat.filters import opened
from eoscale.compat.manager import EOContextManager
from eoscale.compat.types import VirtualPath


def stats_filter(input_buffers: list, input_profiles: list, filter_parameters: dict) -> list:
    """The minimum and maximum of a tile of every input."""
    return [min(np.min(image) for image in input_buffers),
            max(np.max(image) for image in input_buffers)]


def stats_concatenate(output_scalars: list, chunk_output_scalars: list, tile: object) -> None:
    """Merge a tile's minimum and maximum into ``output_scalars``."""
    output_scalars[0] = min(output_scalars[0], chunk_output_scalars[0])
    output_scalars[1] = max(output_scalars[1], chunk_output_scalars[1])


def minmax_filter(context: EOContextManager, inputs: list[str | Path | VirtualPath]) -> list:
    """``[minimum, maximum]`` of every pixel of ``inputs`` (file paths or keys), nodata included."""
    with opened(context, inputs) as keys:
        return n_images_to_m_scalars(inputs=keys, image_filter=stats_filter, nb_output_scalars=2,
                                     concatenate_filter=stats_concatenate, context_manager=context,
                                     filter_desc="Min Max values processing...")
