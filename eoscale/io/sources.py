"""Where an input's pixels come from: one raster file or one file per band, on a working grid.

A :class:`Grid` is a frozen value (CRS, transform, width, height). A :class:`Source` is the
picklable description of an input (its files, the working grid when it is not the first file's,
the resampling used to warp onto it, and what a catalogue declares of each file's pixels:
:class:`DeclaredValues`); ``Source.open()`` gives a :class:`SourceReader` whose ``read(window)``
returns the window's pixels on the working grid, all bands stacked.

A file's declared nodata (a STAC Item's ``raster:bands``) takes the place of the nodata the file
itself has, or lacks: its pixels of that value are nodata, in a plain read as through a warp. A
declared scale and offset turn the file's numbers into physical values: a stack with one such
file is read as floats (float32, or float64 when a file's values need it), its nodata pixels
NaN, and each band of the file read as ``pixels * scale + offset``, computed in that float type
after the file is read (or warped: the two are linear, so warping first changes nothing).

A file already on the working grid (:func:`~eoscale.io.grid.grid_differences`, the one grid
check) is read plainly; any other is read through a ``WarpedVRT`` onto the working grid, opened
once per reader and reused across windows.

So that a window read equals the same window of one warp of the whole image
(``rasterio.warp.reproject``), whatever the windows: GDAL warps a view chunk by chunk (its blocks,
or a large request directly), and two things in a chunk depend on the chunk's extent.

- The resampling scale: for each chunk GDAL estimates it from the chunk's source and destination
  sizes, so a chunk at the image's edge gets another scale than the whole image, and a kernel
  (bilinear, cubic, lanczos) used for downsampling is stretched differently there (up to 0.74 m on
  ``dsm.tif`` at 4 m, bilinear). The reader fixes the scale to the ratio of the grids' pixel sizes
  (GDAL's ``XSCALE``/``YSCALE`` warp options).
- The approximate transformer (GDAL's default, error 0.125 pixel, which ``reproject`` uses too)
  interpolates each destination row's source coordinates linearly between points it transforms
  exactly, from the chunk's first column to its last: across CRSs, another column span gives other
  coordinates (1.6 % of the nearest-neighbour picks of SRTM onto UTM at 40 m). The reader's view
  has blocks of whole rows (:data:`WARP_STRIP_ROWS` rows of the grid's full width; GDAL's default
  is 512 columns) and is read block by block, so every row is interpolated across the full width,
  as in a warp of the whole image.

Both hold for any window, tile size and worker count; the tests compare with ``reproject``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.warp import SUPPORTED_RESAMPLING
from rasterio.warp import transform as transform_points
from rasterio.windows import Window

from eoscale.io.grid import crs_name, grid_differences
from eoscale.errors import RasterError
from eoscale.io.raster import read_profile

#: Resampling names an input may ask for (rasterio's ``Resampling`` members GDAL can warp with).
RESAMPLINGS: tuple[str, ...] = tuple(r.name for r in SUPPORTED_RESAMPLING)
#: Resamplings whose kernel GDAL stretches by the scale when downsampling: the scale is fixed
#: (see the module's docstring) so that every window is warped alike.
SCALED_KERNELS = frozenset({"bilinear", "cubic", "cubic_spline", "lanczos"})
#: Rows of the warped view's blocks, each the grid's full width (see the module's docstring); GDAL
#: caches the blocks it warped, so windows side by side warp their rows once.
WARP_STRIP_ROWS = 128
#: How far from a multiple of the resolution a bound may be and still count as on it (a share
#: of a pixel: coordinates written with a few digits, or computed, are that close).
SNAP_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS, affine transform (north-up or not), width and height in pixels."""

    crs: CRS | None
    transform: Affine
    width: int
    height: int

    @classmethod
    def of(cls, profile: Mapping[str, Any]) -> Grid:
        """The grid of a rasterio profile (or any mapping with crs, transform, width, height)."""
        transform = profile["transform"]
        if not isinstance(transform, Affine):
            transform = Affine(*tuple(transform)[:6])
        return cls(profile.get("crs"), transform, int(profile["width"]), int(profile["height"]))

    @classmethod
    def from_bounds(cls, crs: CRS | str, resolution: float | Sequence[float],
                    bounds: Sequence[float]) -> Grid:
        """A north-up grid covering ``bounds`` (left, bottom, right, top) at ``resolution`` (one
        number, or x and y), in ``crs``.

        Pixel edges are snapped to multiples of the resolution (as ``gdalwarp -tap`` does),
        outwards, so the grid covers the bounds and grids of nested resolutions (10 m, 20 m)
        share their pixel edges. A bound within :data:`SNAP_TOLERANCE` of a pixel of a multiple
        is taken as on it.
        """
        xres, yres = _resolution(resolution)
        left, bottom, right, top = (float(value) for value in bounds)
        if not (right > left and top > bottom):
            raise ValueError(f"bounds {list(bounds)} are empty: expected left < right and "
                             "bottom < top")
        col0 = math.floor(left / xres + SNAP_TOLERANCE)
        col1 = math.ceil(right / xres - SNAP_TOLERANCE)
        row0 = math.floor(bottom / yres + SNAP_TOLERANCE)
        row1 = math.ceil(top / yres - SNAP_TOLERANCE)
        transform = Affine(xres, 0.0, col0 * xres, 0.0, -yres, row1 * yres)
        return cls(CRS.from_user_input(crs), transform, col1 - col0, row1 - row0)

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel width and height (positive) of a grid without rotation."""
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """Left, bottom, right, top of a north-up grid."""
        left, top = _apply(self.transform, 0, 0)
        right, bottom = _apply(self.transform, self.width, self.height)
        return min(left, right), min(bottom, top), max(left, right), max(bottom, top)

    def profile(self) -> dict[str, Any]:
        """The grid's keys of a rasterio profile."""
        return {"crs": self.crs, "transform": self.transform, "width": self.width,
                "height": self.height}

    def differences(self, other: Grid | Mapping[str, Any]) -> list[str]:
        """How ``other`` (a grid or a profile) differs from this grid, as phrases; empty when
        they are one grid (:func:`~eoscale.io.grid.grid_differences`)."""
        profile = other.profile() if isinstance(other, Grid) else other
        return grid_differences(self.profile(), profile)

    def describe(self) -> str:
        """``934 x 723 pixels of 5 x 5 in EPSG:26914``."""
        xres, yres = self.resolution
        return (f"{self.width} x {self.height} pixels of {xres:.10g} x {yres:.10g} in "
                f"{crs_name(self.crs)}")


