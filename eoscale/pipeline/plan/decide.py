"""One plan from a run's shape, its resources and the budget's choices: which chains are fused,
where each image lives, and how each step runs (its tiles, what it loads, saves and releases, the
memory it holds), each decided by its own function, in that order: the chains, the images'
residences, the steps' tiles, the files written as computed (and whether the workers encode
them), then each step's plan."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from eoscale.engine.executors import make_chunks, max_chunks
from eoscale.engine.fused import chain_growths
from eoscale.engine.tiling import TileLayout, Tiling, plan_step, whole_block_size, written_mode
from eoscale.io.paths import location_name
from eoscale.pipeline.plan.estimates import grown_window, memory_factor, step_memory
from eoscale.pipeline.plan.files import (
    encoding_refusal,
    file_profile,
    image_file,
    overviews_refusal,
    planned_blocks,
)
from eoscale.pipeline.plan.fusion import affordable, chain_steps, priced_chains
from eoscale.pipeline.plan.margins import margin_from
from eoscale.pipeline.plan.residence import input_home, step_image_home
from eoscale.pipeline.plan.resources import Memory, Resources
from eoscale.pipeline.plan.shapes import RunShape
from eoscale.pipeline.plan.values import ImagePlan, RunPlan, StepPlan
from eoscale.pipeline.spec import FrozenMap


@dataclass(frozen=True)
class Choices:
    """What the budget made the plan change: step outputs spilled to disk, steps fused into the
    steps that read them, inputs read from their files in spite of margins or several readers,
    and a smaller automatic tile size."""

    spill: frozenset[str] = frozenset()
    stream: frozenset[str] = frozenset()
    fuse: frozenset[int] = frozenset()            # steps whose images are fused into readers
    refused: tuple[tuple[str, str], ...] = ()     # (image, why it was not fused instead)
    tile_sizes: tuple[tuple[int, int], ...] = ()  # (step index, tile size)
    write: frozenset[str] = frozenset()           # outputs written, not held: reduces are fed

    def spilled_steps(self, shape: RunShape) -> frozenset[int]:
        """Steps with an image the budget spilled: they are not fused."""
        return frozenset(index for index, step in enumerate(shape.spec.steps)
                         if any(name in self.spill for name in step.outputs))

    def fused_steps(self, shape: RunShape) -> frozenset[int]:
        """The steps asked to be fused that are not spilled."""
        return self.fuse - self.spilled_steps(shape)

    def tiling_of(self, shape: RunShape) -> Callable[[int], Tiling]:
        """Each step's requested tiling: the pipeline's, with the size the budget shrank to."""
        shrunk = dict(self.tile_sizes)
        requested = shape.spec.tiling
        return lambda index: (Tiling(requested.mode, shrunk[index]) if index in shrunk
                              else requested)


@dataclass(frozen=True)
class Fused:
    """The chains a plan fuses, by their last step, with the recomputation each costs."""

    chains: dict[int, tuple[int, ...]] = field(default_factory=dict)
    shares: dict[int, float] = field(default_factory=dict)

    @property
    def runs_at(self) -> dict[int, int]:
        """The step each step of a chain runs with: its chain's last."""
        return {index: last for last, chain in self.chains.items() for index in chain}


def decide(shape: RunShape, resources: Resources, choices: Choices) -> RunPlan:
    """The plan that ``choices`` make of a run of ``shape`` on ``resources``."""
    tiling_of = choices.tiling_of(shape)
    fused = fused_chains(shape, choices, tiling_of, resources.workers)
    images = {**input_plans(shape, resources, choices, fused),
              **step_image_plans(shape, resources, choices, fused)}
    tilings = step_tilings(shape, resources, fused, choices, images)
    images = with_encodings(shape, resources, tilings, with_files(shape, tilings, images))
    steps = step_plans(shape, resources, fused, tilings, images)
    copied = tuple(name for name in shape.spec.inputs if name in shape.spec.outputs)
    return RunPlan(shape.spec, resources, FrozenMap(images), tuple(steps), copied, shape.stac)


