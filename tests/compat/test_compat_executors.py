"""The 1.0 executors: their contract, tile order, tiny images, the tiles of compute_mp_tiles."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest
import scipy.ndimage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eoscale.eo_executors as eoexe
from eoscale.errors import EOScaleError
from eoscale.manager import EOContextManager
from eoscale.utils import MpTile, read_window

from compat_helpers import (add, count_above, count_pixels, cropped, extend, failing,
                            fails_on_first_tile, maximum, scaled, stats_concatenate, stats_filter,
                            sum_and_difference, thresholded, top_left_pixel, uniform_filter)

compute_mp_tiles = eoexe.compute_mp_tiles


def image_key(manager, image, **profile):
    """A shared image holding ``image`` (bands, rows, cols)."""
    bands, height, width = image.shape
    key = manager.create_image({"count": bands, "height": height, "width": width,
                                "dtype": image.dtype.name, **profile})
    manager.get_array(key)[...] = image
    return key


def smooth(manager, key):
    [out] = eoexe.n_images_to_m_images_filter(inputs=[key], image_filter=uniform_filter,
                                              filter_parameters={"size": 3}, stable_margin=1,
                                              context_manager=manager)
    return manager.get_array(out)[0]


def minmax(manager, key, **options):
    return eoexe.n_images_to_m_scalars(inputs=[key], image_filter=stats_filter,
                                       concatenate_filter=stats_concatenate,
                                       context_manager=manager, **options)


def tile_corners(manager, key, **options):
    return eoexe.n_images_to_m_scalars(inputs=[key], image_filter=top_left_pixel,
                                       concatenate_filter=extend, nb_output_scalars=1,
                                       context_manager=manager, **options)


def test_default_outputs_take_the_inputs_profiles_and_dtypes():
    rng = np.random.default_rng(1)
    first, second = (rng.integers(-100, 100, (1, 30, 40)).astype(np.int16) for _ in range(2))
    with EOContextManager(nb_workers=3, tile_mode=True) as manager:
        keys = [image_key(manager, first, nodata=-999), image_key(manager, second)]
        total, difference = eoexe.n_images_to_m_images_filter(
            inputs=keys, image_filter=sum_and_difference, context_manager=manager)
        assert manager.get_profile(total) == manager.get_profile(keys[0])
        assert manager.get_array(difference).dtype == np.int16
        np.testing.assert_array_equal(manager.get_array(total), first + second)
        np.testing.assert_array_equal(manager.get_array(difference), first - second)


def test_generated_profiles_set_the_outputs_and_results_are_cast_to_them():
    image = np.linspace(0, 100, 24 * 32).reshape(1, 24, 32)
    with EOContextManager(nb_workers=2, tile_mode=False, tile_max_size=5) as manager:
        key = image_key(manager, image)
        [out] = eoexe.n_images_to_m_images_filter(
            inputs=[key], image_filter=scaled, filter_parameters={"factor": 2.0},
            generate_output_profiles=lambda profiles, params: dict(profiles[0], dtype="uint8"),
            context_manager=manager)
        np.testing.assert_array_equal(manager.get_array(out), (image * 2).astype(np.uint8))


def test_a_concatenate_filter_gets_the_cores_in_tile_order():
    image = np.arange(20 * 30, dtype=np.float32).reshape(1, 20, 30)
    seen = []

    def doubled(outputs, chunks, tile):
        seen.append(tile)
        outputs[0][:, tile.start_y:tile.end_y + 1, tile.start_x:tile.end_x + 1] = 2 * chunks[0]

    with EOContextManager(nb_workers=3, tile_mode=True, tile_max_size=7) as manager:
        key = image_key(manager, image)
        [out] = eoexe.n_images_to_m_images_filter(
            inputs=[key], image_filter=uniform_filter, filter_parameters={"size": 3},
            stable_margin=1, concatenate_filter=doubled, context_manager=manager)
        np.testing.assert_array_equal(manager.get_array(out)[0],
                                      2 * scipy.ndimage.uniform_filter(image[0], size=3))
        assert seen == compute_mp_tiles([key], 1, 3, True, manager)
    assert len(seen) == 15


def test_scalars_merge_in_tile_order_from_the_first_tile():
    image = np.arange(40 * 50, dtype=np.float64).reshape(1, 40, 50)
    with EOContextManager(nb_workers=3, tile_mode=True, tile_max_size=8) as manager:
        key = image_key(manager, image)
        tiles = compute_mp_tiles([key], 0, 3, True, manager)
        assert tile_corners(manager, key) == [[t.start_y * 50 + t.start_x for t in tiles]]
        given = [[-1]]
        assert tile_corners(manager, key, output_scalars=given) is given
        assert given == [[-1] + [t.start_y * 50 + t.start_x for t in tiles]]
        assert len(tiles) == 35


def test_the_minimum_of_an_all_positive_image_is_not_zero():
    image = np.random.default_rng(2).uniform(5, 9, (1, 64, 64)).astype(np.float32)
    for nb_workers in (1, 2, 3):
        with EOContextManager(nb_workers=nb_workers, tile_mode=True) as manager:
            key = image_key(manager, image)
            assert minmax(manager, key, nb_output_scalars=2) == [image.min(), image.max()]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(height=st.integers(1, 30), width=st.integers(1, 30), tile_mode=st.booleans(),
       tile_max_size=st.integers(0, 9), radius=st.integers(0, 3), seed=st.integers(0, 99))
def test_any_tiling_gives_the_whole_image_result(height, width, tile_mode, tile_max_size, radius,
                                                 seed):
    image = np.random.default_rng(seed).integers(-500, 500, (2, height, width)).astype(np.int16)
    with EOContextManager(nb_workers=1, tile_mode=tile_mode,
                          tile_max_size=tile_max_size) as manager:
        key = image_key(manager, image)
        [out] = eoexe.n_images_to_m_images_filter(
            inputs=[key], image_filter=maximum, filter_parameters={"radius": radius},
            stable_margin=radius, context_manager=manager)
        np.testing.assert_array_equal(manager.get_array(out),
                                      maximum([image], [{}], {"radius": radius}))
        assert minmax(manager, key, nb_output_scalars=2) == [image.min(), image.max()]
        tiles = compute_mp_tiles([key], 0, 1, tile_mode, manager)
        assert tile_corners(manager, key) == [[image[0, t.start_y, t.start_x] for t in tiles]]


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 2, 9), (1, 2, 1)])
@pytest.mark.parametrize("tile_mode", [True, False])
def test_tiny_images_with_more_workers_than_rows(shape, tile_mode):
    image = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    with EOContextManager(nb_workers=3, tile_mode=tile_mode) as manager:
        key = image_key(manager, image)
        np.testing.assert_array_equal(smooth(manager, key),
                                      scipy.ndimage.uniform_filter(image[0], size=3))
        assert minmax(manager, key, nb_output_scalars=2) == [image.min(), image.max()]


def test_a_step_may_ask_another_start_method():
    image = np.random.default_rng(4).normal(size=(1, 30, 20)).astype(np.float32)
    with EOContextManager(nb_workers=2) as manager:
        key = image_key(manager, image)
        [out] = eoexe.n_images_to_m_images_filter(
            inputs=[key], image_filter=uniform_filter, filter_parameters={"size": 3},
            stable_margin=1, context_manager=manager, multiproc_context="forkserver")
        np.testing.assert_array_equal(manager.get_array(out)[0], smooth(manager, key))


def test_memory_views_are_inputs_like_shared_images():
    image = np.random.default_rng(5).normal(size=(1, 17, 23)).astype(np.float32)
    with EOContextManager(nb_workers=2, tile_mode=True) as manager:
        profile = {"count": 1, "height": 17, "width": 23, "dtype": "float32"}
        key = manager.create_memview(key="parent", arr_subset=image, arr_subset_profile=profile)
        np.testing.assert_array_equal(smooth(manager, key),
                                      scipy.ndimage.uniform_filter(image[0], size=3))


def margin_0(inputs, stable_margin, nb_workers, tile_mode, context_manager):
    """1.0's test patch: the same tiles without margins."""
    return compute_mp_tiles(inputs, 0, nb_workers, tile_mode, context_manager)


