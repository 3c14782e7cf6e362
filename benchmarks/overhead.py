"""Engine overhead: 10,000 tiles of callables that do nothing, through the Engine API.

    python benchmarks/overhead.py [--tiles 10000] [--workers 2] [--repeat 3]

A 1-band uint8 image of (side * 16) x (side * 16) pixels, cut into side x side tiles of 16 x 16
(side = sqrt(tiles)): a map that returns its input (so each tile is still checked and copied into
the shared output) and a reduce that returns 0 (combined by addition in tile order). Timed: starting
the engine with its workers, the map, the reduce, and the total including ``close()``. Prints one
JSON line per repeat and a last one with the medians; the target is total < 2 s. ``cpu_s`` (this
process and its workers, which the engine joins on close) tells how much a loaded machine slowed it.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import time

import numpy as np
from bench_ops import add, identity, nothing

from eoscale import Engine, Tiling

TILE = 16


def measure(tiles: int, workers: int) -> dict[str, float]:
    side = math.isqrt(tiles)
    if side * side != tiles:
        raise SystemExit(f"--tiles must be a square number, not {tiles}")
    image = np.arange(side * TILE * side * TILE, dtype=np.uint8).reshape(side * TILE, side * TILE)
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    with Engine(workers=workers, tiling=Tiling("tiles", TILE)) as engine:
        ready = time.perf_counter()
        raster = engine.from_array(image)
        [copy] = engine.map(identity, [raster])
        mapped = time.perf_counter()
        total = engine.reduce(nothing, [copy], combine=add)
        reduced = time.perf_counter()
        if total != 0 or not np.array_equal(copy.array[0], image):
            raise SystemExit("the engine returned a wrong result")
    done = time.perf_counter()
    return {"tiles": tiles, "workers": workers, "start_s": ready - started,
            "map_s": mapped - ready, "reduce_s": reduced - mapped, "total_s": done - started,
            "cpu_s": _cpu_seconds() - cpu_before}


def _cpu_seconds() -> float:
    """User + system time of this process and of its reaped children (the engine's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiles", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeat):
        runs.append(measure(args.tiles, args.workers))
        print(json.dumps(runs[-1]), flush=True)
    medians = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    print(json.dumps({"median": medians, "runs": runs}))


if __name__ == "__main__":
    main()