def _apply(transform: Affine, x: float, y: float) -> tuple[float, float]:
    """``transform`` applied to a point (affine 3 deprecates ``*`` for it, affine 2 lacks ``@``)."""
    return (transform.a * x + transform.b * y + transform.c,
            transform.d * x + transform.e * y + transform.f)


def _resolution(resolution: float | Sequence[float]) -> tuple[float, float]:
    values = [resolution] if isinstance(resolution, (int, float)) else list(resolution)
    if len(values) not in (1, 2) or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                        for v in values):
        raise ValueError(f"resolution {resolution!r}: expected a number or [x, y]")
    if any(not v > 0 or not math.isfinite(v) for v in values):
        raise ValueError(f"resolution {resolution!r}: must be positive")
    return float(values[0]), float(values[-1])


def common_dtype(dtypes: Sequence[str | np.dtype]) -> str:
    """The smallest dtype that holds every value of each of ``dtypes`` (numpy's promotion)."""
    return np.result_type(*[np.dtype(d) for d in dtypes]).name


def common_nodata(values: Sequence[Any]) -> Any:
    """The stack's nodata: the first one declared (band files declaring another have their
    nodata pixels rewritten to it)."""
    return next((value for value in values if value is not None), None)


def scaled_dtype(dtypes: Sequence[str | np.dtype]) -> str:
    """The float dtype of a stack of files scaled to physical values: float32, or float64 when
    one of ``dtypes`` needs it (numpy's promotion with float32)."""
    return common_dtype([*dtypes, "float32"])


def same_nodata(a: Any, b: Any) -> bool:
    """Whether two nodata values are one (both None, equal, or both NaN)."""
    if a is None or b is None:
        return a is b
    return a == b or (math.isnan(float(a)) and math.isnan(float(b)))


@dataclass(frozen=True)
class DeclaredValues:
    """What a catalogue declares of one file's pixels, over what the file itself says (see the
    module's docstring): its ``nodata`` (None: the file's own), and the ``scale`` and ``offset``
    of each of its bands (one value: every band), applied when ``scale`` is not None."""

    nodata: float | None = None
    scale: tuple[float, ...] | None = None
    offset: tuple[float, ...] = (0.0,)

    @property
    def scaled(self) -> bool:
        """Whether the file's pixels are turned into physical values."""
        return self.scale is not None


