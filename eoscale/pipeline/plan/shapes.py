"""A run's shape: what planning needs to know of the images, once the inputs are read and the
callables imported, and no more (band counts, dtypes, the grid's height, width and block shape,
margins, who reads what). Fitting a plan to a budget takes it, so it is tested without rasters:
:func:`run_shape` makes one from input profiles, which may be written by hand."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from eoscale.engine.contract import declared, nodata_problem
from eoscale.errors import USER_ERRORS, ConfigError, Problem
from eoscale.io.sources import Source
from eoscale.io.stac import StacSelection
from eoscale.pipeline.plan.margins import planned_margin
from eoscale.pipeline.resolve import StepCallables, callable_params, resolve_step
from eoscale.pipeline.spec import FrozenMap, PipelineSpec, StepSpec


@dataclass(frozen=True)
class ImageShape:
    """An image's band count and dtype; ``known`` False: assumed, learnt from a first tile."""

    count: int
    dtype: str
    known: bool = True


@dataclass(frozen=True)
class RunShape:
    """What a plan is decided from: the checked spec, the working grid (``height`` x ``width``,
    the inputs' ``block_shape``), every image's shape, each step's callables and margin (None:
    derived from ``${...}`` params when it runs), the inputs' sources (none: not warped) and
    what each STAC input reads."""

    spec: PipelineSpec = field(repr=False)
    height: int
    width: int
    block_shape: tuple[int, int] | None
    images: Mapping[str, ImageShape]
    callables: Mapping[int, StepCallables] = field(repr=False)
    margins: Mapping[int, int | None]
    sources: Mapping[str, Source] = field(default_factory=FrozenMap, repr=False)
    stac: Mapping[str, StacSelection] = field(default_factory=FrozenMap, repr=False)

    @cached_property
    def readers(self) -> dict[str, list[int]]:
        """The steps that read each image, in order."""
        found: dict[str, list[int]] = {}
        for index, step in enumerate(self.spec.steps):
            for name in step.inputs:
                found.setdefault(name, []).append(index)
        return found


def step_callables(spec: PipelineSpec, problems: list[Problem]) -> dict[int, StepCallables]:
    """Each step's callables, imported, by step index, and what their ``check`` functions say;
    a step whose callables do not resolve is missing, with its problems added."""
    callables: dict[int, StepCallables] = {}
    for index, step in enumerate(spec.steps):
        found, step_problems = resolve_step(step, spec.base_dir)
        problems += step_problems
        if found is not None:
            callables[index] = found
    for index, found in callables.items():
        problems += params_problems(spec.steps[index], found.fn)
    return callables


def run_shape(spec: PipelineSpec, profiles: Mapping[str, Mapping[str, Any]],
              callables: Mapping[int, StepCallables], problems: list[Problem],
              sources: Mapping[str, Source] | None = None,
              stac: Mapping[str, StacSelection] | None = None) -> RunShape | None:
    """The shape of a run of ``spec`` whose inputs have ``profiles`` (``height``, ``width``,
    ``count``, ``dtype``, optionally ``block_shape``; the first input's is the grid) and whose
    steps have ``callables`` (:func:`step_callables`): margin and profile functions are called
    (not for steps whose params hold ``${...}``). None, with ``problems`` added, when something
    is wrong (or was before)."""
    margins = {index: _margin(step, callables[index], problems)
               for index, step in enumerate(spec.steps) if index in callables}
    if problems:
        return None
    images = _image_shapes(spec, profiles, callables, problems)
    if problems:
        return None
    grid = next(iter(profiles.values()))
    return RunShape(spec, int(grid["height"]), int(grid["width"]), grid.get("block_shape"),
                    FrozenMap(images), FrozenMap(callables), FrozenMap(margins),
                    FrozenMap(sources or {}), FrozenMap(stac or {}))


def params_problems(step: StepSpec, main: Callable[..., Any]) -> list[Problem]:
    """What the callable's own ``check(params, input_names)`` finds (not for ``${...}`` params)."""
    check_fn = declared(main, "check")
    if check_fn is None or any(step.references()):
        return []
    try:
        found = check_fn(callable_params(step, main, {}), list(step.inputs))
    except USER_ERRORS as error:  # the callable's own check: a problem to report
        found = [f"checking the params of '{step.callable}' raised {type(error).__name__}: {error}"]
    if found is None:  # (a check that says nothing)
        found = []
    elif isinstance(found, str):  # one message, not a list of them: not one per character
        found = [found]
    elif not isinstance(found, (list, tuple)):
        found = [f"the check of '{step.callable}' returned {type(found).__name__} {found!r:.60}, "
                 "not a list of messages"]
    return [step.locate("params").problem(str(message), step.name) for message in found]


