"""The run plan: every decision about a run, made before anything is computed, as one frozen value.

:func:`plan_run` turns a checked spec and the machine's resources into a :class:`RunPlan`: for each
step its callables (imported once), its margin, its tiling (the engine's own
:func:`~eoscale.engine.tiling.plan_step`) and chunks, the images it loads, stages and releases,
and the memory the run is estimated to hold at that step; for each image where it lives and why.
``eoscale validate`` reports its estimate, ``eoscale run --dry-run`` prints it, and the runner
executes it without deciding anything of its own.

Where an image lives:

- ``shared``: held whole in a shared-memory segment that every worker maps (inputs read by several
  steps or with a margin, which would otherwise decode their blocks again; every step's outputs);
- ``file``: read from its file window by window by the workers (an input that a single step reads
  without margin and that is not an output: each worker decodes its own tiles as it computes);
- ``written``: never held; written to its output file as its tiles are computed (a map output that
  no later step reads): workers send the tiles back, the main process writes them;
- ``spilled``: a step's image that later steps read, when the budget cannot hold it: written as
  computed, to its output file or to a scratch file, and read back window by window;
- ``fused``: a map step's image that only later map steps read, when the budget cannot hold it
  and recomputing costs less than spilling: never made whole, computed tile by tile inside the
  tiles of the step that reads it (:mod:`eoscale.engine.fused`: the steps' margins add up, and
  the rings that neighbouring tiles share are computed twice).

The budget (:class:`Resources`) decides between them: see :func:`_fit`. On a Dask cluster
(``executor`` "cluster") the workers share no memory with the main process, so nothing is
``shared``: inputs are ``file``, map images that only later map steps read are ``fused`` where
that recomputes little, other step images that later steps read are ``spilled`` (to their output
file or to a scratch file every worker must reach), the others ``written``; the budget then
covers the main process only (the workers' memory is the cluster's).

What is not known before the run is said so: a margin that a callable derives from ``${...}``
params (planned with margin 0, decided when the step runs, the same way), and the dtype and band
count of a map without a profile function (assumed like its first input; learnt from the first
tile).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio

from eoscale.engine.contract import declared, declared_memory_factor, step_margin
from eoscale.engine.executors import default_workers, make_chunks
from eoscale.engine.executors import WORKER_GDAL_CACHE_BYTES
from eoscale.engine.fused import ChainStep, chain_growths, chain_margin, recompute_share
from eoscale.engine.memory import own_pss
from eoscale.engine.tiling import TileLayout, Tiling, plan_step
from eoscale.errors import ConfigError, PipelineError, Problem
from eoscale.io.paths import location_name
from eoscale.io.raster import DEFAULT_GTIFF_OPTIONS
from eoscale.io.sources import WARP_STRIP_ROWS, Source
from eoscale.pipeline.inputs import sources_and_profiles
from eoscale.pipeline.resolve import StepCallables, callable_params, resolve_step
from eoscale.pipeline.spec import FrozenMap, PipelineSpec, StepSpec

Residence = Literal["shared", "file", "written", "spilled", "fused"]

MIB = 2 ** 20
#: What the main process holds before a run when it cannot be measured (no /proc): an interpreter
#: with numpy, rasterio, GDAL, rich and scipy imported.
DEFAULT_BASE_BYTES = 100 * MIB
#: What the main process adds during a run beyond its planning-time size: the progress display,
#: GDAL's GeoTIFF writer and its buffers, results checked and folded (measured: 10 to 15 MiB).
RUN_BYTES = 12 * MIB
#: What each process computing tiles adds beyond its tile buffers: for a forked worker, the pages
#: Python writes to after the fork (reference counts, allocator arenas) and the buffers of the
#: libraries its callables use (measured on the example pipelines: 15 to 25 MiB).
WORKER_BYTES = 20 * MIB
#: multiprocessing's resource tracker, a small interpreter of its own, when there are workers.
TRACKER_BYTES = 10 * MIB
#: The share of a budget the plan leaves free for its estimate's error.
BUDGET_HEADROOM = 0.2
#: The least GDAL block cache a budget leaves a worker: a few blocks.
MIN_GDAL_CACHE_BYTES = 256 * 1024
#: The most recomputation a fused chain may cost, as a share of its steps' work (pixels computed):
#: above it the budget spills the chain's images instead. Spilling an image costs writing it and
#: reading it back (with its readers' margins), which on the out-of-core benchmark cost about as
#: much as a quarter of the chain's computing.
FUSE_MAX_RECOMPUTE = 0.25


def available_memory() -> int | None:
    """Bytes of memory available (``MemAvailable`` in /proc/meminfo), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def default_budget(available: int | None, fixed: int) -> int | None:
    """The memory budget when none is given: what is available, less a safety margin of 10 %
    and at least :data:`KEEP_FREE_BYTES` (other programs, the page cache, estimates' errors),
    less the ``fixed`` bytes of the run's processes, which no budget can shrink."""
    if available is None:
        return None
    return max(available - max(available // 10, KEEP_FREE_BYTES), available // 2) - fixed


#: The least memory a default budget leaves free.
KEEP_FREE_BYTES = 512 * MIB


@dataclass(frozen=True)
class Resources:
    """What a run may use: ``workers`` processes (1: in the calling process), a budget of
    ``memory`` bytes (None: unknown, no limit) for what the run holds (images, tile buffers,
    caches; not the interpreters and libraries of its processes, which no budget can shrink),
    and ``base`` bytes the calling process already holds, counted in the peak. ``given`` tells
    whether the budget was asked for (``memory:``, ``--memory``) or is the default one."""

    workers: int
    memory: int | None
    base: int = DEFAULT_BASE_BYTES
    executor: Literal["processes", "inline", "cluster"] = "processes"
    given: bool = False
    cluster: str | None = None

    @classmethod
    def for_cluster(cls, cluster: str, workers: int, memory: int | None = None) -> Resources:
        """A Dask cluster's: ``workers`` processes that share no memory with this one; the
        budget (``memory``, else the memory available here) covers this process only."""
        found = cls(workers, memory, own_pss() or DEFAULT_BASE_BYTES, "cluster",
                    memory is not None, cluster)
        if memory is None:
            found = replace(found, memory=default_budget(available_memory(), found.fixed_bytes))
        return found

    @classmethod
    def detect(cls, workers: int | None = None, memory: int | None = None) -> Resources:
        """This machine's: the CPUs this process may run on (its affinity) unless ``workers`` is
        given, ``memory`` or else :func:`default_budget` of the memory available now, and this
        process's own PSS."""
        if workers is None:
            workers = default_workers()
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be a positive integer, not {workers!r}")
        found = cls(workers, memory, own_pss() or DEFAULT_BASE_BYTES,
                    "processes" if workers > 1 else "inline", memory is not None)
        if memory is None:
            found = replace(found, memory=default_budget(available_memory(), found.fixed_bytes))
        return found

    @property
    def gdal_cache(self) -> int:
        """GDAL's block cache in each process decoding tiles: the usual cap, less under a budget
        too small for it (an eighth of the budget shared by the workers, at least
        :data:`MIN_GDAL_CACHE_BYTES`); a cluster's workers are outside the budget."""
        if self.memory is None or self.executor == "cluster":
            return WORKER_GDAL_CACHE_BYTES
        share = self.memory // (8 * self.workers)
        return max(MIN_GDAL_CACHE_BYTES, min(WORKER_GDAL_CACHE_BYTES, share))

    @property
    def fixed_bytes(self) -> int:
        """Memory the run holds whatever its images: the main process, workers, the tracker."""
        if self.executor == "inline":
            return self.base + RUN_BYTES + WORKER_BYTES
        if self.executor == "cluster":  # the workers are the cluster's
            return self.base + RUN_BYTES
        return self.base + RUN_BYTES + TRACKER_BYTES + self.workers * WORKER_BYTES


@dataclass(frozen=True)
class ImagePlan:
    """One image of the run: its size, where it lives and why, when it comes and goes."""

    name: str
    made_by: str | None          # the step that makes it; None for a pipeline input
    path: Path | None            # the file of an input
    count: int
    height: int
    width: int
    dtype: str
    lives: Residence
    why: str
    arrives: int                 # index of the step before which it exists (-1: at the start)
    released_after: int          # index of the step after which it is released (-1: at start)
    output: Path | None = None   # where it is written, if it is an output
    known: bool = True           # False: band count and dtype assumed, learnt from a first tile
    source: Source | None = field(default=None, compare=False)  # an input's files, grid, warp

    @property
    def nbytes(self) -> int:
        return self.count * self.height * self.width * np.dtype(self.dtype).itemsize

    @property
    def pixel_bytes(self) -> int:
        return self.count * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class Memory:
    """Estimated memory at one moment: whole images in shared memory, the workers' tile buffers
    (windows, results, a callable's temporaries, GDAL's block cache) and the fixed part."""

    images: int
    tiles: int
    fixed: int

    @property
    def held(self) -> int:
        """What counts against the budget: images and tiles, not the processes themselves."""
        return self.images + self.tiles

    @property
    def total(self) -> int:
        return self.images + self.tiles + self.fixed


@dataclass(frozen=True)
class StepPlan:
    """One step of the run, as it will execute."""

    index: int
    step: StepSpec = field(compare=False, repr=False)
    callables: StepCallables = field(compare=False, repr=False)
    margin: int | None           # None: derived from ${...} params when the step runs
    margin_from: Literal["stated", "declared", "none", "params"]
    tiling: TileLayout                 # with margin None, planned with margin 0 (for the estimate)
    chunks: int
    requested: Tiling            # the pipeline's tiling: mode, and tile size if one is given
    workers: int
    block_shape: tuple[int, int] | None
    loads: tuple[str, ...]       # inputs brought in (loaded or opened) before the step
    stages: tuple[str, ...]      # results written (staged) after it
    releases: tuple[str, ...]    # images released after it
    memory: Memory
    chain: tuple[int, ...] = ()  # a fused chain's steps, run with the last (its tiling, memory)
    fused_into: int | None = None  # the step whose tiles compute this one's (runs with it)
    recompute: float = 0.0       # a fused chain's extra pixels computed, as a share of its work

    @property
    def name(self) -> str:
        return self.step.name

    @property
    def kind(self) -> str:
        return self.step.kind

    def tiling_for(self, params: Mapping[str, Any]) -> TileLayout:
        """The tiling to run with, given the step's resolved params: the planned one, or for a
        margin derived from ``${...}`` params, planned now the same way (:func:`plan_step`)."""
        if self.margin is not None:
            return self.tiling
        try:
            margin = step_margin(self.callables.fn, params, self.step.margin,
                                 label=f"'{self.step.callable}'")
        except ConfigError as error:
            raise ConfigError(f"step '{self.name}': {error}") from None
        return plan_step(self.tiling.height, self.tiling.width, margin=margin,
                         tiling=self.requested, workers=self.workers, block_shape=self.block_shape)


@dataclass(frozen=True)
class RunPlan:
    """A whole run, decided: resources, images and steps in order, and the estimated peak."""

    spec: PipelineSpec = field(compare=False, repr=False)
    resources: Resources
    images: Mapping[str, ImagePlan]
    steps: tuple[StepPlan, ...]
    copied: tuple[str, ...]      # inputs that are outputs too: loaded and staged at the start

    @property
    def peak(self) -> Memory:
        moments = ([step.memory for step in self._running]
                   or [Memory(0, 0, self.resources.fixed_bytes)])
        return max(moments, key=lambda memory: memory.total)

    @property
    def peak_step(self) -> str | None:
        if not self.steps:
            return None
        return max(self._running, key=lambda step: step.memory.total).name

    @property
    def _running(self) -> list[StepPlan]:
        """The steps that run tiles: not those fused into a later one (its chain's moment)."""
        return [step for step in self.steps if step.fused_into is None]

    @property
    def fits(self) -> bool:
        """Whether the estimated peak leaves the budget :data:`BUDGET_HEADROOM` of room for the
        estimate's own error (measured: up to about 20 % under tight budgets)."""
        budget = self.resources.memory
        return budget is None or self.peak.held <= budget * (1 - BUDGET_HEADROOM)

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready values (``eoscale run --dry-run --json``)."""
        peak = self.peak
        return {
            "pipeline": str(self.spec.source) if self.spec.source else None,
            "resources": {"workers": self.resources.workers, "executor": self.resources.executor,
                          "cluster": self.resources.cluster,
                          "gdal_cache_bytes": self.resources.gdal_cache,
                          "memory_budget": self.resources.memory,
                          "budget_given": self.resources.given,
                          "base_bytes": self.resources.base},
            "images": [_image_dict(image) for image in self.images.values()],
            "steps": [_step_dict(step) for step in self.steps],
            "copied": list(self.copied),
            "estimate": {"peak_bytes": peak.total, "images_bytes": peak.images,
                         "tiles_bytes": peak.tiles, "fixed_bytes": peak.fixed,
                         "peak_step": self.peak_step, "fits": self.fits},
        }


def _image_dict(image: ImagePlan) -> dict[str, Any]:
    return {"name": image.name, "made_by": image.made_by,
            "path": str(image.path) if image.path else None,
            "shape": [image.count, image.height, image.width], "dtype": image.dtype,
            "known": image.known, "bytes": image.nbytes, "lives": image.lives, "why": image.why,
            "arrives_before_step": image.arrives, "released_after_step": image.released_after,
            "output": str(image.output) if image.output else None}


def _step_dict(step: StepPlan) -> dict[str, Any]:
    return {"index": step.index, "name": step.name, "kind": step.kind,
            "callable": step.step.callable, "inputs": list(step.step.inputs),
            "outputs": list(step.step.outputs), "margin": step.margin,
            "margin_from": step.margin_from,
            "tiling": {"mode": step.tiling.mode, "tile_size": step.tiling.tile_size,
                       "tiles": step.tiling.tile_count, "chunks": step.chunks},
            "loads": list(step.loads), "stages": list(step.stages),
            "releases": list(step.releases),
            "fused_into": step.fused_into, "chain": list(step.chain),
            "recompute": round(step.recompute, 4),
            "memory": {"total_bytes": step.memory.total, "images_bytes": step.memory.images,
                       "tiles_bytes": step.memory.tiles, "fixed_bytes": step.memory.fixed}}


# -- planning ----------------------------------------------------------------------------------


def plan_run(spec: PipelineSpec, resources: Resources | None = None) -> RunPlan:
    """Plan a run of ``spec`` (already loaded, so its names and references are checked).

    Imports the callables, reads the inputs' profiles, checks that they are on one grid, calls
    profile and margin functions (not for steps whose params hold ``${...}``), and decides
    everything the run does. Raises :class:`PipelineError` with every problem found.
    """
    if resources is None:
        resources = _default_resources(spec)
    problems: list[Problem] = []
    callables: dict[int, StepCallables] = {}
    for index, step in enumerate(spec.steps):
        found, step_problems = resolve_step(step, spec.base_dir)
        problems += step_problems
        if found is not None:
            callables[index] = found
    for index, found in callables.items():
        problems += params_problems(spec.steps[index], found.fn)
    profiles, sources = _input_profiles(spec, problems)
    margins = {index: _margin(step, callables[index], problems)
               for index, step in enumerate(spec.steps) if index in callables}
    if problems:
        raise PipelineError(problems)
    shapes = _image_shapes(spec, profiles, callables, problems)
    if problems:
        raise PipelineError(problems)
    fitted = _fit(spec, resources, profiles, sources, shapes, callables, margins)
    if not fitted.fits and any(step.chain for step in fitted.steps):
        # Fusing keeps a chain's inputs alive longer and grows its windows: where the plan with
        # fused chains does not fit, one that only spills may.
        spilling = _fit(spec, resources, profiles, sources, shapes, callables, margins, False)
        if spilling.fits:
            return spilling
    return fitted


def _default_resources(spec: PipelineSpec) -> Resources:
    """The resources of a plan made without a connection: for a remote cluster, as many
    workers as this machine's CPUs (the run plans again with the cluster's count)."""
    if spec.cluster is None:
        return Resources.detect(spec.workers, spec.memory)
    from eoscale.engine.cluster import parse_cluster

    return Resources.for_cluster(spec.cluster, parse_cluster(spec.cluster).workers
                                 or default_workers(), spec.memory)


def params_problems(step: StepSpec, main: Callable[..., Any]) -> list[Problem]:
    """What the callable's own ``check(params, input_names)`` finds (not for ``${...}`` params)."""
    check_fn = declared(main, "check")
    if check_fn is None or any(step.references()):
        return []
    try:
        found = check_fn(callable_params(step, main, {}), list(step.inputs))
    except Exception as error:  # the callable's own check: any failure is a problem to report
        found = [f"checking the params of '{step.callable}' raised {type(error).__name__}: {error}"]
    return [step.locate("params").problem(message, step.name) for message in found]


def _input_profiles(spec: PipelineSpec, problems: list[Problem],
                    ) -> tuple[dict[str, dict[str, Any]], dict[str, Source]]:
    """Each input's source (on the working grid, warped where it is not on it) and its profile
    there (:func:`~eoscale.pipeline.inputs.sources_and_profiles`); problems name the input's
    line."""
    with rasterio.Env(**spec.gdal):
        _grid, sources, profiles = sources_and_profiles(spec, problems)
    return profiles, sources


def _margin(step: StepSpec, found: StepCallables, problems: list[Problem]) -> int | None:
    """The step's margin (:func:`step_margin`), or None when the callable derives it from params
    that hold ``${...}``: then it is decided when the step runs, from the resolved params."""
    referenced = any(step.references())
    if referenced and callable(getattr(found.fn, "margin", None)):
        return None
    try:
        params = {} if referenced else callable_params(step, found.fn, {})
        return step_margin(found.fn, params, step.margin, label=f"'{step.callable}'")
    except ConfigError as error:
        key = "margin" if step.margin is not None else step.kind
        problems.append(step.locate(key).problem(str(error), step.name))
        return step.margin or 0


@dataclass(frozen=True)
class _Shape:
    count: int
    dtype: str
    known: bool


def _image_shapes(spec: PipelineSpec, profiles: Mapping[str, Mapping[str, Any]],
                  callables: Mapping[int, StepCallables], problems: list[Problem],
                  ) -> dict[str, _Shape]:
    """Band count and dtype of every image: inputs from their files, a map's outputs from its
    profile function; without one (or with ``${...}`` params) like its first input, unknown."""
    shapes = {name: _Shape(int(p["count"]), np.dtype(p["dtype"]).name, True)
              for name, p in profiles.items()}
    grid = next(iter(profiles.values()))
    for index, step in enumerate(spec.steps):
        if step.kind != "map":
            continue
        first = shapes[step.inputs[0]]
        guess = [_Shape(first.count, first.dtype, False)] * len(step.outputs)
        profile_fn = callables[index].profile
        if profile_fn is None or any(step.references()):
            shapes.update(zip(step.outputs, guess))
            continue
        given = [dict(grid, count=shapes[name].count, dtype=shapes[name].dtype)
                 for name in step.inputs]
        made, problem = _call_profile(step, profile_fn, given, callables[index])
        if problem is not None:
            key = "profile" if step.profile is not None else step.kind
            problems.append(step.locate(key).problem(problem, step.name))
            made = guess
        shapes.update(zip(step.outputs, made))
    return shapes


def _call_profile(step: StepSpec, profile_fn: Any, given: list[dict[str, Any]],
                  found: StepCallables) -> tuple[list[_Shape], str | None]:
    try:
        made = profile_fn([dict(p) for p in given], callable_params(step, found.fn, {}))
    except Exception as error:  # the user's profile function: any failure is a problem to report
        return [], f"the profile function raised {type(error).__name__}: {error}"
    answers = list(made) if isinstance(made, (list, tuple)) else [made] * len(step.outputs)
    if len(answers) != len(step.outputs):
        return [], (f"the profile function returned {len(answers)} profiles for "
                    f"{len(step.outputs)} outputs")
    shapes = []
    for answer in answers:
        if not isinstance(answer, Mapping):
            return [], f"the profile function returned a {type(answer).__name__}, not a profile"
        merged = {**given[0], "count": 1, **answer}  # as the engine grows a profile
        count = merged.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            return [], f"the profile function returned a profile with count {count!r}"
        try:
            dtype = np.dtype(merged.get("dtype")).name
        except TypeError:
            return [], (f"the profile function returned a profile with dtype "
                        f"{merged.get('dtype')!r}, not a numpy dtype")
        shapes.append(_Shape(count, dtype, True))
    return shapes, None


def _readers(spec: PipelineSpec) -> dict[str, list[int]]:
    readers: dict[str, list[int]] = {}
    for index, step in enumerate(spec.steps):
        for name in step.inputs:
            readers.setdefault(name, []).append(index)
    return readers


@dataclass(frozen=True)
class _Choices:
    """What the budget made the plan change: step outputs spilled to disk, steps fused into the
    steps that read them, inputs read from their files in spite of margins or several readers,
    and a smaller automatic tile size."""

    spill: frozenset[str] = frozenset()
    stream: frozenset[str] = frozenset()
    fuse: frozenset[int] = frozenset()            # steps whose images are fused into readers
    refused: tuple[tuple[str, str], ...] = ()     # (image, why it was not fused instead)
    tile_sizes: tuple[tuple[int, int], ...] = ()  # (step index, tile size)


def _fit(spec: PipelineSpec, resources: Resources, profiles: Mapping[str, Mapping[str, Any]],
         sources: Mapping[str, Source], shapes: Mapping[str, _Shape],
         callables: Mapping[int, StepCallables],
         margins: Mapping[int, int | None], fusing: bool = True) -> RunPlan:
    """The fastest plan that fits the budget: everything that can in shared memory; while the
    peak does not fit, the largest image held at the peak goes: a step's image is fused into
    the map steps that read it when that recomputes little enough
    (:data:`FUSE_MAX_RECOMPUTE`), else spilled (written as computed, read back by window); an
    input is read from its file by every reader; then the peak step's tiles shrink (when the
    tile size is automatic; only that step's, so that reductions elsewhere keep the tiling,
    hence the exact floating-point result, of the plan in memory). What still does not fit is
    returned as it is (``fits`` False): validation refuses it, naming the step.

    On a cluster, whose workers share no memory, every chain that recomputes little enough is
    fused from the start: its images would otherwise be spilled to a shared filesystem."""
    choices = _Choices()
    if resources.executor == "cluster" and fusing:  # else spilled to a shared filesystem
        choices = _Choices(fuse=_fusable(spec, choices))
    plan = _decide(spec, resources, profiles, sources, shapes, callables, margins, choices)
    while not plan.fits:
        peak = max(plan.steps, key=lambda step: step.memory.held)
        if peak.fused_into is not None:  # its chain runs with, and is tiled as, its last step
            peak = plan.steps[peak.fused_into]
        movable = [image for image in plan.images.values()
                   if image.lives == "shared" and image.arrives <= peak.index <= image.released_after
                   and image.name not in plan.copied
                   and (image.made_by is None or image.released_after > image.arrives)]
        if movable:
            largest = max(movable, key=lambda image: image.nbytes)
            if largest.made_by is None:
                choices = replace(choices, stream=choices.stream | {largest.name})
            else:
                maker = [step.name for step in spec.steps].index(largest.made_by)
                # Fuse its step alone into its readers, or with every step that can join their
                # chain (fusing one step keeps the chain's other inputs alive longer): the
                # trial with the lower peak. A chain that recomputes too much is not fused.
                trial, fused = None, choices
                if fusing and maker not in choices.fuse:
                    trials = [(_decide(spec, resources, profiles, sources, shapes, callables,
                                       margins, option), option)
                              for option in _fusions(spec, choices, margins, maker)]
                    trial, fused = min(trials, key=lambda found: found[0].peak.held)
                if trial is not None and trial.images[largest.name].lives == "fused":
                    choices, plan = fused, trial
                    continue
                why = ("" if trial is None
                       else _not_fused(spec, fused, margins, trial, maker))
                refused = (*choices.refused, (largest.name, why))
                choices = replace(choices, spill=choices.spill | {largest.name}, refused=refused)
        elif spec.tiling.tile_size is None and peak.tiling.tile_size > MIN_TILE_SIZE[spec.tiling.mode]:
            smaller = (peak.index, max(MIN_TILE_SIZE[spec.tiling.mode],
                                       peak.tiling.tile_size // 2))
            choices = replace(choices, tile_sizes=(*choices.tile_sizes, smaller))
        else:
            return plan
        plan = _decide(spec, resources, profiles, sources, shapes, callables, margins, choices)
    return plan


def _fusions(spec: PipelineSpec, choices: _Choices, margins: Mapping[int, int | None],
             maker: int) -> list[_Choices]:
    """Ways to fuse the images of step ``maker`` into their readers: alone, and with every
    other step that can be fused into the chain it then joins."""
    alone = replace(choices, fuse=choices.fuse | {maker})
    readers = _readers(spec)
    able = _fusable(spec, choices)
    chain = next((chain for chain in _chains(spec, able | {maker}, margins, readers).values()
                  if maker in chain), ())
    joined = replace(choices, fuse=choices.fuse | {maker} | (able & set(chain[:-1])))
    return [alone] if joined == alone else [alone, joined]


def _fusable(spec: PipelineSpec, choices: _Choices) -> frozenset[int]:
    """The map steps whose images may be fused into their readers: no image of theirs is an
    output, spilled, or read by anything but map steps (:func:`_chains` checks the rest)."""
    spilled = _spilled_steps(spec, choices)
    readers = _readers(spec)
    return frozenset(index for index, step in enumerate(spec.steps)
                     if index not in spilled and step.kind == "map" and step.outputs
                     and not any(name in spec.outputs for name in step.outputs)
                     and all(spec.steps[r].kind == "map" for name in step.outputs
                             for r in readers.get(name, [])))


def _chains(spec: PipelineSpec, fuse: frozenset[int], margins: Mapping[int, int | None],
            readers: Mapping[str, list[int]]) -> dict[int, tuple[int, ...]]:
    """The fused chains the ``fuse`` choices make, by their last step: each step in ``fuse`` is
    joined to the steps that read its images. A chain holds when every step but its last is in
    ``fuse``, is a map with a margin known before the run (as is the last), and its images are
    no outputs and are read by steps of the chain only; the others are not fused."""
    parent = {index: index for index in range(len(spec.steps))}

    def root(index: int) -> int:
        while parent[index] != index:
            index = parent[index]
        return index

    for index in fuse:
        for name in spec.steps[index].outputs:
            for reader in readers.get(name, []):
                parent[root(reader)] = root(index)
    members: dict[int, list[int]] = {}
    for index in range(len(spec.steps)):
        members.setdefault(root(index), []).append(index)
    chains = {}
    for group in members.values():
        if len(group) < 2:
            continue
        last, inside = group[-1], set(group)
        if all(spec.steps[i].kind == "map" and margins.get(i) is not None for i in group) and all(
                i in fuse and not any(name in spec.outputs for name in spec.steps[i].outputs)
                and all(set(readers.get(name, [])) <= inside for name in spec.steps[i].outputs)
                for i in group[:-1]):
            chains[last] = tuple(group)
    return chains


def _not_fused(spec: PipelineSpec, choices: _Choices, margins: Mapping[int, int | None],
               trial: RunPlan, maker: int) -> str:
    """Why a step's image is spilled rather than fused into the steps that read it."""
    chain = next((chain for chain in _chains(spec, choices.fuse - _spilled_steps(spec, choices),
                                             margins, _readers(spec)).values()
                  if maker in chain), ())
    if not chain:
        return ("; not fused: only an image that is no output, made and read by map steps "
                "whose margins are known before the run, can be")
    last = trial.steps[chain[-1]]
    share = _chain_share(spec, chain, margins, last.tiling.height, last.tiling.width,
                         last.requested, trial.resources.workers, last.block_shape)
    return (f"; not fused: the chain would compute {share:.0%} more pixels than step by step, "
            f"more than spilling costs (at most {FUSE_MAX_RECOMPUTE:.0%})")


def _chain_share(spec: PipelineSpec, chain: tuple[int, ...], margins: Mapping[int, int | None],
                 height: int, width: int, tiling: Tiling, workers: int,
                 block_shape: tuple[int, int] | None) -> float:
    """The recomputation a fused chain costs on the tiles it would run with."""
    stages = _stages(spec, chain, margins)
    size = plan_step(height, width, margin=chain_margin(stages), tiling=tiling, workers=workers,
                     block_shape=block_shape).tile_size
    return recompute_share(height, width, size, tiling.mode, stages)


def _stages(spec: PipelineSpec, chain: tuple[int, ...],
            margins: Mapping[int, int | None]) -> list[ChainStep]:
    """A chain's steps as the engine's fused stages (callables are not needed to plan them)."""
    return [ChainStep(spec.steps[i].name, _no_callable, spec.steps[i].inputs, spec.steps[i].outputs,
                  margins[i]) for i in chain]


def _no_callable(*_args: Any) -> None:
    """The callable of a stage that is only planned."""


#: The smallest automatic tile size (square side, strip height) a budget may shrink tiles to:
#: below, per-tile costs and re-read margins dominate.
MIN_TILE_SIZE = {"tiles": 64, "strips": 16}


def _decide(spec: PipelineSpec, resources: Resources, profiles: Mapping[str, Mapping[str, Any]],
            sources: Mapping[str, Source], shapes: Mapping[str, _Shape],
            callables: Mapping[int, StepCallables],
            margins: Mapping[int, int | None], choices: _Choices) -> RunPlan:
    grid = next(iter(profiles.values()))
    height, width = int(grid["height"]), int(grid["width"])
    block_shape = grid.get("block_shape")
    readers = _readers(spec)
    shrunk = dict(choices.tile_sizes)

    def tiling_spec(index: int) -> Tiling:
        return Tiling(spec.tiling.mode, shrunk[index]) if index in shrunk else spec.tiling

    chains: dict[int, tuple[int, ...]] = {}
    shares: dict[int, float] = {}
    for last, chain in _chains(spec, choices.fuse - _spilled_steps(spec, choices), margins,
                               readers).items():
        share = _chain_share(spec, chain, margins, height, width, tiling_spec(last),
                             resources.workers, block_shape)
        if share <= FUSE_MAX_RECOMPUTE:
            chains[last], shares[last] = chain, share
    runs_at = {index: last for last, chain in chains.items() for index in chain}
    growth = {index: g for chain in chains.values()
              for index, g in zip(chain, chain_growths(_stages(spec, chain, margins)))}
    # Images live until the step that runs their last reader: a chain runs with its last step.
    original = readers
    readers = {name: sorted({runs_at.get(i, i) for i in steps}) for name, steps in readers.items()}
    reach = {index: (margin if index not in growth else growth[index] + (margin or 0))
             for index, margin in margins.items()}
    images: dict[str, ImagePlan] = {}
    for name, item in spec.inputs.items():
        steps = readers.get(name, [])
        reaches = [reach[i] for i in original.get(name, [])]
        lives, why = _input_residence(name, spec, steps,
                                      None if None in reaches else max(reaches, default=0))
        if resources.executor == "cluster":
            lives, why = "file", ("read from its file by window: the cluster's workers share no "
                                  "memory" + (", then copied to its output" if name in spec.outputs
                                              else ""))
        if name in choices.stream:
            lives, why = "file", f"read from its file by window: the budget does not hold it ({why})"
        warped = sources[name].warped()
        if warped:
            why += (f"; {', '.join(location_name(path) for path in warped)} warped onto the "
                    f"working grid ({item.resampling})")
        arrives = -1 if name in spec.outputs else (steps[0] if steps else len(spec.steps))
        released = max(steps) if steps else -1
        images[name] = ImagePlan(
            name, None, item.path, shapes[name].count, height, width, shapes[name].dtype, lives,
            why, arrives, released, _output_path(spec, name), source=sources[name])
    for index, step in enumerate(spec.steps):
        for name in step.outputs:
            at = runs_at.get(index, index)
            released = max([at, *readers.get(name, [])])
            lives, why = _output_residence(name, spec, readers)
            if resources.executor == "cluster":
                lives, why = _cluster_residence(name, spec, readers)
            if name in choices.spill:
                where = "its output file" if name in spec.outputs else "a scratch file"
                lives, why = "spilled", (f"the budget does not hold it: written to {where} as "
                                         "computed, read back by window")
                why += dict(choices.refused).get(name, "")
            if at != index:
                last = spec.steps[at].name
                lives, why = "fused", (f"computed tile by tile inside the tiles of step '{last}' "
                                       f"(a fused chain), never held: the chain computes "
                                       f"{shares[at]:.1%} more pixels than step by step")
            images[name] = ImagePlan(
                name, step.name, None, shapes[name].count, height, width, shapes[name].dtype,
                lives, why, at, released, _output_path(spec, name), shapes[name].known)
    copied = tuple(name for name in spec.inputs if name in spec.outputs)
    steps: list[StepPlan] = []
    for index, step in enumerate(spec.steps):
        chain = chains.get(index, (index,))
        margin = margins[index]
        reads = max(reach[i] or 0 for i in chain)  # a chain reads around its tiles this far
        # Tiles of a step that writes a file as it computes cover the file's blocks whole.
        writes = [name for name in step.outputs if images[name].lives in ("written", "spilled")]
        tiling = plan_step(height, width, margin=reads, tiling=tiling_spec(index),
                           workers=resources.workers,
                           block_shape=_output_block(spec, writes[0]) if writes else block_shape)
        if index in runs_at and index not in chains:  # computed inside its chain's last step
            steps.append(StepPlan(
                index, step, callables[index], margins[index], _margin_from(step, margins[index],
                                                                            callables[index]),
                tiling, 0, tiling_spec(index), resources.workers, block_shape, (), (), (),
                Memory(0, 0, resources.fixed_bytes), fused_into=runs_at[index]))
            continue
        read = [name for i in chain for name in spec.steps[i].inputs]
        loads = tuple(name for name in dict.fromkeys(read)
                      if name in spec.inputs and images[name].arrives == index)
        results = step.outputs if step.kind == "map" else (step.name,)
        stages = tuple(name for name in results if name in spec.outputs
                       and (step.kind == "reduce" or images[name].lives == "shared"))
        releases = tuple(name for name, image in images.items()
                         if image.released_after == index and image.arrives <= index)
        parts = [(spec.steps[i], _grown(tiling, growth.get(i, 0) + (margins[i] or 0)),
                  _memory_factor(spec.steps[i], callables[i])) for i in chain]
        memory = _memory(index, parts, tiling, images, resources, loads)
        steps.append(StepPlan(
            index, step, callables[index], margin, _margin_from(step, margins[index],
                                                                callables[index]),
            tiling, len(make_chunks(range(tiling.tile_count), resources.workers)),
            tiling_spec(index), resources.workers, block_shape, loads, stages, releases, memory,
            chain if len(chain) > 1 else (), None, shares.get(index, 0.0)))
    # A fused step runs at its chain's moment, with its chain's tiles.
    steps = [step if step.fused_into is None else
             replace(step, memory=steps[step.fused_into].memory,
                     tiling=steps[step.fused_into].tiling, chunks=steps[step.fused_into].chunks)
             for step in steps]
    return RunPlan(spec, resources, FrozenMap(images), tuple(steps), copied)


def _spilled_steps(spec: PipelineSpec, choices: _Choices) -> frozenset[int]:
    """Steps with an image the budget spilled: they are not fused."""
    return frozenset(index for index, step in enumerate(spec.steps)
                     if any(name in choices.spill for name in step.outputs))


def _margin_from(step: StepSpec, margin: int | None,
                 found: StepCallables) -> Literal["stated", "declared", "none", "params"]:
    return ("params" if margin is None else "stated" if step.margin is not None
            else "declared" if hasattr(found.fn, "margin") else "none")


def _grown(tiling: TileLayout, reach: int) -> tuple[int, int]:
    """The largest window a step of a fused chain computes on: a tile grown by ``reach``."""
    columns = tiling.tile_size if tiling.mode == "tiles" else tiling.width
    return (min(tiling.height, tiling.tile_size + 2 * reach),
            min(tiling.width, columns + 2 * reach))


def _memory_factor(step: StepSpec, found: StepCallables) -> float | None:
    """The callable's declared memory factor for the step's params (None: none, or unknown
    before the run because the params hold ``${...}`` and it is a function of them)."""
    declared_factor = getattr(found.fn, "memory_factor", None)
    if declared_factor is None or (callable(declared_factor) and any(step.references())):
        return None
    try:
        return declared_memory_factor(found.fn, {} if any(step.references())
                                      else callable_params(step, found.fn, {}))
    except Exception:  # noqa: BLE001 - the user's function: the estimate falls back, says nothing
        return None


def _output_block(spec: PipelineSpec, name: str) -> tuple[int, int]:
    """The block shape (rows, cols) of the file an image is written to as it is computed."""
    output = spec.outputs.get(name)
    options = {str(key).lower(): value for key, value in (output.options if output else {}).items()}
    default = DEFAULT_GTIFF_OPTIONS["blockysize"]
    return (int(options.get("blockysize", default)), int(options.get("blockxsize", default)))


def _output_path(spec: PipelineSpec, name: str) -> Path | None:
    output = spec.outputs.get(name)
    return output.path if output is not None else None


def _input_residence(name: str, spec: PipelineSpec, steps: list[int],
                     margin: int | None) -> tuple[Residence, str]:
    """Where an input lives when the budget holds it: ``steps`` read it (a fused chain counts
    once), the first with ``margin`` (a chain's: how far around its tiles it reads the input)."""
    if name in spec.outputs:
        return "shared", "it is also an output: loaded once, then copied"
    if not steps:
        return "file", "no step reads it"
    if len(steps) > 1:
        return "shared", f"{len(steps)} steps read it: loaded once rather than decoded {len(steps)} times"
    if margin is None:
        return "shared", "its reader's margin depends on ${...} params"
    if margin > 0:
        return "shared", (f"its reader has margin {margin}: windows overlap, so reading the file "
                          "would decode blocks again")
    return "file", "one step reads it, without margin: workers decode their own windows"


def _output_residence(name: str, spec: PipelineSpec,
                      readers: Mapping[str, list[int]]) -> tuple[Residence, str]:
    if name in readers:
        count = len(readers[name])
        return "shared", (f"{count} later step{'s read' if count > 1 else ' reads'} it: held in "
                          "shared memory, workers write their tiles into it")
    if name in spec.outputs:
        return "written", "no later step reads it: written to its file as tiles are computed"
    return "shared", "made by a step that nothing reads: held until the step ends"


def _cluster_residence(name: str, spec: PipelineSpec,
                       readers: Mapping[str, list[int]]) -> tuple[Residence, str]:
    """Where a step's image lives on a cluster, whose workers share no memory: in a file."""
    where = "its output file" if name in spec.outputs else "a scratch file"
    if name in readers:
        return "spilled", (f"the cluster's workers share no memory: written to {where} as "
                           "computed, read back by window by the later steps")
    if name in spec.outputs:
        return "written", "no later step reads it: written to its file as tiles are computed"
    return "written", ("made by a step that nothing reads: written to a scratch file, removed "
                       "when the step ends")


def _memory(index: int, parts: list[tuple[StepSpec, tuple[int, int], float | None]],
            tiling: TileLayout, images: Mapping[str, ImagePlan], resources: Resources,
            loads: tuple[str, ...]) -> Memory:
    """Memory while a step (or a fused chain: ``parts``, each step with its largest window and
    declared memory factor) loads its inputs and computes: the shared images alive then (its
    outputs included), and each worker's tile: a decoded window of each input read from its
    file, the callable's temporaries and results (its declared ``memory_factor`` times its
    inputs' bytes, else as much again as its inputs plus its results), and GDAL's block cache
    (capped in each worker) while it decodes files. A chain's steps are counted as if their
    windows were all alive at once."""
    held = sum(image.nbytes for image in images.values()
               if image.lives == "shared" and image.arrives <= index <= image.released_after)
    per_worker = 0
    from_files: dict[str, ImagePlan] = {}
    for step, (rows, columns), factor in parts:
        read = [images[name] for name in dict.fromkeys(step.inputs)]
        files = [image for image in read if image.lives in ("file", "spilled")]
        from_files.update((image.name, image) for image in files)
        inputs = sum(image.pixel_bytes for image in read)
        computed = (inputs * factor if factor is not None  # temporaries and results, declared
                    else inputs + sum(images[name].pixel_bytes for name in step.outputs))
        per_worker += rows * columns * (computed + sum(image.pixel_bytes for image in files))
    made = [images[name] for name in parts[-1][0].outputs]
    # A written output's tile cores travel to the main process: pickled, received, written.
    core_pixels = tiling.tile_size * (tiling.tile_size if tiling.mode == "tiles" else tiling.width)
    per_worker += 2 * core_pixels * sum(image.pixel_bytes for image in made
                                        if image.lives in ("written", "spilled"))
    if resources.executor == "cluster":  # this process: the tiles it receives and writes
        return Memory(held, resources.workers * 2 * core_pixels
                      * sum(image.pixel_bytes for image in made), resources.fixed_bytes)
    decoded = {**from_files, **{name: images[name] for name in loads}}
    if decoded:  # GDAL's block cache, while a worker decodes a file
        per_worker += min(sum(image.nbytes for image in decoded.values()),
                          resources.gdal_cache)
    rows = max(window[0] for _, window, _ in parts)
    for image in decoded.values():  # a warped view keeps the whole-width strips of its window
        if image.source is not None and image.source.warped():
            per_worker += min(image.height, rows + 2 * WARP_STRIP_ROWS) * image.width \
                * image.pixel_bytes
    return Memory(held, resources.workers * per_worker, resources.fixed_bytes)
