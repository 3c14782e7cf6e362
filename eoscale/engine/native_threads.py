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
"""

from __future__ import annotations

import os

#: The environment variables through which a user sets these libraries' thread counts.
USER_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                  "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def threads_per_worker(cores: int, workers: int) -> int:
    """Each worker's share of ``cores`` (at least one thread)."""
    return max(1, cores // max(1, workers))


def limit_native_threads(threads: int) -> bool:
    """Limit this process's BLAS and OpenMP thread pools to ``threads``, unless the user set
    them (:data:`USER_VARIABLES`); whether a limit was set."""
    if any(os.environ.get(name) for name in USER_VARIABLES):
        return False
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)
    except Exception:  # noqa: BLE001 - a speed-up only: a worker computes the same without it
        return False
    return True