def every_other(inputs, stable_margin, nb_workers, tile_mode, context_manager):
    return compute_mp_tiles(inputs, stable_margin, nb_workers, tile_mode, context_manager)[::2]


def test_executors_run_the_tiles_compute_mp_tiles_returns():
    image = np.random.default_rng(6).uniform(1, 2, (1, 40, 36))
    with EOContextManager(nb_workers=3, tile_mode=True, tile_max_size=10) as manager:
        key = image_key(manager, image)
        tiles = compute_mp_tiles([key], 1, 3, True, manager)
        whole = smooth(manager, key)
        with patch("eoscale.eo_executors.compute_mp_tiles", new=margin_0):
            no_margin = smooth(manager, key)
        assert not np.allclose(whole, no_margin)
        for tile in tiles:
            core = slice(tile.start_y, tile.end_y + 1), slice(tile.start_x, tile.end_x + 1)
            np.testing.assert_array_equal(no_margin[core],
                                          scipy.ndimage.uniform_filter(image[0][core], size=3))
        with patch("eoscale.eo_executors.compute_mp_tiles", new=every_other):
            some = smooth(manager, key)
            [counted] = eoexe.n_images_to_m_scalars(
                inputs=[key], image_filter=count_pixels, concatenate_filter=add,
                nb_output_scalars=1, context_manager=manager)
        kept = np.zeros(image.shape[1:], bool)
        for tile in tiles[::2]:
            kept[tile.start_y:tile.end_y + 1, tile.start_x:tile.end_x + 1] = True
        np.testing.assert_array_equal(some, np.where(kept, whole, 0))
        assert counted == kept.sum()


