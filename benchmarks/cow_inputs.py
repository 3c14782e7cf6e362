"""What private writable inputs cost: read-only views against copy-on-write private views.

    python benchmarks/cow_inputs.py [--size 8192] [--workers 2] [--repeat 5] [--margin 2]
                                    [--tile-size PX]

One float32 band of size x size pixels in shared memory, square tiles (the engine's automatic
size, about 1024 px, or ``--tile-size``: EOScale 1.0's plan on 2 workers is about 5792), a margin.
Each step runs with read-only input views (``writable_inputs=False``, the 2.0 default) and with
private copy-on-write views (``writable_inputs=True``, what 1.0 filters get), alternately, after
one warm-up run of each; the medians of the step's wall time are compared. The steps:

- ``sum``: a reduce that reads every pixel of its read window and writes nothing: the pure cost of
  mapping the tile's rows afresh and faulting its pages in, against views of a mapping that every
  worker faulted in once, at the warm-up;
- ``scale``: a map returning ``2 * x`` (reads everything, writes a new array, stored in the shared
  output): a filter that writes nothing into its input, as most do;
- ``threshold``: a map that sets pixels above the mean to 0 in its input and returns it, against
  the copy a read-only input forces (``x = arrays[0].copy()``, then the same): what a write costs.

Prints one JSON line per run (with the 1-minute load average before it) and a last line with the
medians and the ratios private / read-only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from eoscale import Engine, Tiling


def total(arrays, profiles, params):
    return float(arrays[0].sum(dtype=np.float64))


def add(a, b):
    return a + b


def scale(arrays, profiles, params):
    return arrays[0] * np.float32(2)


def threshold_in_place(arrays, profiles, params):
    image = arrays[0]
    image[image > params["level"]] = 0
    return image


def threshold_on_a_copy(arrays, profiles, params):
    image = arrays[0].copy()
    image[image > params["level"]] = 0
    return image


def run_step(engine, step, source, writable, margin):
    started = time.perf_counter()
    if step == "sum":
        engine.reduce(total, [source], combine=add, margin=margin, writable_inputs=writable)
    else:
        fn = scale if step == "scale" else threshold_in_place if writable else threshold_on_a_copy
        [result] = engine.map(fn, [source], params={"level": 0.5}, margin=margin,
                              writable_inputs=writable)
        engine.release(result)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--margin", type=int, default=2)
    parser.add_argument("--tile-size", type=int, default=None)
    parser.add_argument("--steps", default="sum,scale,threshold")
    args = parser.parse_args()
    image = np.random.default_rng(0).random((args.size, args.size), dtype=np.float32)
    times: dict[str, dict[str, list[float]]] = {}
    with Engine(workers=args.workers, tiling=Tiling("tiles", args.tile_size)) as engine:
        source = engine.from_array(image)
        for step in args.steps.split(","):
            times[step] = {"readonly": [], "private": []}
            for repeat in range(args.repeat + 1):
                for mode in ("readonly", "private"):
                    load = os.getloadavg()[0]
                    seconds = run_step(engine, step, source, mode == "private", args.margin)
                    print(json.dumps({"step": step, "inputs": mode, "warm_up": repeat == 0,
                                      "seconds": round(seconds, 4), "load_1min": load}),
                          flush=True)
                    if repeat:
                        times[step][mode].append(seconds)
    medians = {step: {mode: statistics.median(runs) for mode, runs in modes.items()}
               for step, modes in times.items()}
    print(json.dumps({"size": args.size, "workers": args.workers, "margin": args.margin,
                      "tile_size": args.tile_size, "repeat": args.repeat, "median_s": medians,
                      "private_over_readonly": {step: m["private"] / m["readonly"]
                                                for step, m in medians.items()}}))


if __name__ == "__main__":
    main()
