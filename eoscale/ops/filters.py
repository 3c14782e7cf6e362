"""Nodata-aware neighbourhood filters on scipy.ndimage, identical tiled and on the whole image.

Policy: a filter never fills holes. The output is nodata exactly where the input pixel is nodata
(``fill_nodata`` fills holes), and nodata neighbours never count as data:

- ``mean_filter``, ``gaussian_filter`` and ``convolve`` with non-negative weights are normalised
  convolutions: the weighted mean over the valid pixels of the window (``convolve`` then scales
  by the kernel's sum, so on fully valid windows it equals ``scipy.ndimage.convolve``);
- ``convolve`` with a negative weight (an edge detector) is nodata where any pixel under a
  non-zero weight is nodata;
- ``median_filter``, ``min_filter`` and ``max_filter`` take the median, minimum or maximum of the
  valid pixels of the window; the median of an even count is the mean of the middle two.

Borders follow scipy's ``mode`` (``reflect``, ``nearest``, ``mirror``; ``constant`` treats the
outside as valid pixels of value ``cval``). Since the engine clips read windows at the image
edges, a tile's border is the image's border and tiles match the whole image; ``wrap`` is refused
because it would join a tile's opposite edges. Sums are computed by correlations whose every
output is a fixed-order sum over its own window (never a running sum), so tiles are bit-identical.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from eoscale.errors import ConfigError
from eoscale.ops._common import (Params, declare, float_dtype, kept_nodata, nodata_of, single_input,
                                 valid_mask, with_nodata)

MODES: tuple[str, ...] = ("reflect", "nearest", "mirror", "constant")
#: numpy's names for scipy's border modes (``constant`` aside).
_PAD_MODES: dict[str, Literal["symmetric", "edge", "reflect"]] = {
    "reflect": "symmetric", "nearest": "edge", "mirror": "reflect"}
#: Pixels whose window mixes valid and nodata pixels are taken for the median this many at a time.
_MEDIAN_CHUNK = 1 << 15


@dataclass(frozen=True)
class _Border:
    mode: str
    cval: float


class _Parsed(Protocol):
    @property
    def radius(self) -> int: ...


Parse = Callable[[str, Mapping[str, Any]], _Parsed]
#: Weighted sums over each pixel's window, outside pixels taking the given value (``cval``).
WindowSum = Callable[[np.ndarray, float], np.ndarray]


def _border(p: Params) -> _Border:
    if p.get("mode", "reflect") in ("wrap", "grid-wrap"):
        raise ConfigError(f"{p.op}: param 'mode' cannot be 'wrap': it joins opposite edges of the "
                          "image, which a tile does not have")
    return _Border(p.choice("mode", MODES, "reflect"), p.number("cval", 0.0))


@dataclass(frozen=True)
class _Window:
    size: int
    border: _Border

    @property
    def radius(self) -> int:
        return self.size // 2


def _window(op: str, params: Mapping[str, Any]) -> _Window:
    p = Params(op, params, ("size", "mode", "cval"))
    return _Window(p.integer("size", 3, minimum=1, odd=True), _border(p))


def _margin(op: str, parse: Parse) -> Callable[[dict], int]:
    return lambda params: parse(op, params).radius


def _profile(op: str, parse: Parse,
             floats: bool) -> Callable[[Sequence[dict], Mapping[str, Any]], dict]:
    """The profile function of a filter: float output (``floats``) or the input's dtype."""

    def profile(profiles: Sequence[dict], params: Mapping[str, Any]) -> dict:
        parse(op, params)
        dtype = np.dtype(profiles[0]["dtype"])
        dtype = float_dtype(dtype) if floats else dtype
        return {**profiles[0], "dtype": dtype.name, "nodata": kept_nodata(profiles[0], dtype)}

    return profile


def _input(op: str, arrays: Sequence[np.ndarray],
           profiles: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, dict]:
    single_input(op, arrays)
    return arrays[0], valid_mask(arrays[0], nodata_of(profiles[0])), profiles[0]


def _finish(values: np.ndarray, valid: np.ndarray, profile: dict, dtype: np.dtype) -> np.ndarray:
    return with_nodata(values, valid, dtype, kept_nodata(profile, dtype))


