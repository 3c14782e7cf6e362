"""Fitting a plan to the memory budget: the fastest plan that fits, and the least budget that
any plan of a run fits in. Both take a run's shape (:class:`~eoscale.pipeline.plan.shapes.
RunShape`), so they need no raster."""

from __future__ import annotations

from dataclasses import replace

from eoscale.pipeline.plan.decide import Choices, decide
from eoscale.pipeline.plan.feeding import with_feeding
from eoscale.pipeline.plan.fusion import (
    cheap_chains,
    fusable,
    fusions,
    not_fused,
    priced_chains,
)
from eoscale.pipeline.plan.residence import Residence
from eoscale.pipeline.plan.resources import BUDGET_HEADROOM, Resources
from eoscale.pipeline.plan.shapes import RunShape
from eoscale.pipeline.plan.values import RunPlan

#: The smallest automatic tile size (square side, strip height) a budget may shrink tiles to:
#: below, per-tile costs and re-read margins dominate.
MIN_TILE_SIZE = {"tiles": 64, "strips": 16}


def fit(shape: RunShape, resources: Resources) -> RunPlan:
    """The fastest plan of ``shape`` that fits the budget of ``resources`` (:func:`fit_plan`);
    where the plan with fused chains does not fit, one that only spills may: fusing keeps a
    chain's inputs alive longer and grows its windows. Its reduces that the tiles of the map
    making their images can feed are fed by them
    (:func:`~eoscale.pipeline.plan.feeding.with_feeding`)."""
    fitted = fit_plan(shape, resources)
    if not fitted.fits and any(step.chain for step in fitted.steps):
        spilling = fit_plan(shape, resources, fusing=False)
        if spilling.fits:
            return with_feeding(spilling)
    return with_feeding(fitted)


def least_budget(shape: RunShape, resources: Resources, resolution: int = 1024) -> int:
    """The least memory budget (to ``resolution`` bytes) under which :func:`fit` finds a plan
    of ``shape`` that fits, for ``resources`` otherwise as given: a bisection between nothing
    and what the plan without a budget holds."""
    def fits(memory: int) -> bool:
        return fit(shape, replace(resources, memory=memory, given=True)).fits

    roomy = fit(shape, replace(resources, memory=None))
    high = int(roomy.peak.held / (1 - BUDGET_HEADROOM)) + resolution
    low = 0
    if fits(low):
        return low
    while high - low > resolution:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle
    return high


