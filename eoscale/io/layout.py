"""How an image output is laid out: plain GeoTIFF, with or without overviews, or a Cloud
Optimized GeoTIFF (COG).

A map whose workers encode its output makes the whole file in one pass, overviews included
(:mod:`eoscale.engine.overviews`, offered a :class:`~eoscale.io.cog.Pyramid` by
:func:`image_file`). Any other image is first written as a plain tiled GeoTIFF;
:func:`image_file` then adds overviews to it, or, for a COG, builds it from that GeoTIFF with
GDAL's COG driver (``CreateCopy``) and removes the intermediate file. Overview resampling
defaults to ``nearest`` for integer images (class maps and masks keep their values) and
``average`` for floats (what users expect of a continuous field), by the dtype the image really
has (read from the written file: a plan may learn it only from the first tile); nodata pixels
take no part in an average.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import OverviewResampling, Resampling

from eoscale.io.cog import RESAMPLINGS as COMPUTED_RESAMPLINGS
from eoscale.io.cog import Pyramid, power_of_two_levels
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
    or for a COG those of its intermediate GeoTIFF (the user's go to the COG driver), in the
    COG's blocks (``blocksize``): a step tiled for the one is tiled for the other, and the plan
    judges its tiles by the blocks the workers write."""
    if layout.format != "COG":
        return options
    user = {str(key).lower(): value for key, value in (options or {}).items()}
    if not user.get("blocksize"):
        return _INTERMEDIATE_OPTIONS
    block = int(str(user["blocksize"]))
    return {**_INTERMEDIATE_OPTIONS, "blockxsize": block, "blockysize": block}


@dataclass(frozen=True)
class ImageTarget:
    """Where to write an image output's pixels (``path``, a plain GeoTIFF with creation
    ``options``), and, when it has overviews or is a COG, the whole file a writer may make
    instead, overviews included (``pyramid``: see :func:`image_file`)."""

    path: Path
    options: Mapping[str, Any] | None
    pyramid: Pyramid | None = None


def pyramid_for(path: Path, layout: ImageLayout, options: Mapping[str, Any] | None
                ) -> Pyramid | None:
    """The file with overviews a writer may make at ``path`` itself (overview factors 2, 4,
    8...; a COG's automatic ones; resampling nearest or average), or None."""
    if layout.format == "COG":
        levels = power_of_two_levels(layout.overviews) if layout.overviews else None
        if layout.overviews and levels is None:
            return None
        user = {str(key).lower(): value for key, value in (options or {}).items()}
        cog = {**DEFAULT_COG_OPTIONS, **user}
        if any(key in cog for key in ("overview_count", "resampling", "overview_resampling")):
            return None  # the driver's own overview options: GDAL makes them
        pyramid_options: Mapping[str, Any] = cog
    else:
        levels = power_of_two_levels(layout.overviews)
        if levels is None:
            return None
        pyramid_options = dict(options or {})
    if layout.resampling is not None and layout.resampling not in COMPUTED_RESAMPLINGS:
        return None
    return Pyramid(path, layout.format, pyramid_options, levels, layout.resampling)


@contextlib.contextmanager
def image_file(path: Path, layout: ImageLayout, options: Mapping[str, Any] | None, *,
               threads: int = 1, display: str | os.PathLike | None = None,
               apart: Apart | None = None) -> Iterator[ImageTarget]:
    """Where to write an image output, inside the ``with`` block.

    A plain GeoTIFF without overviews is written at ``path``. Otherwise the target offers the
    writer to make the whole file at ``path`` (its ``pyramid``, see
    :mod:`eoscale.engine.overviews`); a writer that does not writes the plain GeoTIFF at the
    target's ``path``, a temporary one, and on leaving the block its overviews are built and it
    is moved to ``path``, or the COG is made from it at ``path``, with the resampling that the
    file's own dtype calls for, by ``apart`` (GDAL's long passes: in a process a signal
    stops at once; else here). The temporary file is removed whatever happens.
    """
    run = apart or _here
    if layout.format == "GTiff" and not layout.overviews:
        yield ImageTarget(path, options)
        return
    intermediate = temporary_path(path)
    cog = layout.format == "COG"
    try:
        yield ImageTarget(intermediate, tiff_options(layout, options),
                          pyramid_for(path, layout, options))
        if not intermediate.exists():  # the writer made the whole file at path
            return
        with rasterio.open(intermediate) as written:
            resampling = overview_resampling(layout, written.dtypes[0])
            pixels = written.count * written.height * written.width
        if layout.overviews:
            run(_build_overviews, intermediate, layout.overviews, resampling, display or path,
                name=f"overviews of {display or path}", pixels=pixels)
        if not cog:
            os.replace(intermediate, path)
            return
        run(_make_cog, intermediate, path, cog_options(options, resampling, threads),
            display or path, name=f"COG of {display or path}", pixels=pixels)
    finally:
        with contextlib.suppress(FileNotFoundError):
            intermediate.unlink()
        with contextlib.suppress(FileNotFoundError):  # a pass ended mid-way (GDAL's own file)
            Path(f"{path}.ovr.tmp").unlink()


#: Runs GDAL's pass ``fn(*args)`` (named ``name``, over a file of ``pixels``) to the end:
#: here, or in a process a signal stops at once (:meth:`eoscale.engine.core.Engine.apart`).
Apart = Callable[..., None]


def _here(fn: Callable[..., None], *args: Any, name: str = "", pixels: int = 0) -> None:
    fn(*args)


def _make_cog(intermediate: Path, path: Path, options: Mapping[str, Any],
              display: str | os.PathLike) -> None:
    with writing(path, display, "cannot write as COG"):
        rasterio.shutil.copy(intermediate, path, driver="COG", **options)


def _build_overviews(path: Path, factors: tuple[int, ...], resampling: str,
                     display: str | os.PathLike) -> None:
    with writing(path, display, f"cannot build overviews {list(factors)}"), \
            rasterio.open(path, "r+") as dataset:
        dataset.build_overviews(list(factors), Resampling[resampling])
        dataset.update_tags(ns="rio_overview", resampling=resampling)
