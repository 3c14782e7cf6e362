"""What ``eoscale info`` reports about a raster, or a STAC Item's assets, as models that render to
text or strict JSON."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import rasterio

from eoscale.errors import RasterError
from eoscale.io.paths import location_name, redact
from eoscale.io.raster import open_raster
from eoscale.io.stac import StacAsset, read_item


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


@dataclass(frozen=True)
class AssetInfo:
    """One asset of a STAC Item: its key, href (credentials redacted), the common names of its
    bands, and its raster's :class:`RasterInfo` (None, with ``error``, when it is none GDAL
    reads, such as a metadata file)."""

    key: str
    href: str
    common_names: tuple[str, ...]
    raster: RasterInfo | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "href": self.href, "common_names": list(self.common_names),
                "raster": None if self.raster is None else self.raster.to_json(),
                "error": self.error}


@dataclass(frozen=True)
class ItemInfo:
    """A STAC Item: where it was read (redacted), its id, datetime and assets."""

    path: str
    id: str
    datetime: str | None
    assets: tuple[AssetInfo, ...]

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "id": self.id, "datetime": self.datetime,
                "assets": [asset.to_json() for asset in self.assets]}


def is_stac_item(location: str | os.PathLike) -> bool:
    """Whether ``eoscale info`` reads ``location`` as a STAC Item: its name ends in ``.json``."""
    return location_name(location).lower().endswith(".json")


def item_info(location: str | os.PathLike) -> ItemInfo:
    """Read a STAC Item and each asset's raster metadata (no pixels); an asset GDAL cannot read
    is reported with why, not an error."""
    item = read_item(os.fspath(location))
    return ItemInfo(redact(os.fspath(location)), item.id, item.datetime,
                    tuple(_asset_info(asset) for asset in item.assets.values()))


def _asset_info(asset: StacAsset) -> AssetInfo:
    href = redact(os.fspath(asset.href))
    try:
        return AssetInfo(asset.key, href, asset.common_names, raster_info(asset.href))
    except RasterError as error:
        return AssetInfo(asset.key, href, asset.common_names, error=str(error))
