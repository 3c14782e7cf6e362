"""Opening a run: the executor it runs on, its plan for that executor, the workers set up.

A run on this machine opens nothing here: the engine makes its process pool. A run on a Dask
cluster is opened by :func:`open_run`, the one function the command line, the API and the runner
call: it connects to the cluster (:func:`~eoscale.engine.executing.connect_cluster`) or takes the
executor it is given, gives every worker the pipeline's folder, GDAL options and cache, plans
the run on one of them for the cluster's workers (:mod:`eoscale.pipeline.remote`: this process
imports none of the pipeline's modules; a plan made before connecting assumed this machine's
CPUs), checks that the workers see the files the run reads and the folders it writes, and
closes on leaving what it opened.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eoscale.engine.executing import connect_cluster
from eoscale.engine.executors import Executor
from eoscale.engine.scratch import default_scratch
from eoscale.errors import ConfigError
from eoscale.io.paths import is_address
from eoscale.pipeline.inputs import read_locations
from eoscale.pipeline.plan import Resources, RunPlan
from eoscale.pipeline.remote import calls_on, plan_on_cluster
from eoscale.pipeline.spec import PipelineSpec
from eoscale.pipeline.validate import checked_plan

if TYPE_CHECKING:
    from eoscale.engine.cluster import DaskExecutor


@dataclass(frozen=True)
class OpenRun:
    """A run ready to start: its ``plan``, and the ``executor`` it runs on (None: the engine
    makes its own, for the plan's workers on this machine)."""

    plan: RunPlan
    executor: Executor | None = None

    @property
    def cluster(self) -> DaskExecutor | None:
        """The Dask executor the run is on, if it is on one."""
        if self.executor is None:
            return None
        from eoscale.engine.cluster import DaskExecutor

        return self.executor if isinstance(self.executor, DaskExecutor) else None


@contextlib.contextmanager
def open_run(source: RunPlan | PipelineSpec, *, cluster: Any = None,
             executor: Executor | None = None,
             connected: Callable[[Executor], None] | None = None) -> Iterator[OpenRun]:
    """Open the run of ``source``, a plan or a valid spec: on ``executor`` (the caller's, left
    open; a plan is taken as made for it), else on ``cluster`` (an address or a
    ``distributed.Client``), else on the plan's or the spec's own cluster if it has one. A spec
    for this machine is planned here; on a cluster, a spec, or a plan made before connecting, is
    planned on one of its workers (:func:`plan_for`), and the cluster is closed on leaving if
    it was connected to here (a given Client is left open). ``connected(executor)`` is called
    once connected, before the planning (which waits for a worker to join)."""
    spec = source if isinstance(source, PipelineSpec) else source.spec
    plan = source if isinstance(source, RunPlan) else None
    if executor is None and cluster is None:
        if spec.cluster is None and (plan is None or plan.resources.executor != "cluster"):
            yield OpenRun(plan or checked_plan(spec))
            return
        cluster = spec.cluster or (None if plan is None else plan.resources.cluster)
        if cluster is None:
            raise ConfigError("a plan for a cluster needs its cluster: cluster: in the "
                              "pipeline, --cluster, or an executor")
    opened = executor is None
    running = connect_cluster(cluster) if executor is None else executor
    try:
        if connected is not None:
            connected(running)
        if opened or plan is None:
            plan = plan_for(spec, running)
        else:
            prepare_workers(running, plan)
        with _calls_on(running):
            yield OpenRun(plan, running)
    finally:
        if opened:
            running.close()


def plan_for(spec: PipelineSpec, executor: Executor) -> RunPlan:
    """The run plan of a valid ``spec`` on a cluster's executor: its workers, sharing no memory
    with this process (:meth:`Resources.for_cluster`); on a Dask cluster, made on one of its
    workers, set up first (:func:`~eoscale.pipeline.remote.plan_on_cluster`: this process
    imports none of the pipeline's modules), then checked to see the files it reads."""
    from eoscale.engine.cluster import DaskExecutor

    described = getattr(executor, "description", None) or spec.cluster or "cluster"
    resources = Resources.for_cluster(described, executor.workers, spec.memory)
    if not isinstance(executor, DaskExecutor):
        return checked_plan(spec, resources)
    _set_up(executor, spec, resources.gdal_cache)
    # The input files first: a worker that cannot see one would plan as if it were missing.
    executor.check_visible(_seen_here(read_locations(spec, {})))
    plan = plan_on_cluster(spec, resources,
                           functools.partial(executor.call, what="the run's planning"))
    executor.check_visible(worker_paths(plan))  # (not asking again about the inputs)
    return plan


def prepare_workers(executor: Executor, plan: RunPlan) -> None:
    """Set a Dask executor's workers up for the pipeline (its folder first on ``sys.path``, for
    its callables' modules; its GDAL options; the plan's GDAL cache) and refuse to start when
    they cannot see the files the run reads (:func:`worker_paths`). Other executors need
    nothing."""
    from eoscale.engine.cluster import DaskExecutor

    if not isinstance(executor, DaskExecutor):
        return
    _set_up(executor, plan.spec, plan.resources.gdal_cache)
    executor.check_visible(worker_paths(plan))


def _set_up(executor: DaskExecutor, spec: PipelineSpec, gdal_cache: int) -> None:
    from eoscale.engine.cluster_worker import WorkerSetup

    executor.prepare(WorkerSetup((str(spec.base_dir),), dict(spec.gdal), gdal_cache))


@contextlib.contextmanager
def _calls_on(executor: Executor) -> Iterator[None]:
    """On a Dask cluster, the plan's functions called in this process run on a worker."""
    from eoscale.engine.cluster import DaskExecutor

    if not isinstance(executor, DaskExecutor):
        yield
        return
    with calls_on(functools.partial(executor.call, what="a step's function")):
        yield


def worker_paths(plan: RunPlan) -> list[str]:
    """What a cluster's workers must see: the local input files (a STAC input's assets too),
    the scratch folder if the plan writes scratch files, and the folders of the outputs written
    as computed (the workers write their blocks there; later steps may read them back)."""
    spec = plan.spec
    paths = [path for path in read_locations(spec, plan.input_sources) if not is_address(path)]
    if plan.needs_scratch:
        paths.append(str(spec.scratch or default_scratch()))
    for name, image in plan.images.items():
        if image.file is None or image.file.scratch:
            continue
        folder = spec.outputs[name].path.parent  # or the nearest that exists before the run
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        paths.append(str(folder))
    return _seen_here(paths)


def _seen_here(paths: list[str]) -> list[str]:
    """The local ``paths`` this process sees (what it cannot see either, its own checks report:
    a missing scratch folder, a missing input)."""
    return [path for path in dict.fromkeys(paths) if not is_address(path) and Path(path).exists()]
