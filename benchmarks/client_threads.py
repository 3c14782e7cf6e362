"""``eoscale`` run through its command line, writing at exit where its CPU went: by thread, and
inside or outside the steps' runs on the cluster:

    EOSCALE_BENCH_THREADS=out.json python benchmarks/client_threads.py run PIPELINE ...

Benchmark code only (cluster_scaling.py). The client's CPU has a fixed part (interpreter,
imports, plan, connecting, setting the workers up, closing), a part per block of its outputs
(headers) and a part per task (submitting a chunk, receiving its result and records); the
scaling model needs them apart, and a total divided by the tasks lumps them together. So the
executor's ``run`` is wrapped: each call (a step's map, or its copies) records the client's CPU
by thread from its first chunk submitted to its last result taken, with its chunks. The rest of
the process's CPU is outside the runs; of it, the headers' writing and the copies' job making
are timed apart (per block). Threads: ``main`` (planning, handing results on),
``io_loop`` (Dask's client event loop: messages), ``sampler`` (eoscale's PSS sampler, which
runs beside the work and is rate-limited to a share of a core), ``native`` (threads Python did
not start: GDAL's), ``other``.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

#: Each call of the executor's run (see the module's docstring), appended as it ends.
RUNS: list[dict[str, Any]] = []
#: The client's CPU when it connected, and when the connection was made.
CONNECT: dict[str, Any] = {}
#: The main thread's CPU seconds writing each encoded output's header and making its copies'
#: job (per block, outside the runs), with the output's blocks.
HEADERS: list[dict[str, Any]] = []


def _kind(thread: threading.Thread | None) -> str:
    if thread is None:
        return "native"
    if thread is threading.main_thread():
        return "main"
    if thread.name == "IO loop":
        return "io_loop"
    if type(thread).__name__ == "TreeSampler":
        return "sampler"
    return "other"


def thread_seconds() -> dict[str, float]:
    """CPU seconds of the whole process (``total``) and of its live threads by kind."""
    import psutil  # a dependency of distributed

    python = {thread.native_id: thread for thread in threading.enumerate()}
    found = dict.fromkeys(("main", "io_loop", "sampler", "native", "other"), 0.0)
    process = psutil.Process()
    for thread in process.threads():
        found[_kind(python.get(thread.id))] += thread.user_time + thread.system_time
    times = process.cpu_times()
    return {"total": times.user + times.system, **found}


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before.get(key, 0.0) for key in after}


def _watch() -> None:
    """Wrap the Dask executor's ``connect`` and ``run`` to record the CPU they see."""
    from eoscale.engine import cluster

    connect, run = cluster.DaskExecutor.connect.__func__, cluster.DaskExecutor.run

    def watched_connect(cls: type, *args: Any, **kwargs: Any) -> Any:
        before = thread_seconds()
        executor = connect(cls, *args, **kwargs)
        CONNECT.update(before=before, after=thread_seconds())
        return executor

    def watched_run(self: Any, job: Any, chunks: Sequence[Sequence[int]]) -> Iterator[Any]:
        before, started = thread_seconds(), time.perf_counter()
        try:
            yield from run(self, job, chunks)
        finally:
            RUNS.append({"step": job.step, "job": type(job).__name__, "chunks": len(chunks),
                         "tiles": sum(len(chunk) for chunk in chunks),
                         "wall_s": time.perf_counter() - started,
                         "cpu": _delta(thread_seconds(), before)})

    cluster.DaskExecutor.connect = classmethod(watched_connect)  # type: ignore[method-assign]
    cluster.DaskExecutor.run = watched_run  # type: ignore[method-assign]
    _watch_headers()


def _watch_headers() -> None:
    """Wrap the writing of an encoded output's header and the making of its copies' job."""
    from eoscale.engine import assembly

    write_header, copy_job = assembly._Assembled.write_header, assembly.copy_job

    def watched_header(self: Any) -> Any:
        started = time.thread_time()
        try:
            return write_header(self)
        finally:
            HEADERS.append({"what": "header", "blocks": len(self.blocks),
                            "cpu_s": time.thread_time() - started})

    def watched_copy_job(step: str, workers: int, files: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return copy_job(step, workers, files, **kwargs)
        finally:
            blocks = sum(len(copies) for _, _, levels in files for _, _, copies in levels)
            HEADERS.append({"what": "copy job", "blocks": blocks,
                            "cpu_s": time.thread_time() - started})

    assembly._Assembled.write_header = watched_header  # type: ignore[method-assign]
    assembly.copy_job = watched_copy_job


def _write(path: str, started: float) -> None:
    with open(path, "w", encoding="utf-8") as out:
        json.dump({"exit": thread_seconds(), "wall_s": time.perf_counter() - started,
                   "connect": CONNECT, "runs": RUNS, "headers": HEADERS}, out)


def _as_the_command_loads() -> Any:
    """What the command line wraps its command's import in, where the measured source has it
    (numpy's BLAS loads with one thread), so that importing eoscale here first changes nothing."""
    import contextlib

    try:
        from eoscale.engine.native_threads import one_blas_thread_at_load
    except ImportError:
        return contextlib.nullcontext()
    return one_blas_thread_at_load(command=True)


if __name__ == "__main__":
    if os.environ.get("EOSCALE_BENCH_THREADS"):
        atexit.register(_write, os.environ["EOSCALE_BENCH_THREADS"], time.perf_counter())
        with _as_the_command_loads():
            _watch()
    from eoscale.cli.main import main

    main(sys.argv[1:])
