"""STAC Items cut from one real raster, for the mosaic tests (io, pipeline, remote).

The Landsat 5 red band of ../shared/data (456 x 404 pixels of 25 m, int16, nodata -999,
EPSG:28355, its origin on multiples of 25 m) is cut into four overlapping windows, each written
as a small GeoTIFF and described by an Item (asset ``B30``, common name ``red``) dated in June
2024. Two of them have nodata holes where another Item covers the pixels, so the four mosaic back
to the raster exactly, in either order. :func:`brighter` adds an Item whose pixels are the
raster's plus one, so the order shows; :func:`write_in_crs` writes a window in another CRS.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject, transform_bounds
from rasterio.windows import Window

SHARED_DATA = Path(__file__).parents[1] / ".." / "shared" / "data"
RED = "ls5_nbar_19920323_B30_red.tif"
NODATA = -999

#: Item id -> (window: col_off, row_off, width, height), day of June 2024, hole (rows, cols).
CUTS = {
    "a": ((0, 0, 260, 230), 5, None),
    "b": ((200, 0, 256, 230), 10, ((10, 60), (210, 250))),
    "c": ((0, 180, 260, 224), 15, None),
    "d": ((200, 180, 256, 224), 20, ((185, 225), (205, 255))),
}
#: The window of :func:`brighter`'s Item, dated 25 June 2024.
BRIGHTER = (100, 100, 200, 200)


def source_path() -> Path:
    path = SHARED_DATA / RED
    if not path.exists():
        pytest.skip("needs ../shared/data (the project's shared test rasters)")
    return path.resolve()


def original() -> tuple[np.ndarray, dict]:
    """The whole raster (1, rows, cols) and its profile."""
    with rasterio.open(source_path()) as dataset:
        return dataset.read(), dict(dataset.profile)


def write_window(path: Path, window: Sequence[int], hole=None, add: int = 0) -> Path:
    """``window`` of the raster as a GeoTIFF on its grid; ``hole`` (rows, cols of the raster)
    set to nodata; ``add`` added to the valid pixels."""
    with rasterio.open(source_path()) as dataset:
        win = Window(*window)
        data = dataset.read(window=win)
        profile = dict(dataset.profile, width=win.width, height=win.height,
                       transform=dataset.window_transform(win))
    data = np.where(data != NODATA, data + add, data).astype(data.dtype)
    if hole is not None:
        (r0, r1), (c0, c1) = hole
        data[:, r0 - window[1]:r1 - window[1], c0 - window[0]:c1 - window[0]] = NODATA
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as out:
        out.write(data)
    return path


def write_in_crs(path: Path, window: Sequence[int], crs: str) -> Path:
    """``window`` of the raster warped (nearest) into ``crs`` at its own default resolution."""
    with rasterio.open(source_path()) as dataset:
        win = Window(*window)
        data = dataset.read(window=win)
        transform = dataset.window_transform(win)
        bounds = rasterio.windows.bounds(win, dataset.transform)
        dst_transform, width, height = calculate_default_transform(
            dataset.crs, crs, win.width, win.height, *bounds)
        out = np.full((1, height, width), NODATA, data.dtype)
        reproject(data, out, src_transform=transform, src_crs=dataset.crs, src_nodata=NODATA,
                  dst_transform=dst_transform, dst_crs=crs, dst_nodata=NODATA,
                  resampling=Resampling.nearest)
        profile = dict(dataset.profile, crs=crs, transform=dst_transform, width=width,
                       height=height)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(out)
    return path


def item_for(id_: str, file: Path, href: str, day: int) -> pystac.Item:
    """An Item of one asset ``B30`` (common name red) at ``href``, its bbox the file's."""
    with rasterio.open(file) as dataset:
        west, south, east, north = transform_bounds(dataset.crs, "EPSG:4326", *dataset.bounds)
    geometry = {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north],
                                                    [west, north], [west, south]]]}
    item = pystac.Item(id_, geometry, [west, south, east, north],
                       datetime.datetime(2024, 6, day, 10, tzinfo=datetime.timezone.utc), {})
    item.add_asset("B30", pystac.Asset(href, media_type=pystac.MediaType.GEOTIFF, extra_fields={
        "eo:bands": [{"name": "B30", "common_name": "red"}]}))
    return item


def cut_items(folder: Path, relative: bool = True, crs: dict[str, str] | None = None,
              ) -> list[pystac.Item]:
    """The four Items of :data:`CUTS`, their files in ``folder`` (hrefs relative to it, or
    absolute); ``crs``: an Item's id -> the CRS its file is warped into (no hole then)."""
    items = []
    for id_, (window, day, hole) in CUTS.items():
        file = folder / f"{id_}.tif"
        if crs and id_ in crs:
            write_in_crs(file, window, crs[id_])
        else:
            write_window(file, window, hole)
        items.append(item_for(id_, file, file.name if relative else str(file), day))
    return items


def brighter(folder: Path) -> pystac.Item:
    """An Item dated 25 June 2024 (the newest) whose valid pixels are the raster's plus one."""
    file = write_window(folder / "brighter.tif", BRIGHTER, add=1)
    return item_for("brighter", file, file.name, 25)


def write_collection(path: Path, items: Sequence[pystac.Item]) -> Path:
    """An ItemCollection (a saved search) of ``items`` at ``path``."""
    collection = pystac.ItemCollection(items)
    path.write_text(json.dumps(collection.to_dict(transform_hrefs=False), indent=1))
    return path
