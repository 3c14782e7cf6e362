"""The tile/margin engine: shared rasters, tiling, executors, map and reduce.

The public names are imported on first use (PEP 562): a module of the engine that needs little
(``eoscale.engine.progress`` for the command line, ``eoscale.engine.tiling`` for the planner)
does not bring the executors, the pool and rasterio's writers with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eoscale.lazy import lazy_exports

#: The module and the name there of each public name. ``Plan`` and ``ExplicitPlan`` are the former
#: names of the tile layouts (before 2.0's run plan took the word "plan").
_EXPORTS = {
    "Engine": ("eoscale.engine.core", "Engine"),
    "default_workers": ("eoscale.engine.executors", "default_workers"),
    "NoProgress": ("eoscale.engine.progress", "NoProgress"),
    "PhaseReport": ("eoscale.engine.progress", "PhaseReport"),
    "Progress": ("eoscale.engine.progress", "Progress"),
    "RasterRef": ("eoscale.engine.shared", "RasterRef"),
    "SharedRaster": ("eoscale.engine.shared", "SharedRaster"),
    "cleanup_stale_segments": ("eoscale.engine.shared", "cleanup_stale_segments"),
    "TileContext": ("eoscale.engine.tasks", "TileContext"),
    "tile_context": ("eoscale.engine.tasks", "tile_context"),
    "ExplicitLayout": ("eoscale.engine.tiling", "ExplicitLayout"),
    "Tile": ("eoscale.engine.tiling", "Tile"),
    "TileLayout": ("eoscale.engine.tiling", "TileLayout"),
    "Tiling": ("eoscale.engine.tiling", "Tiling"),
    "auto_tile_size": ("eoscale.engine.tiling", "auto_tile_size"),
    "plan_tiles": ("eoscale.engine.tiling", "plan_tiles"),
    "Plan": ("eoscale.engine.tiling", "TileLayout"),
    "ExplicitPlan": ("eoscale.engine.tiling", "ExplicitLayout"),
}

__all__ = [
    "Engine", "ExplicitLayout", "ExplicitPlan", "NoProgress", "PhaseReport", "Plan", "Progress",
    "RasterRef", "SharedRaster", "Tile", "TileContext", "TileLayout", "Tiling", "auto_tile_size",
    "cleanup_stale_segments", "default_workers", "plan_tiles", "tile_context",
]

if TYPE_CHECKING:
    from eoscale.engine.core import Engine
    from eoscale.engine.executors import default_workers
    from eoscale.engine.progress import NoProgress, PhaseReport, Progress
    from eoscale.engine.shared import RasterRef, SharedRaster, cleanup_stale_segments
    from eoscale.engine.tasks import TileContext, tile_context
    from eoscale.engine.tiling import (
        ExplicitLayout,
        Tile,
        TileLayout,
        Tiling,
        auto_tile_size,
        plan_tiles,
    )

    Plan = TileLayout
    ExplicitPlan = ExplicitLayout


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, __all__)
