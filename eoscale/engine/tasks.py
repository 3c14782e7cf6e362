"""What runs on a tile, in a worker or in-process: loading a window, a map, a reduce, and the
reduces a map's tiles feed (:class:`FeedWork`, see :mod:`eoscale.engine.feeding`).

A *job* is one step's work: a small picklable object published once per worker (never per tile)
holding raster references, the callable, its params and the tile layout's parameters; the worker
rebuilds the tiles from those. A *chunk* is a run of consecutive tile indices. Each job opens the
rasters it needs when it first runs in a process and closes them when the step ends, so a released
intermediate is unmapped everywhere.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
from affine import Affine
from rasterio.windows import Window

from eoscale.engine.encoded import EncodedTarget, PartWriteError
from eoscale.engine.shared import RasterRef, SharedRaster
from eoscale.engine.tiling import Tile, AnyLayout
from eoscale.errors import USER_ERRORS, RasterError
from eoscale.io.blocks import BlockRecord
from eoscale.io.paths import redact
from eoscale.io.sources import Source


@dataclass(frozen=True)
class TileContext:
    """Where the current tile lies: its index, core and read windows, and the read window's transform."""

    index: int
    core: Window
    read: Window
    transform: Affine | None


_current: TileContext | None = None


def tile_context() -> TileContext | None:
    """The tile the calling callable is running on, or None outside the engine."""
    return _current


def set_tile_context(context: TileContext | None) -> None:
    """Say which tile the callable about to run is on (None: after it returned)."""
    global _current
    _current = context


@dataclass(frozen=True)
class TileFailure:
    """A tile's error, sent back from a worker as plain values (exceptions may not pickle)."""

    step: str
    tile: str
    kind: str  # "callable", "result", "readonly", "read", "write"
    exc_type: str
    message: str
    traceback: str


class ResultMismatch(Exception):
    """Raised inside a tile when a callable's results do not fit the outputs."""


@dataclass
class Job:
    """Base of the per-step work descriptions: a step name, inputs and a tile layout."""

    step: str
    inputs: tuple[RasterRef, ...]
    layout: AnyLayout
    _tiles: tuple[Tile, ...] | None = field(default=None, init=False, repr=False, compare=False)
    _opened: list[SharedRaster] = field(default_factory=list, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _tiles=None, _opened=[])

    @property
    def tiles(self) -> tuple[Tile, ...]:
        if self._tiles is None:
            self._tiles = self.layout.tiles()
        return self._tiles

    def _open(self, ref: RasterRef, readonly: bool) -> SharedRaster:
        raster = ref.open(readonly=readonly)
        self._opened.append(raster)
        return raster

    def close(self) -> None:
        """Unmap every raster this job attached in this process."""
        opened, self._opened = self._opened, []
        self._drop_arrays()
        for raster in opened:
            raster.release()

    def _drop_arrays(self) -> None:
        pass

    def run_chunk(self, indices: Sequence[int]) -> Any:
        raise NotImplementedError

    def failure(self, tile: Tile, exc: BaseException, kind: str = "callable") -> TileFailure:
        return TileFailure(self.step, tile.describe(), kind, type(exc).__name__, str(exc),
                           user_traceback(exc))


def window_transform(window: Window, transform: Affine) -> Affine:
    """The affine transform of a window of an image with ``transform``."""
    a, b, c, d, e, f = transform[:6]
    col, row = window.col_off, window.row_off
    return Affine(a, b, c + a * col + b * row, d, e, f + d * col + e * row)


def user_traceback(exc: BaseException) -> str:
    """The exception's traceback without the engine's own frames."""
    engine_dir = os.path.dirname(os.path.abspath(__file__))
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.dirname(os.path.abspath(f.filename)) != engine_dir]
    lines = traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc)
    return "Traceback (most recent call last):\n" + "".join(lines)


def _readonly_write(exc: BaseException) -> bool:
    return isinstance(exc, ValueError) and "read-only" in str(exc)


