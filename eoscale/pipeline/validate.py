"""Check a spec before running it, and estimate the memory a run needs.

:func:`check_graph` needs nothing but the spec (the loader runs it on every pipeline): names are
unique, every step input and ``${...}`` reference is defined by an earlier step, every output
names a result and is written to the right kind of file. An output may name a pipeline input (it
is copied, with the output's creation options) but not share a path with an input or another
output.

:func:`validate` adds what needs imports and files: every callable resolves; a reduce step has a
``combine``; a stated margin is not smaller than the callable's declared one; the inputs are
rasters on one grid (width, height, transform and CRS); output folders can be made; and the
estimated peak memory (:func:`estimate_memory`) fits in the memory available.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import rasterio

from eoscale.engine.contract import declared, declared_margin
from eoscale.engine.tiling import auto_tile_size
from eoscale.errors import PipelineError, Problem, RasterError
from eoscale.io.paths import location_name
from eoscale.io.raster import read_profile
from eoscale.pipeline.resolve import (ResolveError, callable_params, did_you_mean,
                                      resolve_callable)
from eoscale.pipeline.spec import Location, PipelineSpec, StepSpec

IMAGE_SUFFIXES = (".tif", ".tiff")
RESULT_SUFFIXES = (".json",)
#: How far two grids' transforms may differ, as a share of a pixel, and still be one grid.
GRID_TOLERANCE = 1e-6


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
    paths = {item.path: f"input '{name}'" for name, item in spec.inputs.items()}
    for name, output in spec.outputs.items():
        problem = _output_problem(name, output.path, bool(output.options), names.get(name), names)
        if problem is not None:
            problems.append(output.where.problem(problem))
        first = paths.setdefault(output.path, f"output '{name}'")
        if first != f"output '{name}'":
            problems.append(output.where.problem(f"{output.path} is also the path of {first}"))
    return problems


@dataclass(frozen=True)
class _Callables:
    """What a step's callables declare, once resolved."""

    main: Callable[..., Any]
    profile: Callable[..., Any] | None
    margin: int | None


def _declared_margin(step: StepSpec, main: Callable[..., Any]) -> tuple[int | None, str | None]:
    """The callable's declared margin for the step's params, and what is wrong with it, if anything.

    A margin function of a step whose params hold ``${...}`` is not called: its results are not
    known before the run.
    """
    if any(step.references()):
        return None, None
    try:
        margin = declared_margin(main, callable_params(step, main, {}))
    except Exception as error:  # the user's margin function: any failure is a problem to report
        return None, f"the margin of '{step.callable}' raised {type(error).__name__}: {error}"
    if margin is None:
        return None, None
    if margin < 0:
        return None, f"'{step.callable}' declares margin {margin}; a margin is >= 0"
    if step.margin is not None and step.margin < margin:
        return margin, (f"margin {step.margin} is smaller than the {margin} that "
                        f"'{step.callable}' needs")
    return margin, None


def _checked_params(step: StepSpec, main: Callable[..., Any]) -> list[Problem]:
    """What the callable's own ``check(params, input_names)`` finds (not for ``${...}`` params)."""
    check_fn = declared(main, "check")
    if check_fn is None or any(step.references()):
        return []
    try:
        found = check_fn(callable_params(step, main, {}), list(step.inputs))
    except Exception as error:  # the callable's own check: any failure is a problem to report
        found = [f"checking the params of '{step.callable}' raised {type(error).__name__}: {error}"]
    return [step.locate("params").problem(message, step.name) for message in found]


def _resolve_steps(spec: PipelineSpec) -> tuple[dict[int, _Callables], list[Problem]]:
    resolved: dict[int, _Callables] = {}
    problems = []
    for index, step in enumerate(spec.steps):
        found = {}
        for key, dotted in ((step.kind, step.callable), ("profile", step.profile),
                            ("combine", step.combine), ("finalize", step.finalize)):
            if dotted is not None:
                try:
                    found[key] = resolve_callable(dotted, spec.base_dir)
                except ResolveError as error:
                    problems.append(step.locate(key).problem(str(error), step.name))
        main = found.get(step.kind)
        if main is None:
            continue
        if step.kind == "reduce" and step.combine is None and declared(main, "combine") is None:
            problems.append(step.locate(step.kind).problem(
                f"a reduce step needs a combine function: add 'combine: module.function' or give "
                f"'{step.callable}' a 'combine' attribute", step.name))
        problems += _checked_params(step, main)
        margin, problem = _declared_margin(step, main)
        if problem is not None:
            problems.append(step.locate("margin" if step.margin is not None else step.kind)
                            .problem(problem, step.name))
        profile = found.get("profile")
        if profile is None and step.kind == "map":
            profile = declared(main, "profile")
        resolved[index] = _Callables(main, profile, margin)
    return resolved, problems