def _normalised(window_sum: WindowSum, data: np.ndarray,
                valid: np.ndarray, cval: float) -> tuple[np.ndarray, np.ndarray]:
    """Weighted sums of the valid pixels and of their weights (outside pixels: valid, ``cval``)."""
    sums = window_sum(np.where(valid, data, 0).astype(np.float64), cval)
    return sums, window_sum(valid.astype(np.float64), 1.0)


def _box(size: int, border: _Border) -> WindowSum:
    """Mean over a ``size`` x ``size`` box by two 1-D correlations (``cval`` pads consistently)."""
    weights = np.full(size, 1.0 / size)

    def correlate(x: np.ndarray, cval: float) -> np.ndarray:
        rows = ndimage.correlate1d(x, weights, axis=-1, mode=border.mode, cval=cval)
        return ndimage.correlate1d(rows, weights, axis=-2, mode=border.mode, cval=cval)

    return correlate


def _weighted_mean(op: str, window_sum: WindowSum, cval: float, arrays: Sequence[np.ndarray],
                   profiles: Sequence[dict]) -> np.ndarray:
    data, valid, profile = _input(op, arrays, profiles)
    sums, weights = _normalised(window_sum, data, valid, cval)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / weights
    return _finish(mean, valid, profile, float_dtype(data.dtype))


@declare(margin=_margin("mean_filter", _window), profile=_profile("mean_filter", _window, True))
def mean_filter(arrays: Sequence[np.ndarray], profiles: Sequence[dict],
                params: Mapping[str, Any]) -> np.ndarray:
    """Mean of the valid pixels in a ``size`` x ``size`` window (float output)."""
    window = _window("mean_filter", params)
    return _weighted_mean("mean_filter", _box(window.size, window.border), window.border.cval,
                          arrays, profiles)


@dataclass(frozen=True)
class _Gaussian:
    sigma: float
    truncate: float
    border: _Border

    @property
    def radius(self) -> int:
        return int(self.truncate * self.sigma + 0.5)


def _gaussian(op: str, params: Mapping[str, Any]) -> _Gaussian:
    p = Params(op, params, ("sigma", "truncate", "mode", "cval"))
    return _Gaussian(p.number("sigma", positive=True), p.number("truncate", 4.0, positive=True),
                     _border(p))


@declare(margin=_margin("gaussian_filter", _gaussian),
         profile=_profile("gaussian_filter", _gaussian, True))
def gaussian_filter(arrays: Sequence[np.ndarray], profiles: Sequence[dict],
                    params: Mapping[str, Any]) -> np.ndarray:
    """Gaussian-weighted mean of the valid pixels (``sigma``, ``truncate`` as scipy; floats)."""
    g = _gaussian("gaussian_filter", params)

    def window_sum(x: np.ndarray, cval: float) -> np.ndarray:
        return ndimage.gaussian_filter(x, (0, g.sigma, g.sigma), mode=g.border.mode, cval=cval,
                                       truncate=g.truncate)

    return _weighted_mean("gaussian_filter", window_sum, g.border.cval, arrays, profiles)


@dataclass(frozen=True)
class _Kernel:
    kernel: np.ndarray
    border: _Border

    @property
    def radius(self) -> int:
        return max(self.kernel.shape) // 2


def _kernel(op: str, params: Mapping[str, Any]) -> _Kernel:
    p = Params(op, params, ("kernel", "mode", "cval"))
    value = p.get("kernel")
    expected = "rows of numbers with an odd height and width, not all zero"
    try:
        kernel = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise p.error("kernel", expected, value) from None
    if (kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0
            or not np.isfinite(kernel).all() or not kernel.any()):
        raise p.error("kernel", expected, value)
    return _Kernel(kernel, _border(p))


@declare(margin=_margin("convolve", _kernel), profile=_profile("convolve", _kernel, True))
def convolve(arrays: Sequence[np.ndarray], profiles: Sequence[dict],
             params: Mapping[str, Any]) -> np.ndarray:
    """Convolution with ``kernel`` (rows of weights) as scipy.ndimage.convolve, nodata-aware.

    Non-negative weights: over nodata the remaining weights are scaled up to the kernel's sum.
    Any negative weight: nodata where a pixel under a non-zero weight is nodata.
    """
    k = _kernel("convolve", params)
    data, valid, profile = _input("convolve", arrays, profiles)

    def window_sum(x: np.ndarray, cval: float, kernel: np.ndarray = k.kernel) -> np.ndarray:
        return ndimage.convolve(x, kernel[np.newaxis], mode=k.border.mode, cval=cval)

    sums, weights = _normalised(window_sum, data, valid, k.border.cval)
    if (k.kernel >= 0).all():
        with np.errstate(invalid="ignore", divide="ignore"):
            values = sums * (k.kernel.sum() / weights)
        valid = valid & (weights > 0)
    else:
        values = sums
        holes = window_sum((~valid).astype(np.float64), 0.0, (k.kernel != 0).astype(np.float64))
        valid = valid & (holes == 0)
    return _finish(values, valid, profile, float_dtype(data.dtype))


