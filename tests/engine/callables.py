"""Module-level callables for the engine tests (picklable under every start method)."""

from __future__ import annotations

import os
import time

import numpy as np
import scipy.ndimage as ndi

from eoscale.engine import tile_context


def scipy_filter(arrays, profiles, params):
    """One of scipy.ndimage's filters, per band, with the radius and border mode of params."""
    image = arrays[0]
    radius, mode = params["radius"], params["mode"]
    size = (1, 2 * radius + 1, 2 * radius + 1)
    name = params["filter"]
    if name == "uniform":
        return ndi.uniform_filter(image, size=size, mode=mode)
    if name == "median":
        return ndi.median_filter(image, size=size, mode=mode)
    if name == "maximum":
        return ndi.maximum_filter(image, size=size, mode=mode)
    if name == "box":
        return ndi.correlate(image, np.full(size, 1.0 / size[1] ** 2, dtype=image.dtype), mode=mode)
    if name == "gaussian":  # truncate 2 and sigma radius / 2 give a kernel of this radius
        return ndi.gaussian_filter(image, sigma=(0, radius / 2, radius / 2), truncate=2.0, mode=mode)
    raise ValueError(name)


def sum_diff_max(arrays, profiles, params):
    """Two inputs -> three outputs of different dtypes."""
    a = arrays[0].astype(np.float64)
    b = arrays[1].astype(np.float64)
    return [a + b, a - b, np.maximum(arrays[0], arrays[1])]


def sum_diff_max_profiles(profiles, params):
    first = profiles[0]
    return [dict(first, dtype="float64"), dict(first, dtype="float32"), dict(first)]


def identity(arrays, profiles, params):
    return arrays[0]


def nothing(arrays, profiles, params):
    return None


def pid_and_core(arrays, profiles, params):
    """Each pixel gets the pid of the process and the row offset of its tile's core."""
    context = tile_context()
    shape = arrays[0].shape[1:]
    return [np.full(shape, os.getpid(), dtype=np.int64),
            np.full(shape, context.core.row_off, dtype=np.int64)]


def geocode_x(arrays, profiles, params):
    """The x coordinate of each pixel centre, from the tile context's windowed transform."""
    transform = tile_context().transform
    rows, cols = np.indices(arrays[0].shape[1:])
    return (transform.c + (cols + 0.5) * transform.a).astype(np.float64)


def writes_input(arrays, profiles, params):
    arrays[0][...] = 0
    return arrays[0]


def raises(arrays, profiles, params):
    if tile_context().index == params.get("bad_tile", 0):
        raise ZeroDivisionError("user code divided by zero")
    return arrays[0]


def wrong_count(arrays, profiles, params):
    return [arrays[0], arrays[0]]


def wrong_shape(arrays, profiles, params):
    return arrays[0][:, 1:, :]


def float_result(arrays, profiles, params):
    return arrays[0] + 0.5


def to_uint8_profile(profiles, params):
    return dict(profiles[0], dtype="uint8")


def dies(arrays, profiles, params):
    if tile_context().index == 2:
        os._exit(7)
    return arrays[0]


def ndvi(arrays, profiles, params):
    """NDVI of a NIR and a red input, NaN where either is nodata."""
    nir = arrays[0][0].astype(np.float64)
    red = arrays[1][0].astype(np.float64)
    invalid = (arrays[0][0] == profiles[0]["nodata"]) | (arrays[1][0] == profiles[1]["nodata"])
    with np.errstate(divide="ignore", invalid="ignore"):
        result = (nir - red) / (nir + red)
    result[invalid] = np.nan
    return result.astype(np.float32)


# -- reductions ---------------------------------------------------------------------------------

def moments(arrays, profiles, params):
    """Per band: count, sum, min, max, sum of squares about the tile mean (NaN excluded)."""
    image = arrays[0].astype(np.float64)
    out = []
    for band in image:
        values = band[~np.isnan(band)]
        mean = values.mean() if values.size else 0.0
        out.append((values.size, values.sum(), values.min(initial=np.inf), values.max(initial=-np.inf),
                    ((values - mean) ** 2).sum()))
    return out


def merge_moments(a, b):
    merged = []
    for (na, sa, mina, maxa, m2a), (nb, sb, minb, maxb, m2b) in zip(a, b):
        n = na + nb
        if n == 0:
            merged.append((0, 0.0, min(mina, minb), max(maxa, maxb), 0.0))
            continue
        delta = (sb / nb if nb else 0.0) - (sa / na if na else 0.0)
        m2 = m2a + m2b + delta * delta * na * nb / n
        merged.append((n, sa + sb, min(mina, minb), max(maxa, maxb), m2))
    return merged


def finish_moments(partial, params):
    return [{"count": n, "sum": s, "min": lo, "max": hi, "mean": s / n, "std": (m2 / n) ** 0.5}
            for n, s, lo, hi, m2 in partial]


def histogram(arrays, profiles, params):
    return np.histogram(arrays[0], bins=params["bins"], range=params["range"])[0]


def add(a, b):
    return a + b


def tile_order(arrays, profiles, params):
    index = tile_context().index
    if index == 0:
        time.sleep(0.2)  # the first tile finishes last
    return [index]


# -- callables that write into their inputs (with writable_inputs) ------------------------------

def bonus_then_box(arrays, profiles, params):
    """Adds a bonus to the whole read window, margin included, then takes an exact 3 x 3 mean."""
    arrays[0][...] += params["bonus"]
    return ndi.correlate(arrays[0], np.full((1, 3, 3), 1 / 9), mode="nearest")


def bonus_then_box_declared(arrays, profiles, params):
    return bonus_then_box(arrays, profiles, params)


bonus_then_box_declared.writable_inputs = True  # type: ignore[attr-defined]
bonus_then_box_declared.margin = 1  # type: ignore[attr-defined]


def clipped_total(arrays, profiles, params):
    """Clips negative pixels to 0 in the input itself, and sums the tile."""
    arrays[0][arrays[0] < 0] = 0
    return float(arrays[0].sum())


def read_shapes(arrays, profiles, params):
    """The rows and columns the tile read, as a list to concatenate."""
    return [arrays[0].shape[1:]]
