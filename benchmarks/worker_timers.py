"""Timers put into a Dask worker by the scaling benchmark (``client.run(install)``): the seconds
its tasks spend decoding windows from files, in the callable (decoding included) and cutting
results to their cores; and the CPU seconds of the thread running its chunks, for the copies'
tasks (``copy_cpu_s``) and the others (``task_cpu_s``): a task's compute as on a quiet machine,
where the task stream's seconds count the waits for a core on a busy one. Benchmark code only:
it wraps eoscale's methods in the worker's process.

The totals live on the wrappers, not in this module: a run's set-up makes the workers forget the
modules imported from the pipeline's folder (this one, beside the benchmark's pipelines).
"""

from __future__ import annotations

import resource
import time
from typing import Any


def _targets() -> list[tuple[Any, str, str]]:
    from eoscale.engine.assembly import CopyJob
    from eoscale.engine.filed import FileRaster
    from eoscale.engine.overviews import LevelsJob
    from eoscale.engine.tasks import MapJob, ReduceJob

    return [(FileRaster, "read_private", "read_s"), (MapJob, "_call", "call_s"),
            (ReduceJob, "_call", "call_s"), (MapJob, "store", "store_s"),
            (MapJob, "run_chunk", "task_cpu_s"), (ReduceJob, "run_chunk", "task_cpu_s"),
            (LevelsJob, "run_chunk", "task_cpu_s"), (CopyJob, "run_chunk", "copy_cpu_s")]


def _wrap(owner: Any, name: str, label: str, totals: dict[str, float]) -> None:
    original = getattr(owner, name, None)
    if original is None or hasattr(original, "totals"):
        return
    clock = time.thread_time if label.endswith("cpu_s") else time.perf_counter

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return original(*args, **kwargs)
        finally:
            totals[label] = totals.get(label, 0.0) + clock() - started

    wrapper.totals = totals  # type: ignore[attr-defined]
    setattr(owner, name, wrapper)


def _installed() -> dict[str, float] | None:
    for owner, name, _ in _targets():
        totals = getattr(getattr(owner, name, None), "totals", None)
        if totals is not None:
            return totals
    return None


def install() -> None:
    totals = _installed()
    if totals is None:
        totals = {}
    for owner, name, label in _targets():
        _wrap(owner, name, label, totals)


def totals() -> dict[str, float]:
    """The seconds so far, and the process's CPU seconds (``cpu_s``)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return dict(_installed() or {}, cpu_s=usage.ru_utime + usage.ru_stime)
