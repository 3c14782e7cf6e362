"""EOScale 1.0 API: ``MpTile``, the tile an executor runs a filter on."""

from __future__ import annotations

from collections import namedtuple

from rasterio.windows import Window

#: A tile's core, from (start_x, start_y) to (end_x, end_y) inclusive, and the margins read around
#: it (clipped at the image edges).
MpTile = namedtuple("MpTile", ["start_x", "start_y", "end_x", "end_y",
                               "top_margin", "right_margin", "left_margin", "bottom_margin"])


def read_window(tile: MpTile) -> Window:
    """The window a filter reads for ``tile``: its core grown by its margins."""
    col, row = tile.start_x - tile.left_margin, tile.start_y - tile.top_margin
    return Window(col, row, tile.end_x + tile.right_margin + 1 - col,
                  tile.end_y + tile.bottom_margin + 1 - row)
