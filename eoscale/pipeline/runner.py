"""Run a pipeline's plan on the engine: a loop over the plan's steps, with no decisions of its own.

Before each step the inputs it brings in are loaded into shared memory or opened for windowed
reads, as planned; during it, the images the plan writes as computed go to the files it names
(an output's staged file, or a scratch file); after it, the results it saves are written to
their staged files (under a temporary name) and the images it releases are freed. A reduce the
plan feeds from a map's tiles is computed during that map (:mod:`eoscale.engine.feeding`); its
result is kept until its own step. Outputs are renamed into place only when the whole run has
succeeded. The process tree's memory (PSS) is sampled meanwhile, so the run reports its measured
peak beside the plan's estimate.

A plan for a Dask cluster runs on a :class:`~eoscale.engine.cluster.DaskExecutor` (given, or
connected to the plan's cluster by :func:`~eoscale.pipeline.session.open_run` and closed at the
end): its workers get the pipeline's folder on ``sys.path`` and its GDAL options, and read every
image from a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rasterio

from eoscale.engine import Engine, PhaseReport, Progress, SharedRaster
from eoscale.engine.contract import declared_writable_inputs
from eoscale.engine.executors import Executor
from eoscale.engine.feeding import FedReduce, Feeding
from eoscale.engine.filed import FileRaster, OutputFile
from eoscale.engine.fused import ChainStep
from eoscale.engine.memory import TreeSampler, own_peak_rss, own_pss
from eoscale.engine.scratch import Scratch, check_scratch_folder
from eoscale.errors import ConfigError, StepError, begin_run
from eoscale.io.info import json_safe
from eoscale.io.paths import worker_start_method
from eoscale.io.raster import Staging, check_writable, write_text
from eoscale.pipeline.inputs import read_locations
from eoscale.pipeline.items import stage_items
from eoscale.pipeline.outputs import copy_image, image_target, stage_image
from eoscale.pipeline.plan import Residence, RunPlan, StepPlan, plan_run
from eoscale.pipeline.resolve import callable_params
from eoscale.pipeline.resume import Resuming, RunJournal, needed_images
from eoscale.pipeline.session import open_run
from eoscale.pipeline.spec import PipelineSpec, StepSpec


@dataclass(frozen=True)
class RunResult:
    """What a run produced: the written files by result name, the reduce results, timings, the
    plan it executed and the peak memory (PSS of the process tree) it measured (None: unknown)."""

    written: Mapping[str, Path]
    results: Mapping[str, Any]
    reports: tuple[PhaseReport, ...] = field(default=(), repr=False)
    seconds: float = 0.0
    plan: RunPlan | None = field(default=None, repr=False)
    peak_bytes: int | None = None


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
    write_text(path, text + "\n", display)


def _on_dask(executor: Executor | None) -> bool:
    from eoscale.engine.cluster import DaskExecutor

    return isinstance(executor, DaskExecutor)


def check_outputs(spec: PipelineSpec, overwrite: bool) -> None:
    """Refuse an output path that exists (unless ``overwrite``) or cannot be written, and a
    scratch folder given that is missing or cannot be written, before anything is done: before
    a killed run's journal is taken over (a resume refused for its outputs keeps what the
    killed run left) and before a cluster is started."""
    for output in spec.outputs.values():
        for path in output.paths():
            check_writable(Path(path), overwrite)
    if spec.scratch is not None:
        check_scratch_folder(Path(spec.scratch))


def run_pipeline(spec: PipelineSpec | RunPlan, *, progress: Progress | None = None,
                 overwrite: bool = False, start_method: str | None = None,
                 executor: Executor | None = None, resuming: Resuming | None = None,
                 ) -> RunResult:
    """Run a plan (or plan a spec that validation accepted, then run it); outputs appear only if
    every step succeeds. ``executor``: the one a cluster plan runs on (the caller closes it);
    without it, a cluster plan connects to its cluster here (:func:`open_run`). ``resuming``:
    keep a journal of the run, and do with a killed run's as it says
    (:mod:`eoscale.pipeline.resume`); None: no journal (a signal then discards everything)."""
    if not isinstance(spec, RunPlan) and (spec.cluster is not None or _on_dask(executor)):
        # planned on one of the cluster's workers, once connected (open_run)
        with open_run(spec, executor=executor) as opened:
            return run_pipeline(opened.plan, progress=progress, overwrite=overwrite,
                                start_method=start_method, executor=opened.executor,
                                resuming=resuming)
    plan = spec if isinstance(spec, RunPlan) else plan_run(spec)
    spec = plan.spec
    check_outputs(spec, overwrite)  # before a killed run's journal is taken over
    begin_run()
    started = time.perf_counter()
    results: dict[str, Any] = {}
    fed: dict[str, Any] = {}  # results of reduces fed by a map's tiles, until their step
    images: dict[str, SharedRaster | FileRaster] = {}
    sampler = TreeSampler(os.getpid(), PEAK_SAMPLE_SECONDS, PEAK_SAMPLE_SHARE,
                          PEAK_FULL_RATE_SECONDS, PEAK_START_SHARE, PEAK_FLOOR_SECONDS)
    spilled: dict[str, Path] = {}
    start_method = worker_start_method(read_locations(spec, plan.input_sources), start_method)
    with rasterio.Env(**spec.gdal), Staging(overwrite) as staging, \
            Scratch(spec.scratch) as scratch, _gdal_cache(plan), \
            open_run(plan, executor=executor) as run, \
            Engine(run.plan.resources.workers, tiling=spec.tiling, progress=progress,
                   start_method=start_method, gdal_cache_bytes=run.plan.resources.gdal_cache,
                   gdal_options=spec.gdal, executor=run.executor) as engine, \
            _sampling(sampler, run.executor), \
            _journal(plan, resuming, staging, scratch, run.executor) as journal:
        plan = run.plan  # planned again for the cluster it connected to, if it connected

        def bring(names: tuple[str, ...], step: StepPlan | None = None) -> None:
            for name in names:
                if name in images:  # brought early for a step a resume ran first
                    continue
                image = plan.images[name]
                source = image.source if image.source is not None else image.path
                windows = (journal.needed_windows(step, name)  # a resume: what is left to read
                           if journal is not None and step is not None else None)
                images[name] = (engine.open(source, name=name) if image.lives is Residence.FILE
                                else engine.load(source, name=name, windows=windows))

        def save(names: tuple[str, ...]) -> None:
            for name in names:
                output = spec.outputs[name]
                image = images.get(name)
                if isinstance(image, FileRaster):  # an input, copied to its output
                    copy_image(engine, staging, image, output, display_path(output.path))
                elif image is not None:
                    stage_image(engine, staging, image, output, display_path(output.path))
                else:
                    write_json(staging.stage(output.path), spec.producer(name), results[name],
                               output.path)

        def file_for(name: str, finishing: contextlib.ExitStack) -> OutputFile | None:
            image = plan.images[name]
            if image.file is None:
                return None
            if image.file.scratch:  # read back by window, if spilled; removed when released
                spilled[name] = scratch.path(name)
                return OutputFile(spilled[name], dict(image.file.options or {}),
                                  f"{name} (spilled to {spilled[name]})")
            output = spec.outputs[name]
            target = finishing.enter_context(image_target(
                staging, output, engine.workers, display_path(output.path), engine.apart))
            if image.lives is Residence.SPILLED:  # read back from its staged file when finished
                spilled[name] = staging.staged(output.path)
            return target

        def release(names: tuple[str, ...]) -> None:
            for name in names:
                if name in images:
                    engine.release(images.pop(name))
                if name in spilled and name not in spec.outputs:
                    scratch.remove(spilled.pop(name))

        def reopen(names: tuple[str, ...]) -> None:
            """Bring what a step resumed after skipped ones reads that they brought or made."""
            for name in names:
                if name in images:
                    continue
                if plan.images[name].made_by is None:
                    bring((name,))
                elif name in spilled:
                    images[name] = engine.open(spilled[name], name=name)

        if journal is not None:  # what a killed run left, when resuming it
            engine.units = journal
            results.update(journal.restored.results)
            fed.update(journal.restored.fed)
            for path, temp in journal.restored.staged.items():
                staging.adopt(path, temp)
            kept = set(journal.restored.staged.values())
            for name, path in journal.restored.spilled.items():
                spilled[name] = path
                if path not in kept:
                    scratch.adopt(path)
        if plan.scratch_refusal is not None:  # a plan that was not validated: refused alike
            raise ConfigError(plan.scratch_refusal)
        if plan.needs_scratch:
            scratch.check()
        bring(plan.copied)
        save(plan.copied)
        release(tuple(name for name in plan.copied if plan.images[name].released_after < 0))
        for step in plan.steps:
            if journal is not None and journal.skips(step):  # finished by the killed run
                release(step.releases)
                continue
            bring(step.loads, step)
            if step.fused_into is not None:  # computed inside the tiles of its chain's last step
                continue
            if journal is not None:
                reopen(tuple(needed_images(plan, step)))
            found = step.callables
            params = callable_params(step.step, found.fn, results)
            tiling = step.tiling_for(params)
            if step.kind == "map":
                feeding = _feeding(plan, step, results)
                with contextlib.ExitStack() as finishing:  # then overviews, COGs, quicklooks
                    files = [file_for(name, finishing) for name in step.step.outputs]
                    if step.chain:
                        made = engine.map_fused(
                            _stages(plan, step, results), images,
                            name=" > ".join(plan.steps[i].name for i in step.chain),
                            layout=tiling, files=files, feeding=feeding)
                    else:
                        made = engine.map(
                            found.fn, [images[name] for name in step.step.inputs],
                            params=params, profile_fn=found.profile, name=step.name,
                            output_names=step.step.outputs, layout=tiling,
                            writable_inputs=step.step.writable_inputs, files=files,
                            feeding=feeding)
                if feeding is not None:  # kept for their own steps, in the plan's order
                    fed.update(feeding.results)
                images.update((name, image) for name, image in zip(step.step.outputs, made)
                              if plan.images[name].lives is Residence.SHARED)
                images.update((name, engine.open(spilled[name], name=name))
                              for name in step.step.outputs if name in spilled)
            elif step.fed_by is not None:  # computed by the tiles of the map that fed it
                results[step.name] = fed.pop(step.name)
            else:
                results[step.name] = engine.reduce(found.fn,
                                                   [images[name] for name in step.step.inputs],
                                                   combine=found.combine,
                                                   finalize=found.finalize, params=params,
                                                   name=step.name, layout=tiling,
                                                   writable_inputs=step.step.writable_inputs)
            save(step.saves)
            release(step.releases)
            if journal is not None:
                journal.step_done(step, spilled, results, fed)
        stage_items(staging, spec, results)  # STAC Items, from the staged images
        written = staging.commit()
        reports = tuple(engine.reports)
    paths = {name: output.path for name, output in spec.outputs.items() if output.path in written}
    return RunResult(paths, results, reports, time.perf_counter() - started, plan,
                     sampler.peak or None)


@contextlib.contextmanager
def _journal(plan: RunPlan, resuming: Resuming | None, staging: Staging, scratch: Scratch,
             executor: Executor | None) -> Iterator[RunJournal | None]:
    """The run's journal (None: not asked for), kept if a signal stops the run."""
    if resuming is None:
        yield None
        return
    journal = RunJournal(plan, resuming, staging, scratch,
                         elsewhere=executor is not None and executor.writes_elsewhere())
    with journal.ended():
        yield journal


