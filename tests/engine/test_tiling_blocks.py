"""Tiling a step on the block grid of the file it writes: the oracle is the block layout's own
test of a window (:meth:`~eoscale.io.blocks.BlockLayout.is_aligned`, what the engine asks
before the workers encode a tile), applied to every core of the plan."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eoscale.engine.tiling import (
    TileLayout,
    Tiling,
    cores_are_whole_blocks,
    plan_step,
    plan_tiles,
    whole_block_size,
)
from eoscale.io.blocks import BlockLayout


def blocks_of(height: int, width: int, block_shape: tuple[int, int]) -> BlockLayout:
    """A file's block grid (its encoding does not matter to alignment)."""
    rows, cols = block_shape
    return BlockLayout(height, width, 1, "uint8", cols < width, rows, min(cols, width), "none",
                       None, 1, "pixel", "if_safer")


def all_whole_blocks(layout: TileLayout, block_shape: tuple[int, int]) -> bool:
    grid = blocks_of(layout.height, layout.width, block_shape)
    return all(grid.is_aligned(int(t.core.row_off), int(t.core.col_off), int(t.core.height),
                               int(t.core.width)) for t in layout.tiles())


tiled_blocks = st.tuples(st.sampled_from([16, 32, 64, 128, 256, 512, 1024]),
                         st.sampled_from([16, 32, 64, 128, 256, 512, 1024]))


@settings(max_examples=300, deadline=None)
@given(shape=st.tuples(st.integers(1, 2500), st.integers(1, 2500)), workers=st.integers(1, 16),
       margin=st.integers(0, 40), mode=st.sampled_from(["tiles", "strips"]),
       blocks=tiled_blocks)
def test_automatic_tiles_are_whole_blocks_of_a_tiled_file(shape, workers, margin, mode, blocks):
    height, width = shape
    layout = plan_step(height, width, margin=margin, tiling=Tiling(mode), workers=workers,
                       file_blocks=blocks)
    # Blocks as wide as the image, in several rows: the blocks are strips, so are the tiles.
    striped = blocks[1] >= width and blocks[0] < height
    assert layout.mode == ("strips" if striped else mode)
    assert 1 <= layout.tile_size <= max(height, width)
    assert all_whole_blocks(layout, blocks)
    assert cores_are_whole_blocks(layout.tile_size, height, width, layout.mode, blocks)


@settings(max_examples=200, deadline=None)
@given(height=st.integers(2, 3000), width=st.integers(1, 3000), workers=st.integers(1, 16),
       rows=st.integers(1, 64))
def test_a_striped_file_is_written_by_strips_of_whole_strips(height, width, workers, rows):
    """An untiled file's blocks are strips of whole rows: with an automatic tile size the step
    runs strips (square tiles would span the width) whose heights are whole strips."""
    blocks = (min(rows, height), width)
    layout = plan_step(height, width, margin=2, tiling=Tiling(), workers=workers,
                       file_blocks=blocks)
    if blocks[0] < height:
        assert layout.mode == "strips"
    assert all_whole_blocks(layout, blocks)


@pytest.mark.parametrize("size, workers, tile", [
    (700, 2, 512),     # 512 + 188: a block and the edge's partial block, fewer tiles than 4/worker
    (1000, 2, 512),
    (1449, 2, 512),    # below the old rounding's threshold
    (300, 8, 300),     # one block spans the image: one tile
    (8192, 2, 1024),   # large images keep their automatic size, rounded down to blocks
])
def test_small_and_odd_images_are_tiled_on_the_block_grid(size, workers, tile):
    layout = plan_step(size, size, margin=2, tiling=Tiling(), workers=workers,
                       file_blocks=(512, 512))
    assert layout.tile_size == tile
    assert all_whole_blocks(layout, (512, 512))


def test_a_given_tile_size_is_kept_whether_or_not_it_aligns():
    for size in (100, 512, 1000):
        layout = plan_step(2000, 2000, margin=0, tiling=Tiling("tiles", size), workers=2,
                           file_blocks=(512, 512))
        assert layout.tile_size == size
        assert all_whole_blocks(layout, (512, 512)) == (size % 512 == 0)
        assert cores_are_whole_blocks(size, 2000, 2000, "tiles", (512, 512)) == (size % 512 == 0)


@settings(max_examples=300, deadline=None)
@given(shape=st.tuples(st.integers(1, 400), st.integers(1, 400)),
       size=st.integers(16, 500), mode=st.sampled_from(["tiles", "strips"]),
       blocks=st.tuples(st.sampled_from([16, 32, 48, 64, 512]),
                        st.sampled_from([16, 32, 80, 512])))
def test_whole_block_sizes_against_the_layout(shape, size, mode, blocks):
    """The predicate is the layout's test on every core; ``whole_block_size`` gives the largest
    such size up to the one asked (searched by brute force), else the least above it."""
    height, width = shape
    layout = TileLayout(height, width, size, 0, mode)
    assert cores_are_whole_blocks(size, height, width, mode, blocks) == all_whole_blocks(
        layout, blocks)
    extent = max(height, width) if mode == "tiles" else height
    aligned = [s for s in range(1, extent + 1)
               if cores_are_whole_blocks(s, height, width, mode, blocks)]
    below = [s for s in aligned if s <= size]
    expected = max(below) if below else min(aligned)
    assert whole_block_size(size, height, width, mode, blocks) == expected
    assert whole_block_size(size, height, width, mode, blocks, grow=False) == (
        max(below) if below else None)


def test_cores_cover_the_file():
    """Aligned tiles cover the whole image once, so no block is left to GDAL's empty fill."""
    layout = plan_step(700, 1100, margin=3, tiling=Tiling(), workers=2, file_blocks=(256, 512))
    cores = [t.core for t in layout.tiles()]
    assert sum(c.height * c.width for c in cores) == 700 * 1100
    assert len(plan_tiles(700, 1100, layout.tile_size)) == len(cores)
