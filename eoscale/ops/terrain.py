"""Terrain from a DEM by Horn's method, as gdaldem: ``slope``, ``aspect`` and ``hillshade``.

Gradients are in elevation units per metre on projected CRSs (the CRS's linear unit converted to
metres) and on geographic ones, where the metres in a degree are taken on the WGS 84 ellipsoid at
each row's latitude. A row's latitude comes from the whole image's transform and the row's index
in the image (the tile's read window offset from :func:`eoscale.engine.tile_context`, or 0 on a
whole image), so tiles compute bit-identical scales. Output is nodata on the image's outer ring
of pixels (as gdaldem without ``-compute_edges``) and wherever any pixel of the 3x3 is nodata.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from eoscale.engine.tasks import tile_context
from eoscale.errors import ConfigError
from eoscale.ops._common import Params, declare, nodata_of, single_input, valid_mask, with_nodata

#: WGS 84 semi-major axis (metres) and first eccentricity squared.
WGS84_A = 6378137.0
WGS84_E2 = 6.694379990141317e-3


def metres_per_degree(latitude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Metres in a degree of longitude and in a degree of latitude at ``latitude`` (WGS 84)."""
    phi = np.radians(latitude)
    w = 1.0 - WGS84_E2 * np.sin(phi) ** 2
    east = math.pi / 180.0 * WGS84_A * np.cos(phi) / np.sqrt(w)
    north = math.pi / 180.0 * WGS84_A * (1.0 - WGS84_E2) / w ** 1.5
    return east, north


def _steps(op: str, profile: Mapping[str, Any], height: int) -> tuple[np.ndarray, np.ndarray]:
    """Signed metres east per column step and north per row step, for the window's inner rows."""
    transform = Affine(*profile["transform"][:6])
    if transform.b or transform.d:
        raise ConfigError(f"{op}: rotated or sheared geotransforms are not supported")
    crs = CRS.from_user_input(profile["crs"]) if profile.get("crs") else None
    if crs is not None and crs.is_geographic:
        context = tile_context()
        first = context.read.row_off if context is not None else 0
        rows = np.arange(first + 1, first + height - 1)
        east, north = metres_per_degree(transform.f + transform.e * (rows + 0.5))
        return (transform.a * east)[:, np.newaxis], (transform.e * north)[:, np.newaxis]
    factor = crs.linear_units_factor[1] if crs is not None else 1.0
    return np.asarray(transform.a * factor), np.asarray(transform.e * factor)


def _terrain(op: str, arrays: Sequence[np.ndarray], profiles: Sequence[dict],
             compute: Callable[[np.ndarray, np.ndarray], np.ndarray], dtype: str,
             nodata: float) -> np.ndarray:
    """Apply ``compute(dz_east, dz_north)`` (per metre, Horn's 3x3) inside the ring, nodata-aware.

    Pixels where ``compute`` gives a non-finite value are nodata too.
    """
    single_input(op, arrays)
    z = arrays[0].astype(np.float64)
    valid = valid_mask(arrays[0], nodata_of(profiles[0]))
    height, width = z.shape[1:]

    def shifted(x: np.ndarray, row: int, col: int) -> np.ndarray:
        return x[:, 1 + row:height - 1 + row, 1 + col:width - 1 + col]

    east, north = _steps(op, profiles[0], height)
    d_col = ((shifted(z, -1, 1) + 2 * shifted(z, 0, 1) + shifted(z, 1, 1))
             - (shifted(z, -1, -1) + 2 * shifted(z, 0, -1) + shifted(z, 1, -1))) / 8.0
    d_row = ((shifted(z, 1, -1) + 2 * shifted(z, 1, 0) + shifted(z, 1, 1))
             - (shifted(z, -1, -1) + 2 * shifted(z, -1, 0) + shifted(z, -1, 1))) / 8.0
    inner_valid = np.logical_and.reduce([shifted(valid, row, col)
                                         for row in (-1, 0, 1) for col in (-1, 0, 1)])
    with np.errstate(all="ignore"):
        inner = compute(d_col / east, d_row / north)
    inner_valid &= np.isfinite(inner)
    values = np.zeros(z.shape)
    ok = np.zeros(z.shape, dtype=bool)
    values[:, 1:-1, 1:-1] = inner
    ok[:, 1:-1, 1:-1] = inner_valid
    return with_nodata(values, ok, np.dtype(dtype), nodata)


