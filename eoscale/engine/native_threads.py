"""The thread pools of the native libraries a pool worker computes with (BLAS, OpenMP): each
worker gets its share of the cores, not all of them.

OpenBLAS, MKL and OpenMP start as many threads as the machine has cores, in every process that
loads them; a forked worker starts its own. A callable that multiplies matrices (a projection of
the bands, a covariance, a least-squares fit per tile) then runs N workers x N threads on N
cores, and OpenBLAS's threads spin while they wait for work: measured on 2 workers, 2 cores, an
8192 x 8192 scene and a callable doing ``basis @ bands`` and ``bands @ bands.T`` per tile, the
run took 8.0-9.0 s and 12.5 s of user CPU, against 5.3-5.5 s and 6.1 s with one BLAS thread
per worker. Dask's nanny does the same for its workers (``OMP_NUM_THREADS=1`` and the like,
set before they start); joblib's loky gives each worker ``cores // workers``, as here.

:func:`limit_native_threads` is called once as a pool worker starts; it uses threadpoolctl,
which finds every BLAS and OpenMP library loaded in the process (numpy and scipy each bring
their own OpenBLAS) and sets each one's thread count through the library's own call, which an
environment variable can no longer do once numpy is imported (the workers are forked from a
process that has imported it). A user who sets one of :data:`USER_VARIABLES` chose the count
already: nothing is changed then. The process that runs the tiles itself (one worker) keeps
its libraries as they are: it is the user's process.

The command's own process computes nothing when there are workers, yet numpy's OpenBLAS starts
a thread per core beside it as numpy loads, and those threads spin before they sleep: 0.17 s of
CPU measured on 2 cores, in every ``eoscale`` command, 14 % of a cluster client's whole CPU on
the benchmark's W1. :func:`one_blas_thread_at_load` (around the command line's import of a command)
makes numpy's OpenBLAS start with one thread; :func:`restore_blas_threads` gives it back its
count where the command's process does compute the tiles (one worker). A user's module is
imported as it is (a library it loads, its own thread limits and environment are its own).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

#: The environment variables through which a user sets these libraries' thread counts.
USER_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                  "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


#: The variable OpenBLAS reads as it loads (numpy's and scipy's wheels each bring one).
_OPENBLAS = "OPENBLAS_NUM_THREADS"
#: Whether this is the command line's process (:func:`one_blas_thread_at_load` with ``command``):
#: a library user's process is theirs, and its libraries load as they would.
_command = False
#: The BLAS thread count :func:`one_blas_thread_at_load` took from this process, to give back.
_lowered_from: int | None = None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@contextlib.contextmanager
def one_blas_thread_at_load(*, command: bool = False) -> Iterator[None]:
    """An OpenBLAS that loads inside the block (numpy's as the command imports numpy) starts
    with one thread, in the command line's process only (``command``: the command line says
    this process is its own), unless the user set a count (:data:`USER_VARIABLES`). The
    variable is removed at the block's end, so no process started later inherits it."""
    global _command, _lowered_from
    _command = _command or command
    if not _command or any(os.environ.get(name) for name in USER_VARIABLES):
        yield
        return
    loaded = len(sys.modules)
    os.environ[_OPENBLAS] = "1"
    try:
        yield
    finally:
        os.environ.pop(_OPENBLAS, None)
        if len(sys.modules) > loaded:
            _lowered_from = _cores()


def restore_blas_threads() -> None:
    """Give the BLAS libraries back the thread count they would have started with, where
    :func:`one_blas_thread_at_load` lowered it: this process now computes (one worker)."""
    global _lowered_from
    if _lowered_from is None:
        return
    threads, _lowered_from = _lowered_from, None
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")
    except Exception:  # noqa: BLE001 - a speed-up only: the tiles compute the same without it
        pass


def threads_per_worker(cores: int, workers: int) -> int:
    """Each worker's share of ``cores`` (at least one thread)."""
    return max(1, cores // max(1, workers))


def limit_native_threads(threads: int) -> bool:
    """Limit this process's BLAS and OpenMP thread pools to ``threads``, unless the user set
    them (:data:`USER_VARIABLES`); whether a limit was set. The libraries loaded later (a
    callable importing scipy inside its body) start with ``threads`` too: the variables are
    set in this process (a pool worker, whose children share its cores), as Dask's nanny sets
    them for its workers."""
    if any(os.environ.get(name) for name in USER_VARIABLES):
        return False
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)
    except Exception:  # noqa: BLE001 - a speed-up only: a worker computes the same without it
        return False
    return True
