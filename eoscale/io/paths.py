"""Where a raster is: a local file (a ``Path``) or an address GDAL reads as it is written (a ``str``).

An address has a scheme (``https://``, ``http://``, ``s3://``, ``gs://``, ``az://``...) or names
one of GDAL's virtual file systems (``/vsicurl/``, ``/vsizip/``, ``/vsis3/``...). Such text is
never turned into a ``Path`` (that would make ``s3://b/k`` into ``s3:/b/k``); rasterio opens
``https://`` and ``s3://`` through ``/vsicurl/`` and ``/vsis3/`` itself. Credentials never show:
:func:`redact` removes ``user:password@`` from every address written in a message.

GDAL keeps its HTTP connections open between reads. A worker process forked from a process that
holds one would share its socket with its parent and its siblings, and read their answers
("Invalid status line", or worse, another window's bytes): :func:`worker_start_method` starts
the workers of a run that reads an address with ``forkserver`` (fresh processes) instead.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from eoscale.errors import ConfigError

RasterLocation = Path | str

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def is_address(text: str | os.PathLike) -> bool:
    """Whether ``text`` is read by GDAL as written: a URL with a scheme, or a ``/vsi...`` path."""
    if isinstance(text, Path):
        return False
    text = os.fspath(text)
    return bool(_SCHEME.match(text)) or text.startswith("/vsi")


def raster_location(text: str | os.PathLike, base: Path) -> RasterLocation:
    """An address as written; a local path with ``~`` expanded, absolute against ``base``."""
    if is_address(text):
        return os.fspath(text)
    return Path(os.path.normpath(base / os.path.expanduser(os.fspath(text))))


def redact(text: str) -> str:
    """``text`` with the ``user:password@`` part of every URL in it removed."""
    return _USERINFO.sub("", text)


def location_name(location: str | os.PathLike) -> str:
    """The file name of a location, for messages: ``b.tif`` for ``https://a/b.tif?sig=...``."""
    if is_address(location):
        text = os.fspath(location)
        path = urlsplit(text).path if _SCHEME.match(text) else text
        return path.rstrip("/").rsplit("/", 1)[-1] or redact(text)
    return Path(location).name


def worker_start_method(locations: Iterable[str | os.PathLike], requested: str | None
                        ) -> str | None:
    """The start method of workers that read ``locations``: ``requested``, else the default,
    except that workers reading an address are never forked (see the module's docstring)."""
    addresses = [os.fspath(location) for location in locations if is_address(location)]
    if not addresses:
        return requested
    if requested == "fork":
        raise ConfigError(f"workers reading {redact(addresses[0])} cannot be forked: they would "
                          "share GDAL's open connections; use forkserver or spawn")
    if requested is None and "forkserver" in mp.get_all_start_methods():
        return "forkserver"
    return requested
