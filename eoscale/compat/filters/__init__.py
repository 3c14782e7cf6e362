"""EOScale 1.0 API: ready-made filters on the 1.0 executors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from eoscale.compat.manager import EOContextManager
from eoscale.compat.types import VirtualPath


@contextlib.contextmanager
def opened(context: EOContextManager, inputs: Sequence[str | Path]) -> Iterator[list[VirtualPath]]:
    """The keys of ``inputs``: file paths are opened, and released when the block ends."""
    paths = dict.fromkeys(item for item in inputs if Path(item).exists())
    keys = {path: context.open_raster(raster_path=str(path)) for path in paths}
    try:
        yield [keys.get(item, item) for item in inputs]
    finally:
        for key in keys.values():
            context.release(key)
