"""A Dask LocalCluster of 2 worker processes on 127.0.0.1, started once for the session."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

distributed = pytest.importorskip(
    "distributed", reason="the cluster tests need the 'dask' extra: pip install -e '.[test]'")

HERE = Path(__file__).resolve().parent

#: Deaths of a task's worker before Dask gives up on it (KilledWorker); 1 keeps the test of a
#: callable that kills its worker short, and still lets a task survive one lost worker.
ALLOWED_FAILURES = 1


@pytest.fixture(scope="module")
def dask_client() -> Iterator[distributed.Client]:
    """A LocalCluster of 2 worker processes for one test module. Not for the session: its
    threads in this process would run on through every later test (CPU time measured by them,
    threads alive when an engine forks its workers)."""
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None,
                                           silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture
def client(dask_client: distributed.Client) -> distributed.Client:
    """The session's client, with both workers up (a test may have killed one)."""
    dask_client.wait_for_workers(2, timeout=60)
    return dask_client


@pytest.fixture(scope="session")
def shared_rasters() -> Path:
    """../shared/data, as the ``shared_data`` fixture, for fixtures wider than a test."""
    folder = HERE.parents[1].parent / "shared" / "data"
    if not folder.is_dir():
        pytest.skip("needs ../shared/data (the project's shared test rasters)")
    return folder


@pytest.fixture
def ops_dir(tmp_path: Path) -> Path:
    """A pipeline folder holding cluster_ops.py, and a scratch folder in it."""
    shutil.copy(HERE / "cluster_ops.py", tmp_path / "cluster_ops.py")
    (tmp_path / "scratch").mkdir()
    return tmp_path