NOTHING_DECLARED = DeclaredValues()


@dataclass(frozen=True)
class Source:
    """Where an input's pixels come from: ``paths`` (one file, or one file per band, stacked in
    order), ``grid`` (the working grid when it is not the first file's; None: the first file's),
    ``resampling`` (a name of :data:`RESAMPLINGS`) for the files not on that grid, and
    ``declared``: what a catalogue says of each file's pixels (empty: nothing, the files' own
    nodata; else one :class:`DeclaredValues` per path)."""

    paths: tuple[str, ...]
    grid: Grid | None = None
    resampling: str = "nearest"
    declared: tuple[DeclaredValues, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.paths, (str, os.PathLike)):
            object.__setattr__(self, "paths", (os.fspath(self.paths),))
        else:
            object.__setattr__(self, "paths", tuple(os.fspath(p) for p in self.paths))
        if not self.paths:
            raise ValueError("a source needs at least one file")
        if self.resampling not in RESAMPLINGS:
            raise ValueError(f"unknown resampling {self.resampling!r}: expected one of "
                             f"{', '.join(RESAMPLINGS)}")
        if self.declared and len(self.declared) != len(self.paths):
            raise ValueError(f"{len(self.declared)} declared values for {len(self.paths)} files: "
                             "expected one per file")

    def declared_for(self, index: int) -> DeclaredValues:
        """What is declared of the pixels of file ``index`` (nothing, when nothing is)."""
        return self.declared[index] if self.declared else NOTHING_DECLARED

    @property
    def scaled(self) -> bool:
        """Whether a file's pixels are turned into physical values (the stack is then floats)."""
        return any(values.scaled for values in self.declared)

    @classmethod
    def of(cls, source: Source | str | os.PathLike) -> Source:
        """A source as it is, or a path made a one-file source on its own grid."""
        return source if isinstance(source, Source) else cls((os.fspath(source),))

    @property
    def name(self) -> str:
        """A default name: the first file's stem."""
        return Path(self.paths[0]).stem

    def file_profiles(self) -> list[dict[str, Any]]:
        """Each file's profile (``read_profile``'s, with ``block_shape``), its nodata the declared
        one where one is declared."""
        profiles = [read_profile(path) for path in self.paths]
        for index, profile in enumerate(profiles):
            nodata = self.declared_for(index).nodata
            if nodata is not None:
                profile["nodata"] = nodata
        return profiles

    def profile(self) -> dict[str, Any]:
        """The input's profile on the working grid.

        ``count``: the bands of all files; ``dtype``: one that holds every file's values
        (:func:`common_dtype`); ``nodata``: :func:`common_nodata` (declared nodata in place of a
        file's own); a stack with a scaled file: :func:`scaled_dtype` and NaN, when a file has
        nodata (see the module's docstring); the working grid's crs,
        transform, width and height; ``block_shape``: the first file's when it is on the grid,
        else the warped view's blocks (:data:`WARP_STRIP_ROWS` rows of the full width).
        Other keys (driver, compression, ...) are the first file's.
        """
        profiles = self.file_profiles()
        grid = self.grid or Grid.of(profiles[0])
        first = profiles[0]
        profile = dict(first)
        profile.update(grid.profile())
        profile["count"] = sum(int(p["count"]) for p in profiles)
        profile["dtype"] = common_dtype([p["dtype"] for p in profiles])
        profile["nodata"] = common_nodata([p.get("nodata") for p in profiles])
        if self.scaled:
            profile["dtype"] = scaled_dtype([p["dtype"] for p in profiles])
            profile["nodata"] = None if profile["nodata"] is None else float("nan")
        if grid.differences(first):
            profile["block_shape"] = (min(WARP_STRIP_ROWS, grid.height), grid.width)
            for key in ("blockxsize", "blockysize", "tiled"):
                profile.pop(key, None)
        return profile

    def warped(self) -> list[str]:
        """The files read through a warped view (not on the working grid)."""
        if self.grid is None and len(self.paths) == 1:
            return []
        profiles = self.file_profiles()
        grid = self.grid or Grid.of(profiles[0])
        return [path for path, profile in zip(self.paths, profiles) if grid.differences(profile)]

    def open(self, profile: Mapping[str, Any] | None = None) -> SourceReader:
        """A reader in this process (its files are opened at the first read); ``profile``: this
        source's :meth:`profile` when already known (saves reading every file's again)."""
        return SourceReader(self, profile)


