"""Reading a pipeline's ``inputs:`` (rasters, band stacks, STAC Items' assets, by name) and its
working ``grid:``."""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rasterio.crs import CRS
from rasterio.errors import CRSError

from eoscale.errors import did_you_mean
from eoscale.io.paths import RasterLocation
from eoscale.io.sources import RESAMPLINGS as WARP_RESAMPLINGS
from eoscale.io.stac import ORDERS, Interval, parse_interval
from eoscale.pipeline import keys
from eoscale.pipeline.document import KeyPath
from eoscale.pipeline.spec import GridSpec, InputSpec, StacInput
from eoscale.pipeline.values import ValueReader, describe, misspelt

#: The keys of an input's long form that say where its pixels are: exactly one is given.
WHERE_KEYS = ("path", "bands", "stac")
#: The keys that go with ``stac``.
STAC_KEYS = ("assets", "scale", "bbox", "datetime", "order")


def read_inputs(r: ValueReader, value: Any, base: Path) -> dict[str, InputSpec] | None:
    """The inputs by name; None when ``inputs:`` is not a mapping with at least one."""
    raw = r.mapping(value, ("inputs",), None, "a mapping of input names to raster files",
                    empty=False)
    if raw is None:
        return None
    inputs = {}
    for name, item in raw.items():
        path = ("inputs", name)
        stac = None
        if isinstance(item, Mapping):
            files, resampling, stac = _input_entry(r, item, path, base)
        else:
            files, resampling = (r.raster_file(item, path, base),), "nearest"
        if r.name(name, path, None, key=True) is not None:  # kept, so steps can name it
            first = files[0] if files and files[0] is not None else base
            bands = tuple(file or base for file in files) if len(files) > 1 else ()
            inputs[name] = InputSpec(name, first, r.at(path), bands, resampling, stac)
    return inputs


def _input_entry(r: ValueReader, value: Mapping[str, Any], path: KeyPath, base: Path,
                 ) -> tuple[tuple[RasterLocation | None, ...], str, StacInput | None]:
    """An input's long form: ``{path: ...}``, ``{bands: [...]}`` or ``{stac: ..., assets:
    [...], scale: ...}``, and ``resampling``. A STAC input's one file is its Item's JSON."""
    entry = r.mapping(value, path, None, "a mapping") or {}
    r.check_keys(entry, path, keys.INPUT, None)
    resampling = entry.get("resampling")
    if resampling is None:
        resampling = "nearest"
    elif resampling not in WARP_RESAMPLINGS:
        text = isinstance(resampling, str)
        shown = repr(resampling) if text else describe(resampling)
        hint = did_you_mean(resampling, WARP_RESAMPLINGS) if text else ""
        r.report((*path, "resampling"), f"unknown resampling {shown}{hint}; expected one "
                                        f"of {', '.join(WARP_RESAMPLINGS)}")
        resampling = "nearest"
    given = [key for key in WHERE_KEYS if entry.get(key) is not None]
    if len(given) > 1 or not (given or misspelt(entry, keys.INPUT.keys) & set(WHERE_KEYS)):
        found = " and ".join(f"'{key}'" for key in given) or "neither"
        r.report(path, f"an input has exactly one of 'path' (a file) or 'bands' (a list of "
                       f"files), found {found}; or 'stac' with 'assets' (a STAC Item's assets "
                       f"as bands)")
    if "stac" not in given:
        for key in STAC_KEYS:
            if entry.get(key) is not None:
                r.report((*path, key), f"'{key}' goes with 'stac' (the assets of a STAC Item)",
                         key=True)
    if "path" in given:
        return (r.raster_file(entry["path"], (*path, "path"), base),), resampling, None
    if "bands" in given:
        bands = entry["bands"]
        if not isinstance(bands, (list, tuple)) or not bands:
            r.report((*path, "bands"), f"expected a non-empty list of files, one per "
                                       f"band, found {describe(bands)}")
            return (), resampling, None
        return tuple(r.raster_file(item, (*path, "bands", index), base)
                     for index, item in enumerate(bands)), resampling, None
    if "stac" in given:
        return _stac_entry(r, entry, path, base, resampling)
    return (), resampling, None


def _stac_entry(r: ValueReader, entry: Mapping[str, Any], path: KeyPath, base: Path,
                resampling: str) -> tuple[tuple[RasterLocation | None, ...], str, StacInput | None]:
    """``{stac: ITEM, assets: [NAME, ...], scale: BOOL}``, and for a mosaic ``bbox``,
    ``datetime``, ``order``: the Item's (or ItemCollection's) location (a file made absolute,
    an address as written) and the assets' names, read when the run is planned."""
    item = r.raster_file(entry["stac"], (*path, "stac"), base)
    names = entry.get("assets")
    if names is None:
        if "assets" not in misspelt(entry, keys.INPUT.keys):
            r.report(path, "missing key 'assets' (the names of the STAC Item's assets to read "
                           "as bands, in order)")
        return (item,), resampling, None
    if not isinstance(names, (list, tuple)) or not names:
        r.report((*path, "assets"), f"expected a non-empty list of asset names, found "
                                    f"{describe(names)}")
        return (item,), resampling, None
    assets = [r.text(name, (*path, "assets", index), None, "an asset name")
              for index, name in enumerate(names)]
    scale = entry.get("scale")
    scale = False if scale is None else r.boolean(scale, (*path, "scale"), None)
    bbox = None if entry.get("bbox") is None else _bbox(r, entry["bbox"], (*path, "bbox"))
    when = entry.get("datetime")
    if isinstance(when, (datetime.date, datetime.datetime)):  # YAML reads a bare date as one
        when = when.isoformat()
    interval = None if when is None else _interval(r, when, (*path, "datetime"))
    order = entry.get("order")
    if order is not None and order not in ORDERS:
        text = isinstance(order, str)
        shown = repr(order) if text else describe(order)
        hint = did_you_mean(order, ORDERS) if text else ""
        r.report((*path, "order"), f"unknown order {shown}{hint}; expected "
                                   f"{' or '.join(ORDERS)} (which Items fill pixels first)")
        order = None
    if (item is None or None in assets or scale is None
            or (entry.get("bbox") is not None and bbox is None)
            or (when is not None and interval is None)):
        return (item,), resampling, None
    where = tuple(r.at((*path, "assets", index)) for index in range(len(assets)))
    return (item,), resampling, StacInput(item, tuple(a for a in assets if a), scale, where,
                                          bbox, when, interval, order)


