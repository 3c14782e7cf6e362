"""What runs on a Dask worker: its set-up, and a chunk of tiles of a scattered job.

Imported on the workers, and in the main process only once a cluster is used (it imports
``distributed``). :class:`WorkerSetup` says what a worker needs before its first task;
:class:`SetupPlugin` applies it on every worker, those that join later included. A worker thread
unpickles a step's job once, at its first chunk, and keeps it by token until the step ends
(:func:`forget`); each thread has its own copy, since a job's open files (GDAL datasets) must not
be shared by threads.

A step that ended stays ended on the worker: a chunk of it still running (a cancel does not stop
a running task) writes no more blocks, and one that starts late (a task the cancel did not
reach in time) runs no tile (:func:`run_chunk`, :func:`~eoscale.engine.encoded.writing_for`);
the main process waits until every worker knows before it removes the step's files. A worker
keeps the last :data:`ENDED_KEPT` ended steps, not only until the run ends: the run's end (its
plugin unregistered) comes right after a stop, while a stopped step's chunk may still run.
"""

from __future__ import annotations

import importlib.machinery
import logging
import pickle
import signal
import socket
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin

from eoscale.engine.encoded import sync_appends, writing_for
from eoscale.engine.executors import WORKER_GDAL_CACHE_BYTES, cap_gdal_cache, set_gdal_options
from eoscale.engine.heap import keep_freed_memory, restore_heap
from eoscale.engine.tasks import Job

#: GDAL's block cache in a cluster's worker, at least (see :func:`worker_gdal_cache`).
CLUSTER_GDAL_CACHE_BYTES = 128 * 2**20


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker needs before it runs a task: folders put at the front of ``sys.path``
    (the pipeline's, for its callables' modules), GDAL options and GDAL's block cache (the
    plan's, which :func:`worker_gdal_cache` may raise); and for
    the workers of a local cluster, which share this process's group, to ignore SIGINT (Ctrl-C
    reaches the whole group: this process decides, cancels the tasks and closes the cluster) and,
    as they share its terminal, to log only critical messages (``quiet_logs``: a worker that
    fetches data from a worker just killed logs its failure; eoscale's message says what
    happened). ``client_host``: the client's machine; a worker on another one flushes its part
    files before it returns their blocks' records (:func:`~eoscale.engine.encoded.sync_appends`),
    so that a journal never records blocks that a lost machine's cache held."""

    paths: tuple[str, ...] = ()
    gdal_options: Mapping[str, str] | None = None
    gdal_cache_bytes: int = WORKER_GDAL_CACHE_BYTES
    ignore_sigint: bool = False
    quiet_logs: bool = False
    client_host: str = ""


