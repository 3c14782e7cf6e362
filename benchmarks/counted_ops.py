"""eoscale's operations of the out-of-core chain, counting their calls: the resume benchmark's
witness of how many tiles a run computed, independent of what eoscale says it computed.

Each wrapper calls the eoscale operation, then, if ``EOSCALE_BENCH_COUNTER`` names a file,
appends one byte to it (its mark: ``f`` fill_nodata, ``m`` median_filter, ``g``
gaussian_filter, ``s`` stats): one ``os.write`` to a file opened ``O_APPEND``, so the workers'
appends never interleave and a byte is there as soon as the call has returned, whatever kills
the run next. A tile is counted once it is computed, whether or not its result ever reached the
main process: that is the work a resume must not do again.

The wrappers carry every attribute eoscale set on the operations (margin, profile, combine,
finalize, memory_factor...: the function's ``__dict__``), so that the plan (tilings, fusion,
feeding, memory) is the one of ``eoscale.ops``; they keep their own
module and name (not ``functools.wraps``), so that a worker that unpickles one gets this
counting wrapper, not the operation it wraps.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from eoscale import ops

#: The environment variable naming the counter file; unset, nothing is counted.
COUNTER_ENV = "EOSCALE_BENCH_COUNTER"
#: Each wrapped operation's one-byte mark in the counter file.
MARKS = {"fill_nodata": "f", "median_filter": "m", "gaussian_filter": "g", "stats": "s"}


def _counted(name: str) -> Callable[..., Any]:
    fn = getattr(ops, name)
    mark = MARKS[name].encode()

    def counted(arrays, profiles, params):
        result = fn(arrays, profiles, params)
        path = os.environ.get(COUNTER_ENV)
        if path:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, mark)
            finally:
                os.close(fd)
        return result

    counted.__dict__.update(fn.__dict__)  # what eoscale plans with: margin, memory_factor...
    counted.__name__ = counted.__qualname__ = name
    counted.__doc__ = f"eoscale.ops.{name}, its calls counted. {fn.__doc__ or ''}"
    return counted


fill_nodata = _counted("fill_nodata")
median_filter = _counted("median_filter")
gaussian_filter = _counted("gaussian_filter")
stats = _counted("stats")


def read_counts(path: str | os.PathLike) -> dict[str, int]:
    """The calls counted in the file at ``path``, by operation (0 for those never called)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        data = b""
    return {name: data.count(mark.encode()) for name, mark in MARKS.items()}


def total(counts: Mapping[str, int]) -> int:
    return sum(counts.values())