@dataclass(frozen=True)
class FeedWork:
    """A reduce fed by a map's tiles, as it travels to the workers: its step ``name``, callable
    and params, the positions among the map's outputs of the images it reads (``sources``),
    their ``profiles``, and whether it gets private writable arrays."""

    name: str
    fn: Callable
    sources: tuple[int, ...]
    params: dict
    profiles: tuple[dict, ...]
    writable_inputs: bool = False

    def partial(self, tile: Tile, cores: Mapping[int, np.ndarray]) -> Any:
        """The reduce's partial on ``tile``: its callable on the tile's core of each image it
        reads (``cores``, by output position: cut and cast as the outputs store them), read-only
        or private copies, with the core as the tile's read window (a reduce without margin
        reads no more), as a reduce over the stored outputs would be called on that tile."""
        arrays = []
        for source in self.sources:
            array = cores[source].copy() if self.writable_inputs else cores[source].view()
            array.flags.writeable = self.writable_inputs
            arrays.append(array)
        transform = self.profiles[0].get("transform") if self.profiles else None
        set_tile_context(TileContext(tile.index, tile.core, tile.core,
                                     window_transform(tile.core, transform) if transform else None))
        try:
            return self.fn(arrays, [dict(p) for p in self.profiles], self.params)
        finally:
            set_tile_context(None)


class _ComputeJob(Job):
    """A job that calls a user callable on read-window views of its inputs.

    The views are read-only, or with ``writable_inputs`` private copy-on-write mappings of each
    tile's read window (:meth:`SharedRaster.read_private`): the callable may write into them, and
    its writes reach neither the shared input nor any other tile.
    """

    fn: Callable
    profiles: tuple[dict, ...]
    params: dict
    writable_inputs: bool

    def _input_rasters(self) -> list[SharedRaster]:
        rasters = getattr(self, "_in_rasters", None)
        if rasters is None:
            rasters = self._in_rasters = [self._open(ref, readonly=True) for ref in self.inputs]
        return rasters

    def _drop_arrays(self) -> None:
        self.__dict__.pop("_in_rasters", None)
        self.__dict__.pop("_out_rasters", None)

    def _call(self, tile: Tile) -> Any:
        views = [raster.read_private(tile.read) if self.writable_inputs else raster.read(tile.read)
                 for raster in self._input_rasters()]
        transform = self.profiles[0].get("transform") if self.profiles else None
        set_tile_context(TileContext(tile.index, tile.core, tile.read,
                                     window_transform(tile.read, transform) if transform else None))
        try:
            return self.fn(views, [dict(p) for p in self.profiles], self.params)
        finally:
            set_tile_context(None)

    def _run_tiles(self, indices: Sequence[int], each: Callable[[Tile], Any]) -> Any:
        results = []
        for index in indices:
            tile = self.tiles[index]
            try:
                results.append(each(tile))
            except ResultMismatch as exc:
                return self.failure(tile, exc, "result")
            except PartWriteError as exc:
                return self.failure(tile, exc, "write")
            except RasterError as exc:
                return self.failure(tile, exc, "read")
            except USER_ERRORS as exc:  # any user error becomes a tile failure
                return self.failure(tile, exc, "readonly" if _readonly_write(exc) else "callable")
        return results


