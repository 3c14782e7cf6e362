"""Reductions: a per-tile partial, an associative ``combine`` and a JSON-friendly ``finalize``.

Each reduction carries its ``combine`` and ``finalize`` as attributes, so naming it is enough.
Nodata pixels and NaN never count. Results are lists with one entry per band, made of plain
Python numbers, with ``None`` where a value is undefined (a band without a valid pixel).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from eoscale.errors import ConfigError
from eoscale.ops._common import Params, declare, is_number, nodata_of, single_input, valid_mask

StatsPartial = np.ndarray
"""Per band (rows): count, min, max, mean, sum of squared deviations from the mean."""


def _valid_values(op: str, arrays: Sequence[np.ndarray],
                  profiles: Sequence[dict]) -> list[np.ndarray]:
    """Each band's valid values, as 1-D arrays."""
    single_input(op, arrays)
    valid = valid_mask(arrays[0], nodata_of(profiles[0]))
    return [band[mask] for band, mask in zip(arrays[0], valid)]


def _number(value: Any) -> float | None:
    return float(value) if math.isfinite(value) else None


def combine_stats(a: StatsPartial, b: StatsPartial) -> StatsPartial:
    """Merge two stats partials (Chan et al.'s parallel update of mean and squared deviations)."""
    count_a, count_b = a[:, 0], b[:, 0]
    count = count_a + count_b
    share_b = np.divide(count_b, count, out=np.zeros_like(count), where=count > 0)
    delta = b[:, 3] - a[:, 3]
    mean = a[:, 3] + delta * share_b
    squares = a[:, 4] + b[:, 4] + delta ** 2 * count_a * share_b
    return np.column_stack([count, np.minimum(a[:, 1], b[:, 1]), np.maximum(a[:, 2], b[:, 2]),
                            mean, squares])