def _stages(plan: RunPlan, step: StepPlan, results: Mapping[str, Any]) -> list[ChainStep]:
    """A fused chain's steps as the engine's stages, their params resolved."""
    stages = []
    for index in step.chain:
        member = plan.steps[index]
        found = member.callables
        stages.append(ChainStep(member.name, found.fn, member.step.inputs, member.step.outputs,
                            member.margin, callable_params(member.step, found.fn, results),
                            found.profile,
                            declared_writable_inputs(found.fn, member.step.writable_inputs)))
    return stages


def _feeding(plan: RunPlan, step: StepPlan, results: Mapping[str, Any]) -> Feeding | None:
    """The reduces map ``step``'s tiles feed (None: none), their params resolved; each reads
    the map's outputs at their positions among them."""
    fed = [reduce for reduce in plan.steps if reduce.fed_by == step.index]
    if not fed:
        return None
    outputs = list(step.step.outputs)
    return Feeding([FedReduce(reduce.name, reduce.callables.fn,
                              tuple(outputs.index(name) for name in reduce.step.inputs),
                              reduce.callables.combine, reduce.callables.finalize,
                              callable_params(reduce.step, reduce.callables.fn, results),
                              reduce.step.writable_inputs)
                    for reduce in fed])


def _gdal_cache(plan: RunPlan) -> contextlib.AbstractContextManager[Any]:
    """GDAL's block cache in this process, under a budget asked for: the plan's share of it."""
    if not plan.resources.given:
        return contextlib.nullcontext()
    return rasterio.Env(GDAL_CACHEMAX=plan.resources.gdal_cache)  # an int: bytes


