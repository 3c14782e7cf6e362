"""Check a spec before running it, and estimate the memory a run needs.

:func:`check_graph` needs nothing but the spec (the loader runs it on every pipeline): names are
unique, every step input and ``${...}`` reference is defined by an earlier step, every output
names a result and is written to the right kind of file. An output may name a pipeline input (it
is copied, with the output's creation options) but not share a path with an input or another
output.

:func:`validate` adds what needs imports and files, by planning the run
(:func:`~eoscale.pipeline.plan.plan_run`): every callable resolves; a reduce step has a
``combine``; a stated margin is not smaller than the callable's declared one; the inputs are
rasters on one grid (:func:`~eoscale.io.grid.grid_differences`, the engine's own check);
callables' own ``check`` functions accept their params; output folders can be made; the
plan's estimated peak memory fits in the memory available; and on a remote cluster, scratch
files go to a folder its workers can read (:class:`ScratchFolderError`). :func:`checked_plan`
gives the plan of a valid pipeline, which is what ``eoscale run`` executes.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Literal, NamedTuple

from eoscale.errors import (
    EXIT_USAGE,
    ConfigError,
    PipelineError,
    Problem,
    RasterError,
    did_you_mean,
)
from eoscale.io.quicklook import shown_bands
from eoscale.pipeline.plan import BUDGET_HEADROOM, Resources, RunPlan, params_problems, plan_run
from eoscale.pipeline.plan.estimates import waiting_here
from eoscale.pipeline.resolve import resolve_step
from eoscale.pipeline.spec import Location, OutputSpec, PipelineSpec, StepSpec
from eoscale.sizes import size_text

IMAGE_SUFFIXES = (".tif", ".tiff")
RESULT_SUFFIXES = (".json",)


class _Name(NamedTuple):
    """What a name stands for, where it is defined, and at which step (-1 for an input)."""

    kind: Literal["input", "image", "result", "step"]
    order: int
    step: StepSpec | None
    where: Location

    def describe(self) -> str:
        if self.step is None:
            return "an input"
        if self.kind == "step":
            return f"step '{self.step.name}'"
        what = "an image of step" if self.kind == "image" else "reduce step"
        return f"{what} '{self.step.name}'"


def _names(spec: PipelineSpec) -> tuple[dict[str, _Name], list[Problem]]:
    names: dict[str, _Name] = {}
    problems = []

    def define(name: str, meaning: _Name, step: str | None) -> None:
        first = names.setdefault(name, meaning)
        if first is not meaning:
            used = f"{first.describe()}{first.where.line_note()}"
            problems.append(meaning.where.problem(f"name '{name}' is already used by {used}", step))

    for name, item in spec.inputs.items():
        define(name, _Name("input", -1, None, item.where), None)
    for index, step in enumerate(spec.steps):
        if step.kind == "reduce":
            define(step.name, _Name("result", index, step, step.locate("name")), step.name)
            continue
        if step.name not in step.outputs:
            define(step.name, _Name("step", index, step, step.locate("name")), step.name)
        for number, name in enumerate(step.outputs):
            written = step.outputs != (step.name,)
            where = step.locate("outputs", number) if written else step.locate("name")
            define(name, _Name("image", index, step, where), step.name)
    return names, problems


def _runs_later(defined: _Name, index: int, what: str) -> str | None:
    """Why ``what`` (defined by ``defined``) cannot be read at step ``index``, if it cannot."""
    if defined.order < index:
        return None
    if defined.order == index:
        return f"a step cannot read its own {what}"
    assert defined.step is not None
    return (f"it is made by step '{defined.step.name}'{defined.where.line_note()}, which runs "
            "after this one; steps run in order")


def _image_problem(name: str, defined: _Name | None, index: int,
                   names: dict[str, _Name]) -> str | None:
    if defined is None:
        earlier = [key for key, value in names.items()
                   if value.kind in ("input", "image") and value.order < index]
        return f"unknown image '{name}'{did_you_mean(name, earlier)}"
    if defined.kind == "result":
        return (f"'{name}' is the result of a reduce step, not an image; read it in params "
                f"as '${{{name}}}'")
    if defined.kind == "step":
        assert defined.step is not None
        return f"'{name}' is a step, not an image; its images are {', '.join(defined.step.outputs)}"
    problem = _runs_later(defined, index, "images")
    return None if problem is None else f"image '{name}': {problem}"


def _reference_problem(result: str, defined: _Name | None, index: int,
                       names: dict[str, _Name]) -> str | None:
    if defined is None:
        earlier = [key for key, value in names.items()
                   if value.kind == "result" and value.order < index]
        return f"unknown reduce step '{result}'{did_you_mean(result, earlier)}"
    if defined.kind != "result":
        return (f"'{result}' is {defined.describe()}, not a reduce step; images are read "
                "through 'inputs'")
    return _runs_later(defined, index, "result")


def _output_problem(name: str, path: Path, has_options: bool, defined: _Name | None,
                    names: dict[str, _Name]) -> str | None:
    if defined is None:
        results = [key for key, value in names.items() if value.kind != "step"]
        return f"unknown result '{name}'{did_you_mean(name, results)}"
    if defined.kind == "step":
        assert defined.step is not None
        return f"'{name}' is a step; name one of its images: {', '.join(defined.step.outputs)}"
    if defined.kind in ("input", "image"):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            return (f"'{name}' is an image, written as GeoTIFF: expected a .tif or .tiff path, "
                    f"found '{path.name}'")
        return None
    if path.suffix.lower() not in RESULT_SUFFIXES:
        return (f"'{name}' is a reduce result, written as JSON: expected a .json path, "
                f"found '{path.name}'")
    if has_options:
        return f"'{name}' is a reduce result: creation options are for images only"
    return None


#: The largest block side an output may ask for: a block is held whole while it is encoded (by
#: GDAL or a worker), and GDAL aborts the process on sizes it cannot allocate.
MAX_BLOCK_SIDE = 4096


def _block_problem(name: str, output: OutputSpec) -> Problem | None:
    """What is wrong with the block size an image output's options ask for: GDAL takes a tile
    side that is a positive multiple of 16 (a strip's rows, ``blockysize`` of ``tiled: false``,
    any positive number); a size that is no number would fail only once the pixels are
    computed, and a huge one kills the process."""
    options = {str(key).lower(): value for key, value in output.options.items()}
    strips = (output.layout.format == "GTiff"
              and str(options.get("tiled", True)).lower() in ("false", "no", "0"))
    for key in ("blocksize", "blockxsize", "blockysize"):
        if key not in options:
            continue
        value, where = options[key], output.where.child("options", key)
        try:
            side = int(str(value))
        except ValueError:
            return where.problem(f"'{name}': option {key} is {value!r}, not a whole number of "
                                 "pixels")
        if side < 1 or side > MAX_BLOCK_SIDE:
            return where.problem(f"'{name}': option {key} is {side}, not between 1 and "
                                 f"{MAX_BLOCK_SIDE} pixels")
        if side % 16 and not strips:
            hint = ("" if output.layout.format == "COG"
                    else "; 'tiled: false' gives strips of any number of rows")
            return where.problem(f"'{name}': option {key} is {side}: a tile's side must be a "
                                 f"multiple of 16 pixels (GDAL's rule{hint})")
    return None


def check_graph(spec: PipelineSpec) -> list[Problem]:
    """Problems of names and references: what needs no import and no file."""
    names, problems = _names(spec)
    for index, step in enumerate(spec.steps):
        for number, name in enumerate(step.inputs):
            problem = _image_problem(name, names.get(name), index, names)
            if problem is not None:
                problems.append(step.locate("inputs", number).problem(problem, step.name))
        for keys, reference in step.references():
            defined = names.get(reference.result)
            problem = _reference_problem(reference.result, defined, index, names)
            if problem is not None:
                problems.append(step.locate(*keys).problem(f"'{reference}': {problem}", step.name))
    paths = {path: f"input '{name}'" for name, item in spec.inputs.items() for path in item.paths}
    for name, output in spec.outputs.items():
        problem = _output_problem(name, output.path, bool(output.options), names.get(name), names)
        if problem is not None:
            problems.append(output.where.problem(problem))
        elif output.options and (blocks := _block_problem(name, output)) is not None:
            problems.append(blocks)
        first = paths.setdefault(output.path, f"output '{name}'")
        if first != f"output '{name}'":
            problems.append(output.where.problem(f"{output.path} is also the path of {first}"))
    return problems


def _output_path_problem(path: Path) -> str | None:
    if path.is_dir():
        return f"{path} is a folder; expected a file path"
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"cannot make the folder {path.parent}: {parent} is a file"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"cannot write in {parent}: permission denied"
            return None
    return None


def validate(spec: PipelineSpec, *, check_files: bool = True, check_callables: bool = True,
             resources: Resources | None = None) -> list[Problem]:
    """Every problem that would stop or spoil a run of ``spec``; empty if it can run.

    ``check_callables`` imports the callables' modules and calls their ``check`` functions;
    ``check_files`` (with ``check_callables``) also plans the run (:func:`plan_run`: inputs
    read, grids compared, margins and profiles worked out), looks at the output folders and
    checks that the estimated peak memory fits in the memory available.
    """
    problems = [] if spec.graph_checked else check_graph(spec)
    if problems or not check_callables:
        return problems
    if not check_files:
        for step in spec.steps:
            found, step_problems = resolve_step(step, spec.base_dir)
            problems += step_problems
            if found is not None:
                problems += params_problems(step, found.fn)
        return problems
    try:
        checked_plan(spec, resources)
    except PipelineError as error:
        return error.problems
    return []


def checked_plan(spec: PipelineSpec, resources: Resources | None = None) -> RunPlan:
    """The run plan of a valid ``spec``; raises :class:`PipelineError` with every problem that
    would stop or spoil the run (see :func:`validate`)."""
    problems = [] if spec.graph_checked else check_graph(spec)
    if problems:
        raise PipelineError(problems)
    plan: RunPlan | None = None
    try:
        plan = plan_run(spec, resources)
    except PipelineError as error:
        problems += error.problems
    for output in spec.outputs.values():
        problem = _output_path_problem(output.path)
        if problem is not None:
            problems.append(output.where.problem(problem))
    if plan is not None:
        problems += _quicklook_problems(spec, plan)
    if plan is not None and not problems and not plan.fits:
        problems.append(_memory_problem(plan))
    refused = _scratch_problem(plan)
    if refused is not None:
        problems.append(refused)
    if problems == [refused]:
        raise ScratchFolderError(problems)
    if problems:
        raise PipelineError(problems)
    assert plan is not None
    return plan


def _quicklook_problems(spec: PipelineSpec, plan: RunPlan) -> list[Problem]:
    """A quicklook asking for bands its image does not have (when the plan knows its band
    count), before anything is computed."""
    found = []
    for name, output in spec.outputs.items():
        image = plan.images.get(name)
        if output.quicklook is None or image is None or not image.known:
            continue
        try:
            shown_bands(image.count, output.quicklook.style.bands)
        except RasterError as error:
            found.append(output.where.problem(f"output '{name}' (quicklook): {error}"))
    return found


class ScratchFolderError(PipelineError, ConfigError):
    """A run that would write scratch files where its workers cannot read them: reported with
    the pipeline's problems, and a usage error (exit 2) as the run's refusal was: the scratch
    folder (``--scratch``, ``scratch:``) is missing. Its message is headed as a usage error is
    (not "invalid pipeline", which goes with exit 3)."""

    exit_code = EXIT_USAGE
    heading = "cannot run as given"


def _scratch_problem(plan: RunPlan | None) -> Problem | None:
    """The plan's refusal of its scratch folder (:attr:`RunPlan.scratch_refusal`), if any."""
    if plan is None or plan.scratch_refusal is None:
        return None
    source = plan.spec.source
    return Problem(plan.scratch_refusal, str(source) if source else None, path="scratch")


