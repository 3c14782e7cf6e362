"""The dask side: the benchmark's workloads as a dask user would write them, on the threads
scheduler, with the arithmetic of bench_ops (the functions the baseline and eoscale call).

    python benchmarks/dask_side.py w1 SCENE OUTPUT [--workers 2] [--chunk 1024]
                                   [--writer store|rioxarray] [--read-lock]

- Read: ``rioxarray.open_rasterio(chunks={"band": -1, "y": CHUNK, "x": CHUNK})``: every band in
  one chunk (the file is pixel-interleaved), 1024 x 1024 by default (2 x 2 of the file's blocks;
  64 chunks at 8192, the tiles eoscale's automatic tiling makes for 2 workers). Without a read lock
  by default, so the two threads decode in parallel (rioxarray then opens the file per chunk);
  ``--read-lock`` uses rioxarray's default lock, one shared file handle, reads one at a time.
- W1: ``map_overlap(box_mean, depth 4 on rows and columns, boundary "none")``, trimmed.
  W2: ``band_summaries`` of each chunk (``to_delayed``), merged pairwise in a tree, then
  ``statistics_table``. W3: ``map_blocks(normalised_difference)`` (the band axis dropped), then
  ``map_overlap(median, depth 2, boundary "none")``. Boundary "none" leaves the image's edges
  unpadded, so scipy's "reflect" border sees the image's own edge, as on the whole image.
- Compute: ``dask.config.set(scheduler="threads", num_workers=WORKERS)``.
- Write: eoscale's default creation options (tiled 512, deflate), ``BIGTIFF=IF_SAFER`` and
  ``NUM_THREADS`` = workers, as eoscale's tile writer. ``--writer store`` (default):
  ``dask.array.store`` into one rasterio dataset opened for writing, behind a lock (a dataset is
  not safe to share between threads). ``--writer rioxarray``: ``DataArray.rio.to_raster(lock=...)``,
  which stores through a writer that reopens the file in update mode for every chunk (so the
  ``NUM_THREADS`` given at creation does not apply to its writes).

It prints its phase times as one JSON line on stdout: ``{"graph": s, "run": s}`` (opening the
scene and building the graph; computing and writing, which dask overlaps).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from functools import reduce
from pathlib import Path

import bench_ops
import dask
import dask.array as da
import numpy as np
import rasterio
import rioxarray
import xarray as xr
from baseline import PARAMS, write_statistics
from rasterio.windows import Window

from eoscale.io.raster import DEFAULT_GTIFF_OPTIONS

FLOAT32 = np.empty((0, 0), dtype=np.float32)


def mean_9x9(scene: da.Array, params: dict) -> da.Array:
    """W1: the 9 x 9 mean of every band; chunks overlap by 4 rows and columns, then are trimmed."""
    margin = params["size"] // 2
    return da.map_overlap(bench_ops.box_mean, scene, depth={0: 0, 1: margin, 2: margin},
                          boundary="none", trim=True, dtype=np.float32,
                          meta=FLOAT32[np.newaxis], size=params["size"])


def ratio_median(scene: da.Array, params: dict, nodata) -> da.Array:
    """W3: the band ratio of each chunk (all bands in one chunk), then its 5 x 5 median."""
    ratio = scene.map_blocks(bench_ops.normalised_difference, params["first"], params["second"],
                             nodata, drop_axis=0, dtype=np.float32, meta=FLOAT32)
    margin = params["size"] // 2
    return da.map_overlap(bench_ops.median, ratio, depth=margin, boundary="none", trim=True,
                          dtype=np.float32, meta=FLOAT32, size=params["size"])


def band_statistics(scene: da.Array, params: dict, nodata) -> dict:
    """W2: ``band_summaries`` of every chunk, merged pairwise (a tree of depth log2 chunks)."""
    parts = [dask.delayed(bench_ops.band_summaries)(block, nodata, params["bins"], params["range"])
             for block in scene.to_delayed().ravel()]
    merge = dask.delayed(bench_ops.merge_summaries)
    while len(parts) > 1:
        pairs = [parts[i:i + 2] for i in range(0, len(parts), 2)]
        parts = [reduce(merge, pair) for pair in pairs]
    table = dask.delayed(bench_ops.statistics_table)(parts[0], params)
    return table.compute()


class WindowWriter:
    """A target for ``dask.array.store``: each block written at its window of an open dataset."""

    def __init__(self, dataset: rasterio.io.DatasetWriter):
        self.dataset = dataset

    def __setitem__(self, key: tuple[slice, ...], block: np.ndarray) -> None:
        window = Window.from_slices(*key[-2:])
        self.dataset.write(block if block.ndim == 3 else block[np.newaxis], window=window)


def write_geotiff(result: da.Array, scene: xr.DataArray, path: Path, nodata, workers: int,
                  writer: str) -> None:
    """Compute ``result`` and write it, block by block, as a GeoTIFF on the scene's grid."""
    options = dict(DEFAULT_GTIFF_OPTIONS, bigtiff="IF_SAFER", num_threads=workers)
    if writer == "rioxarray":
        dims = ("band", "y", "x") if result.ndim == 3 else ("y", "x")
        coords = {"y": scene.y, "x": scene.x}
        if result.ndim == 3:
            coords["band"] = np.arange(1, result.shape[0] + 1)
        array = xr.DataArray(result, dims=dims, coords=coords)
        array = array.rio.write_crs(scene.rio.crs).rio.write_transform(scene.rio.transform())
        if nodata is not None:
            array = array.rio.write_nodata(nodata)
        array.rio.to_raster(path, lock=threading.Lock(), compute=True, **options)
        return
    count = result.shape[0] if result.ndim == 3 else 1
    with rasterio.open(path, "w", driver="GTiff", width=result.shape[-1],
                       height=result.shape[-2], count=count, dtype=result.dtype,
                       crs=scene.rio.crs, transform=scene.rio.transform(), nodata=nodata,
                       **options) as dataset:
        da.store(result, WindowWriter(dataset), lock=threading.Lock())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=sorted(PARAMS))
    parser.add_argument("scene", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--workers", type=int, default=2, help="threads of the dask scheduler")
    parser.add_argument("--chunk", type=int, default=1024, help="chunk rows and columns")
    parser.add_argument("--writer", choices=("store", "rioxarray"), default="store")
    parser.add_argument("--read-lock", action="store_true",
                        help="rioxarray's default read lock (one file handle, reads one at a time)")
    args = parser.parse_args()
    params = PARAMS[args.workload]
    times = {}

    started = time.perf_counter()
    dask.config.set(scheduler="threads", num_workers=args.workers)
    scene = rioxarray.open_rasterio(args.scene, chunks={"band": -1, "y": args.chunk, "x": args.chunk},
                                    lock=None if args.read_lock else False)
    nodata = scene.rio.nodata
    if args.workload == "w1":
        image, image_nodata = mean_9x9(scene.data, params), None
    elif args.workload == "w3":
        image, image_nodata = ratio_median(scene.data, params, nodata), float("nan")
    else:
        image = image_nodata = None
    times["graph"] = time.perf_counter() - started

    started = time.perf_counter()
    if image is None:
        write_statistics(args.output, band_statistics(scene.data, params, nodata))
    else:
        write_geotiff(image, scene, args.output, image_nodata, args.workers, args.writer)
    times["run"] = time.perf_counter() - started
    print(json.dumps(times))


if __name__ == "__main__":
    main()
