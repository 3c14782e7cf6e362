"""Executors run a job's chunks of tiles: in-process, or on a pool of worker processes.

The interface is :class:`Executor`: ``run(job, chunks)`` yields ``(chunk index, result)`` in
completion order, and ``close()``. The engine depends on nothing else, so a distributed executor
only has to implement these two. What a worker's failure becomes here (:func:`failure_error`)
and a job run to its end (:func:`run_job`: the assembly's copies, the overviews a worker makes
last) are the same for every executor.

:class:`ProcessExecutor` keeps one pipe per worker. A job is pickled once per step and sent to each
worker once (workers cache it by token); then a chunk message is two small values. The parent waits
on the pipes and on the workers' process sentinels together, so a worker that dies (SIGKILL from
the out-of-memory killer, a crash in C code, ``os._exit``) is an error at once, never a hang.
Workers ignore SIGINT (the parent decides), die with the parent (PR_SET_PDEATHSIG on Linux, and a
poll of the parent's pid elsewhere), and detach every shared segment of a step when it ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import math
import multiprocessing as mp
import os
import pickle
import signal
import sys
import traceback
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait
from typing import Any

from eoscale.engine.heap import keep_freed_memory, release_freed_memory
from eoscale.engine.native_threads import (
    limit_native_threads,
    restore_blas_threads,
    threads_per_worker,
)
from eoscale.engine.shared import pid_alive
from eoscale.engine.tasks import Job, TileFailure
from eoscale.engine.tiling import TILES_PER_WORKER
from eoscale.errors import (
    ConfigError,
    RasterError,
    ResultError,
    StepError,
    WorkerDiedError,
    check_interrupted,
)

#: Upper bound on chunks per step on a Dask cluster: beyond it, per-task scheduling would cost
#: more than it balances.
MAX_CHUNKS = 256
#: The same bound on this machine's workers (the pool, or this process), where a chunk costs
#: two small messages on a pipe: up to this many tiles, a chunk is one tile, so that a file
#: written in tile order gets nearly every tile's blocks at their place as they are computed
#: (:mod:`eoscale.engine.encoded`: a tile waits for the sizes of every tile before it, which a
#: chunk of many tiles running on the other worker holds back).
MAX_LOCAL_CHUNKS = 4096


def max_chunks(shares_memory: bool) -> int:
    """The bound on a step's chunks for an executor whose workers share this machine's memory
    (or not: a cluster's)."""
    return MAX_LOCAL_CHUNKS if shares_memory else MAX_CHUNKS


def default_workers() -> int:
    """All CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def make_chunks(indices: Sequence[int], workers: int,
                limit: int = MAX_CHUNKS) -> list[Sequence[int]]:
    """Consecutive runs of tile indices: enough for balance and progress, few enough to be
    cheap (at most ``limit``, or a few per worker where there are more workers)."""
    count = len(indices)
    if count == 0:
        return []
    wanted = min(count, max(workers * 2 * TILES_PER_WORKER, min(count, limit)))
    size = math.ceil(count / wanted)
    return [indices[start:start + size] for start in range(0, count, size)]


@contextlib.contextmanager
def closed_after(results: Iterator[tuple[int, Any]]) -> Iterator[Iterator[tuple[int, Any]]]:
    """An executor's results, closed on leaving (a failure, or the last chunk taken): the
    executor then stops the job's work."""
    try:
        yield results
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()


def failure_error(failure: TileFailure) -> Exception:
    """The exception a tile failure from a worker becomes in the main process."""
    if failure.kind == "read":
        return RasterError(f"{failure.message} (step '{failure.step}', {failure.tile})")
    if failure.kind == "write":  # the message names the file, as a failure to write it here does
        return RasterError(failure.message)
    if failure.kind == "result":
        return ResultError(failure.message, step=failure.step, tile=failure.tile)
    if failure.kind == "readonly":
        return StepError("the callable wrote into one of its input arrays; inputs are read-only "
                         "because every tile shares them: work on a copy (arrays[0].copy()), or "
                         "ask for private writable inputs with writable_inputs (a step's "
                         "'writable_inputs: true', a callable's attribute writable_inputs = "
                         "True, Engine.map(..., writable_inputs=True))",
                         step=failure.step, tile=failure.tile, details=failure.traceback)
    return StepError(f"{failure.exc_type}: {failure.message}", step=failure.step,
                     tile=failure.tile, details=failure.traceback)


def run_job(executor: Executor, job: Job, chunks: Sequence[Sequence[int]]) -> list[Any]:
    """Run ``job``'s ``chunks`` on ``executor`` to the end; their results in completion order.
    The first failure is raised (:func:`failure_error`), and so is a signal whose raise was
    lost (between chunks, as a step's run does)."""
    results = []
    with closed_after(executor.run(job, chunks)) as running:
        for _, result in running:
            check_interrupted()
            if isinstance(result, TileFailure):
                raise failure_error(result)
            results.append(result)
    return results


START_METHODS = ("fork", "forkserver", "spawn")
_POLL_SECONDS = 0.5
_JOIN_SECONDS = 2.0


class Executor(ABC):
    """Runs chunks of tiles of a job; yields ``(chunk index, result)`` as chunks complete.
    ``shares_memory``: whether its workers can map this process's shared rasters;
    ``writes_files``: whether its workers can write files beside a run's outputs and scratch
    files that this process then reads (so they encode and write the blocks of the images a
    map writes: :mod:`eoscale.engine.encoded`); ``in_tree``: whether its workers are this
    process or its children (the memory a run measures is that tree's)."""

    workers: int
    shares_memory: bool = True
    writes_files: bool = True
    in_tree: bool = True

    def writes_elsewhere(self) -> bool:
        """Whether a worker runs on another machine than this process (its files' bytes then
        are in that machine's cache, not this one's): never for this machine's processes."""
        return False

    @abstractmethod
    def run(self, job: Job, chunks: Sequence[Sequence[int]]) -> Iterator[tuple[int, Any]]: ...

    @abstractmethod
    def close(self) -> None: ...


class InlineExecutor(Executor):
    """Runs every chunk in the calling process, in order: what ``workers=1`` means; debuggers work."""

    workers = 1

    def __init__(self) -> None:
        restore_blas_threads()

    def run(self, job: Job, chunks: Sequence[Sequence[int]]) -> Iterator[tuple[int, Any]]:
        try:
            for position, chunk in enumerate(chunks):
                yield position, job.run_chunk(chunk)
        finally:
            job.close()

    def close(self) -> None:
        pass


def default_start_method() -> str:
    return "fork" if "fork" in mp.get_all_start_methods() else "spawn"


class ProcessExecutor(Executor):
    """A pool of worker processes, started once and reused by every step of a run."""

    def __init__(self, workers: int, start_method: str | None = None,
                 gdal_cache_bytes: int = 0, gdal_options: Mapping[str, str] | None = None):
        if workers < 1:
            raise ConfigError(f"workers must be at least 1, not {workers}")
        method = start_method or default_start_method()
        if method not in START_METHODS:
            raise ConfigError(f"start method must be one of {', '.join(START_METHODS)}, not {method!r}")
        self.workers = workers
        self.start_method = method
        self.gdal_cache_bytes = gdal_cache_bytes or WORKER_GDAL_CACHE_BYTES
        self.gdal_options = dict(gdal_options or {})
        self._tokens = itertools.count(1)
        self._procs: list[mp.process.BaseProcess] = []
        self._conns: list[Connection] = []
        self._known: list[set[int]] = []
        self._start()

    def _start(self) -> None:
        # Start the resource tracker here, so that workers share it rather than each starting
        # its own (under "fork", a worker would otherwise inherit none).
        resource_tracker.ensure_running()
        context = mp.get_context(self.start_method)
        for number in range(self.workers):
            parent_end, child_end = context.Pipe(duplex=True)
            process = context.Process(target=_worker_main,
                                      args=(child_end, os.getpid(), self.gdal_cache_bytes,
                                            self.gdal_options,
                                            threads_per_worker(default_workers(), self.workers)),
                                      name=f"eoscale-worker-{number}", daemon=True)
            process.start()
            child_end.close()
            self._procs.append(process)
            self._conns.append(parent_end)
            self._known.append(set())

    def run(self, job: Job, chunks: Sequence[Sequence[int]]) -> Iterator[tuple[int, Any]]:
        if not self._procs:
            self._start()
        token = next(self._tokens)
        try:
            payload = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - pickling raises many kinds of errors
            raise StepError(
                f"cannot send the step to worker processes ({type(exc).__name__}: {exc}); "
                "callables and params must be picklable: define functions at module level, "
                "or run with workers=1", step=job.step) from None
        pending = deque(enumerate(chunks))
        busy: dict[int, tuple[int, Sequence[int]]] = {}
        finished = False
        try:
            self._dispatch(job, token, payload, pending, busy)
            while busy:
                by_conn = {id(self._conns[w]): w for w in busy}
                by_sentinel = {self._procs[w].sentinel: w for w in busy}
                ready = wait([self._conns[w] for w in busy] + list(by_sentinel), _POLL_SECONDS)
                for item in ready:
                    worker = by_conn.get(id(item))
                    if worker is None:
                        worker = by_sentinel.get(item)  # type: ignore[arg-type]
                    if worker is None or worker not in busy:
                        continue
                    position, chunk = busy[worker]
                    try:
                        message = self._conns[worker].recv() if item is self._conns[worker] else None
                    except (EOFError, OSError):
                        message = None
                    if message is None:
                        self._raise_died(job, worker, chunk)
                    del busy[worker]
                    # its next chunk first: the worker computes while this result is handled
                    # (assembled, folded, recorded in the journal) rather than waiting for it
                    self._dispatch(job, token, payload, pending, busy)
                    yield position, message
            finished = True
        finally:
            if finished:
                self._forget(token)
            else:
                self.abort()

    def _dispatch(self, job: Job, token: int, payload: bytes, pending: deque, busy: dict) -> None:
        for worker in range(self.workers):
            if not pending:
                return
            if worker in busy:
                continue
            position, chunk = pending.popleft()
            conn = self._conns[worker]
            try:
                if token not in self._known[worker]:
                    conn.send(("job", token, payload))
                    self._known[worker].add(token)
                conn.send(("run", token, list(chunk)))
            except OSError:  # the worker died since its last answer
                self._raise_died(job, worker, chunk)
            busy[worker] = (position, chunk)

    def _forget(self, token: int) -> None:
        for worker, known in enumerate(self._known):
            if token in known:
                known.discard(token)
                self._conns[worker].send(("forget", token))

    def _raise_died(self, job: Job, worker: int, chunk: Sequence[int]) -> None:
        process = self._procs[worker]
        process.join(_JOIN_SECONDS)
        code = process.exitcode
        if code is not None and code < 0:
            how = f"killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}" if code is not None else "stopped answering"
        hint = ""
        if code == -signal.SIGKILL:
            hint = ("; SIGKILL usually comes from the kernel's out-of-memory killer: "
                    "try fewer workers or a smaller tile size")
        first, last = job.tiles[chunk[0]], job.tiles[chunk[-1]]
        where = first.describe() if first is last else f"{first.describe()} .. {last.describe()}"
        raise WorkerDiedError(f"a worker process (pid {process.pid}) died ({how}){hint}",
                              step=job.step, tile=where)

    def abort(self) -> None:
        """Stop every worker now (used when a step fails or the run is interrupted)."""
        procs, conns = self._procs, self._conns
        self._procs, self._conns, self._known = [], [], []
        for process in procs:
            if process.is_alive():
                process.terminate()
        _reap(procs)
        for conn in conns:
            conn.close()

    def close(self) -> None:
        """Ask workers to stop, wait briefly, then end those that do not."""
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        procs, conns = self._procs, self._conns
        self._procs, self._conns, self._known = [], [], []
        _reap(procs)
        for conn in conns:
            conn.close()


def _reap(procs: list[mp.process.BaseProcess]) -> None:
    for process in procs:
        process.join(_JOIN_SECONDS)
        if process.is_alive():
            process.kill()
            process.join(_JOIN_SECONDS)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


#: GDAL's block cache in each worker, in bytes. Workers decode windows straight into their
#: destination, so cached blocks would mostly duplicate the input (GDAL's default: 5 % of RAM in
#: each process); a few blocks are kept for windows whose margins cut blocks their neighbours read.
WORKER_GDAL_CACHE_BYTES = 16 * 2**20


def cap_gdal_cache(size: int) -> None:
    """Cap GDAL's block cache in this process at ``size`` bytes, unless the environment sets it."""
    if "GDAL_CACHEMAX" not in os.environ:
        from rasterio.env import set_gdal_config

        # rasterio passes an int to GDALSetCacheMax64: bytes (a string would be read as MB)
        set_gdal_config("GDAL_CACHEMAX", int(size))


def set_gdal_options(options: Mapping[str, str]) -> None:
    """A pipeline's GDAL configuration options, for the whole life of a worker."""
    from rasterio.env import set_gdal_config

    for key, value in options.items():
        set_gdal_config(key, value)


def _worker_main(conn: Connection, owner_pid: int, gdal_cache_bytes: int,
                 gdal_options: Mapping[str, str] | None = None, native_threads: int = 1) -> None:
    """A worker's loop: cache jobs by token, run chunks, forget jobs when their step ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parent = os.getppid()
    _die_with_parent()
    cap_gdal_cache(gdal_cache_bytes)
    set_gdal_options(gdal_options or {})
    keep_freed_memory()
    limit_native_threads(native_threads)
    jobs: dict[int, Job] = {}
    try:
        while True:
            if not conn.poll(_POLL_SECONDS):
                if os.getppid() != parent or not pid_alive(owner_pid):
                    return
                continue
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            kind = message[0]
            if kind == "stop":
                return
            if kind == "job":
                jobs[message[1]] = pickle.loads(message[2])
            elif kind == "forget":
                job = jobs.pop(message[1], None)
                if job is not None:
                    job.close()
                release_freed_memory()
            elif kind == "run":
                result = jobs[message[1]].run_chunk(message[2])
                try:
                    conn.send(result)
                except Exception as exc:  # noqa: BLE001 - an unpicklable partial result
                    conn.send(_unsendable(jobs[message[1]], message[2], exc))
    finally:
        for job in jobs.values():
            job.close()


def run_apart(fn: Callable[..., None], args: Sequence[Any], *, name: str,
              gdal_options: Mapping[str, str] | None = None) -> None:
    """Run ``fn(*args)``, a long pass of GDAL's over a written file (building its overviews,
    making its COG), in a process of its own, waiting as a step's tiles are waited on: a
    signal raises here at once, and the process is killed, where a call in this process
    would hold the signal until GDAL returned. The process is spawned, not forked: GDAL's
    thread pool, if this process started one, would not survive a fork, and the pass uses it.
    A failure to write there is the same error here (naming the file); another failure, or
    the process dying, is a step error naming ``name``."""
    context = mp.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_apart_main, args=(sender, fn, tuple(args),
                                                        dict(gdal_options or {})), daemon=True)
    process.start()
    sender.close()
    outcome = None
    try:
        while not wait([receiver, process.sentinel], _POLL_SECONDS):
            check_interrupted()
        with contextlib.suppress(EOFError, OSError):
            outcome = receiver.recv()
    except BaseException:
        process.kill()  # GDAL's pass stops now; the caller removes what it wrote
        raise
    finally:
        process.join(_JOIN_SECONDS)
        if process.is_alive():
            process.kill()
            process.join(_JOIN_SECONDS)
        receiver.close()
    if outcome is None:
        raise StepError(f"the process running it died (exit code {process.exitcode})", step=name)
    if outcome[0] == "write":
        raise RasterError(outcome[1])
    if outcome[0] == "error":
        raise StepError(outcome[1], step=name, details=outcome[2])


def _apart_main(conn: Connection, fn: Callable[..., None], args: tuple,
                gdal_options: Mapping[str, str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process stops this one
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    set_gdal_options(gdal_options)
    try:
        fn(*args)
        conn.send(("done",))
    except RasterError as exc:
        conn.send(("write", str(exc)))
    except Exception as exc:  # noqa: BLE001 - sent back as plain values
        conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))


def _unsendable(job: Job, chunk: Sequence[int], exc: Exception) -> Any:
    failure = job.failure(job.tiles[chunk[0]], exc, "result")
    return type(failure)(failure.step, failure.tile, "result", failure.exc_type,
                         f"the callable's result cannot be sent back from the worker: {exc}", "")