def _memory_problem(plan: RunPlan) -> Problem:
    assert plan.resources.memory is not None
    peak, step = plan.peak, plan.peak_step
    spec = plan.spec
    where = next((s.where for s in spec.steps if s.name == step), next(iter(spec.inputs.values())).where)
    workers = plan.resources.workers
    budget = (f"the memory budget is {size_text(plan.resources.memory)}" if plan.resources.given
              else f"only {size_text(plan.resources.memory)} is available for them (the memory "
                   "available, less 10 % and the processes)")
    needed = _enough_memory(plan)
    return where.problem(
        f"the run needs about {size_text(peak.held)} ({size_text(peak.images)} of images, "
        f"{size_text(peak.tiles)} of tiles for {workers} worker{'s' if workers > 1 else ''}; "
        f"{size_text(peak.fixed)} more for the processes) but {budget}; give it at least "
        f"{size_text(needed)} ('memory:' or --memory; the plan keeps "
        f"{BUDGET_HEADROOM:.0%} of it for its estimate's error), use fewer workers or smaller "
        f"tiles, or free memory{_waiting_text(plan, step)}", step)


def _enough_memory(plan: RunPlan) -> int:
    """The least budget, as the message shows it, with which the plan fits: the estimate
    grows with the budget (GDAL's block cache is a share of it) and the plan's choices
    change with it, so each figure is planned again until one fits (a few rounds at most)."""
    needed = _shown_up(math.ceil(plan.peak.held / (1 - BUDGET_HEADROOM)))
    for _ in range(6):
        try:
            again = plan_run(plan.spec, replace(plan.resources, memory=needed, given=True))
        except PipelineError:
            break
        if again.fits:
            break
        needed = _shown_up(max(needed + 1, math.ceil(again.peak.held / (1 - BUDGET_HEADROOM))))
    return needed


