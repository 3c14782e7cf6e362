"""Run a checked pipeline on the engine: load inputs when first needed, run steps in order, release
each image after its last use, stage outputs as soon as they are final and rename them into place
only when the whole run has succeeded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rasterio

from eoscale.engine import Engine, PhaseReport, Progress, SharedRaster
from eoscale.engine.contract import declared_margin
from eoscale.engine.filed import FileRaster
from eoscale.errors import PipelineError, StepError
from eoscale.io.info import json_safe
from eoscale.io.paths import worker_start_method
from eoscale.io.raster import Staging
from eoscale.pipeline.outputs import stage_image
from eoscale.pipeline.resolve import ResolveError, callable_params, resolve_callable
from eoscale.pipeline.spec import PipelineSpec, StepSpec

@dataclass(frozen=True)
class RunResult:
    """What a run produced: the written files by result name, the reduce results, timings."""

    written: Mapping[str, Path]
    results: Mapping[str, Any]
    reports: tuple[PhaseReport, ...] = field(default=(), repr=False)
    seconds: float = 0.0


@dataclass(frozen=True)
class _Callables:
    fn: Callable
    profile: Callable | None
    combine: Callable | None
    finalize: Callable | None


def resolve_step(step: StepSpec, base_dir: Path) -> _Callables:
    """Import a step's callables (validation has checked they import; this names the step if not)."""
    def get(dotted: str | None, key: str) -> Callable | None:
        if dotted is None:
            return None
        try:
            return resolve_callable(dotted, base_dir)
        except ResolveError as exc:
            raise PipelineError(step.locate(key).problem(str(exc), step.name)) from None

    return _Callables(get(step.callable, step.kind), get(step.profile, "profile"),
                      get(step.combine, "combine"), get(step.finalize, "finalize"))


def display_path(path: Path) -> str:
    """``path`` relative to the current folder when it is below it, else as it is."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def write_json(path: Path, step: StepSpec, result: Any, display: Path) -> None:
    document = {"step": step.name, "inputs": list(step.inputs), "result": json_safe(result)}
    try:
        text = json.dumps(document, indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StepError(f"its result cannot be written as JSON to {display} ({exc}); make finalize "
                        "return numbers, strings, lists and dicts", step=step.name) from None
    path.write_text(text + "\n", encoding="utf-8")


def streamed_inputs(spec: PipelineSpec, callables: list[_Callables]) -> set[str]:
    """Inputs read from their files tile by tile instead of loaded whole into shared memory.

    An input qualifies when a single step reads it, without margin, and it is not an output:
    then each worker decodes its own windows as it computes, in parallel with the others, and the
    input never takes memory as a whole. Several readers, or a margin, would decode blocks twice.
    """
    readers: dict[str, list[int]] = {}
    for index, step in enumerate(spec.steps):
        for name in step.inputs:
            readers.setdefault(name, []).append(index)
    streamed = set()
    for name in spec.inputs:
        steps = readers.get(name, [])
        if name in spec.outputs or len(steps) != 1:
            continue
        step, found = spec.steps[steps[0]], callables[steps[0]]
        margin = step.margin
        if margin is None and not any(step.references()):
            margin = declared_margin(found.fn, callable_params(step, found.fn, {})) or 0
        if margin == 0:
            streamed.add(name)
    return streamed


def run_pipeline(spec: PipelineSpec, *, progress: Progress | None = None, overwrite: bool = False,
                 start_method: str | None = None) -> RunResult:
    """Run a pipeline that validation accepted; outputs appear only if every step succeeds."""
    started = time.perf_counter()
    callables = [resolve_step(step, spec.base_dir) for step in spec.steps]
    last_use = spec.last_use()
    results: dict[str, Any] = {}
    images: dict[str, SharedRaster | FileRaster] = {}
    start_method = worker_start_method((item.path for item in spec.inputs.values()), start_method)
    with rasterio.Env(**spec.gdal), Staging(overwrite) as staging, \
            Engine(spec.workers, tiling=spec.tiling, progress=progress,
                   start_method=start_method, gdal_options=spec.gdal) as engine:
        for output in spec.outputs.values():
            for path in output.paths():
                staging.check(path)

        streamed = streamed_inputs(spec, callables)

        def image(name: str) -> SharedRaster | FileRaster:
            if name not in images:
                path = spec.inputs[name].path
                images[name] = (engine.open(path, name=name) if name in streamed
                                else engine.load(path, name=name))
            return images[name]

        def stage_outputs(names: tuple[str, ...]) -> None:
            for name in names:
                output = spec.outputs.get(name)
                if output is not None and name in images:
                    stage_image(engine, staging, images[name], output, display_path(output.path))

        def release_after(index: int) -> None:
            for name in [n for n in images if last_use.get(n, -1) <= index]:
                engine.release(images.pop(name))

        copied = tuple(name for name in spec.inputs if name in spec.outputs)
        for name in copied:
            image(name)
        stage_outputs(copied)
        for index, (step, found) in enumerate(zip(spec.steps, callables)):
            inputs = [image(name) for name in step.inputs]
            params = callable_params(step, found.fn, results)
            if step.kind == "map":
                made = engine.map(found.fn, inputs, params=params, margin=step.margin,
                                  profile_fn=found.profile, name=step.name,
                                  output_names=step.outputs)
                images.update(zip(step.outputs, made))
                stage_outputs(step.outputs)
            else:
                results[step.name] = engine.reduce(found.fn, inputs, combine=found.combine,
                                                   finalize=found.finalize, params=params,
                                                   margin=step.margin, name=step.name)
                output = spec.outputs.get(step.name)
                if output is not None:
                    write_json(staging.stage(output.path), step, results[step.name],
                               output.path)
            release_after(index)
        written = staging.commit()
        reports = tuple(engine.reports)
    paths = {name: output.path for name, output in spec.outputs.items() if output.path in written}
    return RunResult(paths, results, reports, time.perf_counter() - started)

