"""What ``eoscale info`` reports about a raster, as a model that renders to text or strict JSON."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import rasterio

from eoscale.io.paths import redact
from eoscale.io.raster import open_raster


@dataclass(frozen=True)
class RasterInfo:
    """Size, bands, grid, nodata and layout of a raster file."""

    path: str
    driver: str
    width: int
    height: int
    count: int
    dtypes: tuple[str, ...]
    crs_name: str | None
    epsg: int | None
    crs_wkt: str | None
    geographic: bool | None
    resolution: tuple[float, float]
    bounds: tuple[float, float, float, float]
    transform: tuple[float, ...]
    nodata: float | None
    block_shape: tuple[int, int]
    compression: str | None
    interleave: str | None
    overviews: tuple[int, ...]
    stats: tuple[dict[str, Any], ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """A dict that ``json.dumps(..., allow_nan=False)`` accepts: NaN nodata becomes "nan"."""
        data = asdict(self)
        data["nodata"] = json_number(self.nodata)
        return json_safe(data)


def json_number(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return str(value).lower()


def json_safe(value: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays to python, tuples to lists, NaN and inf to None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist"):
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def raster_info(path: str | os.PathLike) -> RasterInfo:
    """Read a raster's metadata (no pixels)."""
    with open_raster(path) as src:
        crs = src.crs
        return RasterInfo(
            path=redact(str(path)), driver=src.driver, width=src.width, height=src.height,
            count=src.count, dtypes=tuple(src.dtypes), crs_name=_crs_name(crs) if crs else None,
            epsg=crs.to_epsg() if crs else None, crs_wkt=crs.to_wkt() if crs else None,
            geographic=crs.is_geographic if crs else None,
            resolution=(abs(src.transform.a), abs(src.transform.e)),
            bounds=tuple(src.bounds), transform=tuple(src.transform)[:6],
            nodata=src.nodata, block_shape=tuple(src.block_shapes[0]),
            compression=src.compression.value if src.compression else None,
            interleave=src.interleaving.value if src.interleaving else None,
            overviews=tuple(src.overviews(1)) if src.count else ())


def _crs_name(crs: rasterio.crs.CRS) -> str:
    wkt = crs.to_wkt()
    start = wkt.find('"')
    end = wkt.find('"', start + 1)
    return wkt[start + 1:end] if start >= 0 and end > start else wkt[:40]
