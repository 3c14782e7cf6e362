"""What the operations share: params, declared attributes, nodata masks, dtype conversion."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from eoscale.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

#: Output dtypes an operation may be asked for (those GeoTIFF can hold).
DTYPES: tuple[str, ...] = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
                           "float32", "float64")


class _Missing(enum.Enum):
    REQUIRED = 0


REQUIRED = _Missing.REQUIRED


def declare(*, margin: int | Callable[[dict], int] | None = None,
            profile: Callable[..., Any] | None = None, combine: Callable[..., Any] | None = None,
            finalize: Callable[..., Any] | None = None,
            wants_input_names: bool | None = None,
            check: Callable[..., list[str]] | None = None) -> Callable[[F], F]:
    """Attach the contract's attributes to an op.

    ``wants_input_names`` asks the pipeline runner for the step's input names, in order, as
    ``params["_inputs"]``.
    """
    attributes = {"margin": margin, "profile": profile, "combine": combine, "finalize": finalize,
                  "wants_input_names": wants_input_names, "check": check}

    def mark(fn: F) -> F:
        for name, value in attributes.items():
            if value is not None:
                setattr(fn, name, value)
        return fn

    return mark


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


class Params:
    """An op's params, read through checks raising :class:`ConfigError` naming the op and the param.

    ``None`` counts as absent. Keys starting with ``_`` are reserved for the runner (``_inputs``)
    and never reported as unknown.
    """

    def __init__(self, op: str, params: Mapping[str, Any], known: Collection[str]):
        if not isinstance(params, Mapping):
            raise ConfigError(f"{op}: params must be a mapping, not {type(params).__name__}")
        unknown = sorted(str(key) for key in params
                         if not str(key).startswith("_") and key not in known)
        if unknown:
            expected = ", ".join(known) if known else "none"
            raise ConfigError(f"{op}: unknown param {', '.join(map(repr, unknown))} "
                              f"(expected: {expected})")
        self.op = op
        self.values = params

    def error(self, name: str, expected: str, value: Any) -> ConfigError:
        return ConfigError(f"{self.op}: param '{name}' must be {expected}, not {value!r}")

    def get(self, name: str, default: Any = REQUIRED) -> Any:
        value = self.values.get(name)
        if value is not None:
            return value
        if default is REQUIRED:
            raise ConfigError(f"{self.op}: param '{name}' is required")
        return default

    def integer(self, name: str, default: int | _Missing = REQUIRED, *, minimum: int | None = None,
                odd: bool = False) -> int:
        value = self.get(name, default)
        expected = "an odd integer" if odd else "an integer"
        if minimum is not None:
            expected += f" >= {minimum}"
        if (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
                or (minimum is not None and value < minimum) or (odd and value % 2 == 0)):
            raise self.error(name, expected, value)
        return int(value)

    def number(self, name: str, default: float | _Missing = REQUIRED, *,
               minimum: float | None = None, positive: bool = False) -> float:
        value = self.get(name, default)
        if positive:
            expected = "a positive number"
        elif minimum is not None:
            expected = f"a number >= {minimum}"
        else:
            expected = "a finite number"
        if (not is_number(value) or not math.isfinite(value) or (positive and value <= 0)
                or (minimum is not None and value < minimum)):
            raise self.error(name, expected, value)
        return float(value)

    def flag(self, name: str, default: bool) -> bool:
        value = self.get(name, default)
        if not isinstance(value, (bool, np.bool_)):
            raise self.error(name, "true or false", value)
        return bool(value)

    def choice(self, name: str, choices: Sequence[str], default: str) -> str:
        value = self.get(name, default)
        if value not in choices:
            raise self.error(name, "one of " + ", ".join(choices), value)
        return str(value)

    def dtype(self, name: str, default: str | _Missing = REQUIRED) -> np.dtype:
        value = self.get(name, default)
        try:
            dtype = np.dtype(value)
        except TypeError:
            dtype = None
        if dtype is None or dtype.name not in DTYPES:
            raise self.error(name, "one of " + ", ".join(DTYPES), value)
        return dtype

    def nodata(self, name: str, dtype: np.dtype) -> float | None:
        """An optional nodata value, which must fit ``dtype`` (NaN only fits float dtypes)."""
        value = self.get(name, None)
        if value is None:
            return None
        if not is_number(value) or not nodata_fits(value, dtype):
            raise self.error(name, f"a number that fits {dtype.name}", value)
        return float(value) if dtype.kind == "f" else int(value)


def single_input(op: str, arrays: Sequence[Any]) -> None:
    if len(arrays) != 1:
        raise ConfigError(f"{op}: takes one input, got {len(arrays)}")


def nodata_of(profile: Mapping[str, Any]) -> float | None:
    value = profile.get("nodata")
    return None if value is None else float(value)


def nodata_fits(value: float, dtype: np.dtype) -> bool:
    """Whether ``value`` can be stored exactly in ``dtype`` (NaN and infinities only in floats)."""
    if dtype.kind == "f":
        return bool(math.isnan(value) or math.isinf(value) or abs(value) <= np.finfo(dtype).max)
    info = np.iinfo(dtype)
    return math.isfinite(value) and float(value).is_integer() and info.min <= value <= info.max


def default_nodata(dtype: np.dtype) -> float:
    """NaN for float dtypes, the smallest value of integer ones."""
    return math.nan if dtype.kind == "f" else int(np.iinfo(dtype).min)


def kept_nodata(profile: Mapping[str, Any], dtype: np.dtype) -> float | None:
    """Nodata of an op that keeps its input's mask: the input's, else NaN for float outputs."""
    nodata = nodata_of(profile)
    if nodata is None and dtype.kind == "f":
        return math.nan
    return nodata


def valid_mask(array: np.ndarray, nodata: float | None) -> np.ndarray:
    """True where a pixel holds data: neither NaN nor equal to ``nodata``."""
    valid = ~np.isnan(array) if array.dtype.kind == "f" else np.ones(array.shape, dtype=bool)
    if nodata is not None and not math.isnan(nodata):
        valid &= array != nodata
    return valid


def float_dtype(dtype: np.dtype) -> np.dtype:
    """float64 stays float64; every other input gives float32."""
    return np.dtype("float64") if dtype == np.float64 else np.dtype("float32")


def with_nodata(values: np.ndarray, valid: np.ndarray, dtype: np.dtype,
                nodata: float | None) -> np.ndarray:
    """``values`` as ``dtype`` with ``nodata`` where not ``valid`` (values must fit the dtype)."""
    out = np.where(valid, values, 0).astype(dtype, copy=False)
    if nodata is not None:
        out[~valid] = nodata
    return out


def _float_bounds(dtype: np.dtype) -> tuple[float, float]:
    """The range of ``dtype`` as floats, shrunk so that every float inside converts exactly."""
    if dtype.kind == "f":
        info = np.finfo(dtype)
        return float(info.min), float(info.max)
    iinfo = np.iinfo(dtype)
    low, high = float(iinfo.min), float(iinfo.max)
    if high > iinfo.max:
        high = float(np.nextafter(high, -math.inf))
    return low, high


def convert(op: str, values: np.ndarray, valid: np.ndarray, dtype: np.dtype,
            nodata: float | None, clip: bool, hint: str) -> np.ndarray:
    """Convert ``values`` to ``dtype`` with ``nodata`` where not ``valid``, never wrapping around.

    Floats going to an integer dtype are rounded to the nearest integer (halves to even). A valid
    value outside the dtype's range is an error unless ``clip``; ``hint`` says how to fix it.
    Integer values are compared as integers, so 64-bit inputs lose no precision.
    """
    if nodata is None and not valid.all():
        raise ConfigError(f"{op}: {np.count_nonzero(~valid)} pixels are nodata or NaN but the "
                          "output has no nodata value; set param 'nodata'")
    if values.dtype.kind == "f" and dtype.kind != "f":
        values = np.rint(values)
    if values.dtype.kind in "iu" and np.can_cast(values.dtype, dtype):
        return with_nodata(values, valid, dtype, nodata)
    if values.dtype.kind in "iu":
        info = np.iinfo(dtype) if dtype.kind in "iu" else np.finfo(dtype)
        source = np.iinfo(values.dtype)
        low, high = max(info.min, source.min), min(info.max, source.max)
    else:
        low, high = _float_bounds(dtype)
    with np.errstate(invalid="ignore"):
        inside = (values >= low) & (values <= high)
        if dtype.kind == "f":
            inside |= ~np.isfinite(values)
    outside = valid & ~inside
    if outside.any():
        bad = values[outside]
        if not clip or np.isnan(bad).any():
            raise ConfigError(f"{op}: {bad.size} values fall outside the {dtype.name} range "
                              f"[{low}, {high}] (from {bad.min()} to {bad.max()}); {hint}")
        values = np.where(outside, np.clip(values, low, high), values)
    return with_nodata(values, valid, dtype, nodata)