def test_tiles_off_a_regular_grid_run_as_given():
    image = np.random.default_rng(7).normal(size=(1, 10, 20)).astype(np.float32)
    tiles = [MpTile(0, 0, 4, 4, 0, 1, 0, 1), MpTile(5, 0, 11, 6, 0, 1, 1, 1),
             MpTile(0, 8, 19, 9, 1, 0, 0, 0)]
    with EOContextManager(nb_workers=2) as manager:
        key = image_key(manager, image)
        with patch("eoscale.eo_executors.compute_mp_tiles", return_value=tiles):
            got = smooth(manager, key)
    expected = np.zeros_like(got)
    for tile in tiles:
        window = read_window(tile)
        rows, cols = window.toslices()
        smoothed = scipy.ndimage.uniform_filter(image[0][rows, cols], size=3)
        expected[tile.start_y:tile.end_y + 1, tile.start_x:tile.end_x + 1] = smoothed[
            tile.top_margin:tile.top_margin + tile.end_y - tile.start_y + 1,
            tile.left_margin:tile.left_margin + tile.end_x - tile.start_x + 1]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("tiles, message", [
    ([MpTile(0, 0, 19, 9, 1, 0, 0, 0)], r"tile 0 \(rows 0:10, cols 0:20\) reads rows -1:10"),
    ([MpTile(0, 0, 20, 9, 0, 0, 0, 0)], "inside the 10 x 20 image"),
    ([MpTile(0, 0, 9, 9, 0, 0, 0, 0), MpTile(9, 5, 19, 9, 0, 0, 0, 0)], "tile 0 .* 1 .*overlap"),
], ids=["margin-outside", "core-outside", "overlapping"])
def test_tiles_outside_the_image_or_overlapping_are_refused(tiles, message):
    with EOContextManager(nb_workers=2) as manager:
        key = image_key(manager, np.zeros((1, 10, 20)))
        with (patch("eoscale.eo_executors.compute_mp_tiles", return_value=tiles),
              pytest.raises(ValueError, match="compute_mp_tiles gave tiles that cannot run")
              as raised):
            smooth(manager, key)
        assert raised.match(message)
        assert "step 'N Images to M images MultiProcessing...'" in str(raised.value)


