"""A pool worker's BLAS and OpenMP thread pools hold its share of the cores, not all of them,
unless the user set their size; through the ``eoscale`` command, the callable reading the
thread counts of the libraries loaded in the worker that runs it (threadpoolctl). The command's
own process loads its BLAS with one thread (it computes nothing beside workers), and gives it
back every core when it computes the tiles itself (one worker)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio

from eoscale.engine.executors import default_workers
from eoscale.engine.native_threads import USER_VARIABLES, threads_per_worker

_CALLABLES = textwrap.dedent('''
    import numpy as np
    from threadpoolctl import threadpool_info

    def blas_threads(arrays, profiles, params):
        x = arrays[0].astype(np.float64)
        flat = x.reshape(x.shape[0], -1)
        (flat @ flat.T).sum()                        # the BLAS is in use in this worker
        counts = [lib["num_threads"] for lib in threadpool_info()
                  if lib["user_api"] == "blas"]
        return np.full(x.shape[1:], max(counts), dtype=np.uint8)[None]

    blas_threads.profile = lambda profiles, params: dict(profiles[0], count=1, dtype="uint8",
                                                         nodata=None)
''')


def _run(tmp_path: Path, env: dict[str, str], workers: int = 2, source: str = _CALLABLES,
         dotted: str = "blas_ops.blas_threads") -> np.ndarray:
    """``dotted`` (a callable of ``source``, which returns its BLAS thread count as pixels) run
    through the command on ``workers``; its pixels."""
    (tmp_path / f"{dotted.partition('.')[0]}.py").write_text(source)
    with rasterio.open(tmp_path / "in.tif", "w", driver="GTiff", height=256, width=256, count=2,
                       dtype="float32") as dst:
        dst.write(np.random.default_rng(1).random((2, 256, 256), dtype=np.float32))
    (tmp_path / "p.yaml").write_text(textwrap.dedent("""
        version: 1
        inputs: {image: in.tif}
        steps:
          - {name: threads, map: DOTTED, inputs: [image]}
        outputs: {threads: out.tif}
    """).replace("DOTTED", dotted))
    run = subprocess.run([sys.executable, "-m", "eoscale", "run", "p.yaml", "--workers", str(workers),
                          "--tile-size", "128"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    with rasterio.open(tmp_path / "out.tif") as src:
        return src.read(1)


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in USER_VARIABLES}
    return {**env, **extra}


def test_each_worker_gets_its_share_of_the_cores_for_blas(tmp_path):
    threads = _run(tmp_path, _environment())
    # 2 workers: each half the cores (one on a 2-core machine, where OpenBLAS alone takes 2)
    assert set(np.unique(threads)) == {threads_per_worker(default_workers(), 2)}


def test_a_thread_count_the_user_set_is_kept(tmp_path):
    # a count other than eoscale's share (OpenBLAS takes at most the machine's cores)
    share, cores = threads_per_worker(default_workers(), 2), default_workers()
    chosen = 1 if share != 1 else min(2, cores)
    threads = _run(tmp_path, _environment(OPENBLAS_NUM_THREADS=str(chosen)))
    assert set(np.unique(threads)) == {chosen}


@pytest.mark.parametrize(("cores", "workers", "share"), [(2, 2, 1), (16, 4, 4), (6, 4, 1),
                                                         (1, 3, 1)])
def test_threads_per_worker(cores, workers, share):
    assert threads_per_worker(cores, workers) == share


@pytest.mark.skipif(default_workers() < 2, reason="one core: one BLAS thread is every core")
def test_one_worker_computing_in_the_command_s_process_gets_every_core_back(tmp_path):
    threads = _run(tmp_path, _environment(), workers=1)
    assert set(np.unique(threads)) == {default_workers()}


_LOADED = textwrap.dedent('''
    import os, sys
    from eoscale.engine.native_threads import one_blas_thread_at_load, restore_blas_threads
    with one_blas_thread_at_load(command=sys.argv[1] == "command"):
        import numpy
    from threadpoolctl import threadpool_info
    def counts():
        return sorted({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})
    print(counts(), "OPENBLAS_NUM_THREADS" in os.environ)
    restore_blas_threads()
    print(counts())
''')


@pytest.mark.skipif(default_workers() < 2, reason="one core: one BLAS thread is every core")
@pytest.mark.parametrize(("process", "loaded"), [("command", 1), ("library", None)])
def test_the_command_s_process_loads_numpy_s_blas_with_one_thread(process, loaded):
    run = subprocess.run([sys.executable, "-c", _LOADED, process], capture_output=True,
                         text=True, timeout=60, env=_environment())
    assert run.returncode == 0, run.stderr
    at_load, restored = run.stdout.splitlines()
    plain = subprocess.run([sys.executable, "-c", _LOADED, "plain"], capture_output=True,
                           text=True, timeout=60, env=_environment()).stdout.splitlines()[0]
    cores = plain.split(" ")[0]  # what numpy's OpenBLAS takes by itself: every core
    # the variable is gone once numpy is loaded: processes started later do not inherit it
    assert at_load == f"{f'[{loaded}]' if loaded else cores} False"
    assert restored == cores


_LAZY = textwrap.dedent('''
    import numpy as np

    def scipy_threads(arrays, profiles, params):
        import scipy.linalg  # loaded only now, in the worker: its OpenBLAS too
        from threadpoolctl import threadpool_info
        x = arrays[0].astype(np.float64).reshape(arrays[0].shape[0], -1)
        scipy.linalg.blas.dgemm(1.0, x, x.T)
        counts = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
        return np.full(arrays[0].shape[1:], max(counts), dtype=np.uint8)[None]

    scipy_threads.profile = lambda profiles, params: dict(profiles[0], count=1, dtype="uint8",
                                                          nodata=None)
''')


@pytest.mark.skipif(default_workers() < 2, reason="one core: one BLAS thread is every core")
def test_a_blas_a_callable_loads_in_its_body_gets_the_worker_s_share_too(tmp_path):
    threads = _run(tmp_path, _environment(), source=_LAZY, dotted="lazy_ops.scipy_threads")
    assert set(np.unique(threads)) == {threads_per_worker(default_workers(), 2)}
