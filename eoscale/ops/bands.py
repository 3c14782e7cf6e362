"""Band plumbing: ``select_bands``, ``stack`` and ``cast`` (no wrap-around, ever)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from eoscale.errors import ConfigError
from eoscale.ops._common import (Params, convert, declare, nodata_fits, nodata_of, single_input,
                                 valid_mask, with_nodata)


def _bands(params: Mapping[str, Any], count: int | None = None) -> list[int]:
    p = Params("select_bands", params, ("bands",))
    bands = p.get("bands")
    if (not isinstance(bands, (list, tuple)) or not bands
            or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in bands)):
        raise p.error("bands", "a non-empty list of band numbers from 1", bands)
    if count is not None and max(bands) > count:
        raise ConfigError(f"select_bands: param 'bands' asks for band {max(bands)} but the input "
                          f"has {count} band{'s' if count > 1 else ''}")
    return list(bands)


def _select_profile(profiles: Sequence[dict], params: Mapping[str, Any]) -> dict:
    return {**profiles[0], "count": len(_bands(params, int(profiles[0]["count"])))}


@declare(margin=0, profile=_select_profile)
def select_bands(arrays: Sequence[np.ndarray], profiles: Sequence[dict],
                 params: Mapping[str, Any]) -> np.ndarray:
    """The bands listed in ``bands`` (1-based, in that order, repeats allowed) of one input."""
    single_input("select_bands", arrays)
    return arrays[0][[band - 1 for band in _bands(params, arrays[0].shape[0])]]


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (math.isnan(a) and math.isnan(b))


def _stack_output(profiles: Sequence[dict],
                  params: Mapping[str, Any]) -> tuple[np.dtype, float | None]:
    """The stack's dtype (numpy's result type of the inputs') and its nodata value."""
    p = Params("stack", params, ("nodata",))
    if not profiles:
        raise ConfigError("stack: needs at least one input")
    dtype = np.result_type(*(np.dtype(profile["dtype"]) for profile in profiles))
    nodata = p.nodata("nodata", dtype)
    if nodata is not None:
        return dtype, nodata
    values = [nodata_of(profile) for profile in profiles]
    if not all(_same(value, values[0]) for value in values):
        raise ConfigError("stack: the inputs' nodata values differ "
                          f"({', '.join(map(str, values))}); set param 'nodata'")
    return dtype, values[0]


def _stack_profile(profiles: Sequence[dict], params: Mapping[str, Any]) -> dict:
    dtype, nodata = _stack_output(profiles, params)
    count = sum(int(profile["count"]) for profile in profiles)
    return {**profiles[0], "dtype": dtype.name, "count": count, "nodata": nodata}


@declare(margin=0, profile=_stack_profile)
def stack(arrays: Sequence[np.ndarray], profiles: Sequence[dict],
          params: Mapping[str, Any]) -> np.ndarray:
    """All bands of all inputs, in order, as numpy's common dtype of the inputs.

    The output nodata is ``nodata`` when given (every input's nodata pixels are set to it), else
    the inputs' common nodata value; inputs with different nodata values need ``nodata``.
    """
    dtype, nodata = _stack_output(profiles, params)
    if nodata is None:
        return np.concatenate(arrays).astype(dtype, copy=False)
    return np.concatenate([
        with_nodata(array, valid_mask(array, nodata_of(profile)), dtype, nodata)
        for array, profile in zip(arrays, profiles)
    ])


def _cast_output(profile: Mapping[str, Any],
                 params: Mapping[str, Any]) -> tuple[Params, np.dtype, float | None]:
    """Checked params, the target dtype and the output nodata.

    The output nodata is ``nodata`` when given, else the input's when it fits the target dtype,
    else NaN for a float target and none for an integer one.
    """
    p = Params("cast", params, ("dtype", "scale", "offset", "clip", "nodata"))
    dtype = p.dtype("dtype")
    nodata = p.nodata("nodata", dtype)
    if nodata is None:
        nodata = nodata_of(profile)
        if nodata is None or not nodata_fits(nodata, dtype):
            nodata = math.nan if dtype.kind == "f" else None
    return p, dtype, nodata


def _cast_profile(profiles: Sequence[dict], params: Mapping[str, Any]) -> dict:
    _, dtype, nodata = _cast_output(profiles[0], params)
    return {**profiles[0], "dtype": dtype.name, "nodata": nodata}


@declare(margin=0, profile=_cast_profile)
def cast(arrays: Sequence[np.ndarray], profiles: Sequence[dict],
         params: Mapping[str, Any]) -> np.ndarray:
    """``value * scale + offset`` as ``dtype``; nodata and NaN pixels become the output nodata.

    Integer targets round to nearest. A value out of the target's range is an error unless
    ``clip`` is true; NaN or nodata going to an integer dtype without a nodata value is an error.
    """
    single_input("cast", arrays)
    p, dtype, nodata = _cast_output(profiles[0], params)
    scale, offset, clip = p.number("scale", 1.0), p.number("offset", 0.0), p.flag("clip", False)
    data = arrays[0]
    valid = valid_mask(data, nodata_of(profiles[0]))
    if data.dtype.kind in "iu" and scale == 1 and offset == 0:
        values = data
    else:
        with np.errstate(invalid="ignore", over="ignore"):
            values = data.astype(np.float64) * scale + offset
    return convert("cast", values, valid, dtype, nodata, clip,
                   "set param 'clip' to true to clip them")
