"""Fused map chains: several map steps computed tile by tile through the whole chain, the images
between them never held.

A chain is a sequence of stages (map steps) in which every image a stage makes, except the last
stage's, is read by later stages of the chain and by nothing else. Each tile of the chain has a
core ``C`` in the image; stage ``j`` computes on ``C`` grown by ``growth[j] + margin[j]`` and keeps
``C`` grown by ``growth[j]``, where ``growth[j]`` is how far beyond ``C`` its readers read: 0 for
the last stage, else the largest ``growth[r] + margin[r]`` of the stages ``r`` that read it
(Orfeo ToolBox's requested regions: the radii of a chain add up). Windows are clipped at the image
edges, where growing by ``a`` then ``b`` and clipping is growing by ``a + b`` and clipping, so every
stage gets exactly the window its own tile would have read: the results are those of the steps
run one after the other, bit for bit.

What fusion costs is the recomputation of the rings that neighbouring tiles both compute
(:func:`recompute_share`); what it saves is holding, or writing and reading back, every image
between the stages.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from eoscale.engine.contract import ProfileFn, declared, output_profiles, unplanned_margin
from eoscale.engine.filed import FileRaster
from eoscale.engine.shared import SharedRaster
from eoscale.engine.tasks import (
    MapJob,
    TileContext,
    TileFailure,
    check_results,
    set_tile_context,
    window_transform,
)
from eoscale.engine.tiling import AnyLayout, Tile, check_margin, read_window
from eoscale.errors import ConfigError
from eoscale.io.raster import default_output_profile


@dataclass(frozen=True)
class ChainStep:
    """One map step of a fused chain: its callable, the images it reads (inputs of the chain or
    images of earlier stages) and makes, by name, its margin (None: the callable's declared one)
    and params."""

    name: str
    fn: Callable
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    margin: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    profile_fn: ProfileFn | None = None
    writable_inputs: bool = False


def chain_growths(stages: Sequence[Any]) -> tuple[int, ...]:
    """How far beyond a tile's core each stage of a chain computes (see the module's text).

    ``stages`` have ``name``, ``inputs``, ``outputs`` and ``margin``. Raises ConfigError when no
    image of a stage other than the last is read by a later stage (an image nothing reads is
    dropped), or when two stages make images of the same name.
    """
    made: dict[str, int] = {}
    for position, stage in enumerate(stages):
        for name in stage.outputs:
            if name in made:
                raise ConfigError(f"fused chain: '{name}' is made by two stages")
            made[name] = position
    growths = [0] * len(stages)
    read: set[str] = set()
    for position in range(len(stages) - 1, -1, -1):
        stage = stages[position]
        if position < len(stages) - 1:
            if not any(name in read for name in stage.outputs):
                raise ConfigError(f"fused chain: nothing that step '{stage.name}' makes is read "
                                  "by a later step of the chain")
            growths[position] = max(growths[later] + stages[later].margin
                                    for later in range(position + 1, len(stages))
                                    if any(name in stages[later].inputs for name in stage.outputs))
        read.update(stage.inputs)
    return tuple(growths)


def held_during(stages: Sequence[Any]) -> tuple[tuple[str, ...], ...]:
    """The images made by earlier stages that a worker still holds while each stage of a chain
    computes: those a stage at or after it reads (its own inputs among them). An image is let go
    once the last stage reading it has run (:meth:`FusedMapJob._chain`), so a worker holds one
    stage's temporaries at a time, beside these, never every stage's at once.

    ``stages`` have ``inputs`` and ``outputs``."""
    last_read = {name: position for position, stage in enumerate(stages)
                 for name in stage.inputs}
    return tuple(tuple(name for earlier in stages[:position] for name in earlier.outputs
                       if last_read.get(name, -1) >= position)
                 for position in range(len(stages)))


def chain_margin(stages: Sequence[Any]) -> int:
    """How far beyond a tile's core the chain reads: the largest growth plus margin."""
    return max(growth + stage.margin for growth, stage in zip(chain_growths(stages), stages))


