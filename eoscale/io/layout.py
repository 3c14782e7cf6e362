"""How an image output is laid out: plain GeoTIFF, with or without overviews, or a Cloud
Optimized GeoTIFF (COG).

Every image is first written as a plain tiled GeoTIFF (by one writer, see
:func:`eoscale.io.raster.write_geotiff`); :func:`image_file` then adds overviews to it in place,
or, for a COG, builds it from that GeoTIFF with GDAL's COG driver (``CreateCopy``) and removes the
intermediate file. Overview resampling defaults to ``nearest`` for integer images (class maps and
masks keep their values) and ``average`` for floats (what users expect of a continuous field);
nodata pixels take no part in an average.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import OverviewResampling, Resampling

from eoscale.io.raster import temporary_path, writing

ImageFormat = Literal["GTiff", "COG"]
#: The formats an image output can be written in (GDAL driver names).
FORMATS: tuple[ImageFormat, ...] = ("GTiff", "COG")
#: The resampling methods overviews can be built with.
RESAMPLINGS: tuple[str, ...] = tuple(method.name for method in OverviewResampling)
#: Creation options of a COG unless the user sets their own (COG driver names, lower case).
DEFAULT_COG_OPTIONS: dict[str, Any] = {"compress": "deflate", "bigtiff": "if_safer"}
#: The intermediate GeoTIFF a COG is made from: quick to write, read once.
_INTERMEDIATE_OPTIONS: dict[str, Any] = {"compress": "deflate", "zlevel": 1}


@dataclass(frozen=True)
class ImageLayout:
    """An image output's format, overview factors (empty: none, or automatic for a COG) and
    overview resampling (None: by dtype, see :func:`overview_resampling`)."""

    format: ImageFormat = "GTiff"
    overviews: tuple[int, ...] = ()
    resampling: str | None = None


def overview_resampling(layout: ImageLayout, dtype: np.dtype | str) -> str:
    """The layout's resampling, else ``average`` for float images and ``nearest`` for others."""
    if layout.resampling is not None:
        return layout.resampling
    return "average" if np.dtype(dtype).kind in "fc" else "nearest"


def cog_options(options: Mapping[str, Any] | None, resampling: str, threads: int
                ) -> dict[str, Any]:
    """The COG driver's creation options: the defaults, the user's over them, the resampling."""
    kwargs: dict[str, Any] = dict(DEFAULT_COG_OPTIONS)
    kwargs["resampling"] = resampling
    kwargs.update({str(key).lower(): value for key, value in (options or {}).items()})
    if threads > 1 and "num_threads" not in kwargs:
        kwargs["num_threads"] = threads
    return kwargs


def tiff_options(layout: ImageLayout, options: Mapping[str, Any] | None
                 ) -> Mapping[str, Any] | None:
    """The creation options the plain GeoTIFF of an image output is written with: the user's,
    or for a COG those of its intermediate GeoTIFF (the user's go to the COG driver)."""
    return _INTERMEDIATE_OPTIONS if layout.format == "COG" else options


@contextlib.contextmanager
def image_file(path: Path, layout: ImageLayout, options: Mapping[str, Any] | None, *,
               dtype: np.dtype | str, threads: int = 1,
               display: str | os.PathLike | None = None,
               ) -> Iterator[tuple[Path, Mapping[str, Any] | None]]:
    """Where to write the plain GeoTIFF of an image output, and with which creation options.

    The caller writes it inside the ``with`` block; on leaving, the overviews are built or the
    COG is made at ``path``. A COG's intermediate GeoTIFF is removed whatever happens.
    """
    resampling = overview_resampling(layout, dtype)
    if layout.format == "GTiff":
        yield path, tiff_options(layout, options)
        if layout.overviews:
            _build_overviews(path, layout.overviews, resampling, display or path)
        return
    intermediate = temporary_path(path)
    try:
        yield intermediate, tiff_options(layout, options)
        if layout.overviews:
            _build_overviews(intermediate, layout.overviews, resampling, display or path)
        with writing(path, display, "cannot write as COG"):
            rasterio.shutil.copy(intermediate, path, driver="COG",
                                 **cog_options(options, resampling, threads))
    finally:
        with contextlib.suppress(FileNotFoundError):
            intermediate.unlink()


def _build_overviews(path: Path, factors: tuple[int, ...], resampling: str,
                     display: str | os.PathLike) -> None:
    with writing(path, display, f"cannot build overviews {list(factors)}"), \
            rasterio.open(path, "r+") as dataset:
        dataset.build_overviews(list(factors), Resampling[resampling])
        dataset.update_tags(ns="rio_overview", resampling=resampling)