def test_compute_mp_tiles_cover_the_image_once():
    with EOContextManager(nb_workers=3, tile_mode=True, tile_max_size=16) as manager:
        key = manager.create_image({"count": 1, "height": 40, "width": 50, "dtype": "uint8"})
        tiles = compute_mp_tiles([key], 2, 3, True, manager)
        covered = np.zeros((40, 50), int)
        for tile in tiles:
            covered[tile.start_y:tile.end_y + 1, tile.start_x:tile.end_x + 1] += 1
            assert max(tile.end_x - tile.start_x, tile.end_y - tile.start_y) < 16
            assert tile.top_margin == min(2, tile.start_y)
            assert tile.right_margin == min(2, 49 - tile.end_x)
        assert (covered == 1).all()
        assert {t.end_x - t.start_x for t in compute_mp_tiles([key], 2, 3, False, manager)} == {49}
        other = manager.create_image({"count": 1, "height": 40, "width": 51, "dtype": "uint8"})
        with pytest.raises(ValueError, match="same width and the same height"):
            compute_mp_tiles([key, other], 2, 3, True, manager)


def test_arguments_are_checked_as_in_1_0():
    with EOContextManager(nb_workers=1) as manager:
        key = image_key(manager, np.zeros((1, 4, 4)))
        for missing, message in [({"inputs": []}, "At least one input"),
                                 ({"image_filter": None}, "A filter must be set"),
                                 ({"context_manager": None}, "Context Manager must be given")]:
            options = {"inputs": [key], "image_filter": scaled, "context_manager": manager}
            with pytest.raises(ValueError, match=message):
                eoexe.n_images_to_m_images_filter(**{**options, **missing})
        with pytest.raises(ValueError, match="concatenate filter must be set"):
            eoexe.n_images_to_m_scalars([key], stats_filter, None, manager, nb_output_scalars=2)
        with pytest.raises(ValueError, match="number of output scalars"):
            minmax(manager, key)


def test_a_failing_filter_names_its_error():
    with EOContextManager(nb_workers=2) as manager:
        key = image_key(manager, np.zeros((1, 8, 8)))
        with pytest.raises(EOScaleError, match="broken filter"):
            eoexe.n_images_to_m_images_filter(inputs=[key], image_filter=failing,
                                              context_manager=manager)
        with pytest.raises(EOScaleError, match="same height and width"):
            eoexe.n_images_to_m_images_filter(inputs=[key], image_filter=cropped,
                                              context_manager=manager)


@pytest.mark.parametrize("workers", [1, 2])
def test_filter_parameters_reach_the_filter_as_given(workers):
    """SLURP hands its argparse Namespace over as filter_parameters: 1.0 passed any object, and
    the filter reads its attributes."""
    import argparse

    image = np.arange(30 * 40, dtype=np.float32).reshape(1, 30, 40)
    parameters = argparse.Namespace(threshold=600.0)
    with EOContextManager(nb_workers=workers, tile_mode=True) as manager:
        key = image_key(manager, image)
        [out] = eoexe.n_images_to_m_images_filter(
            inputs=[key], image_filter=thresholded, filter_parameters=parameters,
            generate_output_profiles=lambda profiles, params: dict(profiles[0], dtype="uint8"),
            context_manager=manager)
        np.testing.assert_array_equal(manager.get_array(out)[0], image[0] > 600)
        scalars = eoexe.n_images_to_m_scalars(
            inputs=[key], image_filter=count_above, concatenate_filter=add,
            nb_output_scalars=1, filter_parameters=parameters, context_manager=manager)
        assert scalars == [int((image > 600).sum())]


