"""The tile/margin engine: shared rasters, tiling, executors, map and reduce."""

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

#: The former names of the tile layouts (before 2.0's run plan took the word "plan").
Plan = TileLayout
ExplicitPlan = ExplicitLayout

__all__ = [
    "Engine", "ExplicitLayout", "ExplicitPlan", "NoProgress", "PhaseReport", "Plan", "Progress",
    "RasterRef", "SharedRaster", "Tile", "TileContext", "TileLayout", "Tiling", "auto_tile_size",
    "cleanup_stale_segments", "default_workers", "plan_tiles", "tile_context",
]
