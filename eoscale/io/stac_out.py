"""STAC Items for outputs: an image described by a STAC Item written beside it, with pystac.

:func:`write_item` reads a finished image's grid with rasterio and writes its Item: id (the
file's stem), footprint and bbox in WGS84 (the image's edges densified before they are
reprojected, so that a footprint that curves in longitude and latitude stays right), a datetime
taken from the Items the image was made from (:class:`SourceItem`; one datetime, or a
``start_datetime``/``end_datetime`` range; the run's time when none has one), the ``proj``
extension (``proj:code``, or ``proj:wkt2`` for a CRS without an EPSG code; shape, transform,
native bbox), the ``raster`` extension per band (data type, nodata, and statistics when given),
one asset whose href is relative to the Item (so the two can move together), and where it came
from: ``processing:software`` (eoscale and its version), ``processing:lineage`` (the pipeline)
and ``derived_from`` links to the source Items.

:func:`source_items` reads what an output cites of an input's STAC document, and
:func:`band_statistics` turns a reduce step's result (``eoscale.ops.stats``: ``min``, ``max``,
``mean``, ``std``, ``count`` per band; or STAC's own names) into the extension's statistics.
The Item is written to the path it is given: the caller stages it with its image.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eoscale.io.paths import RasterLocation, is_address, redact
from eoscale.io.raster import write_text
from eoscale.io.stac import StacError, read_document

#: Points sampled on each edge of a footprint between its corners before it is reprojected.
DENSIFY_POINTS = 21
#: The processing extension, whose fields say which software made an Item, and how.
PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
#: The key of an output Item's one asset: the image.
ASSET_KEY = "data"
#: The statistics a result may give per band: its key -> the raster extension's name.
STATISTICS_KEYS = {"min": "minimum", "minimum": "minimum", "max": "maximum",
                   "maximum": "maximum", "mean": "mean", "std": "stddev", "stddev": "stddev",
                   "valid_percent": "valid_percent"}


@dataclass(frozen=True)
class SourceItem:
    """An Item an output was made from, as the output's Item cites it: its ``href`` (its self
    link, else where it was read; credentials redacted), its id, and its datetime or range."""

    href: str
    id: str
    datetime: dt.datetime | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None


@dataclass(frozen=True)
class ItemProvenance:
    """What an output's Item says of where it came from: the Items it was made from, the
    pipeline (its name and file) and the output's name."""

    sources: tuple[SourceItem, ...] = ()
    pipeline: str | None = None
    pipeline_file: str | None = None
    output: str | None = None


def source_items(location: RasterLocation) -> tuple[SourceItem, ...]:
    """The Items of the STAC document at ``location``: an Item, or each Item of an
    ItemCollection, read with pystac."""
    import pystac

    document = read_document(location)
    shown = redact(os.fspath(location))
    if not is_address(location):
        shown = os.fspath(Path(location).resolve())
    try:
        if document.get("type") == "FeatureCollection":
            items = list(pystac.ItemCollection.from_dict(dict(document), preserve_dict=True))
            return tuple(_source(item, None) for item in items)
        return (_source(pystac.Item.from_dict(dict(document), preserve_dict=True), shown),)
    except (pystac.STACError, pystac.STACTypeError, KeyError, TypeError, ValueError,
            AttributeError) as error:
        raise StacError(f"{shown} is not a readable STAC Item: {type(error).__name__}: "
                        f"{error}") from None


def _source(item: Any, read_from: str | None) -> SourceItem:
    self_href = item.get_self_href()
    href = redact(self_href) if self_href else (read_from or item.id)
    common = item.common_metadata
    return SourceItem(href, item.id, item.datetime, common.start_datetime, common.end_datetime)


def item_datetime(sources: Sequence[SourceItem], now: dt.datetime,
                  ) -> tuple[dt.datetime | None, dt.datetime | None, dt.datetime | None]:
    """The (datetime, start, end) of an Item made from ``sources``: their one datetime; a range
    from the earliest to the latest when they have several, or ranges; ``now`` when none has
    one."""
    instants = {source.datetime for source in sources if source.datetime is not None}
    ranged = [source for source in sources if source.datetime is None
              and source.start is not None and source.end is not None]
    if len(instants) == 1 and not ranged:
        return next(iter(instants)), None, None
    if not instants and not ranged:
        return now, None, None
    starts = [*instants, *(source.start for source in ranged if source.start is not None)]
    ends = [*instants, *(source.end for source in ranged if source.end is not None)]
    return None, min(starts, key=_utc), max(ends, key=_utc)