@dataclass
class MapJob(_ComputeJob):
    """N images -> M images: each tile's results are cut to the core and written in place into
    the shared outputs; outputs marked ``returned`` are sent back instead (cast to their dtype),
    for the main process to write to their files as tiles complete, except those with an
    ``encoded`` target: their cores are encoded here, into part files, and only the blocks'
    records are sent back (see :mod:`eoscale.engine.encoded`).

    ``given``: a tile's results already computed (the first tile, run to learn the outputs'
    profiles), as ``(tile index, results)``: that tile is stored from them, where the other
    tiles are, rather than computed again. A worker drops them after its first tile: the
    first chunk holds that tile, and a worker that gets it later (a task Dask runs again)
    computes it again.
    """

    fn: Callable = None  # type: ignore[assignment]
    profiles: tuple[dict, ...] = ()
    params: dict = field(default_factory=dict)
    outputs: tuple[RasterRef, ...] = ()
    writable_inputs: bool = False
    returned: tuple[bool, ...] = ()
    encoded: tuple[EncodedTarget | None, ...] = ()
    feeds: tuple[FeedWork, ...] = ()
    given: tuple[int, tuple[np.ndarray, ...]] | None = None
    _stage: str | None = field(default=None, init=False, repr=False, compare=False)

    def failure(self, tile: Tile, exc: BaseException, kind: str = "callable") -> TileFailure:
        """A tile's failure, naming the stage that was running (a fed reduce, a fused chain's
        step), else the map's step."""
        found = super().failure(tile, exc, kind)
        return found if self._stage is None else TileFailure(
            self._stage, found.tile, found.kind, found.exc_type, found.message, found.traceback)

    def _is_returned(self, position: int) -> bool:
        return bool(self.returned) and self.returned[position]

    def _output_rasters(self) -> list[SharedRaster | None]:
        rasters = getattr(self, "_out_rasters", None)
        if rasters is None:
            rasters = self._out_rasters = [
                None if self._is_returned(position) else self._open(ref, readonly=False)
                for position, ref in enumerate(self.outputs)]
        return rasters

    def run_tile(self, tile: Tile) -> Any:
        self._stage = None
        given, self.given = self.given, None  # held until this process's first tile only
        results = (list(given[1]) if given is not None and given[0] == tile.index
                   else self._call(tile))
        return self.finish(tile, self.checked(tile, results))

    def checked(self, tile: Tile, results: Any) -> list[np.ndarray]:
        """A tile's ``results`` as 3-D arrays, checked against the outputs' band counts and
        dtypes (:func:`check_results`)."""
        return check_results(results, tile, [r.count for r in self.outputs],
                             [np.dtype(r.dtype) for r in self.outputs])

    def finish(self, tile: Tile, results: Sequence[np.ndarray]) -> Any:
        """Store a tile's checked ``results`` (:meth:`store`); with reduces to feed, also their
        partials on the stored cores: then (stored, partials)."""
        stored = self.store(tile, results)
        if not self.feeds:
            return stored
        rows, cols = tile.core_in_read
        cores = {source: results[source][:, rows, cols].astype(self.outputs[source].dtype,
                                                               copy=False)
                 for source in {s for feed in self.feeds for s in feed.sources}}
        partials = []
        for feed in self.feeds:
            self._stage = feed.name
            partials.append(feed.partial(tile, cores))
        return stored, partials

    def run_probe(self, tile: Tile) -> list[np.ndarray] | TileFailure:
        """The tile's results as arrays, unchecked: the first tile tells the outputs' shapes."""
        done = self._run_tiles([tile.index], self._call)
        if isinstance(done, TileFailure):
            return done
        results = list(done[0]) if isinstance(done[0], (list, tuple)) else [done[0]]
        for position, result in enumerate(results, start=1):
            if not isinstance(result, np.ndarray):
                return self.failure(tile, ResultMismatch(
                    f"result {position} is a {type(result).__name__}, not a numpy array"), "result")
        return results

    def store(self, tile: Tile, results: Sequence[np.ndarray]
              ) -> list[np.ndarray | dict[int, BlockRecord]]:
        """Write the core of each result into its shared output; return, for the returned
        outputs, the cores cast to their dtypes, or for the encoded ones the records of the
        blocks appended to this process's part files."""
        core_rows, core_cols = tile.core_in_read
        encoded = self.encoded or (None,) * len(self.outputs)
        returned: list[np.ndarray | dict[int, BlockRecord]] = []
        for out, ref, target, result in zip(self._output_rasters(), self.outputs, encoded,
                                            results):
            core = result[:, core_rows, core_cols]
            if out is not None:
                out.write(tile.core, core)
                continue
            core = np.ascontiguousarray(core, dtype=ref.dtype)
            returned.append(core if target is None else target.append(tile, core))
        return returned

    def run_chunk(self, indices: Sequence[int]) -> Any:
        done = self._run_tiles(indices, self.run_tile)
        if isinstance(done, TileFailure) or not (any(self.returned) or self.feeds):
            return done if isinstance(done, TileFailure) else len(done)
        return list(zip(indices, done))

    def probe(self) -> MapJob:
        """The job that runs this map's first tile to learn its outputs (see :class:`ProbeJob`)."""
        return ProbeJob(**{f.name: getattr(self, f.name) for f in fields(self) if f.init})

    def with_results(self, tile: Tile, results: Sequence[np.ndarray]) -> MapJob:
        """This job, storing ``tile`` from its ``results`` (a probe's) rather than computing
        it again: on a worker, where every tile is stored and encoded."""
        return replace(self, given=(tile.index, tuple(results)))