def _margin(step: StepSpec, found: StepCallables, problems: list[Problem]) -> int | None:
    """The step's planned margin; a wrong one is a problem at its line (then planned as 0 or
    as stated)."""
    try:
        return planned_margin(step, found)
    except ConfigError as error:
        key = "margin" if step.margin is not None else step.kind
        problems.append(step.locate(key).problem(str(error), step.name))
        return step.margin or 0


def _image_shapes(spec: PipelineSpec, profiles: Mapping[str, Mapping[str, Any]],
                  callables: Mapping[int, StepCallables], problems: list[Problem],
                  ) -> dict[str, ImageShape]:
    """Band count and dtype of every image: inputs from their profiles, a map's outputs from its
    profile function; without one (or with ``${...}`` params) like its first input, unknown.
    A profile function is given each of its inputs' own profile (its nodata, its creation
    options) as the engine gives it: an input's, or the one a profile function made."""
    shapes = {name: ImageShape(int(p["count"]), np.dtype(p["dtype"]).name)
              for name, p in profiles.items()}
    known: dict[str, dict[str, Any] | None] = {
        name: dict(profile) for name, profile in profiles.items()}
    for index, step in enumerate(spec.steps):
        if step.kind != "map":
            continue
        first = shapes[step.inputs[0]]
        guess = [ImageShape(first.count, first.dtype, False)] * len(step.outputs)
        profile_fn = callables[index].profile
        made: list[dict[str, Any]] = []
        problem = None
        where = step.locate("profile" if step.profile is not None else step.kind)
        # (an input whose own profile function failed: its problem is said, not its sequels)
        if (profile_fn is not None and not any(step.references())
                and all(known[name] is not None for name in step.inputs)):
            given = [dict(known[name], count=shapes[name].count, dtype=shapes[name].dtype)
                     for name in step.inputs]
            made, problem = _call_profile(step, profile_fn, given, callables[index])
            if problem is not None:
                problems.append(where.problem(problem, step.name))
        for name, profile in zip(step.outputs, made):
            unstorable = nodata_problem(profile) if name in spec.outputs else None
            if unstorable is not None:  # (an image only held may keep it: 1.0's code does)
                problems.append(where.problem(
                    f"output '{name}' is written to a file, but the profile function returned "
                    f"a profile whose {unstorable.removeprefix('its ')}", step.name))
        if made:
            shapes.update((name, ImageShape(int(profile["count"]),
                                            np.dtype(profile["dtype"]).name, True))
                          for name, profile in zip(step.outputs, made))
            known.update(zip(step.outputs, made))
        else:
            shapes.update(zip(step.outputs, guess))
            first_known = known[step.inputs[0]]
            known.update((name, None if problem is not None or first_known is None
                          else dict(first_known)) for name in step.outputs)
    return shapes


def _call_profile(step: StepSpec, profile_fn: Any, given: list[dict[str, Any]],
                  found: StepCallables) -> tuple[list[dict[str, Any]], str | None]:
    """The profiles a step's profile function makes of ``given`` (grown as the engine grows
    them: over its first input's, one band unless it says), or the problem with them."""
    try:
        made = profile_fn([dict(p) for p in given], callable_params(step, found.fn, {}))
    except USER_ERRORS as error:  # the user's profile function: a problem to report
        return [], f"the profile function raised {type(error).__name__}: {error}"
    answers = list(made) if isinstance(made, (list, tuple)) else [made] * len(step.outputs)
    if len(answers) != len(step.outputs):
        return [], (f"the profile function returned {len(answers)} profiles for "
                    f"{len(step.outputs)} outputs")
    grown = []
    for answer in answers:
        if not isinstance(answer, Mapping):
            return [], f"the profile function returned a {type(answer).__name__}, not a profile"
        merged = {**given[0], "count": 1, **answer}  # as the engine grows a profile
        count = merged.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            return [], f"the profile function returned a profile with count {count!r}"
        try:
            merged["dtype"] = np.dtype(merged.get("dtype")).name
        except TypeError:
            return [], (f"the profile function returned a profile with dtype "
                        f"{merged.get('dtype')!r}, not a numpy dtype")
        grown.append(merged)
    return grown, None