def _utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` comparable with any other: a naive one is taken as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.timezone.utc)


def band_statistics(result: Any, count: int, pixels: int) -> list[dict[str, float | None]]:
    """Per band, the raster extension's statistics in a reduce result: a list with one mapping
    per band holding ``min``/``max``/``mean``/``std`` (as ``eoscale.ops.stats`` gives them) or
    ``minimum``/``maximum``/``mean``/``stddev``/``valid_percent``; a ``count`` of valid pixels
    gives ``valid_percent`` (of ``pixels`` per band). A result of another form is a
    ``ValueError`` saying what was found."""
    if not isinstance(result, (list, tuple)) or not all(isinstance(band, Mapping)
                                                        for band in result):
        raise ValueError(f"expected a list with one mapping of statistics per band (as "
                         f"eoscale.ops.stats gives), found {type(result).__name__}")
    if len(result) != count:
        raise ValueError(f"the result has statistics for {len(result)} band(s), the image has "
                         f"{count}")
    bands = []
    for index, band in enumerate(result, start=1):
        known = {STATISTICS_KEYS[key]: value for key, value in band.items()
                 if key in STATISTICS_KEYS}
        if not known:
            raise ValueError(f"band {index}'s entry has none of min, max, mean, std (its keys: "
                             f"{', '.join(map(str, band)) or 'none'})")
        if "valid_percent" not in known and isinstance(band.get("count"), (int, float)):
            known["valid_percent"] = 100.0 * float(band["count"]) / pixels if pixels else None
        for name, value in known.items():
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, (int, float))):
                raise ValueError(f"band {index}'s {name} is {value!r}, not a number")
        bands.append({name: None if value is None else float(value)
                      for name, value in known.items()})
    return bands


def footprint(bounds: Sequence[float], crs: Any,
              points: int = DENSIFY_POINTS) -> tuple[dict[str, Any], list[float]]:
    """The WGS84 footprint (a GeoJSON polygon) and bbox of ``bounds`` (left, bottom, right, top)
    in ``crs``: each edge sampled at ``points`` points between the corners, then reprojected;
    the bbox is GDAL's transform of the bounds with the same densification."""
    from rasterio.warp import transform_bounds, transform_geom

    left, bottom, right, top = (float(value) for value in bounds)
    steps = [index / (points + 1) for index in range(points + 1)]
    ring = ([(left + (right - left) * t, bottom) for t in steps]
            + [(right, bottom + (top - bottom) * t) for t in steps]
            + [(right - (right - left) * t, top) for t in steps]
            + [(left, top - (top - bottom) * t) for t in steps])
    ring.append(ring[0])
    geometry = transform_geom(crs, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    bbox = transform_bounds(crs, "EPSG:4326", left, bottom, right, top, densify_pts=points)
    rings = [[[float(x), float(y)] for x, y, *_ in part] for part in geometry["coordinates"]]
    return {"type": "Polygon", "coordinates": rings}, [float(value) for value in bbox]


def write_item(image: Path, item_file: Path, *, image_href: str, cog: bool,
               provenance: ItemProvenance, statistics: Sequence[Mapping[str, Any]] | None = None,
               now: dt.datetime | None = None, display: str | os.PathLike | None = None) -> None:
    """Write to ``item_file`` the STAC Item of the finished ``image``: its id the image's stem,
    its asset's href ``image_href`` (relative to where the Item will be), typed a COG (``cog``)
    or a GeoTIFF. ``statistics``: per band, as
    :func:`band_statistics` gives them. ``now``: the run's time (default: this moment)."""
    import pystac
    import rasterio
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension, Statistics

    now = now or dt.datetime.now(dt.timezone.utc)
    with rasterio.open(image) as dataset:
        crs, transform, bounds = dataset.crs, dataset.transform, dataset.bounds
        shape, dtypes, nodatas = (dataset.height, dataset.width), dataset.dtypes, dataset.nodatavals
        resolution = abs(transform.a) if transform.b == 0 and transform.d == 0 else None
    if crs is None:
        raise StacError(f"{display or image} has no CRS: its STAC Item needs one for its "
                        f"footprint in WGS84")
    geometry, bbox = footprint(bounds, crs)
    when, start, end = item_datetime(provenance.sources, now)
    item = pystac.Item(Path(image_href).stem, geometry, bbox, when,
                       _provenance_fields(provenance), start_datetime=start, end_datetime=end)
    item.common_metadata.created = now
    item.stac_extensions.append(PROCESSING_SCHEMA)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = crs.to_epsg()
    if epsg is not None:
        proj.code = f"EPSG:{epsg}"
    else:
        proj.code = None
        proj.wkt2 = crs.to_wkt("WKT2_2019")
    proj.shape = list(shape)
    proj.transform = [float(value) for value in list(transform)[:6]]
    proj.bbox = [float(value) for value in bounds]
    media_type = pystac.MediaType.COG if cog else pystac.MediaType.GEOTIFF
    asset = pystac.Asset(image_href, media_type=media_type, roles=["data"],
                         title=provenance.output)
    item.add_asset(ASSET_KEY, asset)
    bands = []
    for index, (dtype, nodata) in enumerate(zip(dtypes, nodatas)):
        stats = statistics[index] if statistics is not None else None
        bands.append(RasterBand.create(
            nodata=_nodata(nodata), data_type=_data_type(DataType, dtype),
            spatial_resolution=resolution,
            statistics=None if stats is None else Statistics.create(**dict(stats))))
    RasterExtension.ext(asset, add_if_missing=True).bands = bands
    for source in provenance.sources:
        item.add_link(pystac.Link("derived_from", source.href, pystac.MediaType.GEOJSON,
                                  title=source.id))
    text = json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=2,
                      allow_nan=False)
    write_text(item_file, text + "\n", display)


def _provenance_fields(provenance: ItemProvenance) -> dict[str, Any]:
    try:
        version = importlib.metadata.version("eoscale")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    lineage = "made by eoscale"
    if provenance.pipeline or provenance.pipeline_file:
        named = f"'{provenance.pipeline}'" if provenance.pipeline else ""
        file = f"({provenance.pipeline_file})" if provenance.pipeline_file else ""
        lineage += f" pipeline {' '.join(part for part in (named, file) if part)}"
    if provenance.output:
        lineage += f", output '{provenance.output}'"
    return {"processing:software": {"eoscale": version}, "processing:lineage": lineage}


def _nodata(value: float | None) -> float | str | None:
    """A nodata value as the raster extension writes it: NaN and infinities as text."""
    if value is None:
        return None
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return int(value) if float(value).is_integer() else float(value)


def _data_type(kinds: Any, dtype: str) -> Any:
    try:
        return kinds(dtype)
    except ValueError:
        return None
