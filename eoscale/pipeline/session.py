"""Opening a run: the executor it runs on, its plan for that executor, the workers set up.

A run on this machine opens nothing here: the engine makes its process pool. A run on a Dask
cluster is opened by :func:`open_run`, the one function the command line, the API and the runner
call: it connects to the cluster (:func:`~eoscale.engine.executing.connect_cluster`) or takes the
executor it is given, plans the run again for the cluster's workers (a plan made before
connecting assumed this machine's CPUs), gives every worker the pipeline's folder, GDAL options
and cache, checks that the workers see the files the run reads and the folders it writes, and
closes on leaving what it opened.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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
def open_run(plan: RunPlan, *, cluster: Any = None,
             executor: Executor | None = None) -> Iterator[OpenRun]:
    """Open ``plan``'s run: on ``executor`` (the caller's, left open; its plan is taken as made
    for it), else on ``cluster`` (an address or a ``distributed.Client``), else on the plan's
    own cluster if it has one. A cluster connected here is planned for again
    (:func:`plan_for`) and closed on leaving (a given Client is left open)."""
    if executor is None and cluster is None:
        if plan.resources.executor != "cluster" and plan.spec.cluster is None:
            yield OpenRun(plan)
            return
        cluster = plan.spec.cluster or plan.resources.cluster
        if cluster is None:
            raise ConfigError("a plan for a cluster needs its cluster: cluster: in the "
                              "pipeline, --cluster, or an executor")
    opened = executor is None
    running = connect_cluster(cluster) if executor is None else executor
    try:
        if opened:
            plan = plan_for(plan.spec, running)
        prepare_workers(running, plan)
        yield OpenRun(plan, running)
    finally:
        if opened:
            running.close()


def plan_for(spec: PipelineSpec, executor: Executor) -> RunPlan:
    """The run plan of a valid ``spec`` on a cluster's executor: its workers, sharing no memory
    with this process (:meth:`Resources.for_cluster`)."""
    described = getattr(executor, "description", None) or spec.cluster or "cluster"
    return checked_plan(spec, Resources.for_cluster(described, executor.workers, spec.memory))


def prepare_workers(executor: Executor, plan: RunPlan) -> None:
    """Set a Dask executor's workers up for the pipeline (its folder first on ``sys.path``, for
    its callables' modules; its GDAL options; the plan's GDAL cache) and refuse to start when
    they cannot see the files the run reads (:func:`worker_paths`). Other executors need
    nothing."""
    from eoscale.engine.cluster import DaskExecutor

    if not isinstance(executor, DaskExecutor):
        return
    from eoscale.engine.cluster_worker import WorkerSetup

    executor.prepare(WorkerSetup((str(plan.spec.base_dir),), dict(plan.spec.gdal),
                                 plan.resources.gdal_cache))
    executor.check_visible(worker_paths(plan))


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
    # What this process cannot see either, its own checks report (a missing scratch folder).
    return [path for path in dict.fromkeys(paths) if Path(path).exists()]