def recompute_share(height: int, width: int, tile_size: int, mode: str,
                    stages: Sequence[Any]) -> float:
    """The pixels a fused chain computes beyond what its stages would compute step by step on
    tiles of the same size, as a share of the latter (0.05: 5 % more work, if every pixel of
    every stage costs the same)."""
    growths = chain_growths(stages)
    fused = sum(_covered(height, width, tile_size, mode, growth + stage.margin)
                for growth, stage in zip(growths, stages))
    alone = sum(_covered(height, width, tile_size, mode, stage.margin) for stage in stages)
    return fused / alone - 1


def _covered(height: int, width: int, tile_size: int, mode: str, grown: int) -> int:
    """Pixels in the read windows of every tile, each grown by ``grown`` and clipped: the sum of
    the windows' heights over a column of tiles times the sum of their widths over a row."""
    def extents(size: int, step: int) -> int:
        starts = np.arange(0, size, step)
        ends = np.minimum(starts + step, size)
        return int((np.minimum(ends + grown, size) - np.maximum(starts - grown, 0)).sum())

    columns = extents(width, tile_size) if mode == "tiles" else width
    return extents(height, tile_size) * columns


@dataclass
class _StageWork:
    """A stage as it travels to the workers: its callable, params, windows' growth and the
    band counts and dtypes of what it makes (None where a first tile must tell)."""

    name: str
    fn: Callable
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    margin: int
    growth: int
    params: dict
    writable_inputs: bool


@dataclass
class FusedMapJob(MapJob):
    """A fused chain's tiles (see the module's text): per tile, every stage in turn, each on its
    own window, the images between them cut to the window their readers need and cast to their
    dtypes, as they would be stored; the last stage's results are stored like a map's, and feed
    the reduces the chain feeds (see :meth:`MapJob.finish`).

    ``inputs`` are the chain's input rasters, named by ``input_names``; ``image_profiles`` holds
    the profile of every image the stages read (None for one a first tile must tell)."""

    stages: tuple[_StageWork, ...] = ()
    input_names: tuple[str, ...] = ()
    image_profiles: dict = field(default_factory=dict)

    def run_tile(self, tile: Tile) -> Any:
        results, last = self._chain(tile, learn=None)
        return self.finish(last, self.checked(last, results))

    def run_probe(self, tile: Tile) -> dict[str, tuple[int, str]] | TileFailure:
        """Run the chain on a tile to learn the band count and dtype of every image whose
        profile is not known (the last stage's included)."""
        learnt: dict[str, tuple[int, str]] = {}
        done = self._run_tiles([tile.index], lambda t: self._chain(t, learn=learnt))
        if isinstance(done, TileFailure):
            return done
        return learnt

    def _chain(self, tile: Tile, learn: dict[str, tuple[int, str]] | None,
               ) -> tuple[list[np.ndarray], Tile]:
        height, width = self.layout.height, self.layout.width
        external = dict(zip(self.input_names, self._input_rasters()))
        made: dict[str, tuple[np.ndarray, Any]] = {}
        transform = self.profiles[0].get("transform") if self.profiles else None
        last, held = len(self.stages) - 1, held_during(self.stages)
        for position, stage in enumerate(self.stages):
            core = read_window(tile.core, stage.growth, height, width)
            read = read_window(tile.core, stage.growth + stage.margin, height, width)
            here = Tile(tile.index, core, read)
            views = [self._view(name, read, external, made, stage.writable_inputs)
                     for name in stage.inputs]
            profiles = [dict(self.image_profiles[name]) if self.image_profiles.get(name)
                        else {} for name in stage.inputs]
            self._stage = stage.name
            set_tile_context(TileContext(tile.index, core, read, window_transform(read, transform)
                                         if transform else None))
            try:
                results = stage.fn(views, profiles, stage.params)
            finally:
                set_tile_context(None)
            if position == last and learn is None:
                return results, here  # stored by run_tile, a failure there is the last stage's
            shapes = [self._shape(name, learn) for name in stage.outputs]
            if learn is not None and None in shapes:
                _learn(results, stage.outputs, learn)
                shapes = [self._shape(name, learn) for name in stage.outputs]
            checked = check_results(results, here, [count for count, _ in shapes],
                                    [np.dtype(dtype) for _, dtype in shapes])
            rows, cols = here.core_in_read
            for name, array, (_, dtype) in zip(stage.outputs, checked, shapes):
                kept = array[:, rows, cols].astype(dtype, copy=False)
                kept.flags.writeable = False
                made[name] = (kept, core)
            still_read = held[position + 1] if position < last else ()
            for name in [name for name in made if name not in still_read]:
                del made[name]
            views = results = checked = None  # type: ignore[assignment]
        return [], tile

    def _shape(self, name: str, learnt: Mapping[str, tuple[int, str]] | None,
               ) -> tuple[int, str] | None:
        if learnt and name in learnt:
            return learnt[name]
        profile = self.image_profiles.get(name)
        if profile:
            return int(profile["count"]), np.dtype(profile["dtype"]).name
        return None

    @staticmethod
    def _view(name: str, window: Any, external: Mapping[str, Any],
              made: Mapping[str, tuple[np.ndarray, Any]], writable: bool) -> np.ndarray:
        if name in external:
            raster = external[name]
            return raster.read_private(window) if writable else raster.read(window)
        array, held = made[name]
        top, left = window.row_off - held.row_off, window.col_off - held.col_off
        view = array[:, top:top + window.height, left:left + window.width]
        return view.copy() if writable else view

    def probe(self) -> FusedProbeJob:
        return FusedProbeJob(**{f.name: getattr(self, f.name) for f in fields(self) if f.init})


