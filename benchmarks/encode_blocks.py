"""What encoding by blocks in worker processes gains over one GDAL writer (eoscale.io.blocks).

    python benchmarks/encode_blocks.py [--size 4096] [--workers 2] [--repeat 5]
                                       [--compress deflate] [--predictor 1] [--block 512]

One float32 band of size x size pixels (a smooth surface with noise), written as a tiled
GeoTIFF with eoscale's default options (512 x 512 tiles, deflate) three ways, alternately, after
one warm-up of each:

- ``rasterio``: ``rasterio.open(..., "w")`` and one ``write`` of the whole array, GDAL's own
  compression on one thread (the oracle of tests/io/test_blocks.py);
- ``parts``: ``--workers`` processes (forked, the array inherited as a computing worker holds
  its own pixels) each encode rows of blocks into their own part file and return only
  (offset, length) records; then the main process assembles the file (header written once,
  blocks copied with ``copy_file_range``). Reported as the whole wall, and its encode and
  assemble parts;
- ``bytes``: the same, but the workers return the encoded bytes through the pool's pipe and the
  main process writes them.

The pool is started once, before the timings (an engine's workers already run). Each run's
file is checked to read back equal to the array. Prints one JSON line per run (with the 1-minute
load average before it) and a last line with the medians and the ratios to rasterio's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import Affine

from eoscale.io import blocks
from eoscale.io.raster import creation_profile

#: The image the workers encode: set before the pool forks, inherited by its processes.
IMAGE: np.ndarray | None = None


def make_image(size: int) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    surface = np.sin(rows / 97) * 40 + np.cos(cols / 53) * 25 + rows * 0.01
    noise = np.random.default_rng(0).normal(scale=0.5, size=(size, size)).astype(np.float32)
    return (surface + noise)[np.newaxis].astype(np.float32)


def encode_row(task: tuple[blocks.BlockLayout, int, str | None]) -> list[Any]:
    """Encode one row of blocks of IMAGE; into this process's part file in ``folder`` (records
    returned) or, without a folder, returned as bytes."""
    layout, row, folder = task
    assert IMAGE is not None
    encoded: dict[int, bytes] = {}
    for col in range(layout.grid[1]):
        row_off, col_off, rows, cols = layout.window(row, col)
        encoded.update(layout.encode(row, col, IMAGE[:, row_off:row_off + rows,
                                                     col_off:col_off + cols]))
    if folder is None:
        return list(encoded.items())
    with blocks.PartFile(Path(folder) / f"{os.getpid()}.part") as part:
        return [(index, part.append(data)) for index, data in encoded.items()]


def run_rasterio(image: np.ndarray, profile: dict[str, Any], options: dict[str, Any],
                 path: Path) -> dict[str, float]:
    start = time.perf_counter()
    with rasterio.open(path, "w", **creation_profile(profile, options)) as dataset:
        dataset.write(image)
    return {"wall": time.perf_counter() - start}


def run_blocks(pool: Any, profile: dict[str, Any], options: dict[str, Any], path: Path,
               folder: Path | None) -> dict[str, float]:
    start = time.perf_counter()
    layout = blocks.BlockLayout.from_profile(profile, options)
    metadata = blocks.geotiff_metadata(profile, options)
    tasks = [(layout, row, None if folder is None else str(folder))
             for row in range(layout.grid[0])]
    found = dict(record for records in pool.imap_unordered(encode_row, tasks)
                 for record in records)
    encoded = time.perf_counter()
    blocks.assemble_geotiff(path, layout, metadata, found)
    end = time.perf_counter()
    if folder is not None:
        for part in folder.glob("*.part"):
            part.unlink()
    return {"wall": end - start, "encode": encoded - start, "assemble": end - encoded}


def check(path: Path, image: np.ndarray) -> None:
    with rasterio.open(path) as dataset:
        if not np.array_equal(dataset.read(), image):
            raise SystemExit(f"{path}: does not read back equal to the array")


def main() -> None:
    global IMAGE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--compress", default="deflate")
    parser.add_argument("--predictor", type=int, default=1)
    parser.add_argument("--block", type=int, default=512)
    args = parser.parse_args()
    IMAGE = make_image(args.size)
    profile = {"height": args.size, "width": args.size, "count": 1, "dtype": "float32",
               "crs": "EPSG:32631", "transform": Affine(10, 0, 500000, 0, -10, 4600000),
               "nodata": None}
    options = {"compress": args.compress, "predictor": args.predictor,
               "blockxsize": args.block, "blockysize": args.block}
    times: dict[str, list[float]] = {"rasterio": [], "parts": [], "bytes": []}
    with tempfile.TemporaryDirectory(prefix="eoscale-encode-blocks-") as temp, \
            multiprocessing.get_context("fork").Pool(args.workers) as pool:
        folder = Path(temp)
        for repeat in range(args.repeat + 1):
            for way in times:
                path = folder / f"{way}.tif"
                load = os.getloadavg()[0]
                if way == "rasterio":
                    result = run_rasterio(IMAGE, profile, options, path)
                else:
                    parts = folder / "parts" if way == "parts" else None
                    if parts is not None:
                        parts.mkdir(exist_ok=True)
                    result = run_blocks(pool, profile, options, path, parts)
                check(path, IMAGE)
                result = {key: round(value, 4) for key, value in result.items()}
                print(json.dumps({"way": way, "repeat": repeat, "warm_up": repeat == 0,
                                  "load_1min": load, "size": args.size,
                                  "workers": args.workers, "bytes": path.stat().st_size,
                                  **result}))
                if repeat:
                    times[way].append(result["wall"])
                path.unlink()
    medians = {way: statistics.median(walls) for way, walls in times.items()}
    print(json.dumps({"medians": medians,
                      "ratio_to_rasterio": {way: round(wall / medians["rasterio"], 3)
                                            for way, wall in medians.items()}}))


if __name__ == "__main__":
    main()