def worker_gdal_cache(planned: int, memory_limit: int | None) -> int:
    """GDAL's block cache in a cluster's worker: the plan's, raised to
    :data:`CLUSTER_GDAL_CACHE_BYTES` within a sixteenth of the worker's memory limit (if it has
    one). A worker reads each tile's window, margins included, from the files: a margin reaches
    into the neighbouring tiles' blocks, which a cache that holds them decodes once, not once per
    tile touching them (with 512-pixel blocks, 1024-pixel tiles and a margin, 16 blocks decoded
    per tile instead of 4); the memory is the cluster's, outside the plan's budget."""
    wanted = CLUSTER_GDAL_CACHE_BYTES if not memory_limit else min(CLUSTER_GDAL_CACHE_BYTES,
                                                                    memory_limit // 16)
    return max(planned, wanted)


class SetupPlugin(WorkerPlugin):
    """Puts the pipeline's folders at the front of ``sys.path`` and forgets the modules already
    imported from them (so that a long-lived worker runs the callables as they are now), then
    applies the GDAL options and caps GDAL's block cache (see :class:`WorkerSetup` and
    :func:`worker_gdal_cache`), keeps a tile's freed memory for the next tile until the run
    ends (:mod:`eoscale.engine.heap`), and the signal and log settings of a local cluster's
    workers."""

    def __init__(self, setup: WorkerSetup):
        self.setup_values = setup

    def setup(self, worker: Any = None) -> None:
        setup = self.setup_values
        folders = [str(Path(path)) for path in setup.paths]
        for folder in reversed(folders):  # first, even if an earlier run put it further back
            while folder in sys.path:
                sys.path.remove(folder)
            sys.path.insert(0, folder)
        for name, module in list(sys.modules.items()):
            if any(_imported_from(name, module, folder) for folder in folders) or \
                    _shadowed(name, module, folders):
                del sys.modules[name]
        _PIPELINE_FOLDERS.update(folders)
        memory = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
        cap_gdal_cache(worker_gdal_cache(setup.gdal_cache_bytes, memory))
        set_gdal_options(setup.gdal_options or {})
        sync_appends(bool(setup.client_host) and setup.client_host != socket.gethostname())
        keep_freed_memory()
        if setup.ignore_sigint and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if setup.quiet_logs:
            for handler in logging.getLogger("distributed").handlers:
                if isinstance(handler, logging.StreamHandler):
                    handler.setLevel(logging.CRITICAL)

    def teardown(self, worker: Any = None) -> None:
        """The run ended (the plugin is unregistered): the worker's heap as it was."""
        restore_heap()


#: Every pipeline folder a run has put on this worker's ``sys.path``.
_PIPELINE_FOLDERS: set[str] = set()


def _shadowed(name: str, module: Any, folders: Sequence[str]) -> bool:
    """Whether ``module`` came from another run's pipeline folder while one of ``folders`` (this
    run's) holds a module of the same top-level name: a long-lived worker would otherwise run
    the other pipeline's ``myops`` for this one's, silently."""
    top = name.partition(".")[0]
    if not any(_imported_from(name, module, other) for other in _PIPELINE_FOLDERS
               if other not in folders):
        return False
    return any(importlib.machinery.PathFinder.find_spec(top, [folder]) is not None
               for folder in folders)


def _imported_from(name: str, module: Any, folder: str) -> bool:
    """Whether ``module`` was imported through ``folder`` as a ``sys.path`` entry: its top-level
    package or module lies right in the folder (not merely somewhere below it, as a virtual
    environment inside the pipeline's folder would); never eoscale itself."""
    top = name.partition(".")[0]
    filename = getattr(module, "__file__", None)
    if top == "eoscale" or not filename:
        return False
    try:
        first = Path(filename).relative_to(folder).parts[0]
    except (ValueError, IndexError):
        return False
    return first in (top, f"{top}.py") or first.startswith(f"{top}.")


class _Cached:
    def __init__(self, job: Job):
        self.job = job
        self.lock = threading.Lock()
        self.forgotten = False

    def close(self) -> None:
        self.forgotten = True
        if self.lock.acquire(blocking=False):  # else the chunk running closes it when done
            try:
                self.job.close()
            finally:
                self.lock.release()


_jobs: dict[tuple[str, int], _Cached] = {}
#: The steps that ended (:func:`forget`), by token, oldest first: the last ENDED_KEPT of them
#: (a stopped step's chunk stops at its tile's write; this many steps later none of it runs).
_ended: dict[str, None] = {}
ENDED_KEPT = 4096
_jobs_lock = threading.Lock()


def run_chunk(payload: bytes, token: str, chunk: Sequence[int]) -> Any:
    """A task: run a chunk of the job ``payload`` (pickled), unpickled once per worker thread.
    A chunk of a step that ended runs no tile (None: no one waits for its result), and one
    running when it ends writes no more blocks (see the module's docstring)."""
    key = (token, threading.get_ident())
    with _jobs_lock:  # as forget's: a job cached after the step's end would never be closed
        if token in _ended:
            return None
        cached = _jobs.get(key)
        if cached is None:
            cached = _jobs[key] = _Cached(pickle.loads(payload))
    with cached.lock, writing_for(lambda: token in _ended):
        try:
            return cached.job.run_chunk(chunk)
        finally:
            if cached.forgotten:
                cached.job.close()


async def forget(token: str) -> None:
    """The step ``token`` ended: from now on its chunks write no block; close its jobs now, or
    a chunk still running closes its job when it ends (a coroutine: it runs on the worker's
    event loop, which must not wait). Returns once the step is marked ended: the main process
    that waits for it may then remove the step's files."""
    with _jobs_lock:
        _ended[token] = None
        while len(_ended) > ENDED_KEPT:
            del _ended[next(iter(_ended))]
        ended = [_jobs.pop(key) for key in list(_jobs) if key[0] == token]
    for cached in ended:
        cached.close()


def missing_paths(paths: Sequence[str]) -> list[str]:
    """Those of ``paths`` that this worker cannot see."""
    return [path for path in paths if not Path(path).exists()]
