"""EOScale 1.0's types (``eoscale.data_types``): the keys of shared resources and their kinds."""

from __future__ import annotations

from enum import Enum

#: The key of an image shared by an :class:`~eoscale.compat.manager.EOContextManager` (a ``str``).
VirtualPath = str


class DataType(Enum):
    """What a shared resource holds; eoscale 2 shares rasters only."""

    RASTER = 1
    POINTCLOUD = 2