def _read_profiles(spec: PipelineSpec) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    profiles = {}
    problems = []
    with rasterio.Env(**spec.gdal):
        for name, item in spec.inputs.items():
            try:
                profiles[name] = read_profile(item.path)
            except RasterError as error:
                problems.append(item.where.problem(str(error)))
    return profiles, problems


def _crs_name(crs: Any) -> str:
    if crs is None:
        return "none"
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else f"'{crs.to_string()[:60]}'"


def _grid_differences(first: Mapping[str, Any], other: Mapping[str, Any]) -> list[str]:
    """How ``other``'s grid differs from ``first``'s: size, pixel size, rotation, origin, CRS."""
    differences = []
    if (other["width"], other["height"]) != (first["width"], first["height"]):
        differences.append(f"{other['width']} x {other['height']} pixels, not "
                           f"{first['width']} x {first['height']}")
    a, b = other["transform"], first["transform"]
    tolerance = GRID_TOLERANCE * (min(abs(b.a), abs(b.e)) or 1.0)
    for label, terms in (("pixel size", ("a", "e")), ("rotation", ("b", "d")),
                         ("origin", ("c", "f"))):
        if any(abs(getattr(a, term) - getattr(b, term)) > tolerance for term in terms):
            mine, theirs = (tuple(getattr(t, term) for term in terms) for t in (a, b))
            differences.append(f"{label} ({mine[0]:.10g}, {mine[1]:.10g}), not "
                               f"({theirs[0]:.10g}, {theirs[1]:.10g})")
    if other["crs"] != first["crs"]:
        differences.append(f"CRS {_crs_name(other['crs'])}, not {_crs_name(first['crs'])}")
    return differences


def _check_grid(spec: PipelineSpec, profiles: Mapping[str, Mapping[str, Any]]) -> list[Problem]:
    read = [name for name in spec.inputs if name in profiles]
    problems = []
    for name in read[1:]:
        differences = _grid_differences(profiles[read[0]], profiles[name])
        if differences:
            item, first = spec.inputs[name], spec.inputs[read[0]]
            problems.append(item.where.problem(
                f"{location_name(item.path)} is not on the grid of input '{first.name}' "
                f"({location_name(first.path)}): "
                + "; ".join(differences)))
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


def _image_bytes(profile: Mapping[str, Any]) -> int:
    return int(profile["width"]) * int(profile["height"]) * _pixel_bytes(profile)


def _pixel_bytes(profile: Mapping[str, Any]) -> int:
    return int(profile["count"]) * int(np.dtype(profile["dtype"]).itemsize)


def _profile_problem(profile: Any) -> str | None:
    if not isinstance(profile, Mapping):
        return f"a {type(profile).__name__}, not a profile (a mapping)"
    count = profile.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        return f"a profile with count {count!r}, not a band count >= 1"
    try:
        np.dtype(profile.get("dtype"))
    except TypeError:
        return f"a profile with dtype {profile.get('dtype')!r}, not a numpy dtype"
    return None


def _step_profiles(step: StepSpec, given: list[dict[str, Any]],
                   callables: _Callables | None) -> tuple[list[dict[str, Any]], str | None]:
    """The profiles of a map step's outputs, and what is wrong with its profile function's answer.

    Without a profile function (or with ``${...}`` params, unknown before the run) each output
    is taken to be like the first input. What the function returns is laid over the first input.
    """
    if callables is None or callables.profile is None or any(step.references()):
        return [given[0]] * len(step.outputs), None
    try:
        made = callables.profile([dict(p) for p in given], callable_params(step, callables.main, {}))
    except Exception as error:  # the user's profile function: any failure is a problem to report
        raised = f"the profile function raised {type(error).__name__}: {error}"
        return [given[0]] * len(step.outputs), raised
    answers = list(made) if isinstance(made, (list, tuple)) else [made] * len(step.outputs)
    if len(answers) != len(step.outputs):
        return [given[0]] * len(step.outputs), (f"the profile function returned {len(answers)} "
                                                f"profiles for {len(step.outputs)} outputs")
    profiles = []
    for answer in answers:
        merged = {**given[0], **answer} if isinstance(answer, Mapping) else answer
        problem = _profile_problem(merged)
        if problem is not None:
            return [given[0]] * len(step.outputs), f"the profile function returned {problem}"
        profiles.append(merged)
    return profiles, None


def _image_profiles(spec: PipelineSpec, inputs: Mapping[str, Mapping[str, Any]],
                    resolved: Mapping[int, _Callables],
                    ) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    profiles = {name: dict(profile) for name, profile in inputs.items()}
    problems = []
    for index, step in enumerate(spec.steps):
        if step.kind != "map":
            continue
        callables = resolved.get(index)
        made, problem = _step_profiles(step, [profiles[name] for name in step.inputs], callables)
        if problem is not None:
            key = "profile" if step.profile is not None else step.kind
            problems.append(step.locate(key).problem(problem, step.name))
        profiles.update(zip(step.outputs, made, strict=True))
    return profiles, problems


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """The peak memory a run is estimated to need, where it is reached, and what is available.

    ``image_bytes`` are the whole images in shared memory at the peak (inputs and step outputs not
    yet released); ``working_bytes`` the workers' tile memory then (each worker: its tile's results
    plus as much again as its inputs, for a callable's temporaries).
    """

    peak_bytes: int
    image_bytes: int
    working_bytes: int
    peak_step: str | None
    workers: int
    available_bytes: int | None

    @property
    def fits(self) -> bool:
        return self.available_bytes is None or self.peak_bytes <= self.available_bytes


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