def _z_factor(p: Params) -> float:
    return p.number("z_factor", 1.0, positive=True)


def _slope_settings(params: Mapping[str, Any]) -> tuple[float, str]:
    p = Params("slope", params, ("z_factor", "units"))
    return _z_factor(p), p.choice("units", ("degrees", "percent"), "degrees")


def _float_profile(settings: Callable[[Mapping[str, Any]], Any]) -> Callable[..., dict]:
    def profile(profiles: Sequence[dict], params: Mapping[str, Any]) -> dict:
        settings(params)
        return {**profiles[0], "dtype": "float32", "nodata": math.nan}

    return profile


@declare(margin=1, profile=_float_profile(_slope_settings))
def slope(arrays: Sequence[np.ndarray], profiles: Sequence[dict],
          params: Mapping[str, Any]) -> np.ndarray:
    """Slope in ``units`` (``degrees`` or ``percent``) with ``z_factor``; float32, NaN nodata."""
    z_factor, units = _slope_settings(params)

    def compute(east: np.ndarray, north: np.ndarray) -> np.ndarray:
        rise = z_factor * np.hypot(east, north)
        return 100.0 * rise if units == "percent" else np.degrees(np.arctan(rise))

    return _terrain("slope", arrays, profiles, compute, "float32", math.nan)


def _aspect_settings(params: Mapping[str, Any]) -> None:
    Params("aspect", params, ())


@declare(margin=1, profile=_float_profile(_aspect_settings))
def aspect(arrays: Sequence[np.ndarray], profiles: Sequence[dict],
           params: Mapping[str, Any]) -> np.ndarray:
    """Azimuth the slope faces, degrees clockwise from north in [0, 360); flat is nodata (NaN)."""
    _aspect_settings(params)

    def compute(east: np.ndarray, north: np.ndarray) -> np.ndarray:
        azimuth = np.degrees(np.arctan2(-east, -north)) % 360.0
        return np.where((east == 0) & (north == 0), np.nan, azimuth)

    out = _terrain("aspect", arrays, profiles, compute, "float32", math.nan)
    out[out == 360.0] = 0.0  # a tiny negative angle modulo 360, rounded up
    return out


def _hillshade_settings(params: Mapping[str, Any]) -> tuple[float, float, float]:
    p = Params("hillshade", params, ("azimuth", "altitude", "z_factor"))
    altitude = p.number("altitude", 45.0)
    if not 0.0 <= altitude <= 90.0:
        raise p.error("altitude", "a number of degrees from 0 to 90", altitude)
    return p.number("azimuth", 315.0), altitude, _z_factor(p)


def _hillshade_profile(profiles: Sequence[dict], params: Mapping[str, Any]) -> dict:
    _hillshade_settings(params)
    return {**profiles[0], "dtype": "uint8", "nodata": 0}


@declare(margin=1, profile=_hillshade_profile)
def hillshade(arrays: Sequence[np.ndarray], profiles: Sequence[dict],
              params: Mapping[str, Any]) -> np.ndarray:
    """Shaded relief as gdaldem: uint8 1..255 (1 + 254 cos of the light's incidence), 0 nodata.

    ``azimuth`` (degrees clockwise from north, default 315) and ``altitude`` (degrees above the
    horizon, default 45) place the light; ``z_factor`` scales elevations.
    """
    azimuth, altitude, z_factor = _hillshade_settings(params)
    sun_east, sun_north = np.sin(np.radians(azimuth)), np.cos(np.radians(azimuth))
    sin_alt, cos_alt = np.sin(np.radians(altitude)), np.cos(np.radians(altitude))

    def compute(east: np.ndarray, north: np.ndarray) -> np.ndarray:
        toward_sun = -(east * sun_east + north * sun_north)
        cosine = ((sin_alt + cos_alt * z_factor * toward_sun)
                  / np.sqrt(1.0 + z_factor ** 2 * (east ** 2 + north ** 2)))
        return np.floor(np.where(cosine <= 0, 1.0, 1.0 + 254.0 * cosine) + 0.5)

    return _terrain("hillshade", arrays, profiles, compute, "uint8", 0)
