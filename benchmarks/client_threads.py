"""``eoscale`` run through its command line, writing at exit the CPU seconds of its native
threads (GDAL's thread pool, which compresses the outputs' blocks) apart from the rest of the
process (the main thread, Dask's event loop: receiving results, writing windows, planning):

    EOSCALE_BENCH_THREADS=out.json python benchmarks/client_threads.py run PIPELINE ...

Benchmark code only (cluster_scaling.py): the native part of a run's client scales with the
client's cores, the rest does not.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading


def thread_seconds() -> dict[str, float]:
    """CPU seconds of the whole process (``total``) and of its live threads that Python did not
    start (``native``)."""
    import psutil  # a dependency of distributed

    python = {thread.native_id for thread in threading.enumerate()}
    process = psutil.Process()
    native = sum(thread.user_time + thread.system_time for thread in process.threads()
                 if thread.id not in python)
    times = process.cpu_times()
    return {"total": times.user + times.system, "native": native}


def _write(path: str) -> None:
    with open(path, "w", encoding="utf-8") as out:
        json.dump(thread_seconds(), out)


if __name__ == "__main__":
    if os.environ.get("EOSCALE_BENCH_THREADS"):
        atexit.register(_write, os.environ["EOSCALE_BENCH_THREADS"])
    from eoscale.cli.main import main

    main(sys.argv[1:])
