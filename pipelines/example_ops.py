"""Callables used by the example pipelines: plain functions on numpy arrays, EOScale 1.0's contract.

A map callable is ``fn(arrays, profiles, params)``: ``arrays`` holds one read-only (bands, rows, cols)
view per input over the tile plus its margin; it returns an array (or a list of arrays) of the same
rows and cols. A reduce callable returns a partial result per tile, merged by a combine function.
"""

from __future__ import annotations

import numpy as np
import rasterio.fill
from scipy import ndimage


def ndvi(arrays, profiles, params):
    """(NIR - red) / (NIR + red) from bands ``params["red"]`` and ``params["nir"]`` (1-based)."""
    scene, nodata = arrays[0], profiles[0]["nodata"]
    red = scene[params["red"] - 1].astype(np.float32)
    nir = scene[params["nir"] - 1].astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = (nir - red) / (nir + red)
    result[(scene[params["red"] - 1] == nodata) | (scene[params["nir"] - 1] == nodata)] = np.nan
    result[~np.isfinite(result)] = np.nan
    return result


def ndvi_profile(profiles, params):
    return dict(profiles[0], count=1, dtype="float32", nodata=float("nan"))


def smooth(arrays, profiles, params):
    """A NaN-aware mean over a ``size`` x ``size`` window (NaN pixels are not averaged in)."""
    image = arrays[0].astype(np.float64)
    valid = ~np.isnan(image)
    size = (1, params["size"], params["size"])
    total = ndimage.correlate(np.where(valid, image, 0.0), np.ones(size), mode="constant")
    count = ndimage.correlate(valid.astype(np.float64), np.ones(size), mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    mean[~valid] = np.nan
    return mean.astype(np.float32)


smooth.margin = lambda params: params["size"] // 2


def valid_stats(arrays, profiles, params):
    """Per tile: count, sum, sum of squares, min and max of the non-NaN pixels."""
    values = arrays[0][~np.isnan(arrays[0])].astype(np.float64)
    return {"count": int(values.size), "sum": float(values.sum()),
            "sum2": float((values ** 2).sum()),
            "min": float(values.min()) if values.size else None,
            "max": float(values.max()) if values.size else None}


def merge_stats(a, b):
    def pick(f, x, y):
        return y if x is None else x if y is None else f(x, y)
    return {"count": a["count"] + b["count"], "sum": a["sum"] + b["sum"],
            "sum2": a["sum2"] + b["sum2"], "min": pick(min, a["min"], b["min"]),
            "max": pick(max, a["max"], b["max"])}


def final_stats(partial, params):
    n = partial["count"]
    mean = partial["sum"] / n if n else None
    std = max(0.0, partial["sum2"] / n - mean * mean) ** 0.5 if n else None
    return {"count": n, "min": partial["min"], "max": partial["max"], "mean": mean, "std": std}


# -- EOScale 1.0's example chain ------------------------------------------------------------------

def nodata_mask(arrays, profiles, params):
    """1 where the surface model is nodata, 0 elsewhere."""
    return (arrays[0] == profiles[0]["nodata"]).astype(np.uint8)


def nodata_mask_profile(profiles, params):
    return dict(profiles[0], dtype="uint8", nodata=None)


def fill_holes(arrays, profiles, params):
    """rasterio's fillnodata (GDAL's inverse-distance fill) over holes within ``max_distance``."""
    dsm, mask = arrays[0][0], arrays[1][0]
    return rasterio.fill.fillnodata(dsm.copy(), mask=(mask == 0).astype(np.uint8),
                                    max_search_distance=params["max_distance"],
                                    smoothing_iterations=0)


def mean_3x3(arrays, profiles, params):
    return ndimage.uniform_filter(arrays[0].astype(np.float32), size=(1, 3, 3), mode="nearest")


mean_3x3.margin = 1


def min_max(arrays, profiles, params):
    return float(arrays[0].min()), float(arrays[0].max())


def merge_min_max(a, b):
    return min(a[0], b[0]), max(a[1], b[1])


def as_dict(partial, params):
    return {"min": partial[0], "max": partial[1]}


# -- multi-output band split with a histogram -----------------------------------------------------

def split_bands(arrays, profiles, params):
    """One output image per band of the input."""
    return [band for band in arrays[0]]


def split_profiles(profiles, params):
    return [dict(profiles[0], count=1) for _ in range(profiles[0]["count"])]


def histogram(arrays, profiles, params):
    """Counts of valid pixels (not nodata) in ``bins`` bins over ``range``."""
    image, nodata = arrays[0], profiles[0]["nodata"]
    values = image[image != nodata] if nodata is not None else image.ravel()
    return np.histogram(values, bins=params["bins"], range=tuple(params["range"]))[0]


def add(a, b):
    return a + b


def histogram_table(counts, params):
    lo, hi = params["range"]
    edges = np.linspace(lo, hi, params["bins"] + 1)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def stretch(arrays, profiles, params):
    """Linear stretch of a band to 0..255 between the given low and high values."""
    low, high = params["low"], params["high"]
    scaled = (arrays[0].astype(np.float32) - low) / max(high - low, 1e-12) * 255.0
    return np.clip(scaled, 0, 255).astype(np.uint8)


def stretch_profile(profiles, params):
    return dict(profiles[0], dtype="uint8", nodata=None)
