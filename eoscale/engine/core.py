"""The engine: shared rasters, one executor per run, and the map and reduce paradigms over tiles.

Usage::

    with Engine(workers=4) as engine:
        scene = engine.load("scene.tif")
        [smooth] = engine.map(smooth_fn, [scene], margin=4)
        stats = engine.reduce(stats_fn, [smooth], combine=merge)
        engine.write(smooth, "smooth.tif")

Every raster the engine creates lives in a shared-memory segment that it owns; ``close()`` (or leaving
the ``with`` block, also on errors and KeyboardInterrupt) stops the workers and unlinks every segment.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from eoscale.engine.assembly import OutputFiles
from eoscale.engine.contract import (
    CombineFn,
    FinalizeFn,
    ProfileFn,
    declared,
    declared_writable_inputs,
    output_profiles,
    probed_profiles,
    unplanned_margin,
)
from eoscale.engine.encoded import EncodedTarget
from eoscale.engine.executing import make_executor
from eoscale.engine.executors import (
    Executor,
    closed_after,
    failure_error,
    make_chunks,
    max_chunks,
    run_apart,
)
from eoscale.engine.feeding import (
    Feeding,
    TileOrderFold,
    fed_collector,
    finalized,
    reduce_functions,
)
from eoscale.engine.filed import FileRaster, FileRef, OutputFile, WrittenRaster
from eoscale.engine.fused import ChainStep, assemble_chain
from eoscale.engine.loading import PendingLoads
from eoscale.engine.progress import NoProgress, PhaseReport, Progress
from eoscale.engine.shared import RasterRef, SharedRaster
from eoscale.engine.tasks import (
    Job,
    LoadJob,
    MapJob,
    ReduceJob,
    ResultMismatch,
    TileFailure,
)
from eoscale.engine.tiling import AnyLayout, Tile, TileLayout, Tiling, auto_tile_size, plan_step
from eoscale.engine.units import UnitLog, records_tiles, resumed_map, resumed_reduce
from eoscale.errors import ConfigError, Interrupted, ResultError, check_interrupted
from eoscale.io.grid import grid_differences
from eoscale.io.raster import write_atomically, write_geotiff
from eoscale.io.sources import Source


class Engine:
    """Runs map and reduce steps on shared rasters, tile by tile, on a pool of workers.

    ``executor`` runs the tiles on an executor the caller made (and closes); else the engine
    makes one (:func:`~eoscale.engine.executing.make_executor`, which says what
    ``gdal_cache_bytes`` and ``gdal_options`` do) and closes it: for ``workers``, or on the Dask
    ``cluster`` (``"local:4"``, a scheduler address, a ``distributed.Client``). A cluster's
    workers share no memory: inputs are :meth:`open`-ed and map outputs go to ``files``.
    """

    def __init__(self, workers: int | None = None, *, tiling: Tiling | None = None,
                 start_method: str | None = None, progress: Progress | None = None,
                 gdal_cache_bytes: int = 0, gdal_options: Mapping[str, str] | None = None,
                 executor: Executor | None = None, cluster: Any = None):
        self.tiling = tiling or Tiling()
        self.progress: Progress = progress or NoProgress()
        self.reports: list[PhaseReport] = []
        self.units: UnitLog | None = None  # records finished tiles (eoscale.engine.units)
        self._loads = PendingLoads(self._execute)  # inputs loaded in part
        self._rasters: list[SharedRaster] = []
        self._owns_executor = executor is None
        self._gdal_options = dict(gdal_options or {})
        self._executor: Executor = executor if executor is not None else make_executor(
            workers, cluster=cluster, start_method=start_method,
            gdal_cache_bytes=gdal_cache_bytes, gdal_options=gdal_options)
        self.workers = self._executor.workers

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (of an executor it made) and unlink every shared raster. Safe to
        call more than once."""
        try:
            if self._owns_executor:
                self._executor.close()
        finally:
            rasters, self._rasters = self._rasters, []
            for raster in rasters:
                raster.release()

    def apart(self, fn: Callable[..., None], *args: Any, name: str = "finish",
              pixels: int = 0) -> None:
        """Call ``fn(*args)``, a long pass of GDAL's over a written file of ``pixels`` (bands
        times rows times cols), named ``name`` in a message: from :data:`APART_PIXELS` on, in
        a process of its own that a signal stops at once (:func:`run_apart`); a smaller file's
        pass, or any with one worker (everything runs here), here."""
        if self.workers == 1 or pixels < APART_PIXELS:
            fn(*args)
            return
        from rasterio.env import get_gdal_config

        options = dict(self._gdal_options)
        cache = get_gdal_config("GDAL_CACHEMAX")  # the run's cap here (its plan's), not GDAL's
        if cache is not None:                      # default of 5 % of the machine's memory
            options["GDAL_CACHEMAX"] = cache
        run_apart(fn, args, name=name, gdal_options=options)

    # -- rasters -------------------------------------------------------------------------------

    def create(self, profile: Mapping[str, Any], *, name: str = "") -> SharedRaster:
        """A zero-filled shared raster for ``profile`` (count, height, width, dtype); refused
        when the executor's workers share no memory with this process (a cluster's)."""
        if not self._executor.shares_memory:
            raise ConfigError(f"'{name or 'raster'}': the executor's workers share no memory with "
                              "this process, so images cannot be held in shared memory: read "
                              "inputs with open(), and give map outputs files (files=)")
        raster = SharedRaster.create(dict(profile), name=name)
        self._rasters.append(raster)
        return raster

    def from_array(self, array: np.ndarray, profile: Mapping[str, Any] | None = None, *,
                   name: str = "") -> SharedRaster:
        """A shared copy of ``array`` (2-D or bands, rows, cols) with ``profile``."""
        array = as_bands(array)
        raster = self.create(array_profile(array, profile), name=name)
        raster.array[...] = array
        return raster

    def load(self, source: Source | str | os.PathLike, *, name: str = "",
             windows: Sequence[Window] | None = None) -> SharedRaster:
        """Read a raster file (or a :class:`~eoscale.io.sources.Source`: band files, warped onto
        a working grid) into shared memory; workers decode windows straight into it (with
        ``windows``, those only, the rest when needed: :mod:`~eoscale.engine.loading`)."""
        source = Source.of(source)
        profile = source.profile()
        block_shape = profile.pop("block_shape")
        raster = self.create(profile, name=name or source.name)
        job = load_job(raster, source, self.workers, block_shape)
        try:
            self._loads.start(raster.ref, job, windows)
        except BaseException:
            self.release(raster)
            raise
        return raster

    def open(self, source: Source | str | os.PathLike, *, name: str = "") -> FileRaster:
        """A raster that steps read window by window from its file (or a
        :class:`~eoscale.io.sources.Source`), without loading it whole.

        Best for an input that one step reads without margin: each worker decodes its own
        tiles as it computes them (a margin would decode the blocks it spans again).
        """
        return FileRaster(FileRef.of(source, name))

    def release(self, raster: SharedRaster | FileRaster | WrittenRaster) -> None:
        """Free a raster's shared memory now (later steps must not use it)."""
        self._loads.forget(raster.ref)
        raster.release()
        self._rasters = [r for r in self._rasters if r is not raster]

    def write(self, raster: SharedRaster, path: str | os.PathLike, *,
              options: Mapping[str, Any] | None = None, overwrite: bool = False) -> Path:
        """Write a raster as a GeoTIFF, atomically; compression runs on every worker's core."""
        return write_atomically(path, overwrite, lambda staged: self.write_to(
            raster, staged, options=options, display=path))

    def write_to(self, raster: SharedRaster, path: str | os.PathLike, *,
                 options: Mapping[str, Any] | None = None,
                 display: str | os.PathLike | None = None) -> None:
        """Write a raster to ``path`` as it is (the caller stages it); reported as a write phase."""
        name = str(display or path)
        self._loads.complete([raster.ref], None)
        started = self._start("write", name, 1)
        write_geotiff(raster.array, raster.ref.profile, path, options=options,
                      threads=self.workers, display=display)
        self.progress.advance(1)
        self._report("write", name, 1, raster.ref.height * raster.ref.width, started)

    # -- steps ---------------------------------------------------------------------------------

    def map(self, fn: Callable, inputs: Sequence[SharedRaster | FileRaster], *,
            params: Mapping[str, Any] | None = None, margin: int | None = None,
            profile_fn: ProfileFn | None = None, name: str | None = None,
            output_names: Sequence[str] | None = None, tiling: Tiling | None = None,
            layout: AnyLayout | None = None, writable_inputs: bool | None = None,
            files: Sequence[OutputFile | None] | None = None, plan: AnyLayout | None = None,
            feeding: Feeding | None = None) -> list[SharedRaster | WrittenRaster]:
        """N images -> M images: run ``fn`` on every tile and return the M results.

        Output profiles come from ``profile_fn(profiles, params)`` (or the callable's ``profile``
        attribute); without one, the first tile is computed first, on a worker like every other
        tile, and each output takes a copy of the first input's profile with that result's band
        count and dtype. ``tiling`` replaces the engine's tiling for this step; ``layout`` gives
        the step's tiles outright, run as they are (``margin`` is then not looked at): as planned
        (:func:`~eoscale.engine.tiling.plan_step`, margin included), or any
        :class:`~eoscale.engine.tiling.ExplicitLayout`; ``plan`` is its former name. With
        ``writable_inputs`` (default: the callable's attribute of that name, else False) each
        tile gets private arrays it may write into (see :meth:`SharedRaster.read_private`).

        An output with a ``files`` entry is never held: it is written to that file (the caller
        stages it) as its tiles are computed, so the result is a :class:`WrittenRaster`, which
        later steps cannot read; the others are shared rasters. Who encodes and writes the
        file's blocks: :mod:`.encoded`, :mod:`.assembly`.
        The reduces of a ``feeding`` are fed by the step's tiles (:mod:`eoscale.engine.feeding`):
        their results are in ``feeding.results`` when it returns.
        """
        name = name or getattr(fn, "__name__", "map")
        params = dict(params or {})
        layout = step_layout(self.workers, name, inputs, fn, params, margin,
                             tiling or self.tiling, given_layout(name, layout, plan))
        profiles = tuple(r.profile for r in inputs)
        job = MapJob(step=name, inputs=tuple(r.ref for r in inputs), layout=layout, fn=fn,
                     profiles=profiles, params=params,
                     writable_inputs=declared_writable_inputs(fn, writable_inputs))
        profile_fn = profile_fn or declared(fn, "profile")
        if profile_fn is not None:
            out_profiles = output_profiles(name, profile_fn, profiles, params, layout.height,
                                           layout.width)
            return self._run_map(name, job, out_profiles, output_names, files, feeding)
        # The phase starts with the probe: a long first tile shows as the map's, on its bar.
        self._loads.complete(job.inputs, None)
        started = self._start("map", name, len(job.tiles))
        probe = run_first_tile(self._executor, job, job.tiles[0])
        return self._run_map(name, job, probed_profiles(profiles[0], probe), output_names, files,
                             feeding, probe, started)

    def map_fused(self, stages: Sequence[ChainStep],
                  inputs: Mapping[str, SharedRaster | FileRaster], *, name: str | None = None,
                  tiling: Tiling | None = None, layout: AnyLayout | None = None,
                  files: Sequence[OutputFile | None] | None = None,
                  plan: AnyLayout | None = None, feeding: Feeding | None = None,
                  ) -> list[SharedRaster | WrittenRaster]:
        """A chain of maps computed tile by tile through every stage (see
        :mod:`eoscale.engine.fused`): the images between the stages are never held, and the
        results are the last stage's, as :meth:`map` would give them step after step.

        ``inputs`` are the chain's input rasters by the names the stages read them by. A stage's
        margin is run as given; a stage without one runs with its callable's. ``layout`` (former
        name: ``plan``) gives the chain's tiles (their read windows grown by
        :func:`~eoscale.engine.fused.chain_margin`); else they are planned for that margin.
        Profiles come from the stages' profile functions; where one is missing, the chain's
        first tile is computed first, on a worker, to learn it. ``files`` and ``feeding`` are as
        for :meth:`map`, for the last stage's outputs.
        """
        chain = assemble_chain(stages, inputs, name)
        rasters = [inputs[input_] for input_ in chain.inputs]
        layout = step_layout(self.workers, chain.name, rasters, None, {}, chain.margin,
                             tiling or self.tiling, given_layout(chain.name, layout, plan))
        job = chain.job(rasters, layout)
        started = None
        if chain.unknown(job):
            self._loads.complete(job.inputs, None)
            started = self._start("map", chain.name, len(job.tiles))
            job = chain.learnt(job, run_first_tile(self._executor, job, job.tiles[0]))
        return self._run_map(chain.name, job, chain.output_profiles(job),
                             chain.stages[-1].outputs, files, feeding, started=started)

    def _run_map(self, name: str, job: MapJob, out_profiles: Sequence[dict[str, Any]],
                 output_names: Sequence[str] | None, files: Sequence[OutputFile | None] | None,
                 feeding: Feeding | None = None, probe: list[np.ndarray] | None = None,
                 started: float | None = None) -> list[SharedRaster | WrittenRaster]:
        """Make a map's outputs (shared, or written to ``files``) and run its tiles, feeding the
        reduces of ``feeding``; the first tile's ``probe`` results, when there are some, are
        stored rather than computed again, by the worker that gets that tile (so that this
        process never encodes a block)."""
        tiles = job.tiles
        labels = output_labels(name, len(out_profiles), output_names)
        targets = output_targets(name, len(out_profiles), files)
        outputs: list[SharedRaster | WrittenRaster] = []
        files_out = OutputFiles(job, self._executor, threads=self.workers)
        encoded: list[EncodedTarget | None] = []
        try:
            for profile, label, target in zip(out_profiles, labels, targets):
                if target is None:
                    outputs.append(self.create(profile, name=label))
                    encoded.append(None)
                    continue
                encoded.append(files_out.add(profile, target))
                outputs.append(WrittenRaster.of(profile, label, target.path))
            job = replace(job, outputs=tuple(r.ref for r in outputs),
                          returned=tuple(t is not None for t in targets), encoded=tuple(encoded),
                          feeds=feeding.work(name, out_profiles) if feeding is not None else ())
            if probe is not None:  # stored, encoded and fed by a worker, as the others are
                check_probe(job, tiles[0], probe)  # its error first, whatever the others do
                job = job.with_results(tiles[0], probe)
            collect = fed_collector(tiles, files_out, feeding)
            remaining: Sequence[int] = range(len(tiles))
            recorded = records_tiles(self.units, encoded, remaining, tiles)  # parts kept
            remaining, collect = resumed_map(self.units, name, tiles, encoded, remaining, collect)
            self._loads.complete(job.inputs, [tiles[i].read for i in remaining])
            self._execute("map", name, job, remaining, collect,
                          done_before=len(tiles) - len(remaining), started=started)
            if feeding is not None:
                feeding.finish()
            files_out.close(keep_parts=recorded)
        except BaseException as exc:  # a stopped run keeps the parts its journal names
            files_out.abort(keep_parts=self.units is not None and stopped(exc))
            for raster in outputs:
                self.release(raster)
            raise
        return outputs

    def reduce(self, fn: Callable, inputs: Sequence[SharedRaster], *,
               combine: CombineFn | None = None, finalize: FinalizeFn | None = None,
               params: Mapping[str, Any] | None = None, margin: int | None = None,
               name: str | None = None, tiling: Tiling | None = None,
               layout: AnyLayout | None = None, writable_inputs: bool | None = None,
               plan: AnyLayout | None = None) -> Any:
        """N images -> a result: per-tile partials merged by ``combine`` in tile order, then finalized.

        The merge is a left fold in tile order, whatever the workers and the order tiles finish in,
        so a given tiling always gives the same result; no neutral element is assumed. ``tiling``,
        ``layout`` (or ``plan``) and ``writable_inputs`` are as for :meth:`map`.
        """
        name = name or getattr(fn, "__name__", "reduce")
        combine, finalize = reduce_functions(name, fn, combine, finalize)
        params = dict(params or {})
        layout = step_layout(self.workers, name, inputs, fn, params, margin,
                             tiling or self.tiling, given_layout(name, layout, plan))
        job = ReduceJob(step=name, inputs=tuple(r.ref for r in inputs), layout=layout, fn=fn,
                        profiles=tuple(r.profile for r in inputs), params=params,
                        writable_inputs=declared_writable_inputs(fn, writable_inputs))
        self._loads.complete(job.inputs, None)
        folder = TileOrderFold(name, combine, job.tiles)
        left, collect = resumed_reduce(self.units, name, range(len(job.tiles)), folder.add)
        self._execute("reduce", name, job, left, collect, done_before=len(job.tiles) - len(left))
        folder.check_complete()
        return finalized(name, folder.value, finalize, params)

    # -- internals -----------------------------------------------------------------------------

    def _execute(self, kind: str, name: str, job: Job, indices: Iterable[int],
                 collect: Callable[[Sequence[int], Any], None], done_before: int = 0,
                 started: float | None = None) -> None:
        """Run a job's tiles on the executor, handing each chunk's result to ``collect``; raise
        the first tile failure (the executor then stops its workers). ``started``: the phase was
        announced then (with ``done_before`` tiles already done), else it starts now."""
        indices = list(indices)
        chunks = make_chunks(indices, self.workers, max_chunks(self._executor.shares_memory))
        total = done_before + len(indices)
        if started is None:
            started = self._start(kind, name, total)
        if done_before:
            self.progress.advance(done_before)
        with closed_after(self._executor.run(job, chunks) if chunks else iter(())) as results:
            for position, result in results:
                check_interrupted()  # a signal whose raise was lost stops the step here
                if isinstance(result, TileFailure):
                    raise failure_error(result)
                collect(chunks[position], result)
                self.progress.advance(len(chunks[position]))
        pixels = sum(tile.core.height * tile.core.width for tile in job.tiles)
        self._report(kind, name, total, pixels, started)

    def _start(self, kind: str, name: str, tiles: int) -> float:
        """Announce a phase; its start time, for its report."""
        started = time.perf_counter()
        self.progress.started(kind, name, tiles)
        return started

    def _report(self, kind: str, name: str, tiles: int, pixels: int, started: float) -> None:
        report = PhaseReport(kind, name, tiles, pixels, time.perf_counter() - started)
        self.reports.append(report)
        self.progress.finished(report)


