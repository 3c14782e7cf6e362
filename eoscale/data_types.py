"""EOScale 1.0 API: the types of the keys of shared resources and of their data."""

from __future__ import annotations

from enum import Enum

#: The key of an image shared by an :class:`~eoscale.manager.EOContextManager` (a plain ``str``).
VirtualPath = str


class DataType(Enum):
    """What a shared resource holds; eoscale 2 shares rasters only."""

    RASTER = 1
    POINTCLOUD = 2