def finalize_stats(partial: StatsPartial, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per band: count, min, max, mean and std (population, ddof 0); None when count is 0."""
    out = []
    for count, low, high, mean, squares in partial:
        defined = count > 0
        out.append({
            "count": int(count),
            "min": _number(low) if defined else None,
            "max": _number(high) if defined else None,
            "mean": _number(mean) if defined else None,
            "std": _number(math.sqrt(squares / count)) if defined else None,
        })
    return out


@declare(margin=0, combine=combine_stats, finalize=finalize_stats)
def stats(arrays: Sequence[np.ndarray], profiles: Sequence[dict],
          params: Mapping[str, Any]) -> StatsPartial:
    """Per band count, min, max, mean and std of the valid pixels."""
    Params("stats", params, ())
    rows = []
    for values in _valid_values("stats", arrays, profiles):
        if values.size == 0:
            rows.append((0.0, math.inf, -math.inf, 0.0, 0.0))
            continue
        values = values.astype(np.float64)
        mean = values.mean()
        rows.append((values.size, values.min(), values.max(), mean, ((values - mean) ** 2).sum()))
    return np.array(rows, dtype=np.float64)


class Binned(NamedTuple):
    """Per band (rows): the count below ``low``, equal bins up to ``high``, the count above."""

    counts: np.ndarray
    low: np.ndarray
    high: np.ndarray


def combine_binned(a: Binned, b: Binned) -> Binned:
    """Add two binned partials over the same bins."""
    if a.counts.shape != b.counts.shape or not (np.array_equal(a.low, b.low)
                                                and np.array_equal(a.high, b.high)):
        raise ConfigError("cannot combine counts over different bins")
    return Binned(a.counts + b.counts, a.low, a.high)


def _pair(value: Any) -> tuple[float, float] | None:
    """``[low, high]`` or ``{min: low, max: high}`` as a pair with low < high, else None."""
    low: Any
    high: Any
    if isinstance(value, Mapping):
        low, high = value.get("min"), value.get("max")
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        low, high = value
    else:
        return None
    finite = is_number(low) and is_number(high) and math.isfinite(low) and math.isfinite(high)
    return (float(low), float(high)) if finite and low < high else None


def _ranges(p: Params, count: int, needed_for: str = "") -> np.ndarray:
    """The ``range`` param as one (low, high) row per band.

    Accepted: ``[low, high]`` or ``{min: low, max: high}`` (a band of a ``stats`` result) for
    every band, or a list of those with one per band (a whole ``stats`` result, or a
    ``percentiles`` result with two q values).
    """
    value = p.values.get("range")
    if value is None:
        raise ConfigError(f"{p.op}: param 'range' is required{needed_for}")
    pair = _pair(value)
    if pair is not None:
        return np.array([pair] * count)
    if isinstance(value, (list, tuple)) and len(value) == count:
        pairs = [_pair(item) for item in value]
        if all(pair is not None for pair in pairs):
            return np.array(pairs)
    raise p.error("range", f"[low, high] with low < high, {{min: low, max: high}}, or a list of "
                           f"those with one per band ({count})", value)


def _binned_check(settings: Callable[[Mapping[str, Any]], tuple]
                  ) -> Callable[[Mapping[str, Any], Sequence[str]], list[str]]:
    """What ``eoscale validate`` reports about the params of an op counted in bins (its
    ``settings``: bins, q; and ``range`` when given as numbers: one a stats result gives is
    checked when the run has it), before anything is computed."""

    def check(params: Mapping[str, Any], input_names: Sequence[str]) -> list[str]:
        try:
            p = settings(params)[0]
            value = p.values.get("range")
            if value is not None and _pair(value) is None and not (
                    isinstance(value, (list, tuple)) and value
                    and all(_pair(item) is not None for item in value)):
                raise p.error("range", "[low, high] with low < high, {min: low, max: high}, or "
                                       "a list of those with one per band", value)
        except ConfigError as error:
            return [str(error)]
        return []

    return check


def _binned(bands: Sequence[np.ndarray], ranges: np.ndarray, bins: int) -> Binned:
    rows = []
    for values, (low, high) in zip(bands, ranges):
        inside, _ = np.histogram(values.astype(np.float64), bins, (low, high))
        below, above = np.count_nonzero(values < low), np.count_nonzero(values > high)
        rows.append(np.concatenate([[below], inside, [above]]))
    return Binned(np.array(rows, dtype=np.int64).reshape(len(bands), bins + 2),
                  ranges[:, 0].copy(), ranges[:, 1].copy())


def _histogram_settings(params: Mapping[str, Any]) -> tuple[Params, int]:
    p = Params("histogram", params, ("bins", "range"))
    return p, p.integer("bins", 256, minimum=1)


def finalize_histogram(partial: Binned, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per band: ``edges`` (bins + 1), ``counts`` (last bin closed), ``below`` and ``above``."""
    bins = partial.counts.shape[1] - 2
    return [{"edges": np.linspace(low, high, bins + 1).tolist(), "counts": counts[1:-1].tolist(),
             "below": int(counts[0]), "above": int(counts[-1])}
            for counts, low, high in zip(partial.counts, partial.low, partial.high)]


@declare(margin=0, combine=combine_binned, finalize=finalize_histogram,
         check=_binned_check(_histogram_settings))
def histogram(arrays: Sequence[np.ndarray], profiles: Sequence[dict],
              params: Mapping[str, Any]) -> Binned:
    """Per band counts of the valid pixels in ``bins`` equal bins over ``range`` (as np.histogram
    on float64 values)."""
    p, bins = _histogram_settings(params)
    bands = _valid_values("histogram", arrays, profiles)
    return _binned(bands, _ranges(p, len(bands)), bins)


def _percentile_settings(params: Mapping[str, Any]) -> tuple[Params, list[float], int]:
    p = Params("percentiles", params, ("q", "range", "bins"))
    q = p.get("q")
    if (not isinstance(q, (list, tuple)) or not q
            or not all(is_number(x) and 0 <= x <= 100 for x in q)):
        raise p.error("q", "a non-empty list of percentiles from 0 to 100", q)
    return p, [float(x) for x in q], p.integer("bins", 65536, minimum=1)


def _order_statistic(counts: np.ndarray, low: float, high: float) -> Callable[[int], float | None]:
    """The k-th smallest value (0-based) as the middle of its bin; None outside [low, high]."""
    width = (high - low) / (counts.size - 2)
    cumulative = counts[0] + np.cumsum(counts[1:-1])

    def value(k: int) -> float | None:
        if k < counts[0] or k >= cumulative[-1]:
            return None
        return low + (int(np.searchsorted(cumulative, k, side="right")) + 0.5) * width

    return value


def _band_percentiles(counts: np.ndarray, low: float, high: float, quantiles: Sequence[float],
                      band: int) -> list[float | None]:
    """One band's percentiles, interpolated exactly as numpy's default method ('linear')."""
    total = int(counts.sum())
    if total == 0:
        return [None] * len(quantiles)
    order = _order_statistic(counts, low, high)
    values: list[float | None] = []
    for q in quantiles:
        virtual = (total - 1) * (q / 100)
        first = math.floor(virtual)
        a, b = order(first), order(min(first + 1, total - 1))
        if a is None or b is None:
            side = "below" if first < counts[0] else "above"
            raise ConfigError(f"percentiles: the {q:g}th percentile of band {band} lies {side} "
                              f"param 'range' [{low}, {high}]; widen the range")
        gamma = virtual - first
        diff = b - a
        values.append(b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma)
    return values


def finalize_percentiles(partial: Binned, params: Mapping[str, Any]) -> list[list[float | None]]:
    """Per band, the percentiles in the order of ``q``."""
    _, quantiles, _ = _percentile_settings(params)
    return [_band_percentiles(counts, float(low), float(high), quantiles, band)
            for band, (counts, low, high) in enumerate(zip(partial.counts, partial.low,
                                                           partial.high), 1)]


@declare(margin=0, combine=combine_binned, finalize=finalize_percentiles,
         check=_binned_check(_percentile_settings))
def percentiles(arrays: Sequence[np.ndarray], profiles: Sequence[dict],
                params: Mapping[str, Any]) -> Binned:
    """Per band percentiles ``q`` (0..100) of the valid pixels.

    Exact (equal to ``np.percentile``) for 8- and 16-bit integer images, which are counted per
    value. Other images are counted in ``bins`` (default 65536) equal bins over ``range`` and each
    order statistic is taken as the middle of its bin: the error is at most half a bin,
    ``(high - low) / (2 * bins)``. A percentile outside the range is an error.
    """
    p, _, bins = _percentile_settings(params)
    bands = _valid_values("percentiles", arrays, profiles)
    dtype = arrays[0].dtype
    if dtype.kind in "iu" and dtype.itemsize <= 2:
        info = np.iinfo(dtype)
        size = 1 << (8 * dtype.itemsize)
        counts = np.zeros((len(bands), size + 2), dtype=np.int64)
        for row, values in zip(counts, bands):
            row[1:-1] = np.bincount(values.astype(np.int64) - info.min, minlength=size)
        return Binned(counts, np.full(len(bands), info.min - 0.5),
                      np.full(len(bands), info.max + 0.5))
    ranges = _ranges(p, len(bands), f" for {dtype.name} images (only 8- and 16-bit integers are "
                                    "counted exactly); a stats result gives one")
    return _binned(bands, ranges, bins)


UniquePartial = list[tuple[np.ndarray, np.ndarray]]
"""Per band: the distinct values, sorted, and their counts."""


def combine_unique(a: UniquePartial, b: UniquePartial) -> UniquePartial:
    """Merge the value counts of two partials, band by band."""
    merged = []
    for (values_a, counts_a), (values_b, counts_b) in zip(a, b):
        values, inverse = np.unique(np.concatenate([values_a, values_b]), return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate([counts_a, counts_b]),
                             minlength=values.size)
        merged.append((values, counts.astype(np.int64)))
    return merged


def finalize_unique(partial: UniquePartial, params: Mapping[str, Any]) -> list[dict[Any, int]]:
    """Per band, a mapping value -> count in increasing value order."""
    return [dict(zip(values.tolist(), counts.tolist())) for values, counts in partial]


@declare(margin=0, combine=combine_unique, finalize=finalize_unique)
def unique_counts(arrays: Sequence[np.ndarray], profiles: Sequence[dict],
                  params: Mapping[str, Any]) -> UniquePartial:
    """Per band, how many valid pixels hold each value (for class maps)."""
    Params("unique_counts", params, ())
    return [np.unique(values, return_counts=True)
            for values in _valid_values("unique_counts", arrays, profiles)]