def test_a_generated_profile_is_what_the_output_gets_exactly():
    """Keys generate_output_profiles removes (nodata, compression) stay removed, as 1.0 wrote
    exactly the profile it returned; the grid stays the input's."""
    image = np.arange(24 * 32, dtype=np.int16).reshape(1, 24, 32)

    def without_nodata(profiles, params):
        profile = dict(profiles[0], dtype="uint8")
        profile.pop("nodata")
        profile.pop("compress")
        return profile

    with EOContextManager(nb_workers=2, tile_mode=True) as manager:
        key = image_key(manager, image, nodata=-999, compress="deflate")
        [out] = eoexe.n_images_to_m_images_filter(
            inputs=[key], image_filter=scaled, filter_parameters={"factor": 1.0},
            generate_output_profiles=without_nodata, context_manager=manager)
        profile = manager.get_profile(out)
        assert profile.get("nodata") is None and profile.get("compress") is None
        assert (profile["height"], profile["width"], profile["dtype"]) == (24, 32, "uint8")


def test_a_failing_concatenate_filter_is_named_with_its_tile():
    image = np.zeros((1, 20, 20), dtype=np.float32)
    with EOContextManager(nb_workers=2, tile_mode=True) as manager:
        key = image_key(manager, image)
        with pytest.raises(EOScaleError) as raised:
            eoexe.n_images_to_m_images_filter(
                inputs=[key], image_filter=scaled, filter_parameters={"factor": 1.0},
                concatenate_filter=fails_on_first_tile, context_manager=manager)
    message = str(raised.value)
    assert "tile 0 (rows 0:" in message and "cols 0:" in message, message
    assert "concatenate_filter raised RuntimeError: cannot merge the tile at x=0 y=0" in message


def test_a_filter_s_error_carries_its_traceback_as_its_cause():
    import traceback

    with EOContextManager(nb_workers=2) as manager:
        key = image_key(manager, np.zeros((1, 8, 8)))
        with pytest.raises(EOScaleError) as raised:
            eoexe.n_images_to_m_images_filter(inputs=[key], image_filter=failing,
                                              context_manager=manager)
    shown = "".join(traceback.format_exception(raised.value))
    assert 'compat_helpers.py", line' in shown and "in failing" in shown, shown
    assert "broken filter" in shown


def test_no_tile_max_size_is_no_bound():
    """SLURP passes tile_max_size from an argparse option without a default: None, as 0."""
    image = np.arange(40 * 50, dtype=np.float64).reshape(1, 40, 50)
    tiles = {}
    for bound in (None, 0):
        with EOContextManager(nb_workers=2, tile_mode=True, tile_max_size=bound) as manager:
            key = image_key(manager, image)
            np.testing.assert_allclose(smooth(manager, key),
                                       scipy.ndimage.uniform_filter(image[0], size=3))
            tiles[bound] = compute_mp_tiles([key], 1, 2, True, manager)
    assert tiles[None] == tiles[0]


def test_a_one_band_result_fills_every_band_of_its_output():
    """1.0 assigned a filter's image into its output's bands: one band filled all three."""
    image = np.arange(20 * 30, dtype=np.float32).reshape(1, 20, 30)
    with EOContextManager(nb_workers=2, tile_mode=True) as manager:
        key = image_key(manager, image)
        [out] = eoexe.n_images_to_m_images_filter(
            inputs=[key], image_filter=uniform_filter, filter_parameters={"size": 3},
            stable_margin=1, context_manager=manager,
            generate_output_profiles=lambda profiles, params: dict(profiles[0], count=3))
        expected = scipy.ndimage.uniform_filter(image[0], size=3)
        np.testing.assert_allclose(manager.get_array(out), np.stack([expected] * 3))
