"""Tiling is pure: cores partition the image, read windows stay inside it and hold the margin."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eoscale.engine.tiling import Tiling, auto_tile_size, plan_tiles
from eoscale.errors import ConfigError

shapes = st.tuples(st.integers(1, 300), st.integers(1, 300))


@settings(max_examples=300, deadline=None)
@given(shape=shapes, tile_size=st.integers(1, 400), margin=st.integers(0, 500),
       mode=st.sampled_from(["tiles", "strips"]))
def test_cores_partition_the_image_and_read_windows_stay_inside(shape, tile_size, margin, mode):
    height, width = shape
    if height * width // max(1, tile_size) ** 2 > 20_000:
        tile_size = max(tile_size, 8)
    tiles = plan_tiles(height, width, tile_size, margin, mode)
    covered = np.zeros(shape, dtype=np.int32)
    for position, tile in enumerate(tiles):
        assert tile.index == position
        core, read = tile.core, tile.read
        covered[core.toslices()] += 1
        assert 0 <= read.row_off <= core.row_off and 0 <= read.col_off <= core.col_off
        assert core.row_off + core.height <= read.row_off + read.height <= height
        assert core.col_off + core.width <= read.col_off + read.width <= width
        # the margin is there wherever the image allows it
        assert read.row_off == max(0, core.row_off - margin)
        assert read.col_off == max(0, core.col_off - margin)
        assert read.row_off + read.height == min(height, core.row_off + core.height + margin)
        assert read.col_off + read.width == min(width, core.col_off + core.width + margin)
        rows, cols = tile.core_in_read
        assert rows.stop - rows.start == core.height and cols.stop - cols.start == core.width
        if mode == "strips":
            assert core.width == width
    assert (covered == 1).all()


@settings(max_examples=200, deadline=None)
@given(shape=st.tuples(st.integers(1, 50_000), st.integers(1, 50_000)), workers=st.integers(1, 64),
       margin=st.integers(0, 300), mode=st.sampled_from(["tiles", "strips"]),
       block=st.sampled_from([None, (1, 1115), (8, 456), (256, 256), (512, 512)]))
def test_auto_tile_size_is_positive_and_balances(shape, workers, margin, mode, block):
    height, width = shape
    size = auto_tile_size(height, width, workers, margin, mode, block)
    assert 1 <= size <= max(height, width)
    count = len(range(0, height, size)) * (len(range(0, width, size)) if mode == "tiles" else 1)
    big_enough = height * width >= 4 * workers * (4 * max(margin, 16)) ** 2 and min(shape) > 2048
    if big_enough and mode == "tiles":
        assert count >= workers  # enough tiles to keep every worker busy


def test_auto_tile_size_aligns_to_square_blocks():
    assert auto_tile_size(8192, 8192, 2, 4, "tiles", (512, 512)) % 512 == 0


def test_tile_bigger_than_image_and_one_pixel_image():
    (tile,) = plan_tiles(1, 1, 64, 10)
    assert (tile.core.height, tile.core.width, tile.read.height, tile.read.width) == (1, 1, 1, 1)
    assert len(plan_tiles(3, 5, 1, 0, "strips")) == 3


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "64"])
def test_bad_tile_sizes_are_refused(bad):
    with pytest.raises(ConfigError, match="tile size must be a positive integer"):
        Tiling("tiles", bad)


def test_bad_mode_and_margin_are_refused():
    with pytest.raises(ConfigError, match="tiling mode must be one of tiles, strips"):
        Tiling("squares")
    with pytest.raises(ConfigError, match="margin must be a non-negative integer"):
        plan_tiles(10, 10, 4, -1)
