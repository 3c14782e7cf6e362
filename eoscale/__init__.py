"""eoscale: run satellite-image processing chains on every core, tile-exact, from shared memory.

The library: :class:`eoscale.engine.Engine` (shared rasters, map and reduce over tiles) and the
pipeline API :func:`load`, :func:`validate`, :func:`plan` and :func:`run`; the command line is
``eoscale``.
"""

__version__ = "2.0.0.dev0"

from eoscale.api import load, plan, run, validate  # noqa: E402
from eoscale.engine import Engine, Tiling, tile_context  # noqa: E402

__all__ = ["Engine", "Tiling", "__version__", "load", "plan", "run", "tile_context", "validate"]
