"""Synthetic but realistic-looking rasters: the example pipelines' sample data and the benchmarks'.

A scene has fields (parcels of different crops), a meandering river, a road, smooth relief and
sensor noise, in four bands (blue, green, red, near-infrared) of reflectance x 10000 as uint16,
with nodata 0 where a few clouds were masked. A surface model (float32 metres) has holes of nodata.

For the working grid and band stacks, the same scene is also delivered the way real data comes:
one file per band, like Sentinel-2 (``bands/B04.tif`` red and ``bands/B08.tif`` NIR at 10 m,
``bands/B11.tif`` a short-wave infrared at 20 m), and an earlier acquisition on another grid
(``before.tif``: Lambert-93, 12 m pixels).

``python -m eoscale.sample FOLDER [--size N]`` writes ``scene.tif`` and ``dsm.tif`` into FOLDER,
and those (:func:`make_grid_samples`).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject
from scipy import ndimage

CRS_UTM31 = CRS.from_epsg(32631)
#: The CRS of ``before.tif``: Lambert-93, France's official projection (the scene lies in France).
CRS_LAMBERT93 = CRS.from_epsg(2154)
#: Reflectance x 10000 of blue, green, red, NIR for bare soil, crops, forest, water, road.
SURFACES = np.array([
    [900, 1200, 1500, 2300],   # bare soil
    [400, 800, 500, 4200],     # green crop
    [350, 650, 400, 3300],     # forest
    [500, 600, 350, 150],      # water
    [1600, 1700, 1800, 2000],  # road
], dtype=np.float32)


def _parcels(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """A map of surface classes 0..2 made of rectangular parcels of varied sizes."""
    rows, cols = math.ceil(height / cell) + 1, math.ceil(width / cell) + 1
    coarse = rng.choice(3, size=(rows, cols), p=[0.3, 0.5, 0.2])
    split_rows = np.cumsum(rng.integers(cell // 2, cell * 3 // 2, size=rows))
    split_cols = np.cumsum(rng.integers(cell // 2, cell * 3 // 2, size=cols))
    row_index = np.minimum(np.searchsorted(split_rows, np.arange(height), side="right"), rows - 1)
    col_index = np.minimum(np.searchsorted(split_cols, np.arange(width), side="right"), cols - 1)
    return coarse[row_index[:, None], col_index[None, :]]


def _river_distance(height: int, width: int, phase: float) -> np.ndarray:
    """Distance in pixels (along rows) from a meandering river that crosses the image."""
    x = np.arange(width, dtype=np.float32)
    centre = height * (0.5 + 0.18 * np.sin(x / width * 5.0 + phase) + 0.06 * np.sin(x / width * 23.0))
    return np.abs(np.arange(height, dtype=np.float32)[:, None] - centre[None, :])


def _smooth_noise(rng: np.random.Generator, height: int, width: int, scale: int) -> np.ndarray:
    """Low-frequency noise in about -1..1, made at low resolution and zoomed (cheap at any size)."""
    small = rng.standard_normal((max(2, height // scale + 2), max(2, width // scale + 2)))
    zoomed = ndimage.zoom(small.astype(np.float32), scale, order=1)
    return zoomed[:height, :width] / 1.5


def scene_array(height: int, width: int, bands: int = 4, seed: int = 0) -> np.ndarray:
    """A (bands, height, width) uint16 scene; 0 (nodata) under a few masked clouds."""
    rng = np.random.default_rng(seed)
    classes = _parcels(rng, height, width, max(8, min(height, width) // 12))
    river = _river_distance(height, width, rng.uniform(0, 6.28))
    width_px = max(2.0, min(height, width) / 60)
    classes[river < width_px] = 3
    road_col = int(width * rng.uniform(0.2, 0.8))
    classes[:, max(0, road_col - 1):road_col + 2] = 4
    relief = _smooth_noise(rng, height, width, max(4, min(height, width) // 8))
    out = np.empty((bands, height, width), dtype=np.uint16)
    for band in range(bands):
        values = SURFACES[classes, band % 4]
        values *= 1.0 + 0.15 * relief
        values += rng.normal(0.0, 40.0, size=(height, width)).astype(np.float32)
        np.clip(values, 1, 10000, out=values)
        out[band] = values.astype(np.uint16)
    clouds = _smooth_noise(rng, height, width, max(4, min(height, width) // 16)) > 0.95
    out[:, clouds] = 0
    return out


def dsm_array(height: int, width: int, seed: int = 0, holes: int = 12) -> np.ndarray:
    """A (1, height, width) float32 surface model in metres with ``holes`` nodata (-32768) holes."""
    rng = np.random.default_rng(seed + 1)
    terrain = 100.0 + 20.0 * _smooth_noise(rng, height, width, max(4, min(height, width) // 4))
    buildings = _parcels(rng, height, width, max(6, min(height, width) // 20)) == 2
    surface = terrain + np.where(buildings, 8.0, 0.0) + rng.normal(0, 0.2, (height, width))
    surface = surface.astype(np.float32)
    for _ in range(holes):
        row, col = rng.integers(0, height), rng.integers(0, width)
        radius = int(rng.integers(1, max(2, min(height, width) // 64)))
        surface[max(0, row - radius):row + radius, max(0, col - radius):col + radius] = -32768.0
    return surface[np.newaxis]


def write_sample(path: str | Path, array: np.ndarray, nodata: float, *, pixel: float = 10.0,
                 block: int = 256, compress: str = "deflate", crs: CRS = CRS_UTM31,
                 transform: Affine | None = None) -> Path:
    """Write an array as a tiled, compressed GeoTIFF (default: in UTM 31N, its top left corner
    at 600000, 4800000)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count, height, width = array.shape
    if transform is None:
        transform = Affine(pixel, 0.0, 600000.0, 0.0, -pixel, 4800000.0)
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count,
                       dtype=array.dtype, crs=crs, transform=transform, nodata=nodata,
                       tiled=True, blockxsize=block, blockysize=block, compress=compress) as dst:
        dst.write(array)
    return path