def _estimate(spec: PipelineSpec, profiles: Mapping[str, Mapping[str, Any]],
              resolved: Mapping[int, _Callables]) -> MemoryEstimate:
    workers = spec.workers or os.cpu_count() or 1
    grid = profiles[next(iter(spec.inputs))]
    height, width = int(grid["height"]), int(grid["width"])
    sizes = {name: _image_bytes(profiles[name]) for name in spec.image_names()}
    last = spec.last_use()
    live = sum(sizes[name] for name in spec.inputs if last[name] >= 0)
    peak: tuple[int, int, int, str | None] = (live, live, 0, None)
    for index, step in enumerate(spec.steps):
        margin = step.margin
        if margin is None:
            callables = resolved.get(index)
            margin = callables.margin if callables and callables.margin is not None else 0
        size = (spec.tiling.tile_size
                or auto_tile_size(height, width, workers, margin, spec.tiling.mode))
        rows = min(height, size + 2 * margin)
        columns = min(width, (size if spec.tiling.mode == "tiles" else width) + 2 * margin)
        pixel = sum(_pixel_bytes(profiles[name]) for name in (*step.inputs, *step.outputs))
        working = workers * rows * columns * pixel
        made = sum(sizes[name] for name in step.outputs)
        if live + made + working > peak[0]:
            peak = (live + made + working, live + made, working, step.name)
        released = {*step.inputs, *step.outputs}
        live += made - sum(sizes[name] for name in released if last[name] == index)
    return MemoryEstimate(peak[0], peak[1], peak[2], peak[3], workers, available_memory())


def estimate_memory(spec: PipelineSpec,
                    profiles: Mapping[str, Mapping[str, Any]] | None = None) -> MemoryEstimate:
    """Estimate a run's peak memory from its inputs' profiles (by input name; read if None).

    Each map output is sized by the step's profile function when it has one, else as its first
    input; images are released after their last use (:meth:`PipelineSpec.last_use`).
    """
    if profiles is None:
        profiles, problems = _read_profiles(spec)
        if problems:
            raise PipelineError(problems)
    resolved, _ = _resolve_steps(spec)
    return _estimate(spec, _image_profiles(spec, profiles, resolved)[0], resolved)


def _size(count: float) -> str:
    """A byte count for people: ``1.5 GiB``."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB")
    power = 0
    while count >= 1024 and power < len(units) - 1:
        count /= 1024
        power += 1
    return f"{count:.0f} bytes" if power == 0 else f"{count:.1f} {units[power]}"


def validate(spec: PipelineSpec, *, check_files: bool = True,
             check_callables: bool = True) -> list[Problem]:
    """Every problem that would stop or spoil a run of ``spec``; empty if it can run.

    ``check_callables`` imports the callables' modules; ``check_files`` opens the inputs, looks at
    the output folders and estimates the memory (this last only when all else is right).
    """
    problems = check_graph(spec)
    resolved: dict[int, _Callables] = {}
    if check_callables:
        resolved, found = _resolve_steps(spec)
        problems += found
    if not check_files:
        return problems
    profiles, found = _read_profiles(spec)
    problems += found + _check_grid(spec, profiles)
    for output in spec.outputs.values():
        problem = _output_path_problem(output.path)
        if problem is not None:
            problems.append(output.where.problem(problem))
    if problems:
        return problems
    images, problems = _image_profiles(spec, profiles, resolved)
    estimate = _estimate(spec, images, resolved)
    if not problems and not estimate.fits:
        assert estimate.available_bytes is not None
        where = next((step.where for step in spec.steps if step.name == estimate.peak_step),
                     next(iter(spec.inputs.values())).where)
        workers = f"{estimate.workers} worker{'s' if estimate.workers > 1 else ''}"
        problems.append(where.problem(
            f"the run needs about {_size(estimate.peak_bytes)} ({_size(estimate.image_bytes)} of "
            f"images, {_size(estimate.working_bytes)} of tiles for {workers}) but only "
            f"{_size(estimate.available_bytes)} is available; use fewer workers or smaller tiles, "
            "or free memory", estimate.peak_step))
    return problems


def check(spec: PipelineSpec, *, check_files: bool = True, check_callables: bool = True) -> None:
    """Raise :class:`PipelineError` with every problem :func:`validate` finds."""
    problems = validate(spec, check_files=check_files, check_callables=check_callables)
    if problems:
        raise PipelineError(problems)
