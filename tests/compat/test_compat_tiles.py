"""The 1.0 layer cuts images into EOScale 1.0's own tiles, and runs exactly those.

The reference is 1.0.0's ``compute_mp_tiles`` restated below, loop for loop (its tile and strip
modes, with ``tile_max_size``), independently of the layer's :func:`mp_tiles`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eoscale.eo_executors as eoexe
from eoscale.compat.tiles import mp_tiles
from eoscale.manager import EOContextManager
from eoscale.utils import MpTile

from compat_helpers import extend, minus_tile_mean


def tiles_of_1_0(height, width, margin, workers, tile_mode, tile_max_size):
    """EOScale 1.0.0's tiles; raises ZeroDivisionError where 1.0 did (fewer pixels than workers)."""
    tiles = []
    if tile_mode:
        if tile_max_size > 0:
            size = min(int(math.sqrt((width * height) // workers)), tile_max_size)
        else:
            size = int(math.sqrt((width * height) // workers))
        nb_x = width // size + (1 if width % size > 0 else 0)
        nb_y = height // size + (1 if height % size > 0 else 0)
        for ty in range(nb_y):
            for tx in range(nb_x):
                start_x, start_y = tx * size, ty * size
                end_x = min((tx + 1) * size - 1, width - 1)
                end_y = min((ty + 1) * size - 1, height - 1)
                tiles.append(MpTile(
                    start_x, start_y, end_x, end_y,
                    top_margin=margin if start_y - margin >= 0 else start_y,
                    right_margin=margin if end_x + margin <= width - 1 else width - 1 - end_x,
                    left_margin=margin if start_x - margin >= 0 else start_x,
                    bottom_margin=margin if end_y + margin <= height - 1 else height - 1 - end_y))
        return tiles
    strip = tile_max_size if tile_max_size > 0 else height // workers
    for worker in range(workers):
        start_y = worker * strip
        end_y = height - 1 if worker == workers - 1 else (worker + 1) * strip - 1
        tiles.append(MpTile(
            0, start_y, width - 1, end_y,
            top_margin=margin if start_y - margin >= 0 else start_y, right_margin=0,
            left_margin=0,
            bottom_margin=margin if end_y + margin <= height - 1 else height - 1 - end_y))
    return tiles


def as_run(tiles, height, margin):
    """1.0's tiles as the layer runs them: empty strips dropped, strips past the image cut."""
    kept = []
    for tile in tiles:
        if tile.end_y > height - 1:
            tile = tile._replace(end_y=height - 1, bottom_margin=0)
        if tile.start_y <= tile.end_y:
            kept.append(tile)
    return kept


def expected(height, width, margin, workers, tile_mode, tile_max_size):
    try:
        return as_run(tiles_of_1_0(height, width, margin, workers, tile_mode, tile_max_size),
                      height, margin)
    except ZeroDivisionError:  # 1.0 failed: the layer makes 1-pixel tiles
        return [MpTile(x, y, x, y, min(margin, y), min(margin, width - 1 - x), min(margin, x),
                       min(margin, height - 1 - y)) for y in range(height) for x in range(width)]


SIZES = [(1, 1), (1, 2), (2, 1), (1, 3000), (3000, 1), (7, 5), (448, 576), (512, 512),
         (1000, 999), (2, 2500), (3001, 17), (2048, 2048)]


@pytest.mark.parametrize("height, width", SIZES)
@pytest.mark.parametrize("workers", [1, 2, 3, 4, 7, 16, 64])
@pytest.mark.parametrize("tile_mode", [True, False])
def test_the_tiles_are_1_0s(height, width, workers, tile_mode):
    for margin in (0, 3):
        got = mp_tiles(height, width, margin, workers, tile_mode)
        assert got == expected(height, width, margin, workers, tile_mode, 0)
        if height * width >= workers and (tile_mode or height >= workers):
            assert got == tiles_of_1_0(height, width, margin, workers, tile_mode, 0)


@settings(max_examples=300, deadline=None)
@given(height=st.integers(1, 3000), width=st.integers(1, 3000), workers=st.integers(1, 64),
       tile_mode=st.booleans(), tile_max_size=st.one_of(st.just(0), st.integers(16, 1000)),
       margin=st.integers(0, 50))
def test_the_tiles_are_1_0s_for_any_size(height, width, workers, tile_mode, tile_max_size,
                                         margin):
    got = mp_tiles(height, width, margin, workers, tile_mode, tile_max_size)
    assert got == expected(height, width, margin, workers, tile_mode, tile_max_size)
    covered = np.zeros((height, width), np.uint8)
    for tile in got:
        covered[tile.start_y:tile.end_y + 1, tile.start_x:tile.end_x + 1] += 1
    assert (covered == 1).all()


def test_the_issues_image_gives_1_0s_four_tiles():
    tiles = mp_tiles(448, 576, 0, 2, True)
    assert [(t.start_x, t.start_y, t.end_x, t.end_y) for t in tiles] == [
        (0, 0, 358, 358), (359, 0, 575, 358), (0, 359, 358, 447), (359, 359, 575, 447)]


@pytest.mark.parametrize("nb_workers", [1, 2, 3])
@pytest.mark.parametrize("tile_mode, tile_max_size", [(True, 0), (False, 0), (True, 6),
                                                      (False, 4)])
def test_the_executors_run_compute_mp_tiles_in_order(nb_workers, tile_mode, tile_max_size):
    height, width = 23, 31
    image = np.arange(height * width, dtype=np.int64).reshape(1, height, width)
    with EOContextManager(nb_workers=nb_workers, tile_mode=tile_mode,
                          tile_max_size=tile_max_size) as manager:
        key = manager.create_image({"count": 1, "height": height, "width": width,
                                    "dtype": "int64"})
        manager.get_array(key)[...] = image
        tiles = eoexe.compute_mp_tiles([key], 0, nb_workers, tile_mode, manager)
        assert tiles == mp_tiles(height, width, 0, nb_workers, tile_mode, tile_max_size)
        corners = eoexe.n_images_to_m_scalars(inputs=[key], image_filter=corner_and_shape,
                                              concatenate_filter=extend, nb_output_scalars=1,
                                              context_manager=manager)
    assert corners == [[(int(image[0, t.start_y, t.start_x]),
                         (t.end_y - t.start_y + 1, t.end_x - t.start_x + 1)) for t in tiles]]


@pytest.mark.parametrize("nb_workers, tile_mode", [(1, True), (2, True), (3, True), (2, False),
                                                   (3, False)])
def test_a_filter_that_depends_on_its_tile_gives_1_0s_result(nb_workers, tile_mode):
    image = np.random.default_rng(14).uniform(0, 255, (1, 448, 576))
    expected = np.zeros_like(image)
    for tile in tiles_of_1_0(448, 576, 2, nb_workers, tile_mode, 0):
        rows = slice(tile.start_y - tile.top_margin, tile.end_y + tile.bottom_margin + 1)
        cols = slice(tile.start_x - tile.left_margin, tile.end_x + tile.right_margin + 1)
        result = minus_tile_mean([image[:, rows, cols]], [{}], {})
        expected[:, tile.start_y:tile.end_y + 1, tile.start_x:tile.end_x + 1] = result[
            :, tile.top_margin:result.shape[1] - tile.bottom_margin,
            tile.left_margin:result.shape[2] - tile.right_margin]
    with EOContextManager(nb_workers=nb_workers, tile_mode=tile_mode) as manager:
        key = manager.create_image({"count": 1, "height": 448, "width": 576, "dtype": "float64"})
        manager.get_array(key)[...] = image
        [out] = eoexe.n_images_to_m_images_filter(inputs=[key], image_filter=minus_tile_mean,
                                                  stable_margin=2, context_manager=manager)
        np.testing.assert_array_equal(manager.get_array(out), expected)


def corner_and_shape(input_buffers, input_profiles, params):
    return [[(int(input_buffers[0][0, 0, 0]), input_buffers[0].shape[1:])]]


def test_1_0_module_paths_are_the_compat_modules():
    import eoscale.compat.executors
    import eoscale.compat.filters.generic_kernel
    import eoscale.compat.manager
    import eoscale.compat.tiles
    import eoscale.compat.types
    import eoscale.data_types
    import eoscale.filters.generic_kernel
    import eoscale.manager
    import eoscale.utils

    assert eoscale.eo_executors is eoexe is eoscale.compat.executors
    assert eoscale.manager is eoscale.compat.manager
    assert eoscale.utils is eoscale.compat.tiles
    assert eoscale.data_types is eoscale.compat.types
    assert eoscale.filters.generic_kernel is eoscale.compat.filters.generic_kernel
    assert eoscale.filters is eoscale.compat.filters
