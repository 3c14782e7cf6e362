"""What persisting a held image would cost a run (issue 20: "persist images held in memory as
their step ends, or recompute them on resume: measure which costs less").

    python benchmarks/persist_cost.py [--size 8192] [--repeat 3] [--workers 2]

A map copying a random float32 image of ``--size`` pixels a side, on the engine's pool, three
ways, alternated: its output held in shared memory (what a held image costs now), written in
place to an uncompressed tiled file (a spill), and the same file then flushed to the disk (what
a journal would need before recording it). Prints each way's walls and medians; the difference
between the last and the first is what persisting one held image would add to every run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from rasterio.transform import from_origin

from eoscale.engine import Engine, Tiling
from eoscale.engine.filed import OutputFile

HERE = Path(__file__).resolve().parent
OPTIONS = {"compress": "none", "tiled": True, "blockxsize": 512, "blockysize": 512}


def copied(arrays, profiles, params):
    return arrays[0].astype(np.float32)


def same_profile(profiles, params):
    return [dict(profiles[0])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    profile = {"driver": "GTiff", "crs": "EPSG:32631", "nodata": None, "dtype": "float32",
               "transform": from_origin(600000, 4800000, 0.5, 0.5), "count": 1,
               "height": args.size, "width": args.size}
    image = np.random.default_rng(0).random((1, args.size, args.size), dtype=np.float32)
    folder = HERE / "results" / "out" / "persist"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "persisted.tif"
    walls: dict[str, list[float]] = {"held": [], "written": [], "written+flushed": []}
    with Engine(args.workers, tiling=Tiling("tiles", 1024)) as engine:
        source = engine.from_array(image, profile)
        for _ in range(args.repeat):
            for way, found in walls.items():
                path.unlink(missing_ok=True)
                started = time.perf_counter()
                files = None if way == "held" else [OutputFile(path, OPTIONS)]
                [out] = engine.map(copied, [source], margin=0, profile_fn=same_profile,
                                   files=files)
                if way == "written+flushed":
                    descriptor = os.open(path, os.O_RDONLY)
                    os.fsync(descriptor)
                    os.close(descriptor)
                found.append(time.perf_counter() - started)
                engine.release(out)
    path.unlink(missing_ok=True)
    for way, found in walls.items():
        print(f"{way:16s} {' '.join(f'{x:.3f}' for x in found)} s, median "
              f"{statistics.median(found):.3f} s")
    print(f"persisting one image adds {statistics.median(walls['written+flushed']) - statistics.median(walls['held']):.3f} s")


if __name__ == "__main__":
    main()
