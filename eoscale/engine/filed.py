"""Rasters that live in files rather than in memory.

Read window by window from their files, never loaded whole: for an input that a single step reads
without margin, so each worker decodes its own tiles as it computes them. A :class:`FileRef` is the
picklable description (its :class:`~eoscale.io.sources.Source`, shape, dtype, profile); a
:class:`FileRaster` is it opened in a process: ``read(window)`` decodes that window on the working
grid (a new array, read-only like every input; ``read_private`` leaves it writable; files not on
that grid are read through a warped view), and ``release()`` closes the files.

Written to their file as their tiles are computed, never held: a map output that no later step
reads (:class:`OutputFile` says where, :class:`WrittenRaster` is what the map gives back).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from eoscale.engine.shared import RasterRef
from eoscale.io.sources import Source, SourceReader


@dataclass(frozen=True)
class FileRef(RasterRef):
    """A raster file (or band files), described as a :class:`RasterRef` whose pixels stay in
    the files."""

    source: Source | None = None

    @property
    def path(self) -> str:
        """The (first) file."""
        return self.source.paths[0] if self.source is not None else ""

    @classmethod
    def of(cls, source: Source | str | os.PathLike, name: str = "") -> FileRef:
        source = Source.of(source)
        profile = source.profile()
        shape = (int(profile["count"]), int(profile["height"]), int(profile["width"]))
        return cls("", shape, np.dtype(profile["dtype"]).name, profile, name or source.name,
                   source)

    def open(self, *, readonly: bool = True) -> FileRaster:
        if not readonly:
            raise ValueError(f"'{self.name}' is read from its file: it cannot be written")
        return FileRaster(self)


class _Described:
    """A raster whose pixels live in a file, known here by its description (``ref``)."""

    ref: RasterRef

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def profile(self) -> dict[str, Any]:
        return dict(self.ref.profile)


class FileRaster(_Described):
    """A raster file opened for windowed reads (the files are opened at the first read)."""

    def __init__(self, ref: FileRef):
        self.ref = ref
        self._reader: SourceReader | None = None
        self._closed = False

    @property
    def released(self) -> bool:
        return self._closed

    def read(self, window: Window) -> np.ndarray:
        array = self.read_private(window)
        array.flags.writeable = False
        return array

    def read_private(self, window: Window) -> np.ndarray:
        """The window decoded into a new array, which the caller may write into; a failure is a
        RasterError naming the file and the window."""
        if self._reader is None:
            assert self.ref.source is not None
            self._reader = self.ref.source.open(self.ref.profile)
        return self._reader.read(window)

    def release(self) -> None:
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def __repr__(self) -> str:
        return f"FileRaster({self.ref.name!r}, {self.ref.path!r})"


@dataclass(frozen=True)
class OutputFile:
    """Where a map output is written as its tiles are computed: a GeoTIFF at ``path`` with GDAL
    creation ``options`` over the defaults; messages name ``display``. ``pyramid``, when the
    output has overviews (or is a COG), offers the map to write the whole file, overviews
    included, elsewhere (:class:`~eoscale.engine.overviews.EncodedPyramid`); ``path`` is then
    written only if it cannot."""

    path: Path
    options: Mapping[str, Any] | None = None
    display: str | None = None
    pyramid: Any = None


class WrittenRaster(_Described):
    """A map output written to its file as it was computed: its description and its path, no
    pixels (no step can read it; it is released from the start)."""

    def __init__(self, ref: RasterRef, path: Path):
        self.ref = ref
        self.path = path

    @classmethod
    def of(cls, profile: Mapping[str, Any], name: str, path: str | os.PathLike) -> WrittenRaster:
        shape = (int(profile["count"]), int(profile["height"]), int(profile["width"]))
        return cls(RasterRef("", shape, np.dtype(profile["dtype"]).name, dict(profile), name),
                   Path(path))

    @property
    def released(self) -> bool:
        return True

    def release(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"WrittenRaster({self.ref.name!r}, {str(self.path)!r})"
