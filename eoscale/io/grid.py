"""One grid check, used by validation before a run and by the engine before a step.

Two rasters are on one grid when they have the same size, the same pixel size, rotation and
origin within :data:`GRID_TOLERANCE` of a pixel, and the same CRS. A raster without a transform or a
CRS (an array handed to the engine) is compared on what it has.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from affine import Affine

#: How far two grids' transforms may differ, as a share of a pixel, and still be one grid
#: (coordinates written with a few digits fewer, or converted between units, differ that little).
GRID_TOLERANCE = 1e-6


def crs_name(crs: Any) -> str:
    """``EPSG:32631``, or the start of the WKT for a CRS without an EPSG code."""
    if crs is None:
        return "none"
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else f"'{crs.to_string()[:60]}'"


def grid_differences(first: Mapping[str, Any], other: Mapping[str, Any]) -> list[str]:
    """How ``other``'s grid differs from ``first``'s (size, pixel size, rotation, origin, CRS),
    as phrases for a message; empty when they are one grid."""
    differences = []
    if (other["width"], other["height"]) != (first["width"], first["height"]):
        differences.append(f"{other['width']} x {other['height']} pixels, not "
                           f"{first['width']} x {first['height']}")
    a, b = _affine(other.get("transform")), _affine(first.get("transform"))
    if a is not None and b is not None:
        tolerance = GRID_TOLERANCE * (min(abs(b.a), abs(b.e)) or 1.0)
        for label, terms in (("pixel size", ("a", "e")), ("rotation", ("b", "d")),
                             ("origin", ("c", "f"))):
            if any(abs(getattr(a, term) - getattr(b, term)) > tolerance for term in terms):
                mine, theirs = (tuple(getattr(t, term) for term in terms) for t in (a, b))
                differences.append(f"{label} ({mine[0]:.10g}, {mine[1]:.10g}), not "
                                   f"({theirs[0]:.10g}, {theirs[1]:.10g})")
    crs, first_crs = other.get("crs"), first.get("crs")
    if crs is not None and first_crs is not None and crs != first_crs:
        differences.append(f"CRS {crs_name(crs)}, not {crs_name(first_crs)}")
    return differences


def _affine(transform: Any) -> Affine | None:
    """A transform as an :class:`Affine` (profiles of arrays may hold six-number tuples)."""
    if transform is None or isinstance(transform, Affine):
        return transform
    return Affine(*tuple(transform)[:6])