def fit_plan(shape: RunShape, resources: Resources, fusing: bool = True) -> RunPlan:
    """The fastest plan that fits the budget: everything that can in shared memory; while the
    peak does not fit, the largest image held at the peak goes: a step's image is fused into
    the map steps that read it when that recomputes little enough
    (:func:`~eoscale.pipeline.plan.fusion.affordable`), else spilled (written as computed, read
    back by window); an input is read from its file by every reader; then the peak step's tiles
    shrink (when the tile size is automatic; only that step's, so that reductions elsewhere keep
    the tiling, hence the exact floating-point result, of the plan in memory). What still does
    not fit is returned as it is (``fits`` False): validation refuses it, naming the step.

    It starts from :func:`first_choices`."""
    spec = shape.spec
    choices = first_choices(shape, resources, fusing)
    plan = decide(shape, resources, choices)
    while not plan.fits:
        peak = max(plan.steps, key=lambda step: step.memory.held)
        if peak.fused_into is not None:  # its chain runs with, and is tiled as, its last step
            peak = plan.steps[peak.fused_into]
        movable = [image for image in plan.images.values()
                   if image.lives.held_whole and image.arrives <= peak.index <= image.released_after
                   and image.name not in plan.copied
                   and (image.made_by is None or image.released_after > image.arrives)]
        if movable:
            largest = max(movable, key=lambda image: image.nbytes)
            if largest.made_by is None:
                choices = replace(choices, stream=choices.stream | {largest.name})
            else:
                maker = [step.name for step in spec.steps].index(largest.made_by)
                found = _fused_instead(shape, resources, choices, maker) if fusing else None
                if found is not None and found[0].images[largest.name].lives is Residence.FUSED:
                    plan, choices = found
                    continue
                why = "" if found is None else _why_not_fused(shape, resources, found[1], maker)
                choices = replace(choices, spill=choices.spill | {largest.name},
                                  refused=(*choices.refused, (largest.name, why)))
        elif (spec.tiling.tile_size is None
              and peak.tiling.tile_size > MIN_TILE_SIZE[spec.tiling.mode]):
            smaller = (peak.index, max(MIN_TILE_SIZE[spec.tiling.mode],
                                       peak.tiling.tile_size // 2))
            choices = replace(choices, tile_sizes=(*choices.tile_sizes, smaller))
        else:
            return plan
        plan = decide(shape, resources, choices)
    return plan


def first_choices(shape: RunShape, resources: Resources, fusing: bool) -> Choices:
    """What a plan chooses whatever the budget. On a cluster, whose workers share no memory,
    every chain that recomputes little enough is fused: its images would otherwise be spilled
    to a shared filesystem. On one machine, the chains that recompute very little
    (:func:`~eoscale.pipeline.plan.fusion.cheap_chains`) are fused when that holds no more
    memory than step by step: a chain reads its inputs with the margins of all its steps, so
    an input its first step alone would stream (no margin) is held whole for the chain (W3 of
    the benchmarks: the 384 MiB scene held for 'ratio > median' where 'ratio' alone streamed it
    and held its own 256 MiB). An output that only reduces read, each fed by the tiles of the
    map making it (:mod:`~eoscale.pipeline.plan.feeding`), is written as computed rather than
    held whole and written by the main process afterwards."""
    if resources.executor == "cluster":
        return Choices(fuse=fusable(shape, frozenset())) if fusing else Choices()
    plain = _written_and_fed(shape, resources, Choices())
    cheap = cheap_chains(shape, plain.tiling_of(shape), resources.workers) if fusing else None
    if not cheap:
        return plain
    fused = _written_and_fed(shape, resources, Choices(fuse=cheap))
    if decide(shape, resources, fused).peak.held <= decide(shape, resources, plain).peak.held:
        return fused
    return plain


def _written_and_fed(shape: RunShape, resources: Resources, choices: Choices) -> Choices:
    """``choices`` with the outputs that only reduces fed by their maker's tiles read written
    as computed."""
    spec = shape.spec
    write = frozenset(name for step in spec.steps if step.kind == "map" for name in step.outputs
                      if name in spec.outputs and shape.readers.get(name)
                      and all(spec.steps[r].kind == "reduce" for r in shape.readers[name]))
    while write:
        trial = with_feeding(decide(shape, resources, replace(choices, write=write)))
        unfed = frozenset(name for name in write if any(
            trial.steps[r].fed_by is None for r in shape.readers[name]))
        if not unfed:
            break
        write -= unfed
    return replace(choices, write=write)


def _fused_instead(shape: RunShape, resources: Resources, choices: Choices,
                   maker: int) -> tuple[RunPlan, Choices] | None:
    """Step ``maker``'s images fused into their readers, alone or with every step that can join
    their chain (fusing one step keeps the chain's other inputs alive longer): the trial with
    the lower peak (None: already asked for). A chain that recomputes too much is not fused."""
    if maker in choices.fuse:
        return None
    trials = []
    for fuse in fusions(shape, choices.fuse, choices.spilled_steps(shape), maker):
        option = replace(choices, fuse=fuse)
        trials.append((decide(shape, resources, option), option))
    return min(trials, key=lambda found: found[0].peak.held)


def _why_not_fused(shape: RunShape, resources: Resources, choices: Choices, maker: int) -> str:
    """Why step ``maker``'s image is spilled rather than fused as ``choices`` asked."""
    priced = priced_chains(shape, choices.fused_steps(shape), choices.tiling_of(shape),
                           resources.workers)
    return not_fused(priced, maker)