def warp_scale(source: Mapping[str, Any], grid: Grid) -> tuple[float, float]:
    """Destination pixels per source pixel along x and y (GDAL's ``XSCALE``, ``YSCALE``).

    In one CRS, the ratio of pixel sizes; across CRSs, measured at the grid's centre: the
    distance in source pixels between a pixel's centre and its neighbours' to the right and below.
    """
    src_transform = Grid.of(source).transform
    if source.get("crs") == grid.crs or source.get("crs") is None or grid.crs is None:
        src = math.hypot(src_transform.a, src_transform.d), math.hypot(src_transform.b,
                                                                       src_transform.e)
        dst = math.hypot(grid.transform.a, grid.transform.d), math.hypot(grid.transform.b,
                                                                         grid.transform.e)
        return src[0] / dst[0], src[1] / dst[1]
    col, row = grid.width / 2, grid.height / 2
    points = [_apply(grid.transform, col, row), _apply(grid.transform, col + 1, row),
              _apply(grid.transform, col, row + 1)]
    xs, ys = transform_points(grid.crs, source["crs"], [p[0] for p in points],
                              [p[1] for p in points])
    inverse = ~src_transform
    pixels = [_apply(inverse, x, y) for x, y in zip(xs, ys)]
    along_x = math.dist(pixels[0], pixels[1])
    along_y = math.dist(pixels[0], pixels[2])
    return 1 / along_x, 1 / along_y


def warp_options(source: Mapping[str, Any], grid: Grid, resampling: str) -> dict[str, Any]:
    """The ``WarpedVRT`` (and ``rasterio.warp.reproject``) options warping a file with profile
    ``source`` onto ``grid``: the grid, the resampling, and for the kernels GDAL stretches, the
    scale fixed for every chunk (see the module's docstring)."""
    options: dict[str, Any] = {"crs": grid.crs, "transform": grid.transform,
                               "width": grid.width, "height": grid.height,
                               "resampling": Resampling[resampling]}
    if resampling in SCALED_KERNELS:
        xscale, yscale = warp_scale(source, grid)
        options.update(XSCALE=repr(xscale), YSCALE=repr(yscale))
    return options


def strip_view(dataset: Any, grid: Grid, resampling: str, dtype: str, nodata: Any,
               src_nodata: Any = None) -> Any:
    """A ``WarpedVRT`` of ``dataset`` onto ``grid`` whose blocks are :data:`WARP_STRIP_ROWS`
    rows of the grid's full width (rasterio's ``WarpedVRT`` cannot set its block size: the VRT's
    own description is reopened with it); ``src_nodata``: the nodata of ``dataset``'s pixels
    when it is not the file's own (declared)."""
    own = {} if src_nodata is None else {"src_nodata": src_nodata}
    with WarpedVRT(dataset, nodata=nodata, dtype=dtype, **own,
                   **warp_options(dataset.profile, grid, resampling)) as view:
        xml = view.tags(ns="xml:VRT")["xml:VRT"]
    xml = re.sub(r"<BlockXSize>\d+</BlockXSize>", f"<BlockXSize>{grid.width}</BlockXSize>", xml)
    xml = re.sub(r"<BlockYSize>\d+</BlockYSize>", f"<BlockYSize>{WARP_STRIP_ROWS}</BlockYSize>",
                 xml)
    return rasterio.open(xml)