def _shown_up(count: int) -> int:
    """``count`` bytes rounded up to what :func:`~eoscale.sizes.size_text` shows (a tenth of
    its unit), so that the figure a message gives, typed back, is not less than it."""
    unit = 1
    while count >= 1024 * unit and unit < 1024 ** 4:
        unit *= 1024
    step = max(1, unit // 10)
    return math.ceil(count / step) * step


def _waiting_text(plan: RunPlan, step: str | None) -> str:
    """What of the tiles' memory at ``step`` is images the main process writes from tiles that
    are not whole blocks of their files, and how an output avoids it ("" if none)."""
    found = next((s for s in plan.steps if s.name == step and s.fused_into is None), None)
    waiting = [] if found is None else waiting_here(plan, found)
    sentences = []
    for name, here in waiting:  # (each has a file: written_here counts none without)
        image, tile = plan.images[name], found.tiling.tile_size
        rows, cols = image.file.block_shape
        output = plan.spec.outputs.get(name) if image.output is not None else None
        hint = ""
        if output is not None:  # a TIFF's tiles are multiples of 16 px
            keys = ("its option blocksize" if output.layout.format == "COG"
                    else "its options' blockxsize and blockysize")
            hint = (f": blocks of {tile} px ({keys}) would avoid it" if tile % 16 == 0
                    else ": tiles of whole blocks would avoid it")
        sentences.append(
            f". Of the tiles' memory, {size_text(here)} is "
            f"{'image' if output is None else 'output'} "
            f"{name}'s pixels waiting in the main process for whole {rows} x {cols} blocks of "
            f"its file, which the {tile} px tiles are not{hint}")
    return "".join(sentences)


def check(spec: PipelineSpec, *, check_files: bool = True, check_callables: bool = True) -> None:
    """Raise :class:`PipelineError` with every problem :func:`validate` finds."""
    problems = validate(spec, check_files=check_files, check_callables=check_callables)
    if problems:
        raise PipelineError(problems)
