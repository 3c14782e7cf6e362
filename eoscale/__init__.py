"""eoscale: run satellite-image processing chains on every core, tile-exact, from shared memory.

The library: :class:`eoscale.engine.Engine` (shared rasters, map and reduce over tiles) and the
pipeline API :func:`load`, :func:`validate`, :func:`plan` and :func:`run`; the command line is
``eoscale``.

The public names are imported on first use (PEP 562): ``import eoscale`` alone, as every
``eoscale`` command does for ``__version__``, costs nothing of the engine or the pipeline layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eoscale.lazy import lazy_exports

__version__ = "2.0.0.dev0"

#: The module of each public name, and its name there.
_EXPORTS = {
    "load": ("eoscale.api", "load"), "plan": ("eoscale.api", "plan"),
    "run": ("eoscale.api", "run"), "validate": ("eoscale.api", "validate"),
    "Engine": ("eoscale.engine", "Engine"), "Tiling": ("eoscale.engine", "Tiling"),
    "tile_context": ("eoscale.engine", "tile_context"),
}

__all__ = ["Engine", "Tiling", "__version__", "load", "plan", "run", "tile_context", "validate"]

if TYPE_CHECKING:
    from eoscale.api import load, plan, run, validate
    from eoscale.engine import Engine, Tiling, tile_context


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, __all__)
