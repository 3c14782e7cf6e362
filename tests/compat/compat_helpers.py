"""Helpers of the compat tests, and module-level 1.0 filters (picklable under every start method).

The filters are EOScale 1.0's example chain (``examples/pipeline.py``): nodata mask, hole
filling, 3 x 3 mean, minimum and maximum.
"""

from __future__ import annotations

import os

import numpy as np
import rasterio
import scipy.ndimage
from rasterio.fill import fillnodata

from eoscale.engine.shared import list_segments


def own_segments() -> set[str]:
    """The shared-memory segments this process owns now."""
    return {name for name, pid in list_segments() if pid == os.getpid()}


def read(path):
    """A raster file's pixels (bands, rows, cols) and profile."""
    with rasterio.open(path) as dataset:
        return dataset.read(), dataset.profile


def nodata_filter(input_buffers, input_profiles, params):
    return np.where(input_buffers[0][0] == input_profiles[0]["nodata"], 1, 0).astype(np.uint8)


def nodata_profile(input_profiles, params):
    mask_profile = input_profiles[0]
    mask_profile["dtype"] = np.uint8
    mask_profile["nodata"] = None
    return mask_profile


def fillnodata_filter(input_buffers, input_profiles, params):
    img_with_holes = input_buffers[0][0].copy()
    nodata_mask = input_buffers[1][0]
    return fillnodata(img_with_holes, mask=np.where(nodata_mask > 0, 0, 1).astype(np.uint8),
                      max_search_distance=params["max_search_distance"],
                      smoothing_iterations=params["smoothing_iterations"])


def fillnodata_profile(input_profiles, params):
    return input_profiles[0]


def uniform_filter(input_buffers, input_profiles, params):
    return scipy.ndimage.uniform_filter(input_buffers[0][0], size=params["size"])


def stats_filter(input_buffers, input_profiles, filter_parameters):
    return [np.min(input_buffers[0]), np.max(input_buffers[0])]


def stats_concatenate(output_scalars, chunk_output_scalars, tile):
    output_scalars[0] = min(output_scalars[0], chunk_output_scalars[0])
    output_scalars[1] = max(output_scalars[1], chunk_output_scalars[1])


def sum_and_difference(input_buffers, input_profiles, params):
    first, second = (buffer.astype(np.float64) for buffer in input_buffers)
    return [first + second, first - second]


def scaled(input_buffers, input_profiles, params):
    return input_buffers[0] * params["factor"]


def top_left_pixel(input_buffers, input_profiles, params):
    return [[int(input_buffers[0][0, 0, 0])]]


def extend(output_scalars, chunk_output_scalars, tile):
    output_scalars[0].extend(chunk_output_scalars[0])


def count_pixels(input_buffers, input_profiles, params):
    return input_buffers[0].shape[1] * input_buffers[0].shape[2]


def add(output_scalars, chunk_output_scalars, tile):
    output_scalars[0] += chunk_output_scalars[0]


def failing(input_buffers, input_profiles, params):
    raise RuntimeError("broken filter")


def cropped(input_buffers, input_profiles, params):
    return input_buffers[0][:, 1:]


def constant(array, constant_value):
    return constant_value


def maximum(input_buffers, input_profiles, params):
    size = 2 * params["radius"] + 1
    return scipy.ndimage.maximum_filter(input_buffers[0], size=(1, size, size), mode="nearest")


# 1.0 filters that write into their input buffers, as 1.0 code often does


def threshold_in_place(input_buffers, input_profiles, params):
    """Sets the pixels above a threshold to 255 in the input itself, and returns that input."""
    image = input_buffers[0]
    image[image > params["threshold"]] = 255
    return image


def bonus_then_smooth(input_buffers, input_profiles, params):
    """Adds a bonus to the whole read window, margin included, then takes a 3 x 3 mean."""
    input_buffers[0][...] += params["bonus"]
    return scipy.ndimage.uniform_filter(input_buffers[0], size=(1, 3, 3), mode="nearest")


def mask_then_maximum(input_buffers, input_profiles, params):
    """Writes 255 into the first input where the second is above a threshold, then a 5 x 5 max."""
    image = input_buffers[0]
    image[input_buffers[1] > params["threshold"]] = 255
    return scipy.ndimage.maximum_filter(image, size=(1, 5, 5), mode="nearest")


def clipped_sum(input_buffers, input_profiles, params):
    """Clips negative pixels to 0 in the input itself, and sums the tile."""
    image = input_buffers[0]
    image[image < 0] = 0
    return [float(image.sum())]


def counts_its_calls(input_buffers, input_profiles, params):
    """Counts in its parameters how often it ran: 1.0 gave each tile a fresh copy of them."""
    params["calls"] = params.get("calls", 0) + 1
    return [[params["calls"]]]


def minus_tile_mean(input_buffers, input_profiles, params):
    """Depends on its tile, as filters that train on samples drawn tile by tile do."""
    return input_buffers[0] - input_buffers[0].mean()


def fill_then_maximum(input_buffers, input_profiles, params):
    """Replaces nodata by a value in the input itself, then takes a 3 x 3 maximum."""
    image = input_buffers[0]
    image[image == input_profiles[0]["nodata"]] = params["fill"]
    return scipy.ndimage.maximum_filter(image, size=(1, 3, 3), mode="nearest")


def thresholded(input_buffers, input_profiles, params):
    """1 where the first band is above ``params.threshold``: parameters read as attributes, as
    SLURP's filters read the argparse Namespace they are given."""
    return (input_buffers[0][0] > params.threshold).astype(np.uint8)


def fails_on_first_tile(output_scalars, chunk_output_scalars, tile):
    """A 1.0 concatenate_filter that raises on the tile at (0, 0)."""
    if (tile.start_x, tile.start_y) == (0, 0):
        raise RuntimeError(f"cannot merge the tile at x={tile.start_x} y={tile.start_y}")
    output_scalars[0][:, tile.start_y:tile.end_y + 1, tile.start_x:tile.end_x + 1] = \
        chunk_output_scalars[0]


def count_above(input_buffers, input_profiles, params):
    """The number of pixels above ``params.threshold`` (an attribute, as for :func:`thresholded`)."""
    return [int((input_buffers[0] > params.threshold).sum())]