def as_bands(array: np.ndarray) -> np.ndarray:
    """``array`` as (bands, rows, cols): a 2-D array is one band."""
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3:
        raise ConfigError(f"an image must be 2-D or 3-D (bands, rows, cols), not {array.ndim}-D")
    return array


def array_profile(array: np.ndarray, profile: Mapping[str, Any] | None) -> dict[str, Any]:
    """``profile`` with the band count, size and dtype of ``array`` (bands, rows, cols)."""
    return {**(profile or {}), "count": array.shape[0], "height": array.shape[1],
            "width": array.shape[2], "dtype": array.dtype.name}


def load_job(raster: SharedRaster, source: Source, workers: int,
             block_shape: tuple[int, int]) -> LoadJob:
    """The job that loads ``source`` into ``raster``, by windows aligned to its blocks."""
    layout = load_layout(raster.ref.height, raster.ref.width, workers, block_shape)
    return LoadJob(step=f"load {raster.name}", inputs=(), layout=layout, source=source,
                   target=raster.ref)


def stopped(exc: BaseException) -> bool:
    """Whether ``exc`` stops a run by a signal (its finished work is kept for a resume)."""
    return isinstance(exc, (Interrupted, KeyboardInterrupt))


def load_layout(height: int, width: int, workers: int,
                block_shape: tuple[int, int]) -> TileLayout:
    """The windows an image is loaded by: aligned to the file's blocks, read a chunk at a time
    (also with one worker: each chunk closes the file, so GDAL's block cache never holds more
    than a chunk)."""
    mode = "tiles" if block_shape[0] == block_shape[1] and block_shape[1] < width else "strips"
    return TileLayout(height, width, auto_tile_size(height, width, workers, 0, mode, block_shape),
                      0, mode)


