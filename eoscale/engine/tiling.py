"""Tiling as pure functions: a tile is an immutable value with a core window and a read window.

The core windows of a plan partition the image exactly; a read window is the core grown by the
stability margin on every side and clipped at the image edges, so a local algorithm run on the read
window and cut back to the core gives the same pixels as on the whole image.

A step that writes a file as it computes is tiled on that file's block grid
(:func:`whole_block_size`): its tile cores are whole blocks (the edge tiles hold the clipped edge
blocks), so the worker that computed a tile can encode the tile's blocks by itself.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from rasterio.windows import Window

from eoscale.errors import ConfigError

TilingMode = Literal["tiles", "strips"]
MODES: tuple[str, ...] = ("tiles", "strips")

#: Pixels per band that an automatic tile aims at: large enough to amortise per-tile costs,
#: small enough that a callable's temporaries (often several float64 copies) stay modest.
TARGET_TILE_PIXELS = 1024 * 1024
#: An automatic plan has at least this many tiles per worker (when the image allows) for balance.
TILES_PER_WORKER = 4


@dataclass(frozen=True)
class Tiling:
    """How to cut images: square tiles or full-width strips, of a given size or an automatic one."""

    mode: TilingMode = "tiles"
    tile_size: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"tiling mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.tile_size is not None and (
            isinstance(self.tile_size, bool) or not isinstance(self.tile_size, int)
            or self.tile_size < 1
        ):
            raise ConfigError(f"tile size must be a positive integer, not {self.tile_size!r}")


@dataclass(frozen=True)
class Tile:
    """One tile of a plan: its position in the plan, its core window and its read window."""

    index: int
    core: Window
    read: Window

    @property
    def core_in_read(self) -> tuple[slice, slice]:
        """Row and column slices of the core inside an array covering the read window."""
        top = self.core.row_off - self.read.row_off
        left = self.core.col_off - self.read.col_off
        return slice(top, top + self.core.height), slice(left, left + self.core.width)

    def describe(self) -> str:
        c = self.core
        return (f"tile {self.index} (rows {c.row_off}:{c.row_off + c.height}, "
                f"cols {c.col_off}:{c.col_off + c.width})")


def check_margin(margin: int) -> int:
    if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
        raise ConfigError(f"margin must be a non-negative integer, not {margin!r}")
    return margin


def read_window(core: Window, margin: int, height: int, width: int) -> Window:
    """The core grown by ``margin`` on every side, clipped to an image of ``height`` x ``width``."""
    row0 = max(0, core.row_off - margin)
    col0 = max(0, core.col_off - margin)
    row1 = min(height, core.row_off + core.height + margin)
    col1 = min(width, core.col_off + core.width + margin)
    return Window(col0, row0, col1 - col0, row1 - row0)


def plan_tiles(height: int, width: int, tile_size: int, margin: int = 0,
               mode: TilingMode = "tiles") -> tuple[Tile, ...]:
    """Cut a ``height`` x ``width`` image into tiles in row-major order.

    In ``tiles`` mode the cores are ``tile_size`` squares; in ``strips`` mode they are full-width
    strips of ``tile_size`` rows. The last row and column of tiles take what is left.
    """
    if height < 1 or width < 1:
        raise ConfigError(f"cannot tile an empty image ({height} x {width})")
    Tiling(mode, tile_size)
    check_margin(margin)
    tile_h = tile_size
    tile_w = tile_size if mode == "tiles" else width
    tiles = []
    for row0 in range(0, height, tile_h):
        core_h = min(tile_h, height - row0)
        for col0 in range(0, width, tile_w):
            core = Window(col0, row0, min(tile_w, width - col0), core_h)
            tiles.append(Tile(len(tiles), core, read_window(core, margin, height, width)))
    return tuple(tiles)


def auto_tile_size(height: int, width: int, workers: int, margin: int = 0,
                   mode: TilingMode = "tiles", block_shape: tuple[int, int] | None = None) -> int:
    """A tile size (square side, or strip height) for an image, chosen for balance and overhead.

    The tile aims at :data:`TARGET_TILE_PIXELS`, shrinks until every worker gets
    :data:`TILES_PER_WORKER` tiles when the image is big enough, grows to four margins so that
    re-read margins stay a modest share of the work, and is rounded down to a multiple of the
    input's internal block size (``block_shape`` as rows, cols) when it spans whole blocks.
    """
    check_margin(margin)
    wanted_tiles = max(1, workers * TILES_PER_WORKER)
    if mode == "strips":
        size = min(max(1, TARGET_TILE_PIXELS // width), math.ceil(height / wanted_tiles))
        block = block_shape[0] if block_shape else None
        extent = height
    else:
        size = min(math.isqrt(TARGET_TILE_PIXELS), math.isqrt(max(1, height * width // wanted_tiles)))
        block = block_shape[0] if block_shape and block_shape[0] == block_shape[1] else None
        extent = max(height, width)
    size = max(size, 4 * margin, 16 if mode == "tiles" else 1)
    if block and block > 1 and size >= block:
        size -= size % block
    return max(1, min(size, extent))


def cores_are_whole_blocks(size: int, height: int, width: int, mode: TilingMode,
                           block_shape: tuple[int, int]) -> bool:
    """Whether every core of :func:`plan_tiles` with ``size`` is made of whole blocks
    (``block_shape`` as rows, cols; the blocks at the image's edge as clipped) of a ``height``
    x ``width`` file: each core starts on a block's edge and ends on one or at the image's."""
    rows, cols = block_shape
    return ((size >= height or size % rows == 0)
            and (mode == "strips" or size >= width or size % cols == 0))


def whole_block_size(size: int, height: int, width: int, mode: TilingMode,
                     block_shape: tuple[int, int], *, grow: bool = True) -> int | None:
    """The largest tile size up to ``size`` whose cores are whole blocks
    (:func:`cores_are_whole_blocks`); when there is none, the least above it with ``grow``
    (one block, or the whole image when a block spans it), else None.

    A side of the image is cut on its blocks' edges by sizes that are multiples of the blocks'
    side there, and not cut at all by sizes that reach its extent. So between two extents the
    sizes that fit are the multiples of the least common multiple of the blocks of the sides
    still longer, and a size that reaches the larger extent holds the whole image.
    """
    sides = [(block_shape[0], height)] + ([(block_shape[1], width)] if mode == "tiles" else [])
    extent = max(extent for _, extent in sides)
    if size >= extent:
        return extent
    cuts = sorted({1, *(extent for _, extent in sides)})
    spans = [(low, high - 1, math.lcm(*(block for block, side in sides if side > low)))
             for low, high in itertools.pairwise(cuts)]
    for low, high, unit in reversed(spans):
        top = min(high, size)
        if top >= low and top - top % unit >= low:
            return top - top % unit
    if not grow:
        return None
    for low, high, unit in spans:
        least = max(low, math.ceil((size + 1) / unit) * unit)
        least = math.ceil(least / unit) * unit
        if least <= high:
            return least
    return extent


def written_mode(tiling: Tiling, height: int, width: int,
                 file_blocks: tuple[int, int]) -> TilingMode:
    """The tiling mode of a step writing a file with ``file_blocks`` as it computes: strips when
    the file is made of full-width strips (an untiled GeoTIFF) and the tile size is automatic
    (square tiles would have to span the image's width), else the tiling's."""
    rows, cols = file_blocks
    if tiling.tile_size is None and cols >= width and rows < height:
        return "strips"
    return tiling.mode


@dataclass(frozen=True)
class TileLayout:
    """One step's tiling: image size, tile size, margin and mode. A small value that travels to
    the workers; each rebuilds the tiles from it (:meth:`tiles`)."""

    height: int
    width: int
    tile_size: int
    margin: int
    mode: TilingMode

    def tiles(self) -> tuple[Tile, ...]:
        return plan_tiles(self.height, self.width, self.tile_size, self.margin, self.mode)

    @property
    def tile_count(self) -> int:
        rows = math.ceil(self.height / self.tile_size)
        return rows * (math.ceil(self.width / self.tile_size) if self.mode == "tiles" else 1)

    @property
    def read_shape(self) -> tuple[int, int]:
        """The largest read window (rows, cols): a full tile with its margin on both sides."""
        columns = self.tile_size if self.mode == "tiles" else self.width
        return (min(self.height, self.tile_size + 2 * self.margin),
                min(self.width, columns + 2 * self.margin))


@dataclass(frozen=True)
class ExplicitLayout:
    """A tiling given tile by tile: each tile's core and read windows, in tile order.

    For tiles that are not a regular grid (EOScale 1.0's plans, whose last strip takes what is
    left). It has :class:`TileLayout`'s interface (``tiles()``, ``tile_count``, ``read_shape``). The cores
    must lie in the image without overlapping (they need not cover it: pixels outside every core
    are not computed), and each read window must hold its core and lie in the image.
    """

    height: int
    width: int
    windows: tuple[tuple[Window, Window], ...]  # (core, read) of each tile

    def __post_init__(self) -> None:
        image = Window(0, 0, self.width, self.height)
        for index, (core, read) in enumerate(self.windows):
            if (core.width < 1 or core.height < 1 or not _inside(core, read)
                    or not _inside(read, image)):
                raise ConfigError(f"{Tile(index, core, read).describe()} reads rows "
                                  f"{read.row_off}:{read.row_off + read.height}, cols "
                                  f"{read.col_off}:{read.col_off + read.width}: a tile needs a "
                                  f"core of at least one pixel, inside a read window inside the "
                                  f"{self.height} x {self.width} image")
        overlap = _first_overlap([core for core, _ in self.windows])
        if overlap is not None:
            first, second = (Tile(i, *self.windows[i]).describe() for i in overlap)
            raise ConfigError(f"{first} and {second} overlap: the cores of a plan must not")

    def tiles(self) -> tuple[Tile, ...]:
        return tuple(Tile(index, core, read) for index, (core, read) in enumerate(self.windows))

    @property
    def tile_count(self) -> int:
        return len(self.windows)

    @property
    def read_shape(self) -> tuple[int, int]:
        """The largest read window (rows, cols)."""
        return (max((read.height for _, read in self.windows), default=0),
                max((read.width for _, read in self.windows), default=0))


AnyLayout = TileLayout | ExplicitLayout


def _inside(inner: Window, outer: Window) -> bool:
    return (outer.col_off <= inner.col_off and outer.row_off <= inner.row_off
            and inner.col_off + inner.width <= outer.col_off + outer.width
            and inner.row_off + inner.height <= outer.row_off + outer.height)


def _first_overlap(cores: list[Window]) -> tuple[int, int] | None:
    """The indices of two windows that share a pixel, or None.

    Sorted by top edge, a window can only meet the windows after it that start above its bottom
    edge: on a grid, the rest of its row of tiles.
    """
    if len(cores) < 2:
        return None
    bounds = np.array([(c.row_off, c.row_off + c.height, c.col_off, c.col_off + c.width)
                       for c in cores])
    order = np.lexsort((bounds[:, 2], bounds[:, 0]))
    top, bottom, left, right = bounds[order].T
    for position in range(len(cores) - 1):
        near = slice(position + 1, np.searchsorted(top, bottom[position], side="left"))
        hits = np.flatnonzero((left[near] < right[position]) & (left[position] < right[near]))
        if hits.size:
            first, second = order[position], order[position + 1 + hits[0]]
            return int(min(first, second)), int(max(first, second))
    return None


def plan_step(height: int, width: int, *, margin: int, tiling: Tiling, workers: int,
              block_shape: tuple[int, int] | None = None,
              file_blocks: tuple[int, int] | None = None) -> TileLayout:
    """The tiling a step runs with: what the run plan shows and what the engine executes.

    Read windows are clipped at the image edges, so a margin beyond the image's larger side reads
    nothing more and is clipped to it; the tile size is the tiling's, else :func:`auto_tile_size`
    for the workers, the margin and the first input's block shape. A step that writes a file
    as it computes (``file_blocks``: its blocks, rows and cols) and whose tile size is automatic
    is tiled on that file's block grid (:func:`written_mode`, :func:`whole_block_size`), even
    when that makes fewer tiles than workers; a size the tiling gives is kept as it is.
    """
    check_margin(margin)
    margin = min(margin, max(height, width))
    if tiling.tile_size is None and file_blocks is not None:
        mode = written_mode(tiling, height, width, file_blocks)
        wanted = auto_tile_size(height, width, workers, margin, mode, file_blocks)
        size = whole_block_size(wanted, height, width, mode, file_blocks)
        assert size is not None  # grown to whole blocks
        return TileLayout(height, width, size, margin, mode)
    size = tiling.tile_size or auto_tile_size(height, width, workers, margin, tiling.mode,
                                              block_shape)
    return TileLayout(height, width, size, margin, tiling.mode)
