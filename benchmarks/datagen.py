"""The benchmark's input rasters, generated once into benchmarks/data/ with eoscale.sample's texture.

- ``scene_<size>.tif``: 3 bands (blue, green, red) uint16, fields, river, road, relief, sensor noise,
  nodata 0 under a few masked clouds (``eoscale.sample.scene_array``);
- ``dsm_<size>.tif``: 1 band float32 surface model in metres with nodata holes
  (``eoscale.sample.dsm_array``), for DEM-like workloads.

Both are tiled 512 x 512, deflate, written with GDAL's NUM_THREADS=ALL_CPUS. A sidecar
``<name>.json`` records how a file was made; a file whose record does not match is made again.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

from eoscale.sample import CRS_UTM31, dsm_array, scene_array

DATA_DIR = Path(__file__).resolve().parent / "data"
SCENE_BANDS = 3
SEED = 0
CREATION = {"driver": "GTiff", "tiled": True, "blockxsize": 512, "blockysize": 512,
            "compress": "deflate", "num_threads": "ALL_CPUS"}
#: Bumped when the recipe changes, so that old files are made again.
RECIPE = 1


def _write(path: Path, array: np.ndarray, nodata: float, pixel: float) -> None:
    count, height, width = array.shape
    transform = Affine(pixel, 0.0, 600000.0, 0.0, -pixel, 4800000.0)
    temp = path.with_name(f".{path.name}.partial")
    with rasterio.open(temp, "w", width=width, height=height, count=count, dtype=array.dtype,
                       crs=CRS_UTM31, transform=transform, nodata=nodata, **CREATION) as dst:
        dst.write(array)
    temp.replace(path)


def _ensure(path: Path, recipe: dict, make) -> Path:
    record = path.with_suffix(".json")
    if path.exists() and record.exists() and json.loads(record.read_text()) == recipe:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    record.unlink(missing_ok=True)
    make()
    record.write_text(json.dumps(recipe) + "\n")
    return path


def ensure_scene(size: int, folder: Path = DATA_DIR) -> Path:
    """The 3-band uint16 scene of ``size`` x ``size``, made if missing or stale."""
    path = folder / f"scene_{size}.tif"
    recipe = {"recipe": RECIPE, "kind": "scene", "size": size, "bands": SCENE_BANDS, "seed": SEED}
    return _ensure(path, recipe, lambda: _write(
        path, scene_array(size, size, SCENE_BANDS, seed=SEED), nodata=0, pixel=10.0))


def ensure_dsm(size: int, folder: Path = DATA_DIR) -> Path:
    """The 1-band float32 surface model of ``size`` x ``size``, made if missing or stale."""
    path = folder / f"dsm_{size}.tif"
    recipe = {"recipe": RECIPE, "kind": "dsm", "size": size, "seed": SEED}
    return _ensure(path, recipe, lambda: _write(
        path, dsm_array(size, size, seed=SEED), nodata=-32768.0, pixel=0.5))


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate the benchmark's input rasters.")
    parser.add_argument("--size", type=int, default=8192)
    args = parser.parse_args()
    for path in (ensure_scene(args.size), ensure_dsm(args.size)):
        print(path)


if __name__ == "__main__":
    main()
