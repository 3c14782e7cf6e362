"""STAC Items as inputs: an Item read with pystac, its assets named and stacked as band files.

:func:`read_item` reads an Item's JSON (a local file, or an ``http(s)://`` address, credentials
written in it sent as HTTP basic authentication and never shown) into a :class:`StacItem`: its
id and its assets, each with its href resolved (a relative href against the Item's own location,
so an Item and its files can move together) and what the Item says of its bands (``eo:bands``
common names; ``raster:bands`` nodata, data type, scale and offset; STAC 1.1's ``bands`` alike).
:meth:`StacItem.select` finds the assets an input names, by key or by common name, and
:func:`assets_source` makes of them the :class:`~eoscale.io.sources.Source` ``{bands: [...]}``
makes of the same files: one file per asset, stacked in the order named, warped onto the
working grid like any input, with the Item's nodata (and, asked for, its scale and offset) as
:class:`~eoscale.io.sources.DeclaredValues`.

An input may also read many Items (:func:`read_stac`): an ItemCollection (a saved search, a
FeatureCollection of Items) or a static Collection (its ``item`` links, each Item read from its
own location). :func:`select_items` keeps those that intersect a WGS84 bbox and whose datetime
(or start/end range) meets an interval (:func:`parse_interval`), in the order a mosaic fills
pixels (:mod:`eoscale.io.mosaic`): newest first, or oldest first.

Reading pixels stays rasterio's; only the JSON is read here.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from eoscale.errors import EOScaleError, RasterError, did_you_mean
from eoscale.io.paths import RasterLocation, is_address, redact
from eoscale.io.sources import DeclaredValues, Source

#: Seconds an HTTP server has to answer for an Item.
HTTP_TIMEOUT = 30
#: Schemes an Item is read from over the network.
HTTP_SCHEMES = ("http", "https")


class StacError(EOScaleError):
    """A STAC document that cannot be used as it is written: not an Item, or an asset named that
    the Item does not have (``index``: the position of that name in the input's list)."""

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class StacBand:
    """What an Item says of one band of an asset (None: it says nothing)."""

    name: str | None = None
    common_name: str | None = None
    nodata: float | None = None
    data_type: str | None = None
    scale: float | None = None
    offset: float | None = None


@dataclass(frozen=True)
class StacAsset:
    """An asset of an Item: its ``key``, its ``href`` resolved (a local path or an address) and
    its bands as the Item describes them (empty: it does not)."""

    key: str
    href: RasterLocation
    bands: tuple[StacBand, ...] = ()

    @property
    def common_names(self) -> tuple[str, ...]:
        return tuple(band.common_name for band in self.bands if band.common_name)

    def declared(self, scale: bool) -> DeclaredValues:
        """What the Item declares of the asset's pixels: its nodata (the first band's that has
        one), and with ``scale`` each band's scale and offset (1 and 0 where none is given)."""
        nodata = next((band.nodata for band in self.bands if band.nodata is not None), None)
        if not scale:
            return DeclaredValues(nodata)
        bands = self.bands or (StacBand(),)
        return DeclaredValues(nodata, tuple(1.0 if b.scale is None else b.scale for b in bands),
                              tuple(0.0 if b.offset is None else b.offset for b in bands))


@dataclass(frozen=True)
class StacItem:
    """An Item as an input reads it: where it was read, its id and its assets by key; for
    selecting it (:func:`select_items`): its datetime as written (a range ``start/end``), its
    WGS84 ``bbox``, and the ``start`` and ``end`` of its time (both its datetime when it has
    one)."""

    location: RasterLocation
    id: str
    assets: Mapping[str, StacAsset]
    datetime: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    start: dt.datetime | None = None  # its datetime, or start_datetime (UTC)
    end: dt.datetime | None = None  # its datetime, or end_datetime (UTC)

    def select(self, names: Sequence[str]) -> tuple[StacAsset, ...]:
        """The assets ``names`` name, in order: by key, else by the common name of a one-band
        asset (``red``); a name that names none, or more than one, is a :class:`StacError`
        holding its index and the Item's asset keys."""
        return tuple(self._asset(name, index) for index, name in enumerate(names))

    def _asset(self, name: str, index: int) -> StacAsset:
        if name in self.assets:
            return self.assets[name]
        holders = [asset for asset in self.assets.values() if name in asset.common_names]
        single = [asset for asset in holders if len(asset.bands) == 1]
        if len(single) == 1:
            return single[0]
        if len(single) > 1:
            found = ", ".join(f"'{asset.key}'" for asset in single)
            raise StacError(f"asset name '{name}' is the common name of assets {found} of STAC "
                            f"Item '{self.id}': name one by its key", index)
        if holders:
            found = ", ".join(f"'{asset.key}' ({len(asset.bands)} bands)" for asset in holders)
            raise StacError(f"'{name}' is one band of asset {found} of STAC Item '{self.id}': "
                            f"an input reads whole assets; name the asset by its key", index)
        common = [name for asset in self.assets.values() for name in asset.common_names]
        hint = did_you_mean(name, [*self.assets, *common])
        raise StacError(f"STAC Item '{self.id}' has no asset '{name}'{hint}; its assets are: "
                        f"{self.asset_keys()}", index)

    def asset_keys(self) -> str:
        """The asset keys, each with its bands' common names: ``B04 (red), B08 (nir)``."""
        return ", ".join(asset.key + (f" ({', '.join(asset.common_names)})"
                                      if asset.common_names else "")
                         for asset in self.assets.values()) or "none"


@dataclass(frozen=True)
class StacSelection:
    """What a STAC input reads, for reports: its Item (id, and where it was read) and, in band
    order, each asset as the input names it, with the asset itself (key, href). A mosaic also
    has its ``items`` (each Item's id, datetime and, in band order, its assets' hrefs), in the
    order they fill pixels (the first Item's are ``item_id`` and ``assets``); ``grid``: the
    working grid, and why it is that one."""

    item_id: str
    item: RasterLocation
    assets: tuple[tuple[str, StacAsset], ...]
    items: tuple[tuple[str, str | None, tuple[RasterLocation, ...]], ...] = ()
    grid: str | None = None


@dataclass(frozen=True)
class StacItems:
    """The Items of a STAC document at ``location``: ``kind`` ``Item`` (one), ``ItemCollection``
    (its features) or ``Collection`` (its item links, read)."""

    location: RasterLocation
    kind: str
    items: tuple[StacItem, ...]


def read_item(location: RasterLocation) -> StacItem:
    """The Item at ``location``; a file that is missing, or an address that does not answer, is
    a :class:`RasterError` naming it (as for a raster); a document that is no Item, a
    :class:`StacError`."""
    return item_of(read_document(location), location)


def read_document(location: RasterLocation) -> dict[str, Any]:
    """The JSON document at ``location`` (a local file or an ``http(s)://`` address)."""
    shown = redact(os.fspath(location))
    if not is_address(location):
        path = Path(location)
        if not path.exists():
            raise RasterError(f"file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise RasterError(f"cannot read {path}: {error}") from None
    else:
        text = _fetch(os.fspath(location))
    try:
        document = json.loads(text)
    except ValueError as error:
        raise StacError(f"{shown} is not a STAC Item: not JSON ({error})") from None
    if not isinstance(document, dict):
        raise StacError(f"{shown} is not a STAC Item: its JSON is not an object")
    return document


def _fetch(address: str) -> str:
    """The text at an ``http(s)://`` address; ``user:password@`` in it is sent as basic
    authentication, and never shown."""
    parts = urlsplit(address)
    shown = redact(address)
    if parts.scheme.lower() not in HTTP_SCHEMES:
        raise StacError(f"cannot read the STAC Item {shown}: eoscale reads Items from local files "
                        f"and http(s):// addresses (download it, or serve it over https)")
    import urllib.error  # here: http.client, ssl and email take 17 ms to import, every run
    import urllib.request

    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    request = urllib.request.Request(urlunsplit(parts._replace(netloc=netloc)))
    if parts.username is not None:
        user = urllib.request.unquote(parts.username)
        password = urllib.request.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as answer:
            return answer.read().decode("utf-8")
    except (urllib.error.URLError, OSError, UnicodeDecodeError) as error:
        reason = (f"HTTP response code: {error.code}" if isinstance(error, urllib.error.HTTPError)
                  else getattr(error, "reason", error))
        raise RasterError(f"cannot open {shown}: unreachable, missing or not a STAC Item "
                          f"({redact(str(reason))})") from None


def item_of(document: Mapping[str, Any], location: RasterLocation) -> StacItem:
    """The :class:`StacItem` of an Item's JSON read from ``location`` (which relative asset
    hrefs resolve against), parsed by pystac."""
    import pystac

    shown = redact(os.fspath(location))
    kind = document.get("type")
    if kind == "FeatureCollection":
        raise StacError(f"{shown} is a STAC ItemCollection: an input reads one Item here (a "
                        f"pipeline's input mosaics an ItemCollection's Items)")
    if kind != "Feature":
        raise StacError(f"{shown} is not a STAC Item: its type is {kind!r}, not 'Feature'")
    try:
        item = pystac.Item.from_dict(dict(document), preserve_dict=True)
    except (pystac.STACError, pystac.STACTypeError, KeyError, TypeError, ValueError,
            AttributeError) as error:
        raise StacError(f"{shown} is not a readable STAC Item: {type(error).__name__}: "
                        f"{error}") from None
    return _item(item, location)


def _item(item: Any, location: RasterLocation) -> StacItem:
    """The :class:`StacItem` of a ``pystac.Item`` read from ``location``."""
    assets = {key: StacAsset(key, resolve_href(asset.href, location), _bands(asset.extra_fields))
              for key, asset in item.assets.items()}
    when = item.datetime.isoformat() if item.datetime is not None else None
    fields = item.properties
    start = _utc(item.datetime) or _utc(_moment(fields.get("start_datetime")))
    end = _utc(item.datetime) or _utc(_moment(fields.get("end_datetime")))
    if when is None and (start or end):
        when = "/".join(moment.isoformat() if moment else ".." for moment in (start, end))
    corners = {4: (0, 1, 2, 3), 6: (0, 1, 3, 4)}.get(len(item.bbox or ()))  # 2D or 3D
    bbox = tuple(float(item.bbox[i]) for i in corners) if corners else None
    return StacItem(location, item.id, assets, when, bbox, start, end)  # type: ignore[arg-type]


def read_stac(location: RasterLocation) -> StacItems:
    """The Items of the STAC document at ``location``: an Item, an ItemCollection or a static
    Collection (each of its ``item`` links read: a file, or an address, relative to it);
    anything else is a :class:`StacError`."""
    import pystac

    document = read_document(location)
    shown = redact(os.fspath(location))
    kind = document.get("type")
    if kind == "Feature":
        return StacItems(location, "Item", (item_of(document, location),))
    try:
        if kind == "FeatureCollection":
            features = pystac.ItemCollection.from_dict(dict(document), preserve_dict=True)
            items = tuple(_item(item, _item_location(item, location)) for item in features)
            return StacItems(location, "ItemCollection", items)
        if kind == "Collection":
            collection = pystac.Collection.from_dict(dict(document), preserve_dict=True)
            hrefs = [resolve_href(link.href, location) for link in collection.get_links("item")]
            return StacItems(location, "Collection",
                             tuple(item_of(read_document(href), href) for href in hrefs))
    except (pystac.STACError, pystac.STACTypeError, KeyError, TypeError, ValueError,
            AttributeError) as error:
        raise StacError(f"{shown} is not a readable STAC {kind}: {type(error).__name__}: "
                        f"{error}") from None
    raise StacError(f"{shown} is not a STAC Item, ItemCollection or Collection: its type is "
                    f"{kind!r}")


def _item_location(item: Any, collection: RasterLocation) -> RasterLocation:
    """Where an ItemCollection's Item is, for its relative hrefs: its ``self`` link when it has
    an absolute one, else the ItemCollection's own location."""
    link = item.get_single_link("self")
    href = link.href if link is not None else None
    if href and (is_address(href) or os.path.isabs(href)):
        return href if is_address(href) else Path(href)
    return collection


def resolve_href(href: str, base: RasterLocation) -> RasterLocation:
    """An asset's href as a raster location: an address as written; a relative href against the
    Item's ``base`` location (an address keeps its credentials, which GDAL sends)."""
    if is_address(href):
        return href
    if not is_address(base):
        return Path(os.path.normpath(Path(base).parent / href))
    text = os.fspath(base)
    if text.startswith("/vsi"):
        return posixpath.normpath(posixpath.join(posixpath.dirname(text), href))
    return urljoin(text, href)


def _bands(fields: Mapping[str, Any]) -> tuple[StacBand, ...]:
    """What an asset's fields say of its bands: ``eo:bands`` and ``raster:bands`` (STAC 1.0
    extensions, merged band by band), or STAC 1.1's ``bands``."""
    eo = _band_list(fields.get("eo:bands"))
    raster = _band_list(fields.get("raster:bands"))
    unified = _band_list(fields.get("bands"))
    bands = []
    for index in range(max(len(eo), len(raster), len(unified))):
        merged = {**_at(unified, index), **_at(eo, index), **_at(raster, index)}
        bands.append(StacBand(
            _text(merged.get("name")),
            _text(merged.get("common_name", merged.get("eo:common_name"))),
            _number(merged.get("nodata")), _text(merged.get("data_type")),
            _number(merged.get("scale")), _number(merged.get("offset"))))
    return tuple(bands)


def _band_list(value: Any) -> list[Mapping[str, Any]]:
    return [band for band in value if isinstance(band, Mapping)] if isinstance(value, list) else []


def _at(bands: list[Mapping[str, Any]], index: int) -> Mapping[str, Any]:
    return bands[index] if index < len(bands) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    """A number of the Item: JSON numbers, and the texts ``nan``, ``inf``, ``-inf`` that
    ``raster:bands`` allows for nodata."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf", "+inf"):
        return float(value.strip())
    return None


def assets_source(assets: Sequence[StacAsset], resampling: str = "nearest",
                  scale: bool = False) -> Source:
    """The source of ``assets`` stacked as bands, in order, on the first one's grid (as
    ``{bands: [...]}`` of their files), with what the Item declares of their pixels."""
    declared = tuple(asset.declared(scale) for asset in assets)
    if not any(values.nodata is not None or values.scaled for values in declared):
        declared = ()
    return Source(tuple(os.fspath(asset.href) for asset in assets), None, resampling, declared)



#: A bbox: west, south, east, north in WGS84 degrees.
BBox = tuple[float, float, float, float]
#: An interval of time: its start and end (UTC; None: open).
Interval = tuple[dt.datetime | None, dt.datetime | None]
#: The orders in which a mosaic's Items fill pixels.
ORDERS = ("newest", "oldest")


def parse_interval(text: str) -> Interval:
    """``2024-06-01/2024-06-30`` (either end ``..`` or empty: open), or one datetime or date,
    as an interval; a date alone stands for its whole day (``2024-06-30`` ends at its last
    instant). A text that is neither is a ``ValueError`` saying what was expected."""
    parts = text.split("/")
    if len(parts) > 2 or not text.strip() or all(p.strip() in ("", "..") for p in parts):
        raise ValueError(f"expected a datetime or an interval like '2024-06-01/2024-06-30' "
                         f"(an open end '..'), found {text!r}")
    if len(parts) == 1:
        return _moment_text(parts[0], False), _moment_text(parts[0], True)
    start, end = _moment_text(parts[0], False), _moment_text(parts[1], True)
    if start is not None and end is not None and start > end:
        raise ValueError(f"the interval {text!r} ends before it starts")
    return start, end


def _moment_text(text: str, end: bool) -> dt.datetime | None:
    """One end of an interval (None: open); a date alone is its day's first instant, or with
    ``end`` its last."""
    text = text.strip()
    if text in ("", ".."):
        return None
    try:
        if len(text) == 10:
            day = dt.datetime.combine(dt.date.fromisoformat(text), dt.time(),
                                      tzinfo=dt.timezone.utc)
            return day + dt.timedelta(days=1, microseconds=-1) if end else day
        return _utc(dt.datetime.fromisoformat(text.replace("z", "Z")))
    except ValueError:
        raise ValueError(f"{text!r} is not a date (2024-06-01) or a datetime "
                         f"(2024-06-01T10:30:00Z)") from None


def _moment(value: Any) -> dt.datetime | None:
    """A datetime of an Item's properties (RFC 3339 text), or None."""
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    """A datetime in UTC (a naive one taken as UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)


def select_items(items: Sequence[StacItem], bbox: BBox | None, interval: Interval | None,
                 order: str = "newest") -> tuple[StacItem, ...]:
    """The Items that intersect ``bbox`` (edges touching count; an Item without a bbox does not
    intersect one) and whose datetime, or start/end range, meets ``interval`` (an Item without
    one does not), in the order a mosaic fills pixels: ``newest`` first (by datetime, or end of
    range) or ``oldest`` first (by datetime, or start of range); Items of one time keep the
    document's order, and Items without a time come last."""
    kept = [item for item in items
            if (bbox is None or _intersects(item.bbox, bbox))
            and (interval is None or _meets(item, interval))]
    timed = [item for item in kept if item.start is not None or item.end is not None]
    untimed = [item for item in kept if item.start is None and item.end is None]
    if order == "oldest":
        timed.sort(key=lambda item: item.start or item.end)  # type: ignore[arg-type,return-value]
    else:
        timed.sort(key=lambda item: item.end or item.start, reverse=True)  # type: ignore
    return (*timed, *untimed)


def _intersects(box: BBox | None, bbox: BBox) -> bool:
    if box is None:
        return False
    west, south, east, north = box
    return west <= bbox[2] and bbox[0] <= east and south <= bbox[3] and bbox[1] <= north


def _meets(item: StacItem, interval: Interval) -> bool:
    first, last = item.start or item.end, item.end or item.start
    if first is None or last is None:
        return False
    start, end = interval
    return (start is None or last >= start) and (end is None or first <= end)
