"""The tile/margin engine: shared rasters, tiling, executors, map and reduce."""

from eoscale.engine.core import Engine, default_workers
from eoscale.engine.progress import NoProgress, PhaseReport, Progress
from eoscale.engine.shared import RasterRef, SharedRaster, cleanup_stale_segments
from eoscale.engine.tasks import TileContext, tile_context
from eoscale.engine.tiling import ExplicitPlan, Plan, Tile, Tiling, auto_tile_size, plan_tiles

__all__ = [
    "Engine", "ExplicitPlan", "NoProgress", "PhaseReport", "Plan", "Progress", "RasterRef",
    "SharedRaster", "Tile", "TileContext", "Tiling", "auto_tile_size", "cleanup_stale_segments", "default_workers",
    "plan_tiles", "tile_context",
]