def read_strips(view: Any, window: Window, out: np.ndarray,
                kept: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Read ``window`` of a :func:`strip_view` into ``out``, one whole block (strip) at a time, so
    that GDAL warps whole strips whatever the window; return the strips the window spans, by
    index, to pass as ``kept`` to the next read, which warps only those it does not find there
    (windows side by side share their strips; GDAL's own block cache may be too small to keep
    them: the engine's workers cap it)."""
    rows = WARP_STRIP_ROWS
    top, bottom = int(window.row_off), int(window.row_off + window.height)
    cols = slice(int(window.col_off), int(window.col_off + window.width))
    spanned = {}
    for index in range(top // rows, (bottom - 1) // rows + 1):
        first = index * rows
        height = min(rows, view.height - first)
        strip = kept.get(index)
        if strip is None:
            strip = view.read(window=Window(0, first, view.width, height))
        spanned[index] = strip
        start, stop = max(top, first), min(bottom, first + height)
        out[:, start - top:stop - top] = strip[:, start - first:stop - first, cols]
    return spanned


def to_physical(pixels: np.ndarray, values: DeclaredValues) -> None:
    """Turn one file's ``pixels`` (bands, rows, cols; floats, nodata NaN) into physical values,
    in place: each band times its scale, plus its offset, in the pixels' float type."""
    assert values.scale is not None
    count = pixels.shape[0]
    scale = np.broadcast_to(np.asarray(values.scale, pixels.dtype), (count,))
    offset = np.broadcast_to(np.asarray(values.offset, pixels.dtype), (count,))
    pixels *= scale[:, None, None]
    pixels += offset[:, None, None]


class SourceReader:
    """A :class:`Source` opened in a process: ``read(window)`` on the working grid, all bands.

    Each file (and its warped view, for a file not on the grid) is opened at the first read and
    kept until ``close()``, so a worker reading many windows opens it once. For a warped file the
    reader also keeps the strips its last window spanned (:func:`read_strips`): at most the
    window's rows rounded out to :data:`WARP_STRIP_ROWS`, across the grid's full width.
    """

    def __init__(self, source: Source, profile: Mapping[str, Any] | None = None):
        self.source = source
        self._profile: dict[str, Any] | None = None if profile is None else dict(profile)
        self._files: list[tuple[Any, Any]] | None = None  # (dataset, warped view or None)
        self._nodata: list[Any] = []
        self._strips: dict[int, dict[int, np.ndarray]] = {}  # file index -> its last strips

    @property
    def profile(self) -> dict[str, Any]:
        if self._profile is None:
            self._profile = self.source.profile()
        return self._profile

    def _open(self) -> list[tuple[Any, Any]]:
        if self._files is not None:
            return self._files
        profile = self.profile
        grid = Grid.of(profile)
        dtype, nodata = profile["dtype"], profile["nodata"]
        files: list[tuple[Any, Any]] = []
        self._files = files
        for index, path in enumerate(self.source.paths):
            try:
                dataset = rasterio.open(path)
            except RasterioError as exc:
                raise RasterError(f"cannot open {path} as a raster: {exc}") from None
            files.append((dataset, None))
            own = dict(dataset.profile)
            declared = self.source.declared_for(index).nodata
            self._nodata.append(own.get("nodata") if declared is None else declared)
            if grid.differences(own):
                try:
                    view = strip_view(dataset, grid, self.source.resampling, dtype, nodata,
                                      declared)
                except (RasterioError, ValueError) as exc:
                    raise RasterError(f"{path}: cannot warp onto the working grid "
                                      f"({grid.describe()}): {exc}") from None
                files[-1] = (dataset, view)
        return files

    def read(self, window: Window, out: np.ndarray | None = None) -> np.ndarray:
        """The pixels of ``window`` of the working grid, ``(bands, rows, cols)`` in the
        profile's dtype (into ``out`` when given); a failure names the file and the window."""
        files = self._open()
        profile = self.profile
        dtype, nodata = np.dtype(profile["dtype"]), profile["nodata"]
        shape = (int(profile["count"]), int(window.height), int(window.width))
        if out is None:
            out = np.empty(shape, dtype)
        band = 0
        for position, (path, (dataset, view), own_nodata) in enumerate(
                zip(self.source.paths, files, self._nodata)):
            count = dataset.count
            target = out[band:band + count]
            try:
                if view is not None:
                    self._strips[position] = read_strips(view, window, target,
                                                         self._strips.get(position, {}))
                elif dataset.dtypes[0] == dtype.name and same_nodata(own_nodata, nodata):
                    dataset.read(window=window, out=target)
                else:
                    pixels = dataset.read(window=window)
                    target[...] = pixels
                    if own_nodata is not None and not same_nodata(own_nodata, nodata):
                        missing = (np.isnan(pixels) if math.isnan(float(own_nodata))
                                   else pixels == own_nodata)
                        target[missing] = nodata
                values = self.source.declared_for(position)
                if values.scaled:
                    to_physical(target, values)
            except (RasterioError, ValueError) as exc:
                raise RasterError(f"{path}: cannot read rows {window.row_off}:"
                                  f"{window.row_off + window.height}, cols {window.col_off}:"
                                  f"{window.col_off + window.width}: {exc}") from None
            band += count
        return out

    def close(self) -> None:
        """Close every file and warped view. Idempotent."""
        files, self._files = self._files, None
        self._nodata = []
        self._strips = {}
        for dataset, view in files or ():
            if view is not None:
                view.close()
            dataset.close()

    def __enter__(self) -> SourceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