def _bbox(r: ValueReader, value: Any, path: KeyPath) -> tuple[float, float, float, float] | None:
    """``[west, south, east, north]`` in WGS84 degrees (not across the antimeridian)."""
    numbers = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)
               and math.isfinite(v)] if isinstance(value, (list, tuple)) else []
    if not isinstance(value, (list, tuple)) or len(value) != 4 or len(numbers) != 4:
        r.report(path, f"expected 4 numbers [west, south, east, north] (WGS84 degrees), found "
                       f"{describe(value)}")
        return None
    west, south, east, north = (float(v) for v in numbers)
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        r.report(path, f"a bbox [west, south, east, north] in degrees needs -180 <= west < "
                       f"east <= 180 and -90 <= south < north <= 90, found {list(value)!r}")
        return None
    return west, south, east, north


def _interval(r: ValueReader, value: Any, path: KeyPath) -> Interval | None:
    """A datetime interval (:func:`~eoscale.io.stac.parse_interval`)."""
    text = r.text(value, path, None, "a datetime interval like '2024-06-01/2024-06-30'")
    if text is None:
        return None
    try:
        return parse_interval(text)
    except ValueError as error:
        r.report(path, str(error))
        return None


def read_grid(r: ValueReader, value: Any,
              inputs: Mapping[str, InputSpec] | None) -> GridSpec | None:
    """The working grid: ``{like: NAME}``, ``{like: NAME, resolution: ...}`` or
    ``{crs: ..., resolution: ..., bounds: [...]}``."""
    path: KeyPath = ("grid",)
    raw = r.mapping(value, path, None, "a mapping like {like: NAME} or {crs: ..., "
                                       "resolution: ..., bounds: [left, bottom, right, top]}")
    if raw is None:
        return None
    r.check_keys(raw, path, keys.GRID, None)
    written = set(raw) | misspelt(raw, keys.GRID.keys)  # a misspelt key is not also missing
    like = None if raw.get("like") is None else r.name(raw["like"], (*path, "like"), None)
    if like is not None and inputs is not None and like not in inputs:
        r.report((*path, "like"), f"unknown input '{like}'{did_you_mean(like, inputs)}")
    crs = None if raw.get("crs") is None else _crs(r, raw["crs"], (*path, "crs"))
    resolution = (None if raw.get("resolution") is None
                  else _resolution(r, raw["resolution"], (*path, "resolution")))
    bounds = None if raw.get("bounds") is None else _bounds(r, raw["bounds"], (*path, "bounds"))
    if "like" in written:
        extra = [f"'{key}'" for key in ("crs", "bounds") if key in raw]
        if extra:
            r.report(path, f"'like' takes the CRS and bounds of its input: remove "
                           f"{' and '.join(extra)} (or 'like')")
    elif not any(key in written for key in keys.GRID.keys):
        r.report(path, "missing key 'like' (or 'crs', 'resolution' and 'bounds')")
    else:
        for key in ("crs", "resolution", "bounds"):
            if key not in written:
                r.report(path, f"missing key '{key}' (a grid without 'like' needs crs, "
                               "resolution and bounds)")
    return GridSpec(like, crs, resolution, bounds, r.at(path))


def _crs(r: ValueReader, value: Any, path: KeyPath) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"EPSG:{value}"
    text = r.text(value, path, None, "a CRS like 'EPSG:32631' (or WKT, or PROJ text)")
    if text is None:
        return None
    try:
        CRS.from_user_input(text)
    except CRSError as error:
        r.report(path, f"not a CRS: {text!r} ({error})")
        return None
    return text


def _resolution(r: ValueReader, value: Any, path: KeyPath) -> tuple[float, float] | None:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(values) not in (1, 2) or len(numbers) != len(values):
        r.report(path, f"expected a pixel size: a number, or [x, y], found {describe(value)}")
        return None
    if any(not number > 0 or number == float("inf") for number in numbers):
        r.report(path, f"a pixel size must be positive, found {value!r}")
        return None
    return float(numbers[0]), float(numbers[-1])


def _bounds(r: ValueReader, value: Any,
            path: KeyPath) -> tuple[float, float, float, float] | None:
    numbers = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)
               and math.isfinite(v)] if isinstance(value, (list, tuple)) else []
    if not isinstance(value, (list, tuple)) or len(value) != 4 or len(numbers) != 4:
        r.report(path, f"expected 4 numbers [left, bottom, right, top], found {describe(value)}")
        return None
    left, bottom, right, top = (float(v) for v in numbers)
    if not (left < right and bottom < top):
        r.report(path, f"bounds [left, bottom, right, top] are empty: expected left < "
                       f"right and bottom < top, found {list(value)!r}")
        return None
    return left, bottom, right, top
