"""The Python API, mirroring the command line: load, validate and run a pipeline from a path or a
mapping, with the same overrides as the flags of ``eoscale run``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from eoscale.engine import Progress
from eoscale.engine.executors import Executor
from eoscale.errors import PipelineError, Problem
from eoscale.pipeline import Overrides, PipelineSpec, RunPlan, checked_plan, load_pipeline
from eoscale.pipeline import validate as validate_spec
from eoscale.pipeline.runner import RunResult, run_pipeline
from eoscale.pipeline.session import open_run, plan_for

Source = str | os.PathLike[str] | Mapping[str, Any]


def overrides(*, workers: int | None = None, tile_size: int | None = None,
              tiling: str | None = None, inputs: Mapping[str, str] | None = None,
              outputs: Mapping[str, str] | None = None,
              params: Mapping[str, Any] | None = None, memory: str | int | None = None,
              scratch: str | os.PathLike[str] | None = None,
              cluster: str | None = None) -> Overrides:
    """Overrides from keyword arguments; ``params`` keys are ``"step.key"``; ``memory`` is a
    budget in bytes or a size like ``"4GiB"``; ``scratch`` the folder for spilled images;
    ``cluster`` a Dask cluster's address (``local:4``, ``tcp://host:8786``)."""
    by_step: dict[tuple[str, str], Any] = {}
    for dotted, value in (params or {}).items():
        step, sep, key = dotted.partition(".")
        if not sep or not step or not key:
            raise PipelineError(Problem(f"--param {dotted}: expected STEP.KEY=VALUE", path="--param"))
        by_step[(step, key)] = value
    return Overrides(workers=workers, tile_size=tile_size, tiling_mode=tiling,
                     inputs=dict(inputs or {}), outputs=dict(outputs or {}), params=by_step,
                     memory=memory, scratch=None if scratch is None else os.fspath(scratch),
                     cluster=cluster)


def load(source: Source, **kwargs: Any) -> PipelineSpec:
    """Read and check a pipeline document (schema and references), with overrides applied."""
    return load_pipeline(source, overrides=overrides(**kwargs))


def validate(source: Source, **kwargs: Any) -> list[Problem]:
    """Every problem that can be found without computing (an empty list for a valid pipeline)."""
    try:
        spec = load(source, **kwargs)
    except PipelineError as exc:
        return exc.problems
    return validate_spec(spec)


def plan(source: Source | PipelineSpec, **kwargs: Any) -> RunPlan:
    """Validate a pipeline and plan its run without computing anything (``run --dry-run``):
    where each image lives, the tiles of each step, when images are released, the memory."""
    spec = source if isinstance(source, PipelineSpec) else load(source, **kwargs)
    return checked_plan(spec)


def plan_on(spec: PipelineSpec, executor: Executor) -> RunPlan:
    """The run plan of a valid ``spec`` on a cluster's executor: its workers, sharing no memory
    with this process (:meth:`Resources.for_cluster`)."""
    return plan_for(spec, executor)


def run(source: Source | PipelineSpec | RunPlan, *, overwrite: bool = False,
        progress: Progress | None = None, start_method: str | None = None,
        cluster: Any = None, **kwargs: Any) -> RunResult:
    """Validate, plan and run a pipeline (or run a plan); returns the written paths, the reduce
    results, the plan and the measured peak memory.

    ``cluster`` runs it on Dask (the 'dask' extra): an address (``"local:4"``,
    ``"tcp://host:8786"``, as ``cluster:`` in the pipeline) or a ``distributed.Client``, which
    is used as it is and left open; a cluster this call starts or connects to is closed at the
    end. The pipeline's document is checked before any cluster is started; on a cluster, the
    run is planned on one of its workers (its callables are imported there, not here).
    """
    address = cluster if cluster is None or isinstance(cluster, str) else None
    if not isinstance(source, RunPlan):
        spec = source if isinstance(source, PipelineSpec) else load(
            source, **({"cluster": address} if address else {}), **kwargs)
        on_cluster = cluster is not None or spec.cluster is not None
        source = spec if on_cluster else checked_plan(spec)
    with open_run(source, cluster=cluster) as opened:
        return run_pipeline(opened.plan, progress=progress, overwrite=overwrite,
                            start_method=start_method, executor=opened.executor)