@declare(margin=_margin("min_filter", _window), profile=_profile("min_filter", _window, False))
def min_filter(arrays: Sequence[np.ndarray], profiles: Sequence[dict],
               params: Mapping[str, Any]) -> np.ndarray:
    """Minimum of the valid pixels in a ``size`` x ``size`` window (the input's dtype)."""
    return _extreme("min_filter", True, arrays, profiles, params)


@declare(margin=_margin("max_filter", _window), profile=_profile("max_filter", _window, False))
def max_filter(arrays: Sequence[np.ndarray], profiles: Sequence[dict],
               params: Mapping[str, Any]) -> np.ndarray:
    """Maximum of the valid pixels in a ``size`` x ``size`` window (the input's dtype)."""
    return _extreme("max_filter", False, arrays, profiles, params)


def _extreme(op: str, lowest: bool, arrays: Sequence[np.ndarray], profiles: Sequence[dict],
             params: Mapping[str, Any]) -> np.ndarray:
    """Minimum (``lowest``) or maximum, with nodata replaced by the value that can never win."""
    window = _window(op, params)
    data, valid, profile = _input(op, arrays, profiles)
    info = np.finfo(data.dtype) if data.dtype.kind == "f" else np.iinfo(data.dtype)
    if window.border.mode == "constant" and not info.min <= window.border.cval <= info.max:
        raise ConfigError(f"{op}: param 'cval' must fit {data.dtype.name}, "
                          f"not {window.border.cval!r}")
    if data.dtype.kind == "f":
        loser = np.inf if lowest else -np.inf
    else:
        loser = info.max if lowest else info.min
    extreme = ndimage.minimum_filter if lowest else ndimage.maximum_filter
    filled = np.where(valid, data, np.asarray(loser, dtype=data.dtype))
    values = extreme(filled, size=(1, window.size, window.size), mode=window.border.mode,
                     cval=window.border.cval)
    return _finish(values, valid, profile, data.dtype)


def _padded(x: np.ndarray, radius: int, border: _Border) -> np.ndarray:
    """``x`` grown by ``radius`` on both image axes, as scipy's ``mode`` extends it."""
    width = ((0, 0), (radius, radius), (radius, radius))
    if border.mode == "constant":
        return np.pad(x, width, mode="constant", constant_values=border.cval)
    return np.pad(x, width, mode=_PAD_MODES[border.mode])


@declare(margin=_margin("median_filter", _window),
         profile=_profile("median_filter", _window, True))
def median_filter(arrays: Sequence[np.ndarray], profiles: Sequence[dict],
                  params: Mapping[str, Any]) -> np.ndarray:
    """Median of the valid pixels in a ``size`` x ``size`` window (float output).

    Fully valid windows go through ``scipy.ndimage.median_filter``; the few pixels whose window
    mixes data and nodata take ``nanmedian`` over their gathered window, a chunk at a time.
    """
    window = _window("median_filter", params)
    data, valid, profile = _input("median_filter", arrays, profiles)
    border, size = window.border, window.size
    values = np.where(valid, data, 0).astype(np.float64)
    medians = ndimage.median_filter(values, size=(1, size, size), mode=border.mode,
                                    cval=border.cval)
    holes = _box(size, border)((~valid).astype(np.float64), 0.0)
    mixed = np.nonzero(valid & (holes > 0))
    if mixed[0].size:
        padded = _padded(np.where(valid, values, np.nan), window.radius, border)
        windows = sliding_window_view(padded, (size, size), axis=(1, 2))
        for start in range(0, mixed[0].size, _MEDIAN_CHUNK):
            chunk = tuple(index[start:start + _MEDIAN_CHUNK] for index in mixed)
            medians[chunk] = np.nanmedian(windows[chunk].reshape(-1, size * size), axis=1)
    return _finish(medians, valid, profile, float_dtype(data.dtype))
