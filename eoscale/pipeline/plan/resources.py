"""What a run may use and what a moment of it holds: the machine's resources (workers, a memory
budget), the memory of one moment, and the byte constants the estimates are made of."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from eoscale.engine.executors import WORKER_GDAL_CACHE_BYTES, default_workers
from eoscale.engine.memory import own_pss
from eoscale.errors import ConfigError

MIB = 2 ** 20
#: What the main process holds before a run when it cannot be measured (no /proc): an interpreter
#: with numpy, rasterio, GDAL, rich and scipy imported.
DEFAULT_BASE_BYTES = 100 * MIB
#: What the main process adds during a run beyond its planning-time size: the progress display,
#: GDAL's GeoTIFF writer and its buffers, results checked and folded (measured: 10 to 15 MiB).
RUN_BYTES = 12 * MIB
#: What each process computing tiles adds beyond its tile buffers: for a forked worker, the pages
#: Python writes to after the fork (reference counts, allocator arenas) and the buffers of the
#: libraries its callables use (measured on the example pipelines: 15 to 25 MiB).
WORKER_BYTES = 20 * MIB
#: multiprocessing's resource tracker, a small interpreter of its own, when there are workers.
TRACKER_BYTES = 10 * MIB
#: The share of a budget the plan leaves free for its estimate's error.
BUDGET_HEADROOM = 0.2
#: The least GDAL block cache a budget leaves a worker: a few blocks.
MIN_GDAL_CACHE_BYTES = 256 * 1024
#: The least memory a default budget leaves free.
KEEP_FREE_BYTES = 512 * MIB


def available_memory() -> int | None:
    """Bytes of memory available (``MemAvailable`` in /proc/meminfo), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def default_budget(available: int | None, fixed: int) -> int | None:
    """The memory budget when none is given: what is available, less a safety margin of 10 %
    and at least :data:`KEEP_FREE_BYTES` (other programs, the page cache, estimates' errors),
    less the ``fixed`` bytes of the run's processes, which no budget can shrink."""
    if available is None:
        return None
    return max(available - max(available // 10, KEEP_FREE_BYTES), available // 2) - fixed


@dataclass(frozen=True)
class Resources:
    """What a run may use: ``workers`` processes (1: in the calling process), a budget of
    ``memory`` bytes (None: unknown, no limit) for what the run holds (images, tile buffers,
    caches; not the interpreters and libraries of its processes, which no budget can shrink),
    and ``base`` bytes the calling process already holds, counted in the peak. ``given`` tells
    whether the budget was asked for (``memory:``, ``--memory``) or is the default one."""

    workers: int
    memory: int | None
    base: int = DEFAULT_BASE_BYTES
    executor: Literal["processes", "inline", "cluster"] = "processes"
    given: bool = False
    cluster: str | None = None

    @classmethod
    def for_cluster(cls, cluster: str, workers: int, memory: int | None = None) -> Resources:
        """A Dask cluster's: ``workers`` processes that share no memory with this one; the
        budget (``memory``, else the memory available here) covers this process only."""
        found = cls(workers, memory, own_pss() or DEFAULT_BASE_BYTES, "cluster",
                    memory is not None, cluster)
        if memory is None:
            found = replace(found, memory=default_budget(available_memory(), found.fixed_bytes))
        return found

    @classmethod
    def detect(cls, workers: int | None = None, memory: int | None = None) -> Resources:
        """This machine's: the CPUs this process may run on (its affinity) unless ``workers`` is
        given, ``memory`` or else :func:`default_budget` of the memory available now, and this
        process's own PSS."""
        if workers is None:
            workers = default_workers()
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be a positive integer, not {workers!r}")
        found = cls(workers, memory, own_pss() or DEFAULT_BASE_BYTES,
                    "processes" if workers > 1 else "inline", memory is not None)
        if memory is None:
            found = replace(found, memory=default_budget(available_memory(), found.fixed_bytes))
        return found

    @property
    def gdal_cache(self) -> int:
        """GDAL's block cache in each process decoding tiles: the usual cap, less under a budget
        too small for it (an eighth of the budget shared by the workers, at least
        :data:`MIN_GDAL_CACHE_BYTES`); a cluster's workers are outside the budget."""
        if self.memory is None or self.executor == "cluster":
            return WORKER_GDAL_CACHE_BYTES
        share = self.memory // (8 * self.workers)
        return max(MIN_GDAL_CACHE_BYTES, min(WORKER_GDAL_CACHE_BYTES, share))

    @property
    def fixed_bytes(self) -> int:
        """Memory the run holds whatever its images: the main process, workers, the tracker."""
        if self.executor == "inline":
            return self.base + RUN_BYTES + WORKER_BYTES
        if self.executor == "cluster":  # the workers are the cluster's
            return self.base + RUN_BYTES
        return self.base + RUN_BYTES + TRACKER_BYTES + self.workers * WORKER_BYTES


@dataclass(frozen=True)
class Memory:
    """Estimated memory at one moment: whole images in shared memory, the workers' tile buffers
    (windows, results, a callable's temporaries, GDAL's block cache) and the fixed part."""

    images: int
    tiles: int
    fixed: int

    @property
    def held(self) -> int:
        """What counts against the budget: images and tiles, not the processes themselves."""
        return self.images + self.tiles

    @property
    def total(self) -> int:
        return self.images + self.tiles + self.fixed
