"""Which executor runs a run's tiles: the one place that chooses, and makes, it.

``workers=1`` runs every tile in this process (:class:`~eoscale.engine.executors.InlineExecutor`);
more workers, a pool of worker processes (:class:`~eoscale.engine.executors.ProcessExecutor`);
a cluster (an address or a ``distributed.Client``), a
:class:`~eoscale.engine.cluster.DaskExecutor`, connected by
:meth:`~eoscale.engine.cluster.DaskExecutor.connect` (the one place that connects) and its
workers set up (:class:`~eoscale.engine.cluster_worker.WorkerSetup`). ``distributed`` is
imported only for a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from eoscale.engine.executors import (
    WORKER_GDAL_CACHE_BYTES,
    Executor,
    InlineExecutor,
    ProcessExecutor,
    cap_gdal_cache,
    default_workers,
)
from eoscale.errors import ConfigError

if TYPE_CHECKING:
    from eoscale.engine.cluster import DaskExecutor
    from eoscale.engine.cluster_worker import WorkerSetup


def make_executor(workers: int | None = None, *, cluster: Any = None,
                  start_method: str | None = None, gdal_cache_bytes: int = 0,
                  gdal_options: Mapping[str, str] | None = None) -> Executor:
    """The executor for ``workers`` (default: all CPUs this process may use), or for
    ``cluster`` (its workers get the GDAL options and cache; ``workers`` is then the cluster's).

    ``gdal_cache_bytes`` caps GDAL's block cache in each process that decodes tiles (0:
    :data:`~eoscale.engine.executors.WORKER_GDAL_CACHE_BYTES` in workers; with one worker the
    tiles are decoded here, and this process's cache is capped only when it is given). GDAL
    options reach every worker at its start; the caller applies them to this process
    (``rasterio.Env``), where ``workers=1`` runs everything.
    """
    if cluster is not None:
        from eoscale.engine.cluster_worker import WorkerSetup

        return connect_cluster(cluster, WorkerSetup(
            (), dict(gdal_options or {}), gdal_cache_bytes or WORKER_GDAL_CACHE_BYTES))
    if workers is None:
        workers = default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, not {workers!r}")
    if workers == 1:
        if gdal_cache_bytes:
            cap_gdal_cache(gdal_cache_bytes)
        return InlineExecutor()
    return ProcessExecutor(workers, start_method, gdal_cache_bytes, gdal_options)


def connect_cluster(cluster: Any, setup: WorkerSetup | None = None) -> DaskExecutor:
    """An executor on ``cluster`` (an address or a ``distributed.Client``), its workers set up
    with ``setup`` when it is given; closed again if the set-up fails."""
    from eoscale.engine.cluster import DaskExecutor

    executor = DaskExecutor.connect(cluster)
    if setup is not None:
        try:
            executor.prepare(setup)
        except BaseException:
            executor.close()
            raise
    return executor
