"""Mosaics: the Items of a STAC selection read as one image on a working grid.

A :class:`MosaicSource` is a :class:`~eoscale.io.sources.Source` made of layers, one per Item
(its assets stacked as bands, as ``{bands: [...]}`` of their files), in the order they fill
pixels: newest first unless the input says ``order: oldest`` (:func:`~eoscale.io.stac.select_items`
sorts them). Each layer is read on the working grid as any input is (a ``WarpedVRT`` per file not
on it, with the input's ``resampling``; :class:`~eoscale.io.sources.SourceReader`), and
:class:`MosaicReader` fills a window band by band: a pixel takes the first layer's value that is
not nodata (nor NaN), so a pixel where an Item has nodata, or lies outside its footprint, is filled
by the next Item. Pixels no Item covers are the mosaic's nodata: the layers' first nodata, or,
when none has one, NaN for floats and 0 for integers (a valid 0 of a file without nodata is then
taken as missing, and filled by the next Item).

Windows are read the same whichever process reads them, so workers decode their own tiles (or
load the whole image) as for any input; a layer whose footprint (its files' bounds on the grid,
padded by a kernel's reach) misses the window is not read at all.

Without ``grid:`` the working grid is chosen as odc-stac chooses it (:func:`mosaic_grid`): the
asset files' most common CRS, the finest resolution among the files in it, over the bbox (or the
union of the selected Items' files' bounds), edges snapped to multiples of the resolution.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from eoscale.errors import RasterError
from eoscale.io.grid import crs_name
from eoscale.io.sources import (
    WARP_STRIP_ROWS,
    Grid,
    Source,
    SourceReader,
    common_dtype,
    common_nodata,
    warp_scale,
)

#: Source pixels a resampling kernel reaches beyond a file's edge (lanczos: 3; a margin of one).
KERNEL_REACH = 4
#: The CRS of a STAC bbox.
WGS84 = "EPSG:4326"
#: Points added along each edge when a bbox is transformed into another CRS (its edges curve).
DENSIFY = 21


@dataclass(frozen=True)
class MosaicSource(Source):
    """A mosaic's source: ``layers`` (one source per Item, its asset files stacked, in the order
    they fill pixels), ``labels`` (each Item's id, for messages), on ``grid`` (required). Its
    ``paths`` are every layer's files, for the reports and checks that list what a run reads."""

    layers: tuple[Source, ...] = ()
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.layers or self.grid is None:
            raise ValueError("a mosaic needs at least one layer, and its working grid")

    @classmethod
    def of_layers(cls, layers: Sequence[Source], grid: Grid, resampling: str = "nearest",
                  labels: Sequence[str] = ()) -> MosaicSource:
        """The mosaic of ``layers`` (first fills first) on ``grid``."""
        paths = tuple(path for layer in layers for path in layer.paths)
        return cls(paths, grid, resampling, (), tuple(layers), tuple(labels))

    def on_grid(self) -> list[Source]:
        """Each layer on the working grid."""
        return [replace(layer, grid=self.grid) for layer in self.layers]

    def profile(self) -> dict[str, Any]:
        """The mosaic's profile on the working grid: the first layer's keys, the layers' band
        count (one for all, else a :class:`RasterError` naming the Items), :func:`common_dtype`,
        nodata as the module's docstring says, and the warped view's blocks."""
        assert self.grid is not None
        profiles = [layer.profile() for layer in self.on_grid()]
        counts = [int(profile["count"]) for profile in profiles]
        if len(set(counts)) > 1:
            found = ", ".join(f"{label}: {count}" for label, count in zip(self._labels(), counts))
            raise RasterError(f"the Items of a mosaic must have the same bands; their band "
                              f"counts are {found}")
        profile = dict(profiles[0])
        profile.update(self.grid.profile())
        profile["dtype"] = common_dtype([p["dtype"] for p in profiles])
        profile["nodata"] = mosaic_nodata([p.get("nodata") for p in profiles], profile["dtype"])
        profile["block_shape"] = (min(WARP_STRIP_ROWS, self.grid.height), self.grid.width)
        for key in ("blockxsize", "blockysize", "tiled"):
            profile.pop(key, None)
        return profile

    def _labels(self) -> list[str]:
        return list(self.labels) or [f"layer {number}" for number in range(1, len(self.layers)
                                                                           + 1)]

    def warped(self) -> list[str]:
        """The files read through a warped view (not on the working grid)."""
        return [path for layer in self.on_grid() for path in layer.warped()]

    def open(self, profile: Mapping[str, Any] | None = None) -> MosaicReader:  # type: ignore
        return MosaicReader(self, profile)


def mosaic_nodata(values: Sequence[Any], dtype: str) -> Any:
    """A mosaic's nodata: the layers' first, else NaN for floats and 0 for integers."""
    found = common_nodata(values)
    if found is not None:
        return found
    return float("nan") if np.dtype(dtype).kind == "f" else 0


def missing(pixels: np.ndarray, nodata: Any) -> np.ndarray:
    """Where ``pixels`` hold no value: ``nodata``, or NaN."""
    found = np.zeros(pixels.shape, bool) if nodata is None else pixels == nodata
    if pixels.dtype.kind == "f":
        found |= np.isnan(pixels)
    return found


class MosaicReader:
    """A :class:`MosaicSource` opened in a process: ``read(window)`` fills the window from the
    layers in order (see the module's docstring). Each layer's reader, and its footprint on the
    grid, are made at the first read and kept until ``close()``."""

    def __init__(self, source: MosaicSource, profile: Mapping[str, Any] | None = None):
        self.source = source
        self._profile: dict[str, Any] | None = None if profile is None else dict(profile)
        self._layers: list[tuple[SourceReader, tuple[int, int, int, int]]] | None = None

    @property
    def profile(self) -> dict[str, Any]:
        if self._profile is None:
            self._profile = self.source.profile()
        return self._profile

    def _open(self) -> list[tuple[SourceReader, tuple[int, int, int, int]]]:
        if self._layers is not None:
            return self._layers
        grid = Grid.of(self.profile)
        self._layers = []
        for layer in self.source.on_grid():
            files = layer.file_profiles()
            own = layer.profile()
            own.update(dtype=self.profile["dtype"], nodata=self.profile["nodata"])
            self._layers.append((layer.open(own), footprint(files, grid)))
        return self._layers

    def read(self, window: Window, out: np.ndarray | None = None) -> np.ndarray:
        """The pixels of ``window`` of the working grid, ``(bands, rows, cols)`` in the
        profile's dtype (into ``out`` when given)."""
        layers = self._open()
        profile = self.profile
        nodata = profile["nodata"]
        shape = (int(profile["count"]), int(window.height), int(window.width))
        if out is None:
            out = np.empty(shape, np.dtype(profile["dtype"]))
        out[...] = nodata
        empty = np.ones(shape, bool)
        top, left = int(window.row_off), int(window.col_off)
        bottom, right = top + int(window.height), left + int(window.width)
        for reader, (col0, row0, col1, row1) in layers:
            if col0 >= right or col1 <= left or row0 >= bottom or row1 <= top:
                continue
            pixels = reader.read(window)
            valid = ~missing(pixels, nodata)
            np.copyto(out, pixels, where=empty & valid)
            empty &= ~valid
            if not empty.any():
                break
        return out

    def close(self) -> None:
        """Close every layer's files. Idempotent."""
        layers, self._layers = self._layers, None
        for reader, _ in layers or ():
            reader.close()

    def __enter__(self) -> MosaicReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def footprint(files: Sequence[Mapping[str, Any]], grid: Grid) -> tuple[int, int, int, int]:
    """The pixels of ``grid`` (first column, first row, end column, end row) the files whose
    profiles are ``files`` may give values to: their bounds on the grid, padded by
    :data:`KERNEL_REACH` of their pixels."""
    cols, rows = [], []
    inverse = ~grid.transform
    for profile in files:
        left, bottom, right, top = _bounds_in(profile, grid.crs)
        xscale, yscale = warp_scale(profile, grid)
        pad = math.ceil(KERNEL_REACH * max(1.0, xscale, yscale)) + 1
        for x, y in ((left, bottom), (left, top), (right, bottom), (right, top)):
            col = inverse.a * x + inverse.b * y + inverse.c
            row = inverse.d * x + inverse.e * y + inverse.f
            cols += [math.floor(col) - pad, math.ceil(col) + pad]
            rows += [math.floor(row) - pad, math.ceil(row) + pad]
    return min(cols), min(rows), max(cols), max(rows)


def _bounds_in(profile: Mapping[str, Any], crs: Any) -> tuple[float, float, float, float]:
    """A file's bounds (its profile's) in ``crs``."""
    bounds = Grid.of(profile).bounds
    own = profile.get("crs")
    if own is None or crs is None or own == crs:
        return bounds
    try:
        return transform_bounds(own, crs, *bounds, densify_pts=DENSIFY)
    except (RasterioError, ValueError) as error:
        raise RasterError(f"cannot transform bounds from {crs_name(own)} to {crs_name(crs)}: "
                          f"{error}") from None


def mosaic_grid(layers: Sequence[Source],
                bbox: tuple[float, float, float, float] | None) -> tuple[Grid, str]:
    """The working grid of a mosaic without ``grid:``, and why it is that one: the CRS most of
    the layers' files have (of a tie, the first met), the finest resolution among the files in
    it (x and y each), over ``bbox`` (WGS84) or else the union of the files' bounds, snapped to
    multiples of the resolution (:meth:`Grid.from_bounds`)."""
    files = [(path, profile) for layer in layers
             for path, profile in zip(layer.paths, layer.file_profiles())]
    unplaced = [path for path, profile in files if profile.get("crs") is None]
    if unplaced:
        raise RasterError(f"{unplaced[0]} has no CRS: a mosaic's files must say where they are")
    counts: dict[str, int] = {}
    crs_of: dict[str, Any] = {}
    for _, profile in files:
        key = profile["crs"].to_wkt()
        counts[key] = counts.get(key, 0) + 1
        crs_of.setdefault(key, profile["crs"])
    key = max(counts, key=lambda wkt: counts[wkt])  # the first of a tie: dicts keep order
    crs = crs_of[key]
    resolutions = [Grid.of(profile).resolution for _, profile in files
                   if profile["crs"].to_wkt() == key]
    xres = min(res[0] for res in resolutions)
    yres = min(res[1] for res in resolutions)
    if bbox is not None:
        try:
            bounds = transform_bounds(WGS84, crs, *bbox, densify_pts=DENSIFY)
        except (RasterioError, ValueError) as error:
            raise RasterError(f"cannot transform the bbox {list(bbox)} to {crs_name(crs)}: "
                              f"{error}") from None
        over = f"the bbox {list(bbox)}"
    else:
        boxes = [_bounds_in(profile, crs) for _, profile in files]
        bounds = (min(b[0] for b in boxes), min(b[1] for b in boxes),
                  max(b[2] for b in boxes), max(b[3] for b in boxes))
        over = f"the union of the {len(layers)} selected Items' footprints"
    grid = Grid.from_bounds(crs, (xres, yres), bounds)
    why = (f"{grid.describe()}: no 'grid:', so {over}, in {crs_name(crs)} (the CRS of "
           f"{counts[key]} of the {len(files)} asset files), at their finest resolution "
           f"{xres:.10g} x {yres:.10g}, edges snapped to multiples of it")
    return grid, why