def step_layout(workers: int, name: str, inputs: Sequence[SharedRaster | FileRaster],
                fn: Callable | None, params: Mapping[str, Any], margin: int | None,
                tiling: Tiling, given: AnyLayout | None) -> AnyLayout:
    """The tiles a step runs on, once its inputs are checked (some, not released, on one grid):
    ``given`` as it is, else planned for ``workers`` and its margin (the one stated, checked
    against ``fn``'s declared one when there is a callable)."""
    if not inputs:
        raise ConfigError(f"step '{name}': needs at least one input image")
    first = inputs[0].ref
    for raster in inputs:
        if raster.released:
            raise ConfigError(f"step '{name}': input '{raster.name}' was released")
        check_same_grid(name, first, raster.ref)
    if given is not None:
        if (given.height, given.width) != (first.height, first.width):
            raise ConfigError(f"step '{name}': its plan is for a {given.height} x "
                              f"{given.width} image, the inputs are {first.height} x "
                              f"{first.width}")
        return given
    if fn is not None:
        margin = unplanned_margin(fn, params, margin, f"step '{name}'")
    return plan_step(first.height, first.width, margin=margin or 0, tiling=tiling,
                     workers=workers, block_shape=first.profile.get("block_shape"))


def output_labels(step: str, count: int, names: Sequence[str] | None) -> list[str]:
    """The names of a map's ``count`` outputs: ``names``, else the step's (numbered if several)."""
    if names:
        if len(names) != count:
            raise ResultError(f"{count} output profile(s) for {len(names)} output name(s)",
                              step=step)
        return list(names)
    return [step] if count == 1 else [f"{step}[{i}]" for i in range(1, count + 1)]