def fused_chains(shape: RunShape, choices: Choices, tiling_of: Callable[[int], Tiling],
                 workers: int) -> Fused:
    """The chains fused: those the choices make that recompute little enough."""
    priced = priced_chains(shape, choices.fused_steps(shape), tiling_of, workers)
    kept = {last: (chain, share) for last, (chain, share) in priced.items() if affordable(share)}
    return Fused({last: chain for last, (chain, _) in kept.items()},
                 {last: share for last, (_, share) in kept.items()})


def _reach(shape: RunShape, fused: Fused) -> dict[int, int | None]:
    """How far around its tiles each step reads its inputs: its margin, grown in a chain."""
    growth = {index: g for chain in fused.chains.values()
              for index, g in zip(chain, chain_growths(chain_steps(shape, chain)))}
    return {index: (margin if index not in growth else growth[index] + (margin or 0))
            for index, margin in shape.margins.items()}


def _late_readers(shape: RunShape, fused: Fused) -> dict[str, list[int]]:
    """The steps that read each image, as they run: a chain's steps with its last step."""
    runs_at = fused.runs_at
    return {name: sorted({runs_at.get(i, i) for i in steps})
            for name, steps in shape.readers.items()}


def input_plans(shape: RunShape, resources: Resources, choices: Choices,
                fused: Fused) -> dict[str, ImagePlan]:
    """Where each input lives, and when it comes and goes."""
    spec = shape.spec
    readers = _late_readers(shape, fused)
    reach = _reach(shape, fused)
    images = {}
    for name, item in spec.inputs.items():
        steps = readers.get(name, [])
        reaches = [reach[i] for i in shape.readers.get(name, [])]
        lives, why = input_home(name, spec, steps,
                                None if None in reaches else max(reaches, default=0),
                                cluster=resources.executor == "cluster",
                                stream=name in choices.stream)
        source = shape.sources.get(name)
        warped = source.warped() if source is not None else ()
        if warped:
            why += (f"; {', '.join(location_name(path) for path in warped)} warped onto the "
                    f"working grid ({item.resampling})")
        arrives = -1 if name in spec.outputs else (steps[0] if steps else len(spec.steps))
        images[name] = ImagePlan(
            name, None, item.path, shape.images[name].count, shape.height, shape.width,
            shape.images[name].dtype, lives, why, arrives, max(steps) if steps else -1,
            _output_path(shape, name), source=source)
    return images


def step_image_plans(shape: RunShape, resources: Resources, choices: Choices,
                     fused: Fused) -> dict[str, ImagePlan]:
    """Where each step's image lives, and when it comes and goes."""
    spec = shape.spec
    readers = _late_readers(shape, fused)
    runs_at = fused.runs_at
    refused = dict(choices.refused)
    images = {}
    for index, step in enumerate(spec.steps):
        for name in step.outputs:
            at = runs_at.get(index, index)
            lives, why = step_image_home(
                name, spec, readers, cluster=resources.executor == "cluster",
                spill=refused.get(name, "") if name in choices.spill else None,
                fed=name in choices.write,
                fused_into=(spec.steps[at].name, fused.shares[at]) if at != index else None)
            made = shape.images[name]
            images[name] = ImagePlan(
                name, step.name, None, made.count, shape.height, shape.width, made.dtype,
                lives, why, at, max([at, *readers.get(name, [])]), _output_path(shape, name),
                made.known)
    return images


@dataclass(frozen=True)
class StepTiling:
    """A step's tiles (``layout``), the tiling it asked :func:`plan_step` for (``requested``:
    the pipeline's, or the size the budget shrank it to, made whole blocks where it can be), the
    blocks of the files it writes as it computes (``file_blocks``), and why its tile size is not
    the automatic one (``forced``)."""

    layout: TileLayout
    requested: Tiling
    file_blocks: tuple[int, int] | None = None
    forced: str | None = None


