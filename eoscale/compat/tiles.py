"""EOScale 1.0's tiles (``eoscale.utils``): ``MpTile``, and the tile plan 1.0 made for an image.

:func:`mp_tiles` is 1.0's ``compute_mp_tiles`` as a pure function of the image size, so that 1.0
code is cut into the tiles it was written for (a filter whose result depends on its tile, such
as one that draws training samples tile by tile, gives 1.0's results). Tile mode: squares of
``int(sqrt(height * width // nb_workers))`` pixels a side (at most ``tile_max_size`` when it is
positive), row by row, the last row and column taking what is left. Strip mode: ``nb_workers``
full-width strips of ``height // nb_workers`` rows (``tile_max_size`` rows when it is positive),
the last one taking every row after the others. Margins are ``stable_margin`` clipped at the
image edges.

Where 1.0's formula is degenerate the plan differs, as little as it can: a tile side of 0 (fewer
pixels than workers, where 1.0 divided by zero) is 1; strips with no rows in the image (more
workers than rows, where 1.0 ran empty strips) are dropped; strips running past the image's last
row (``tile_max_size`` strips, where 1.0 read and wrote only the rows inside it) are cut at it.
"""

from __future__ import annotations

import math
from collections import namedtuple
from collections.abc import Sequence

from rasterio.windows import Window

from eoscale.engine import ExplicitLayout
from eoscale.errors import ConfigError

#: A tile's core, from (start_x, start_y) to (end_x, end_y) inclusive, and the margins read around
#: it (clipped at the image edges).
MpTile = namedtuple("MpTile", ["start_x", "start_y", "end_x", "end_y",
                               "top_margin", "right_margin", "left_margin", "bottom_margin"])


def read_window(tile: MpTile) -> Window:
    """The window a filter reads for ``tile``: its core grown by its margins."""
    col, row = tile.start_x - tile.left_margin, tile.start_y - tile.top_margin
    return Window(col, row, tile.end_x + tile.right_margin + 1 - col,
                  tile.end_y + tile.bottom_margin + 1 - row)


def core_window(tile: MpTile) -> Window:
    """The window of ``tile``'s core."""
    return Window(tile.start_x, tile.start_y, tile.end_x - tile.start_x + 1,
                  tile.end_y - tile.start_y + 1)


def mp_tiles(height: int, width: int, stable_margin: int, nb_workers: int, tile_mode: bool,
             tile_max_size: int = 0) -> list[MpTile]:
    """EOScale 1.0's tiles for a ``height`` x ``width`` image, in 1.0's order (see the module)."""
    if tile_mode:
        side = int(math.sqrt(width * height // nb_workers))
        if tile_max_size > 0:
            side = min(side, tile_max_size)
        side = max(1, side)
        cores = [(x, y, min(x + side, width) - 1, min(y + side, height) - 1)
                 for y in range(0, height, side) for x in range(0, width, side)]
    else:
        rows = tile_max_size if tile_max_size > 0 else height // nb_workers
        ends = [(worker + 1) * rows - 1 for worker in range(nb_workers - 1)] + [height - 1]
        cores = [(0, worker * rows, width - 1, min(end, height - 1))
                 for worker, end in enumerate(ends) if worker * rows <= min(end, height - 1)]
    return [MpTile(start_x=x0, start_y=y0, end_x=x1, end_y=y1,
                   top_margin=min(stable_margin, y0),
                   right_margin=min(stable_margin, width - 1 - x1),
                   left_margin=min(stable_margin, x0),
                   bottom_margin=min(stable_margin, height - 1 - y1))
            for x0, y0, x1, y1 in cores]


def tiles_plan(tiles: Sequence[MpTile], height: int, width: int, step: str) -> ExplicitLayout:
    """The engine plan that runs exactly ``tiles``, in their order; a ``ValueError`` (a
    :class:`~eoscale.errors.ConfigError`) naming the step and the tile if one lies outside the
    image or two cores overlap."""
    try:
        return ExplicitLayout(height, width, tuple((core_window(tile), read_window(tile))
                                                 for tile in tiles))
    except ConfigError as exc:
        raise ConfigError(f"step '{step}': compute_mp_tiles gave tiles that cannot run: "
                          f"{exc}") from None