def output_targets(step: str, count: int, files: Sequence[OutputFile | None] | None,
                   ) -> list[OutputFile | None]:
    """Where each of a map's ``count`` outputs goes: its file, or None (shared memory)."""
    targets = list(files or [])
    if targets and len(targets) != count:
        raise ResultError(f"{count} output(s) for {len(targets)} file target(s)", step=step)
    return targets + [None] * (count - len(targets))


def run_first_tile(executor: Executor, job: MapJob, tile: Tile) -> Any:
    """Run a map's first tile on the executor to learn the outputs' band counts and dtypes: user
    code runs on a worker, so a crash there is a dead worker, never a dead command."""
    found: Any = None
    with closed_after(executor.run(job.probe(), [[tile.index]])) as results:
        for _, result in results:  # to the end: the executor then ends the job normally
            found = result
    if isinstance(found, TileFailure):
        raise failure_error(found)
    return found


#: Pixels (bands x rows x cols) of a written file from which GDAL's pass over it (its
#: overviews, its COG) runs in a process of its own, stoppable at once (:meth:`Engine.apart`):
#: a smaller file's pass takes a second or two here, less than starting that process.
APART_PIXELS = 16 * 2**20


def check_probe(job: MapJob, tile: Tile, results: list[np.ndarray]) -> None:
    """Check the first tile's ``results`` (:func:`run_first_tile`) against the outputs made
    from them (their shapes: the rest they told), as a worker checks every tile's."""
    try:
        job.checked(tile, results)
    except ResultMismatch as exc:
        raise ResultError(str(exc), step=job.step, tile=tile.describe()) from None


def given_layout(step: str, layout: AnyLayout | None,
                 plan: AnyLayout | None) -> AnyLayout | None:
    """The tile layout a step was given, as ``layout`` or by its former name ``plan``."""
    if plan is None:
        return layout
    if layout is not None:
        raise ConfigError(f"step '{step}': give its tiles as layout= or plan= (the former name), "
                          "not both")
    return plan


def check_same_grid(step: str, first: RasterRef, other: RasterRef) -> None:
    """Inputs of a step must share one grid (:func:`~eoscale.io.grid.grid_differences`)."""
    differences = grid_differences(first.profile, other.profile)
    if (first.height, first.width) != (other.height, other.width):
        raise ConfigError(f"step '{step}': input '{other.name}' is {other.height} x {other.width}, "
                          f"'{first.name}' is {first.height} x {first.width}")
    if differences:
        raise ConfigError(f"step '{step}': inputs '{first.name}' and '{other.name}' are not on one "
                          f"grid: '{other.name}' has {'; '.join(differences)}")
