"""Which reduces are fed by the tiles of the map that makes their images, rather than reading
those images back from their files, and why the others are not.

A reduce whose images are written or spilled as they are computed would read its files back and
decode them again; fed by the map's tiles instead (:mod:`eoscale.engine.feeding`), it gets each
tile's partial from the worker that computed the tile, and no file is read. That needs every
image it reads to come from one map step (then it runs with that step's tiles, at that step's
moment), no margin (a tile's results are kept on its core only), and params that do not wait for
a result computed after that map. A reduce whose images are all held in shared memory reads no
file and is left as it is.
"""

from __future__ import annotations

from dataclasses import replace

from eoscale.pipeline.plan.residence import READ_BACK
from eoscale.pipeline.plan.values import ImagePlan, RunPlan, StepPlan
from eoscale.pipeline.spec import FrozenMap


def with_feeding(plan: RunPlan) -> RunPlan:
    """``plan`` with each reduce that a map's tiles can feed fed by them (its ``fed_by``: that
    map, whose moment it then runs at, on its tiles' cores: the map's tiling without margin),
    and every reduce that reads a file saying why it does (its ``feeding``)."""
    steps = list(plan.steps)
    for step in plan.steps:
        if step.kind != "reduce":
            continue
        maker, note = feeder(plan, step)
        if maker is None:
            steps[step.index] = replace(step, feeding=note)
            continue
        fed_by = plan.steps[maker]
        steps[step.index] = replace(step, fed_by=maker, feeding=note,
                                    tiling=replace(fed_by.tiling, margin=0),
                                    chunks=fed_by.chunks, memory=fed_by.memory)
    return replace(plan, steps=tuple(steps), images=FrozenMap(
        {name: _unread(image, steps) for name, image in plan.images.items()}))


def _unread(image: ImagePlan, steps: list[StepPlan]) -> ImagePlan:
    """``image``, saying so when every step that reads it is fed by its maker's tiles: then its
    file is not read back."""
    readers = [step for step in steps if image.name in step.step.inputs]
    if not image.lives.written_as_computed or not readers or any(
            step.fed_by is None for step in readers):
        return image
    fed = (f"not read back ({', '.join(step.name for step in readers)} "
           f"{'is' if len(readers) == 1 else 'are'} fed by step {image.made_by}'s tiles)")
    return replace(image, why=image.why.replace(READ_BACK, fed) if READ_BACK in image.why
                   else f"{image.why}; {fed}")


def feeder(plan: RunPlan, step: StepPlan) -> tuple[int | None, str]:
    """The map step whose tiles feed reduce ``step`` (None: none), and what the plan says of it:
    empty for a reduce that reads no file."""
    images = [plan.images[name] for name in dict.fromkeys(step.step.inputs)]
    files = [image.name for image in images if _in_a_file(image)]
    if not files:
        return None, ""
    back = f"reads {', '.join(files)} back from {'its file' if len(files) == 1 else 'their files'}"
    maker, why = _why_not(plan, step, images)
    if maker is None:
        return None, f"{back}: not fed by a map's tiles, {why}"
    return maker, f"fed by step {plan.steps[maker].name}'s tiles (no re-read)"


def _in_a_file(image: ImagePlan) -> bool:
    return image.lives.read_by_window or image.lives.written_as_computed


def _why_not(plan: RunPlan, step: StepPlan, images: list[ImagePlan]) -> tuple[int | None, str]:
    """The map step that can feed ``step``, or None and why none can."""
    inputs = [image.name for image in images if image.made_by is None]
    if inputs:
        return None, f"as it reads the pipeline input {inputs[0]}"
    makers = list(dict.fromkeys(image.made_by for image in images))
    if len(makers) > 1:
        return None, f"as its images come from several steps ({', '.join(map(str, makers))})"
    index = {other.name: other.index for other in plan.steps}
    maker = plan.steps[index[str(makers[0])]]
    if maker.fused_into is not None:
        return None, f"as step {maker.name} is computed inside a fused chain"
    if step.margin is None:
        return None, ("as its margin depends on ${...} params (a map's tiles feed only a reduce "
                      "without margin: their cores)")
    if step.margin > 0:
        return None, (f"as its margin is {step.margin} (a map's tiles feed only a reduce without "
                      "margin: their cores)")
    late = [str(reference) for _, reference in step.step.references()
            if index.get(reference.result, maker.index) >= maker.index]
    if late:
        return None, f"as its params use {late[0]}, known only after step {maker.name} has run"
    return maker.index, ""
