"""Inputs loaded into shared memory in part: only the windows that the tiles still to compute
read, the rest when (if ever) something needs it.

A resumed run (:mod:`eoscale.pipeline.resume`) computes only the tiles its killed predecessor
did not record; loading its whole input again would decode every block of the file for a
fraction of the tiles (on the benchmarks' 8192 x 8192 chain killed at 60 %, the load was about a
fifth of the resume's wall time). :meth:`~eoscale.engine.core.Engine.load` given the windows a
step's remaining tiles read loads the load-tiles (block-aligned windows) that meet them, and
keeps the others pending here. Whatever then reads the raster completes what it needs first:
a map the windows of the tiles it really runs (its recorded tiles may be fewer than the caller
thought, a part file gone), anything else (a map's first tile computed to learn its profile, a
reduce, a write) the whole raster. So a wrong guess costs a later load, never a wrong pixel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rasterio.windows import Window

from eoscale.engine.tasks import LoadJob

#: The engine's ``_execute``: runs a phase's tiles (here a load job's).
Execute = Callable[..., None]


def meets(window: Window, others: Iterable[Window]) -> bool:
    """Whether ``window`` shares a pixel with any of ``others``."""
    top, left = window.row_off, window.col_off
    bottom, right = top + window.height, left + window.width
    return any(other.row_off < bottom and top < other.row_off + other.height
               and other.col_off < right and left < other.col_off + other.width
               for other in others)


class PendingLoads:
    """The load-tiles not loaded yet, by the segment of the shared raster they belong to;
    ``execute`` runs a load job's tiles (the engine's load phase)."""

    def __init__(self, execute: Execute):
        self._execute = execute
        self.pending: dict[str, tuple[LoadJob, set[int]]] = {}

    def start(self, ref: Any, job: LoadJob, windows: Sequence[Window] | None) -> None:
        """Load the load-tiles of ``job`` that meet ``windows`` (None: all of them); keep the
        others pending for the raster of ``ref``."""
        indices = range(len(job.tiles))
        if windows is None:
            self.execute(job, list(indices))
            return
        wanted = [i for i in indices if meets(job.tiles[i].core, windows)]
        self.execute(job, wanted)
        left = set(indices) - set(wanted)
        if left:
            self.pending[_key(ref)] = (job, left)

    def complete(self, refs: Iterable[Any], windows: Sequence[Window] | None) -> None:
        """Load what the rasters of ``refs`` still miss of ``windows`` (None: all of it)."""
        for key in dict.fromkeys(_key(ref) for ref in refs):
            if key not in self.pending:
                continue
            job, left = self.pending[key]
            wanted = sorted(i for i in left
                            if windows is None or meets(job.tiles[i].core, windows))
            if wanted:
                self.execute(job, wanted)
            left -= set(wanted)
            if not left:
                del self.pending[key]

    def execute(self, job: LoadJob, indices: list[int]) -> None:
        """Load tiles ``indices`` of ``job``, as a load phase named after its raster."""
        self._execute("load", job.step.removeprefix("load "), job, indices, lambda *_: None)

    def forget(self, ref: Any) -> None:
        """A raster released: nothing of it is loaded any more."""
        self.pending.pop(_key(ref), None)


def _key(ref: Any) -> str:
    """A shared raster's segment (a file raster has none: never loaded, never pending)."""
    return getattr(ref, "segment", "")