@dataclass
class ProbeJob(MapJob):
    """A map's first tile, run where the map's tiles run (a worker), before its outputs exist:
    its results, sent back whole, tell the outputs' band counts and dtypes."""

    def run_chunk(self, indices: Sequence[int]) -> Any:
        return self.run_probe(self.tiles[indices[0]])


@dataclass
class ReduceJob(_ComputeJob):
    """N images -> partial results, one per tile, sent back to be combined in tile order."""

    fn: Callable = None  # type: ignore[assignment]
    profiles: tuple[dict, ...] = ()
    params: dict = field(default_factory=dict)
    writable_inputs: bool = False

    def run_chunk(self, indices: Sequence[int]) -> Any:
        return self._run_tiles(indices, self._call)


@dataclass
class LoadJob(Job):
    """Read windows of a source (a raster file, band files, warped onto a working grid or not)
    straight into a shared raster, decoding on every worker.

    The files are opened for each chunk and closed after it: closing drops the blocks GDAL cached
    while decoding, so a worker never holds more than a chunk's worth of decoded blocks on top of
    the shared raster (GDAL's default cache would keep up to 5 % of the machine's memory).
    """

    source: Source | None = None
    target: RasterRef | None = None

    def run_chunk(self, indices: Sequence[int]) -> Any:
        assert self.target is not None and self.source is not None
        tile = self.tiles[indices[0]]
        try:
            out = getattr(self, "_out", None)
            if out is None:
                out = self._out = self._open(self.target, readonly=False)
            with self.source.open(self.target.profile) as reader:
                for index in indices:
                    tile = self.tiles[index]
                    reader.read(tile.core, out=out.read(tile.core))  # decoded in place
        except RasterError as exc:
            return self.failure(tile, exc, "read")
        except Exception as exc:  # noqa: BLE001 - a corrupt file becomes an error naming it
            return self.failure(tile, RasterError(f"{redact(str(self.source.paths[0]))}: cannot "
                                                  f"read: {redact(str(exc))}"), "read")
        return len(indices)

    def _drop_arrays(self) -> None:
        self.__dict__.pop("_out", None)


def check_results(result: Any, tile: Tile, counts: Sequence[int],
                  dtypes: Sequence[np.dtype]) -> list[np.ndarray]:
    """Normalise a map callable's return value to 3-D arrays and check it against the outputs."""
    results = list(result) if isinstance(result, (list, tuple)) else [result]
    if len(results) != len(counts):
        raise ResultMismatch(f"the callable returned {len(results)} image(s), expected {len(counts)}")
    shape = (tile.read.height, tile.read.width)
    checked = []
    for position, (array, count, dtype) in enumerate(zip(results, counts, dtypes), start=1):
        label = f"result {position}" if len(counts) > 1 else "the result"
        if not isinstance(array, np.ndarray):
            raise ResultMismatch(f"{label} is a {type(array).__name__}, not a numpy array")
        if array.ndim == 2:
            array = array[np.newaxis]
        if array.ndim != 3 or array.shape[1:] != shape or array.shape[0] != count:
            raise ResultMismatch(
                f"{label} has shape {array.shape}, expected ({count}, {shape[0]}, {shape[1]}) "
                f"(bands, rows, cols of the read window; a 2-D result is one band)")
        problem = cast_problem(array, dtype)
        if problem:
            raise ResultMismatch(f"{label}: {problem}")
        checked.append(array)
    return checked


def cast_problem(array: np.ndarray, dtype: np.dtype) -> str | None:
    """Why ``array`` cannot be stored as ``dtype`` without changing values, or None if it can.

    Safe casts pass; a narrower float passes (float64 to float32 is what profiles usually ask);
    booleans and integers pass when every value fits the target's range; the rest is refused.
    """
    source = array.dtype
    if np.can_cast(source, dtype, casting="safe"):
        return None
    if source.kind == "f" and dtype.kind == "f":
        return None
    if source.kind in "biu" and dtype.kind in "iu" and array.size:
        info = np.iinfo(dtype)
        low, high = array.min(), array.max()
        if low >= info.min and high <= info.max:
            return None
        return (f"values {low}..{high} of dtype {source} do not fit the output dtype {dtype} "
                f"({info.min}..{info.max})")
    if source.kind in "biu" and dtype.kind in "iu":
        return None
    return f"dtype {source} cannot be cast safely to the output dtype {dtype}"
