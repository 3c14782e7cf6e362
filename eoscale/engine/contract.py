"""The callable contract, shared by the engine, the pipeline layer and the built-in operations.

A *map* callable is EOScale 1.0's: ``fn(arrays, profiles, params) -> ndarray | list[ndarray]``, where
``arrays`` are read-only views ``(bands, h, w)`` of each input over the tile's read window (core plus
margin, clipped at the image edges; writable private arrays with ``writable_inputs``), ``profiles`` their rasterio-style profiles and ``params`` a dict.
Each result has the read window's height and width; the engine keeps the core.

A *reduce* callable has the same signature and returns a partial result for its tile; ``combine(a, b)``
merges two partials (it must be associative; no neutral element is assumed) and the optional
``finalize(partial, params)`` turns the merged partial into the result.

A callable may declare, as attributes:

- ``margin``: an ``int`` or a function ``params -> int``, the stability margin it needs;
- ``profile``: a function ``(profiles, params) -> profile | list[profile]`` for its outputs;
- ``combine`` and ``finalize``: for a reduce callable, so that naming the callable is enough;
- ``writable_inputs = True``: each tile gets private arrays it may write into (copy-on-write
  mappings of its read window) instead of read-only views; its writes reach no other tile;
- ``wants_input_names = True``: the pipeline runner then adds ``params["_inputs"]``, the names of
  the step's inputs in order (``band_math`` uses them as the names in its expression);
- ``check``: a function ``(params, input_names) -> list[str]`` that ``eoscale validate`` calls to
  report problems with the params before anything runs;
- ``memory_factor``: a number or a function ``params -> number``, the peak memory of a tile beyond
  its inputs (temporaries and results) as a multiple of the inputs' bytes over the read window;
  the run plan's memory estimate uses it (without it: as much again as the inputs, plus the
  results).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from eoscale.engine.tiling import check_margin
from eoscale.errors import USER_ERRORS, ConfigError, ResultError, StepError
from eoscale.io.raster import default_output_profile, nodata_for

MapFn = Callable[[Sequence[np.ndarray], Sequence[dict], dict], "np.ndarray | Sequence[np.ndarray]"]
ReduceFn = Callable[[Sequence[np.ndarray], Sequence[dict], dict], Any]
CombineFn = Callable[[Any, Any], Any]
FinalizeFn = Callable[[Any, dict], Any]
ProfileFn = Callable[[Sequence[dict], dict], "dict | Sequence[dict]"]


def _declared_value(fn: Callable, attribute: str, params: Mapping[str, Any]) -> Any:
    """A value a callable declares as an attribute, a constant or a function of the params;
    None if it declares none."""
    value = getattr(fn, attribute, None)
    if callable(value):
        value = value(dict(params))
    return value


def declared_margin(fn: Callable, params: Mapping[str, Any]) -> int | None:
    """The margin a callable declares for these params (``fn.margin``), or None if it declares none."""
    margin = _declared_value(fn, "margin", params)
    return None if margin is None else int(margin)


def step_margin(fn: Callable, params: Mapping[str, Any], stated: int | None, *,
                label: str | None = None) -> int:
    """The margin a step runs with: the one stated for it, else the callable's declared one, else 0.

    Raises :class:`~eoscale.errors.ConfigError` when the declared margin is not a non-negative
    integer, when the margin function raises, or when the stated margin is smaller than the
    declared one. Both the run plan and the engine decide margins here. Messages call the
    callable ``label`` (its dotted path in a pipeline), else its name.
    """
    name = label or getattr(fn, "__name__", "the callable")
    declared_value = getattr(fn, "margin", None)
    if declared_value is not None and not callable(declared_value) and not (
            isinstance(declared_value, numbers.Real) and float(declared_value).is_integer()):
        raise ConfigError(f"{name} declares margin {declared_value!r}; a margin is an integer "
                          ">= 0, or a function of the params that returns one")
    try:
        needed = declared_margin(fn, params)
    except USER_ERRORS as exc:  # the user's margin function; reported with its name
        raise ConfigError(f"the margin of {name} raised {type(exc).__name__}: {exc}") from exc
    if needed is not None and needed < 0:
        raise ConfigError(f"{name} declares margin {needed}; a margin is >= 0")
    if stated is None:
        return needed or 0
    check_margin(stated)
    if needed is not None and stated < needed:
        raise ConfigError(f"margin {stated} is smaller than the {needed} that {name} needs")
    return stated


def unplanned_margin(fn: Callable, params: Mapping[str, Any], stated: int | None,
                     where: str) -> int:
    """The margin the engine runs a step (or a chain's stage) with when it was given no tile
    layout, nor a margin decided for it: :func:`step_margin`, its errors naming ``where``
    (``"step 'name'"``). The engine's one place that decides a margin."""
    try:
        return step_margin(fn, params, stated)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def output_profiles(step: str, profile_fn: ProfileFn, profiles: Sequence[Mapping[str, Any]],
                    params: Mapping[str, Any], height: int, width: int) -> list[dict[str, Any]]:
    """A map's output profiles from its profile function: each over a copy of the first input's
    profile (one band unless it says otherwise), on the inputs' ``height`` x ``width`` grid;
    what the function raises, or a profile that is no mapping with a dtype or changes the grid,
    is an error naming ``step``."""
    try:
        made = profile_fn([dict(p) for p in profiles], dict(params))
    except USER_ERRORS as exc:  # a user error, reported with its place
        raise StepError(f"the profile function raised {type(exc).__name__}: {exc}",
                        step=step) from exc
    made = [made] if isinstance(made, Mapping) else list(made)
    out = []
    for position, profile in enumerate(made, start=1):
        if not isinstance(profile, Mapping) or "dtype" not in profile:
            raise ResultError(f"output profile {position} must be a mapping with a dtype",
                              step=step)
        grown = {**profiles[0], "count": 1, **profile}
        if (grown.get("height"), grown.get("width")) != (height, width):
            raise ResultError(
                f"output profile {position} is {grown.get('height')} x {grown.get('width')}, "
                f"the inputs are {height} x {width} (a map keeps the grid)", step=step)
        out.append(grown)
    return out


def nodata_problem(profile: Mapping[str, Any]) -> str | None:
    """Why ``profile``'s nodata cannot be stored in its dtype (NaN in integers, -1 in uint8,
    text), None when it can or there is none."""
    nodata = profile.get("nodata")
    if nodata is None:
        return None
    try:
        dtype = np.dtype(profile.get("dtype"))
        if nodata_for(nodata, dtype) is not None:
            return None
    except (TypeError, ValueError):
        pass
    return (f"its nodata {nodata!r} cannot be stored in its dtype {profile.get('dtype')!r}: "
            "give a value the dtype holds, or nodata None")


def probed_profiles(template: Mapping[str, Any],
                    results: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """A map's output profiles told by its first tile's ``results``, for a callable without a
    profile function: copies of ``template`` (the first input's) with each result's band count
    and dtype."""
    return [default_output_profile(template, array.shape[0] if array.ndim == 3 else 1,
                                   array.dtype) for array in results]


def declared_memory_factor(fn: Callable, params: Mapping[str, Any]) -> float | None:
    """The peak memory a callable declares for a tile (``fn.memory_factor``: a number or a
    function ``params -> number``) beyond its inputs, as a multiple of its inputs' bytes over the
    read window; None if it declares none."""
    factor = _declared_value(fn, "memory_factor", params)
    return None if factor is None else float(factor)


def declared(fn: Callable, attribute: str) -> Callable | None:
    """A function a callable carries as an attribute (``profile``, ``combine``, ``finalize``)."""
    value = getattr(fn, attribute, None)
    return value if callable(value) else None


def declared_writable_inputs(fn: Callable, asked: bool | None = None) -> bool:
    """Whether a step's tiles get writable private inputs: ``asked``, else ``fn.writable_inputs``."""
    value = getattr(fn, "writable_inputs", False) if asked is None else asked
    if not isinstance(value, bool):
        raise ConfigError(f"writable_inputs must be true or false, not {value!r}")
    return value