#: How often the run looks at its process tree's resident pages, and reads its PSS for the
#: peak it reports when they say it may be above the peak (:class:`TreeSampler`): no more often
#: than keeps the sampling thread's CPU under this share of one core, and at least every
#: PEAK_FLOOR_SECONDS.
PEAK_SAMPLE_SECONDS = 0.05
PEAK_SAMPLE_SHARE = 0.02
PEAK_FLOOR_SECONDS = 5.0
#: ... and under PEAK_START_SHARE during the run's first seconds (its samples every
#: PEAK_SAMPLE_SECONDS while they are cheap: a short run's peak is brief).
PEAK_FULL_RATE_SECONDS = 1.5
PEAK_START_SHARE = 0.1


@contextlib.contextmanager
def _sampling(sampler: TreeSampler, executor: Executor | None) -> Iterator[None]:
    """Sample while the block runs; started after the engine has forked its workers (a thread
    alive at a fork can leave a lock held in the child). Where the workers run apart (a
    scheduler's address), the tree is this process alone: its peak is the high-water mark of
    its resident memory, which costs no thread (a sampler took 0.05 to 0.08 s of a cluster
    client's CPU on the benchmark's W1, 5 % of it)."""
    if executor is not None and not executor.in_tree:
        yield
        sampler.peak = own_peak_rss()
        return
    if own_pss() is None:
        yield
        return
    sampler.start()
    try:
        yield
    finally:
        sampler.stop()
