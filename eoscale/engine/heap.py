"""The C heap of a worker: a tile's freed arrays kept for the next tile, given back per step.

glibc's malloc serves a request above its mmap threshold (128 KiB at start, raised as large
blocks are freed, never above 32 MiB) with a fresh mapping, unmapped again when it is freed, and
gives the top of its heap back to the system beyond its trim threshold. A worker computes tile
after tile of the same size, so every tile's arrays (its window, the callable's temporaries and
result, the encoder's copies: tens of MiB) came as fresh pages, which the kernel zeroed and
faulted in one at a time, then unmapped. Measured with ``perf`` on the benchmark's W1 at 8192
(2 workers): 1.5 s of the run's 2.8 s of system CPU went to page faults, most of them the
workers' anonymous pages; dask's whole run took 1.2 s of system CPU.

:func:`keep_freed_memory`, called once as a pool worker starts, raises both thresholds to the
largest mmap threshold glibc allows, so a tile's freed memory serves the next tile with its
pages already there; :func:`release_freed_memory`, called when a step's job ends in the worker
(``malloc_trim``), gives that memory back, so a step's tiles hold no memory through the next
step, whose estimate does not count them. Within a step the worker's memory is its largest
tile's, which is what the plan's estimate counts per worker anyway.

A Dask worker keeps freed memory too, while an eoscale run uses it: the run's worker plugin
calls :func:`keep_freed_memory` as it is set up and :func:`restore_heap` as the run ends and
unregisters it, which trims the heap and puts back the thresholds the worker started with (its
nanny lowers the trim threshold to 64 KiB on purpose, through ``MALLOC_TRIM_THRESHOLD_``, so
that its memory monitor sees memory given back). Measured on W1 at 8192 with a scheduler and 2
one-thread workers on 127.0.0.1, 2 runs each: wall 12.3-12.5 -> 11.3-11.7 s, the workers' CPU
19.5-19.6 -> 17.7-18.4 s. A client killed before it unregisters leaves the thresholds raised in
its workers until they restart. The process of a program that calls eoscale as a library (one
worker) is left as it is. Elsewhere than glibc these functions do nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

#: mallopt's parameters (malloc.h) and the largest mmap threshold glibc accepts on 64 bits
#: (DEFAULT_MMAP_THRESHOLD_MAX: 4 MiB x sizeof(long)); larger requests are still mapped.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
LARGEST_MMAP_THRESHOLD = 32 * 2**20
#: Free memory kept at the top of the heap before it is given back within a step.
TRIM_THRESHOLD = 1 << 30
#: glibc's thresholds when its environment does not set them (its mmap threshold then adapts;
#: set back, it stays at this value).
GLIBC_DEFAULT_THRESHOLD = 128 * 1024


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
            return libc
    return None


def keep_freed_memory() -> bool:
    """Keep freed memory for the next tile in this process; whether the C library allowed it."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, LARGEST_MMAP_THRESHOLD)) and \
        bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def release_freed_memory() -> None:
    """Give the heap's free memory back to the system (at a step's end in a worker)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def restore_heap() -> None:
    """Undo :func:`keep_freed_memory`: the heap's free memory given back, and the thresholds
    those of the process's environment (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``)
    or glibc's defaults."""
    libc = _glibc()
    if libc is None:
        return
    for parameter, variable in ((M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_"),
                                (M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_")):
        try:
            value = int(os.environ.get(variable, GLIBC_DEFAULT_THRESHOLD))
        except ValueError:
            value = GLIBC_DEFAULT_THRESHOLD
        libc.mallopt(parameter, value)
    libc.malloc_trim(0)