@dataclass
class FusedProbeJob(FusedMapJob):
    """A fused chain's first tile, run on a worker before the outputs exist: it tells the band
    counts and dtypes of the images whose profiles are not known."""

    def run_chunk(self, indices: Sequence[int]) -> Any:
        return self.run_probe(self.tiles[indices[0]])


def _learn(results: Any, names: Sequence[str], learnt: dict[str, tuple[int, str]]) -> None:
    """Record the band count and dtype of a stage's results (as a map's first tile tells them);
    results that do not fit are left to :func:`check_results` to report."""
    arrays = list(results) if isinstance(results, (list, tuple)) else [results]
    if len(arrays) == len(names) and all(isinstance(a, np.ndarray) for a in arrays):
        for name, array in zip(names, arrays):
            learnt[name] = (array.shape[0] if array.ndim == 3 else 1, array.dtype.name)


def chain_profiles(stages: Sequence[ChainStep], known: Mapping[str, dict[str, Any]],
                   learnt: Mapping[str, tuple[int, str]],
                   call_profile: Callable[[ChainStep, list[dict[str, Any]]], list[dict[str, Any]]],
                   ) -> dict[str, dict[str, Any] | None]:
    """The profile of every image of a chain, stage by stage: a stage's profile function where
    it has one (``call_profile``), else its first input's profile with the band count and dtype
    a first tile told (``learnt``); None where neither is known yet."""
    profiles: dict[str, dict[str, Any] | None] = dict(known)
    for stage in stages:
        given = [profiles.get(name) for name in stage.inputs]
        if any(profile is None for profile in given):
            profiles.update((name, None) for name in stage.outputs)
        elif stage.profile_fn is not None:
            profiles.update(zip(stage.outputs, call_profile(stage, given)))  # type: ignore[arg-type]
        else:
            for name in stage.outputs:
                if name in learnt:
                    count, dtype = learnt[name]
                    profiles[name] = default_output_profile(given[0], count, dtype)
                else:
                    profiles[name] = None
    return profiles


def work_of(stages: Sequence[ChainStep]) -> tuple[_StageWork, ...]:
    """The stages as they travel to the workers, with their growths."""
    growths = chain_growths(stages)
    return tuple(_StageWork(stage.name, stage.fn, tuple(stage.inputs), tuple(stage.outputs),
                            stage.margin, growth, dict(stage.params), stage.writable_inputs)
                 for stage, growth in zip(stages, growths))


