"""The benchmark workloads' arithmetic, as plain array functions and as eoscale callables.

The single-process baseline (``baseline.py``) calls the array functions on whole images; the
pipelines (``w*.yaml``) call the callables, which are thin wrappers of the same functions, on tiles.
Every function is chosen so that a tile with its margin gives exactly the pixels of the whole image,
which makes "byte-for-byte equal to the baseline" a check rather than a hope:

- ``box_mean``: the 9 x 9 box sum is two passes of ``ndimage.correlate1d`` with a weight vector of
  ones, a direct 9-term sum per pixel (not ``uniform_filter``'s running sum, whose float rounding
  depends on where each line starts). On uint16 every partial sum is an integer below 2**24, so the
  float32 sums are exact and the mean is one correctly rounded division.
- ``band_summaries``: integer counts, sums and sums of squares (exact, so the merge order of tiles
  does not matter); mean and standard deviation are derived once, at the end, from exact integers.
- ``normalised_difference`` and ``median``: per-pixel arithmetic, and scipy's median, which selects
  among the same 25 values in the same order wherever the tile starts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

#: Rows per block when a function walks an image in blocks to bound its temporaries.
BLOCK_ROWS = 1024


# -- W1: a 9 x 9 mean per band ---------------------------------------------------------------------

def box_mean(image: np.ndarray, size: int) -> np.ndarray:
    """The mean over ``size`` x ``size`` windows (scipy's "reflect" border) of each band, as float32.

    ``image`` is (bands, rows, cols). Exact for 8- and 16-bit integers up to ``size`` 15 (every box
    sum stays below 2**24, float32's exact-integer range); position-independent for any dtype.
    """
    weights = np.ones(size)
    out = np.empty(image.shape, dtype=np.float32)
    rows_summed = np.empty(image.shape[1:], dtype=np.float32)
    for plane, band in zip(image, out):
        ndimage.correlate1d(plane, weights, axis=1, output=rows_summed, mode="reflect")
        ndimage.correlate1d(rows_summed, weights, axis=0, output=band, mode="reflect")
        np.divide(band, np.float32(size * size), out=band)
    return out


def mean_filter(arrays, profiles, params):
    """W1: ``box_mean`` of every band of the first input."""
    return box_mean(arrays[0], params["size"])


def float32_profile(profiles, params):
    """The first input's grid as float32, without nodata."""
    return dict(profiles[0], dtype="float32", nodata=None)


mean_filter.margin = lambda params: params["size"] // 2
mean_filter.profile = float32_profile


# -- W2: per-band statistics and a histogram ------------------------------------------------------

def band_summaries(image: np.ndarray, nodata: Any, bins: int, value_range: tuple[int, int]) -> list:
    """Per band, exact integer moments of the valid pixels and a histogram of ``bins`` bins.

    Returns one ``[count, sum, sum of squares, min, max, histogram]`` per band; the histogram counts
    the valid values in ``[low, high)`` with bins ``(high - low) / bins`` wide. ``image`` must be
    8- or 16-bit unsigned: each block of rows is counted once per value with ``np.bincount``.
    """
    if image.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"band_summaries needs an 8- or 16-bit unsigned image, not {image.dtype}")
    low, high = (int(v) for v in value_range)
    if low < 0 or high <= low or (high - low) % bins:
        raise ValueError(f"range {low}..{high} must be non-negative and split into {bins} equal bins")
    levels = np.iinfo(image.dtype).max + 1
    values = np.arange(levels, dtype=np.int64)
    summaries = []
    for plane in image:
        counts = np.zeros(levels, dtype=np.int64)
        for row in range(0, plane.shape[0], BLOCK_ROWS):
            counts += np.bincount(plane[row:row + BLOCK_ROWS].ravel(), minlength=levels)
        if nodata is not None and 0 <= nodata < levels and float(nodata).is_integer():
            counts[int(nodata)] = 0
        present = np.flatnonzero(counts)
        window = np.zeros(high - low, dtype=np.int64)
        inside = counts[low:min(high, levels)]
        window[:inside.size] = inside
        summaries.append([
            int(counts.sum()), int(counts @ values), int(counts @ (values * values)),
            int(present[0]) if present.size else None, int(present[-1]) if present.size else None,
            window.reshape(bins, -1).sum(axis=1),
        ])
    return summaries


def merge_summaries(a: list, b: list) -> list:
    """Two tiles' ``band_summaries`` merged (counts and sums add, extremes compare)."""
    def pick(f, x, y):
        return y if x is None else x if y is None else f(x, y)
    return [[n1 + n2, s1 + s2, q1 + q2, pick(min, lo1, lo2), pick(max, hi1, hi2), h1 + h2]
            for (n1, s1, q1, lo1, hi1, h1), (n2, s2, q2, lo2, hi2, h2) in zip(a, b)]


def statistics_table(summaries: list, params: dict) -> dict:
    """Per band: count, min, max, mean, std (population) and the histogram with its edges."""
    low, high = params["range"]
    bands = []
    for n, total, squares, smallest, largest, histogram in summaries:
        # n * squares - total**2 is exact in Python integers: one rounding, in the square root.
        std = math.sqrt(n * squares - total * total) / n if n else None
        bands.append({"count": n, "min": smallest, "max": largest,
                      "mean": total / n if n else None, "std": std,
                      "histogram": [int(c) for c in histogram]})
    edges = np.linspace(low, high, params["bins"] + 1).tolist()
    return {"bands": bands, "histogram_edges": edges}


def band_statistics(arrays, profiles, params):
    """W2 (reduce): ``band_summaries`` of a tile of the first input."""
    return band_summaries(arrays[0], profiles[0].get("nodata"), params["bins"], params["range"])


band_statistics.combine = merge_summaries
band_statistics.finalize = statistics_table


# -- W3: a band ratio, then a 5 x 5 median --------------------------------------------------------

def normalised_difference(image: np.ndarray, first: int, second: int, nodata: Any) -> np.ndarray:
    """(b_first - b_second) / (b_first + b_second) as float32 (bands 1-based); NaN where either band
    is nodata or both are 0."""
    a = image[first - 1].astype(np.float32)
    b = image[second - 1].astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (a - b) / (a + b)
    if nodata is not None:
        ratio[(image[first - 1] == nodata) | (image[second - 1] == nodata)] = np.nan
    return ratio


def median(plane: np.ndarray, size: int) -> np.ndarray:
    """scipy's ``size`` x ``size`` median of a 2-D image ("reflect" border)."""
    return ndimage.median_filter(plane, size=size, mode="reflect")


def band_ratio(arrays, profiles, params):
    """W3 step 1: ``normalised_difference`` of bands ``first`` and ``second``."""
    return normalised_difference(arrays[0], params["first"], params["second"],
                                 profiles[0].get("nodata"))


def ratio_profile(profiles, params):
    return dict(profiles[0], count=1, dtype="float32", nodata=float("nan"))


band_ratio.profile = ratio_profile


def median_filter(arrays, profiles, params):
    """W3 step 2: ``median`` of the first band of the first input."""
    return median(arrays[0][0], params["size"])


def same_profile(profiles, params):
    return dict(profiles[0], count=1)


median_filter.margin = lambda params: params["size"] // 2
median_filter.profile = same_profile


# -- the engine-overhead micro-benchmark ----------------------------------------------------------

def identity(arrays, profiles, params):
    """Returns its input: a map whose cost is the engine's alone."""
    return arrays[0]


def nothing(arrays, profiles, params):
    """Returns 0: a reduce whose cost is the engine's alone."""
    return 0


def add(a, b):
    return a + b