def make_samples(folder: str | Path, size: int = 512, seed: int = 0) -> tuple[Path, Path]:
    """Write ``scene.tif`` (4 bands uint16) and ``dsm.tif`` (float32) of ``size`` x ``size``."""
    folder = Path(folder)
    scene = write_sample(folder / "scene.tif", scene_array(size, size, seed=seed), nodata=0)
    dsm = write_sample(folder / "dsm.tif", dsm_array(size, size, seed=seed), nodata=-32768.0,
                       pixel=0.5)
    return scene, dsm


def make_grid_samples(folder: str | Path, size: int = 512, seed: int = 0) -> tuple[Path, ...]:
    """Write the scene of :func:`make_samples` as band files and as an earlier image on another
    grid: ``bands/B04.tif``, ``bands/B08.tif`` (its red and NIR, 10 m), ``bands/B11.tif`` (a
    short-wave infrared at 20 m: the mean of each 2 x 2 pixels of (red + NIR) / 2, uint16) and
    ``before.tif`` (the scene, dimmed 10 %, warped bilinearly into Lambert-93 at 12 m)."""
    folder = Path(folder)
    scene = scene_array(size, size, seed=seed)
    utm = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 4800000.0)
    red, nir = scene[2:3], scene[3:4]
    half = size // 2
    pairs = ((red[0, :2 * half, :2 * half].astype(np.float32)
              + nir[0, :2 * half, :2 * half]) / 2).reshape(half, 2, half, 2)
    holes = (red[0, :2 * half, :2 * half] == 0).reshape(half, 2, half, 2).any(axis=(1, 3))
    swir = np.where(holes, 0, np.rint(pairs.mean(axis=(1, 3)))).astype(np.uint16)[np.newaxis]
    written = [write_sample(folder / "bands" / "B04.tif", red, nodata=0),
               write_sample(folder / "bands" / "B08.tif", nir, nodata=0),
               write_sample(folder / "bands" / "B11.tif", swir, nodata=0, pixel=20.0, block=128)]
    dimmed = np.where(scene == 0, 0, np.rint(scene * 0.9)).astype(np.uint16)
    transform, width, height = calculate_default_transform(
        CRS_UTM31, CRS_LAMBERT93, size, size, 600000.0, 4800000.0 - 10.0 * size,
        600000.0 + 10.0 * size, 4800000.0, resolution=12.0)
    before = np.zeros((scene.shape[0], height, width), np.uint16)
    reproject(dimmed, before, src_transform=utm, src_crs=CRS_UTM31, src_nodata=0,
              dst_transform=transform, dst_crs=CRS_LAMBERT93, dst_nodata=0,
              resampling=Resampling.bilinear)
    written.append(write_sample(folder / "before.tif", before, nodata=0, crs=CRS_LAMBERT93,
                                transform=transform))
    return tuple(written)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for path in (*make_samples(args.folder, args.size, args.seed),
                 *make_grid_samples(args.folder, args.size, args.seed)):
        print(path)


if __name__ == "__main__":
    main()