@dataclass(frozen=True)
class Chain:
    """A fused chain as the engine runs it (made by :func:`assemble_chain`): its stages, each
    with its margin and profile function; its inputs, the images no stage makes, by name in the
    order the stages first read them; how far beyond a tile's core it reads."""

    name: str
    stages: tuple[ChainStep, ...]
    inputs: tuple[str, ...]
    margin: int

    def job(self, rasters: Sequence[SharedRaster | FileRaster], layout: AnyLayout) -> FusedMapJob:
        """The chain's job on the ``rasters`` of its inputs (in :attr:`inputs` order), with the
        profile of every image the profile functions tell (None for the others)."""
        known = {name: raster.profile for name, raster in zip(self.inputs, rasters)}
        return FusedMapJob(step=self.stages[-1].name, inputs=tuple(r.ref for r in rasters),
                           layout=layout, fn=self.stages[-1].fn, profiles=tuple(known.values()),
                           stages=work_of(self.stages), input_names=self.inputs,
                           image_profiles=self._profiles(known, {}, layout))

    def learnt(self, job: FusedMapJob, learnt: Mapping[str, tuple[int, str]]) -> FusedMapJob:
        """``job`` with the profiles its first tile told (see :meth:`FusedMapJob.run_probe`)."""
        known = dict(zip(self.inputs, job.profiles))
        return replace(job, image_profiles=self._profiles(known, learnt, job.layout))

    @staticmethod
    def unknown(job: FusedMapJob) -> bool:
        """Whether a first tile must tell some image's profile before the outputs exist."""
        return any(profile is None for profile in job.image_profiles.values())

    def output_profiles(self, job: FusedMapJob) -> list[dict[str, Any]]:
        """The profiles of the last stage's outputs, the chain's."""
        return [job.image_profiles[name] for name in self.stages[-1].outputs]

    def _profiles(self, known: Mapping[str, dict[str, Any]],
                  learnt: Mapping[str, tuple[int, str]],
                  layout: AnyLayout) -> dict[str, dict[str, Any] | None]:
        def call_profile(stage: ChainStep, given: list[dict[str, Any]]) -> list[dict[str, Any]]:
            assert stage.profile_fn is not None
            return output_profiles(stage.name, stage.profile_fn, given, stage.params,
                                   layout.height, layout.width)

        return chain_profiles(self.stages, known, learnt, call_profile)


def assemble_chain(stages: Sequence[ChainStep], available: Collection[str],
                   name: str | None = None) -> Chain:
    """The chain of ``stages`` ready to run on the images named in ``available``.

    A stage's margin is run as given (a run plan decided it); a stage without one runs with its
    callable's (:func:`~eoscale.engine.contract.unplanned_margin`). A stage without a profile
    function takes its callable's ``profile`` attribute, if any. Raises ConfigError, naming the
    chain (``name``, else its stages' names joined by ``+``), for no stage, an input no stage
    makes and ``available`` lacks, or stages that do not make a chain.
    """
    if not stages:
        raise ConfigError("a fused chain needs at least one stage")
    name = name or "+".join(stage.name for stage in stages)
    ready = tuple(replace(stage, margin=_stage_margin(stage, name),
                          profile_fn=stage.profile_fn or declared(stage.fn, "profile"))
                  for stage in stages)
    made = {output for stage in ready for output in stage.outputs}
    inputs = tuple(input_ for input_ in dict.fromkeys(n for stage in ready for n in stage.inputs)
                   if input_ not in made)
    missing = [input_ for input_ in inputs if input_ not in available]
    if missing:
        raise ConfigError(f"fused chain '{name}': no input named '{missing[0]}'")
    try:
        margin = chain_margin(ready)
    except ConfigError as exc:
        raise ConfigError(f"{exc} ('{name}')") from None
    return Chain(name, ready, inputs, margin)


def _stage_margin(stage: ChainStep, chain: str) -> int:
    if stage.margin is None:
        return unplanned_margin(stage.fn, stage.params, None, f"fused chain '{chain}'")
    try:
        return check_margin(stage.margin)
    except ConfigError as exc:
        raise ConfigError(f"fused chain '{chain}': {exc}") from None
