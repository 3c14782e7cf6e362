"""Rasters that live in files rather than in memory.

Read window by window from their file, never loaded whole: for an input that a single step reads
without margin, so each worker decodes its own tiles as it computes them. A :class:`FileRef` is the
picklable description (its path, shape, dtype, profile); a :class:`FileRaster` is it opened in a
process: ``read(window)`` decodes that window (a new array, read-only like every input;
``read_private`` leaves it writable), and ``release()`` closes the file.

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
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from eoscale.engine.shared import RasterRef
from eoscale.errors import RasterError
from eoscale.io.paths import redact
from eoscale.io.raster import read_profile


@dataclass(frozen=True)
class FileRef(RasterRef):
    """A raster file, described as a :class:`RasterRef` whose pixels stay in the file."""

    path: str = ""

    @classmethod
    def of(cls, path: str | os.PathLike, name: str = "") -> FileRef:
        profile = read_profile(path)
        shape = (int(profile["count"]), int(profile["height"]), int(profile["width"]))
        return cls("", shape, np.dtype(profile["dtype"]).name, profile, name or Path(path).stem,
                   str(path))

    def open(self, *, readonly: bool = True) -> FileRaster:
        if not readonly:
            raise ValueError(f"'{self.name}' is read from its file: it cannot be written")
        return FileRaster(self)


class FileRaster:
    """A raster file opened for windowed reads (the file is opened at the first read)."""

    def __init__(self, ref: FileRef):
        self.ref = ref
        self._dataset: Any = None
        self._closed = False

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def profile(self) -> dict[str, Any]:
        return dict(self.ref.profile)

    @property
    def released(self) -> bool:
        return self._closed

    def read(self, window: Window) -> np.ndarray:
        array = self.read_private(window)
        array.flags.writeable = False
        return array

    def read_private(self, window: Window) -> np.ndarray:
        """The window decoded into a new array, which the caller may write into."""
        try:
            if self._dataset is None:
                self._dataset = rasterio.open(self.ref.path)
            array = self._dataset.read(window=window)
        except RasterioError as exc:
            raise RasterError(f"{redact(self.ref.path)}: cannot read rows {window.row_off}:"
                              f"{window.row_off + window.height}, cols {window.col_off}:"
                              f"{window.col_off + window.width}: {redact(str(exc))}") from None
        return array

    def release(self) -> None:
        self._closed = True
        dataset, self._dataset = self._dataset, None
        if dataset is not None:
            dataset.close()

    def __repr__(self) -> str:
        return f"FileRaster({self.ref.name!r}, {self.ref.path!r})"


@dataclass(frozen=True)
class OutputFile:
    """Where a map output is written as its tiles are computed: a GeoTIFF at ``path`` with GDAL
    creation ``options`` over the defaults; messages name ``display``."""

    path: Path
    options: Mapping[str, Any] | None = None
    display: str | None = None


class WrittenRaster:
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
    def name(self) -> str:
        return self.ref.name

    @property
    def profile(self) -> dict[str, Any]:
        return dict(self.ref.profile)

    @property
    def released(self) -> bool:
        return True

    def release(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"WrittenRaster({self.ref.name!r}, {str(self.path)!r})"