def step_tilings(shape: RunShape, resources: Resources, fused: Fused, choices: Choices,
                 images: Mapping[str, ImagePlan]) -> dict[int, StepTiling]:
    """Each step's tiles: for a chain, around which its tiles read as far as the chain does;
    for a step that writes files as it computes, on those files' block grid."""
    spec = shape.spec
    reach = _reach(shape, fused)
    tiling_of = choices.tiling_of(shape)
    shrunk = dict(choices.tile_sizes)
    tilings = {}
    for index, step in enumerate(spec.steps):
        reads = max(reach[i] or 0 for i in fused.chains.get(index, (index,)))
        blocks = written_blocks(shape, [images[name] for name in step.outputs
                                        if images[name].lives.written_as_computed])
        requested, forced = requested_tiling(shape, tiling_of(index), blocks, index in shrunk)
        layout = plan_step(shape.height, shape.width, margin=reads, tiling=requested,
                           workers=resources.workers, block_shape=blocks or shape.block_shape,
                           file_blocks=blocks)
        tilings[index] = StepTiling(layout, requested, blocks, forced)
    return tilings


def written_blocks(shape: RunShape, written: list[ImagePlan]) -> tuple[int, int] | None:
    """The blocks that tiles made of whole blocks of every file in ``written`` are made of
    (the least common multiple of their sides); None when nothing is written as computed."""
    if not written:
        return None
    blocks = [planned_blocks(shape.spec, image.name, _profile(image)) for image in written]
    return (math.lcm(*(rows for rows, _ in blocks)), math.lcm(*(cols for _, cols in blocks)))


def requested_tiling(shape: RunShape, tiling: Tiling, blocks: tuple[int, int] | None,
                     budget: bool) -> tuple[Tiling, str | None]:
    """The tiling a step asks for, and why its tile size is forced (None: automatic). A size
    the budget shrank tiles of a step writing files to is made whole blocks where it can be
    (at least one block), else kept; the pipeline's is kept as it is."""
    if tiling.tile_size is None or blocks is None:
        return tiling, None
    if not budget:
        return tiling, "asked for by tiling: tile_size or --tile-size"
    mode = written_mode(shape.spec.tiling, shape.height, shape.width, blocks)
    whole = whole_block_size(tiling.tile_size, shape.height, shape.width, mode, blocks,
                             grow=False)
    if whole is None:
        return Tiling(mode, tiling.tile_size), "the memory budget shrank them below one block"
    return Tiling(mode, whole), None


def with_files(shape: RunShape, tilings: Mapping[int, StepTiling],
               images: Mapping[str, ImagePlan]) -> dict[str, ImagePlan]:
    """``images``, each written as computed with the file it goes to (laid out for the tiles of
    the step that makes it)."""
    makers = _makers(shape)
    return {name: replace(image, file=image_file(shape.spec, name, tilings[makers[name]].layout,
                                                 _profile(image)))
            if image.made_by is not None and image.lives.written_as_computed else image
            for name, image in images.items()}


def with_encodings(shape: RunShape, resources: Resources, tilings: Mapping[int, StepTiling],
                   images: Mapping[str, ImagePlan]) -> dict[str, ImagePlan]:
    """``images``, each written to a file with why the workers do not encode it (None: they
    do): a file written as computed as the engine decides when its step runs
    (:func:`~eoscale.pipeline.plan.files.encoding_refusal`); an output held whole, or an
    input copied to its output, is written by the main process. An output with overviews
    also says why they are not made by the workers (:func:`~.files.overviews_refusal`)."""
    makers = _makers(shape)
    decided = {}
    for name, image in images.items():
        why, tiling = None, None
        if image.file is not None:
            tiling = tilings[makers[name]]
            why = encoding_refusal(shape.spec, name, image.file, _profile(image), tiling.layout,
                                   image.made_by or name, tiling.forced)
        elif image.output is not None and image.made_by is None:
            why = "an input copied to its output, strip by strip"
        elif image.output is not None:
            why = f"held whole in memory, then written once step '{image.made_by}' has run"
        pyramid = None
        output = shape.spec.outputs.get(name)
        if output is not None and image.output is not None and (
                output.layout.format == "COG" or output.layout.overviews):
            pyramid = overviews_refusal(shape.spec, name, _profile(image),
                                        None if why or tiling is None else tiling.layout) or ""
        decided[name] = replace(image, not_encoded=why, overviews_not_encoded=pyramid)
    return decided


