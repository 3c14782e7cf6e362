"""Page faults of a worker's tiles, for the heap tests of the pool (tests/engine/test_heap.py)
and of a Dask cluster (tests/cluster/test_cluster_runs.py): a tile's window, temporaries and
result as 4 arrays of ``mib`` MiB, touched, then freed."""

from __future__ import annotations


def tile_faults(tiles: int = 4, mib: int = 12, warm_up: int = 1) -> int:
    """The minor page faults of ``tiles`` tiles, after ``warm_up`` tiles not counted."""
    import resource

    import numpy as np

    def faults(count: int) -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(count):
            arrays = [np.ones(mib * 2**20 // 8) for _ in range(4)]
            del arrays
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults(warm_up)
    return faults(tiles)
