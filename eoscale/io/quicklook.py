"""Quicklooks: a small RGBA PNG picture of a raster, to look at a result.

The raster is read decimated (nearest neighbour, so a nodata pixel never mixes with a valid one)
to at most ``size`` pixels on its longest side, from its coarsest overview that still has that
many pixels (the full resolution if none has), a row of blocks at a time: each block is decoded
once, however small GDAL's block cache (a run under a small ``--memory`` gives it little). Each shown band is stretched linearly between its
2nd and 98th percentiles over the valid pixels; nodata and NaN pixels are transparent. One band is
drawn through a colour map, three bands as red, green and blue; by default a raster of three or
more bands shows its first three, one of one or two bands its first through the colour map.

The colour maps are matplotlib's (viridis, magma: CC0, by Nathaniel J. Smith, Stefan van der Walt
and Eric Firing), sampled every 8th of their 256 entries and interpolated linearly: within 2/255
of the originals.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from eoscale.errors import RasterError
from eoscale.io.paths import redact
from eoscale.io.raster import Staging, open_raster, writing

#: The longest side of a quicklook, in pixels, unless said otherwise.
QUICKLOOK_SIZE = 1024
#: The percentiles each band is stretched between.
STRETCH = (2.0, 98.0)
#: About how many pixels a band's strip read at once holds (whole rows of blocks).
ROWS_AT_ONCE = 1 << 20

_CONTROL_POINTS = {
    "viridis": "440154 470d60 48186a 482374 472d7b 453781 424086 3e4989 3b528b 375b8d 33638d "
               "2f6b8e 2c728e 297a8e 26828e 23898e 21918c 1f988b 1fa088 22a785 28ae80 32b67a "
               "3fbc73 4ec36b 5ec962 70cf57 84d44b 98d83e addc30 c2df23 d8e219 ece51b fde725",
    "magma": "000004 030312 0a0822 130d34 1d1147 29115a 36106b 440f76 51127c 5d177f 6a1c81 "
             "762181 832681 902a81 9c2e7f aa337d b73779 c43c75 d0416f dc4869 e75263 ef5d5e "
             "f56b5c f9795d fc8961 fd9869 fea772 feb67c fec488 fed395 fde2a3 fcf0b2 fcfdbf",
    "gray": "000000 ffffff",
}
#: The colour maps a one-band quicklook can use.
COLORMAPS: tuple[str, ...] = tuple(_CONTROL_POINTS)


@dataclass(frozen=True)
class QuicklookStyle:
    """How a quicklook looks: its longest side, the colour map of one band, the bands shown
    (1-based: one band, or three for red, green, blue; None for the default)."""

    size: int = QUICKLOOK_SIZE
    colormap: str = "viridis"
    bands: tuple[int, ...] | None = None


def colormap_table(name: str) -> np.ndarray:
    """The 256 x 3 uint8 lookup table of a colour map of :data:`COLORMAPS`."""
    colours = [list(bytes.fromhex(point)) for point in _CONTROL_POINTS[name].split()]
    points = np.array(colours, dtype=float)
    at = np.linspace(0, 255, len(points))
    table = [np.interp(np.arange(256), at, points[:, channel]) for channel in range(3)]
    return np.stack(table, axis=1).round().astype(np.uint8)


def decimated_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(rows, cols) of a picture of at most ``size`` pixels on its longest side, same aspect."""
    scale = min(1.0, size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def shown_bands(count: int, bands: tuple[int, ...] | None) -> tuple[int, ...]:
    """The 1-based bands a quicklook shows: ``bands``, else the first three, else the first."""
    if bands is None:
        return (1, 2, 3) if count >= 3 else (1,)
    if len(bands) not in (1, 3):
        raise RasterError(f"a quicklook shows one band or three (red, green, blue), not "
                          f"{len(bands)}")
    missing = [band for band in bands if not 1 <= band <= count]
    if missing:
        raise RasterError(f"a quicklook cannot show band {missing[0]}: the raster has {count} "
                          f"band{'s' if count > 1 else ''}")
    return tuple(bands)


def stretch(band: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``band`` as uint8, linear between its 2nd and 98th percentiles over ``valid`` pixels."""
    values = band[valid].astype(np.float64)
    if values.size == 0:
        return np.zeros(band.shape, np.uint8)
    low, high = np.percentile(values, STRETCH)
    if high <= low:
        return np.where(band >= high, 255, 0).astype(np.uint8)
    scaled = (band.astype(np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.nan_to_num(scaled), 0, 255).round().astype(np.uint8)


def to_rgba(bands: np.ndarray, valid: np.ndarray, colormap: str = "viridis") -> np.ndarray:
    """A (4, rows, cols) uint8 picture of one band (through ``colormap``) or three (RGB);
    alpha is 255 where ``valid``, 0 elsewhere (where colour is 0 too)."""
    valid = valid & np.all(np.isfinite(bands), axis=0) if bands.dtype.kind == "f" else valid
    if len(bands) == 1:
        rgb = np.moveaxis(colormap_table(colormap)[stretch(bands[0], valid)], -1, 0)
    else:
        rgb = np.stack([stretch(band, valid) for band in bands])
    alpha = np.where(valid, 255, 0).astype(np.uint8)
    return np.concatenate([np.where(valid, rgb, 0).astype(np.uint8), alpha[np.newaxis]])


def render_quicklook(path: str | os.PathLike, style: QuicklookStyle = QuicklookStyle(), *,
                     display: str | os.PathLike | None = None) -> np.ndarray:
    """The (4, rows, cols) RGBA quicklook of a raster (see the module's docstring); errors name
    ``display``, else the raster."""
    name = display or redact(os.fspath(path))
    with open_raster(path) as dataset:
        try:
            bands = shown_bands(dataset.count, style.bands)
        except RasterError as exc:
            raise RasterError(f"{name}: {exc}") from None
        shape = decimated_shape(dataset.height, dataset.width, style.size)
        overviews = len(dataset.overviews(1))
    location = os.fspath(path)
    try:
        level = quicklook_level(location, overviews, shape)
        with rasterio.open(location, **({} if level is None else {"overview_level": level})
                           ) as source:
            data, valid = read_decimated(source, bands, shape)
    except RasterioError as exc:
        raise RasterError(f"{name}: cannot read ({redact(str(exc))})") from None
    return to_rgba(data, valid, style.colormap)


def quicklook_level(path: str | os.PathLike, overviews: int, shape: tuple[int, int]
                    ) -> int | None:
    """The coarsest overview level (0 the finest) of the raster at ``path`` that still has at
    least ``shape`` pixels; None: none has, the full resolution is read."""
    for level in reversed(range(overviews)):
        with rasterio.open(path, overview_level=level) as overview:
            if overview.height >= shape[0] and overview.width >= shape[1]:
                return level
    return None


def nearest_indices(size: int, target: int) -> np.ndarray:
    """The source pixels a nearest-neighbour read of ``size`` pixels into ``target`` takes (each
    target pixel's centre, as GDAL takes them)."""
    return np.minimum(((np.arange(target) + 0.5) * (size / target)).astype(np.int64), size - 1)


def read_decimated(dataset: rasterio.io.DatasetReader, bands: tuple[int, ...],
                   shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``bands`` of ``dataset`` decimated to ``shape`` with nearest neighbour, and where all
    of them are valid: read whole rows of blocks at a time (each block decoded once, whatever
    GDAL's cache holds), only those holding a picked row."""
    rows = nearest_indices(dataset.height, shape[0])
    cols = nearest_indices(dataset.width, shape[1])
    block_rows = dataset.block_shapes[bands[0] - 1][0]
    strip_rows = block_rows * max(1, ROWS_AT_ONCE // (dataset.width * block_rows))
    data = np.empty((len(bands), *shape), dataset.dtypes[bands[0] - 1])
    valid = np.empty(shape, bool)
    strips = rows // strip_rows
    for strip in np.unique(strips):
        picked = np.nonzero(strips == strip)[0]
        top = int(rows[picked[0]]) - int(rows[picked[0]]) % block_rows
        window = Window(0, top, dataset.width, int(rows[picked[-1]]) + 1 - top)
        pixels = dataset.read(bands, window=window)[:, rows[picked] - top][:, :, cols]
        data[:, picked] = pixels
        valid[picked] = _valid(dataset, bands, window, pixels, rows[picked] - top, cols)
    return data, valid


def _valid(dataset: rasterio.io.DatasetReader, bands: tuple[int, ...], window: Window,
           pixels: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Where every band of ``pixels`` (taken at ``rows`` and ``cols`` of ``window``) is valid:
    from the nodata value when that is the mask (no second decoding), else GDAL's masks."""
    flags = {tuple(dataset.mask_flag_enums[band - 1]) for band in bands}
    if flags <= {(MaskFlags.all_valid,)}:
        return np.ones(pixels.shape[1:], bool)
    if flags <= {(MaskFlags.nodata,)} and dataset.nodata is not None:
        nodata = dataset.nodata
        invalid = np.isnan(pixels) if np.isnan(nodata) else pixels == nodata
        return ~np.any(invalid, axis=0)
    masks = dataset.read_masks(bands, window=window)
    return np.all(masks[:, rows][:, :, cols] > 0, axis=0)


def write_png(rgba: np.ndarray, path: str | os.PathLike, *,
              display: str | os.PathLike | None = None) -> Path:
    """Write a (4, rows, cols) uint8 picture as a PNG, without a .aux.xml sidecar."""
    path = Path(path)
    _, height, width = rgba.shape
    with writing(path, display, "cannot write the quicklook"), \
            rasterio.Env(GDAL_PAM_ENABLED="NO"), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="PNG", width=width, height=height, count=4,
                           dtype="uint8") as png:
            png.write(rgba)
    return path


def write_quicklook(source: str | os.PathLike, path: str | os.PathLike,
                    style: QuicklookStyle = QuicklookStyle(), *,
                    display: str | os.PathLike | None = None) -> Path:
    """Write the quicklook of the raster ``source`` as a PNG at ``path`` (errors name
    ``display``)."""
    return write_png(render_quicklook(source, style, display=display), path, display=display)


def save_quicklook(source: str | os.PathLike, path: str | os.PathLike,
                   style: QuicklookStyle = QuicklookStyle(), *, overwrite: bool = False) -> Path:
    """Write the quicklook of ``source`` at ``path`` atomically; an existing file is replaced
    only with ``overwrite``."""
    with Staging(overwrite) as staging:
        write_quicklook(source, staging.stage(path), style, display=path)
        staging.commit()
    return Path(path)