def _makers(shape: RunShape) -> dict[str, int]:
    return {name: index for index, step in enumerate(shape.spec.steps) for name in step.outputs}


def _profile(image: ImagePlan) -> dict[str, object]:
    return file_profile(image.count, image.height, image.width, image.dtype)


def step_plans(shape: RunShape, resources: Resources, fused: Fused,
               tilings: Mapping[int, StepTiling],
               images: Mapping[str, ImagePlan]) -> list[StepPlan]:
    """How each step runs: its tiles, aligned to the blocks of the file it writes as it
    computes (planning again for those blocks keeps its tiles), what it loads, saves and
    releases, and the memory it holds. A fused step runs at its chain's moment, with its
    chain's tiles."""
    spec = shape.spec
    reach = _reach(shape, fused)
    runs_at = fused.runs_at
    steps: list[StepPlan] = []
    for index, step in enumerate(spec.steps):
        chain = fused.chains.get(index, (index,))
        tiling = tilings[index].layout
        requested, file_blocks = tilings[index].requested, tilings[index].file_blocks
        files = [images[name].file for name in step.outputs if images[name].file is not None]
        block_shape = files[0].block_shape if files else shape.block_shape
        found = shape.callables[index]
        planned = (index, step, found, shape.margins[index],
                   margin_from(step, shape.margins[index], found))
        if index in runs_at and index not in fused.chains:  # computed inside its chain's last
            steps.append(StepPlan(*planned, tiling, 0, requested, resources.workers,
                                  block_shape, (), (), (), Memory(0, 0, resources.fixed_bytes),
                                  fused_into=runs_at[index], file_blocks=file_blocks))
            continue
        loads, saves, releases = _comings_and_goings(shape, index, chain, images)
        parts = [(spec.steps[i], grown_window(tiling, reach[i] or 0),
                  memory_factor(spec.steps[i], shape.callables[i])) for i in chain]
        memory = step_memory(index, parts, tiling, images, resources)
        steps.append(StepPlan(
            *planned, tiling, len(make_chunks(range(tiling.tile_count), resources.workers,
                                              max_chunks(resources.executor != "cluster"))),
            requested, resources.workers, block_shape, loads, saves, releases, memory,
            chain if len(chain) > 1 else (), None, fused.shares.get(index, 0.0), file_blocks))
    return [step if step.fused_into is None else
            replace(step, memory=steps[step.fused_into].memory,
                    tiling=steps[step.fused_into].tiling, chunks=steps[step.fused_into].chunks)
            for step in steps]


def _comings_and_goings(shape: RunShape, index: int, chain: tuple[int, ...],
                        images: Mapping[str, ImagePlan],
                        ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """What step ``index`` (running ``chain``) loads before it, saves and releases after it."""
    spec = shape.spec
    step = spec.steps[index]
    read = [name for i in chain for name in spec.steps[i].inputs]
    loads = tuple(name for name in dict.fromkeys(read)
                  if name in spec.inputs and images[name].arrives == index)
    results = step.outputs if step.kind == "map" else (step.name,)
    saves = tuple(name for name in results if name in spec.outputs
                  and (step.kind == "reduce" or images[name].lives.held_whole))
    releases = tuple(name for name, image in images.items()
                     if image.released_after == index and image.arrives <= index)
    return loads, saves, releases


def _output_path(shape: RunShape, name: str) -> Path | None:
    output = shape.spec.outputs.get(name)
    return output.path if output is not None else None
