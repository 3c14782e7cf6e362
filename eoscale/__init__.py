"""eoscale: run satellite-image processing chains on every core, tile-exact, from shared memory.

The library: :class:`eoscale.engine.Engine` (shared rasters, map and reduce over tiles) and the
pipeline API :func:`load`, :func:`validate`, :func:`plan` and :func:`run`; the command line is
``eoscale``.

The public names are imported on first use (PEP 562): ``import eoscale`` alone, as every
``eoscale`` command does for ``__version__``, costs nothing of the engine or the pipeline layer.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "2.0.0.dev0"

#: The module each public name comes from.
_EXPORTS = {
    "load": "eoscale.api", "plan": "eoscale.api", "run": "eoscale.api",
    "validate": "eoscale.api",
    "Engine": "eoscale.engine", "Tiling": "eoscale.engine", "tile_context": "eoscale.engine",
}

__all__ = ["Engine", "Tiling", "__version__", "load", "plan", "run", "tile_context", "validate"]

if TYPE_CHECKING:
    from eoscale.api import load, plan, run, validate
    from eoscale.engine import Engine, Tiling, tile_context


def __getattr__(name: str) -> Any:
    """A public name, imported from its module; or a submodule (``eoscale.api``), which importing
    the package brought with it before its names were loaded on first use."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups find it without coming here
        return value
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
