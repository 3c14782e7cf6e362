"""The single-process baseline: read the whole image with rasterio, compute with numpy/scipy on the
whole array, write with rasterio on one thread with eoscale's default creation options.

    python benchmarks/baseline.py w1 SCENE OUTPUT

It prints its phase times as one JSON line on stdout: ``{"read": s, "compute": s, "write": s}``.
The arithmetic is bench_ops's, the same functions the eoscale callables wrap.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import bench_ops
import numpy as np
import rasterio

from eoscale.io.raster import DEFAULT_GTIFF_OPTIONS

#: The workloads' parameters; the pipelines (w*.yaml) set the same.
PARAMS = {
    "w1": {"size": 9},
    "w2": {"bins": 256, "range": [0, 10240]},
    "w3": {"first": 3, "second": 1, "size": 5},
}


def write_geotiff(path: Path, array: np.ndarray, profile: dict, nodata) -> None:
    """One-threaded GeoTIFF with the grid of ``profile`` and eoscale's default creation options."""
    if array.ndim == 2:
        array = array[np.newaxis]
    with rasterio.open(path, "w", driver="GTiff", width=array.shape[2], height=array.shape[1],
                       count=array.shape[0], dtype=array.dtype, crs=profile["crs"],
                       transform=profile["transform"], nodata=nodata,
                       **DEFAULT_GTIFF_OPTIONS) as dst:
        dst.write(array)


def write_statistics(path: Path, result: dict) -> None:
    """W2's result as the JSON document ``eoscale run`` writes for its ``stats`` step."""
    document = {"step": "stats", "inputs": ["scene"], "result": result}
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=sorted(PARAMS))
    parser.add_argument("scene", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    params = PARAMS[args.workload]
    times = {}

    started = time.perf_counter()
    with rasterio.open(args.scene) as src:
        profile = src.profile
        scene = src.read()
    times["read"] = time.perf_counter() - started

    started = time.perf_counter()
    if args.workload == "w1":
        result = bench_ops.box_mean(scene, params["size"])
    elif args.workload == "w2":
        result = bench_ops.statistics_table(
            bench_ops.band_summaries(scene, profile["nodata"], params["bins"], params["range"]),
            params)
    else:
        ratio = bench_ops.normalised_difference(scene, params["first"], params["second"],
                                                profile["nodata"])
        del scene
        result = bench_ops.median(ratio, params["size"])
        del ratio
    times["compute"] = time.perf_counter() - started

    started = time.perf_counter()
    if args.workload == "w1":
        write_geotiff(args.output, result, profile, None)
    elif args.workload == "w2":
        write_statistics(args.output, result)
    else:
        write_geotiff(args.output, result, profile, float("nan"))
    times["write"] = time.perf_counter() - started
    print(json.dumps(times))


if __name__ == "__main__":
    main()
