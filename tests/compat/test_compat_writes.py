"""1.0 filters that write into their input buffers get private writable arrays.

Each tile's filter may write into its inputs, as 1.0 code does (``im[mask] = 255``, ``buf += x``);
it sees the original pixels of its whole read window, never another tile's writes, and the shared
inputs are left bit for bit as they were. The oracle is the filter on the whole image, once: for
these local filters (margins as large as their windows) every tiling must give that result, which
it would not if one tile's writes reached a neighbour's margin.
"""

from __future__ import annotations

import numpy as np
import pytest

import eoscale.eo_executors as eoexe
from eoscale.manager import EOContextManager

from compat_helpers import (add, bonus_then_smooth, clipped_sum, counts_its_calls, extend,
                            fill_then_maximum, mask_then_maximum, read, threshold_in_place)

WORKERS = [1, 2, 3]
TILINGS = [(True, 0), (True, 7), (False, 0), (False, 5), (True, 13)]


def shared(manager, image):
    key = manager.create_image({"count": image.shape[0], "height": image.shape[1],
                                "width": image.shape[2], "dtype": image.dtype.name})
    manager.get_array(key)[...] = image
    return key


def run(image_filter, images, params, margin, nb_workers, tile_mode, tile_max_size):
    """The filter's outputs through the executors, and whether every input was left unchanged."""
    with EOContextManager(nb_workers=nb_workers, tile_mode=tile_mode,
                          tile_max_size=tile_max_size) as manager:
        keys = [shared(manager, image) for image in images]
        outputs = eoexe.n_images_to_m_images_filter(
            inputs=keys, image_filter=image_filter, filter_parameters=params,
            stable_margin=margin, context_manager=manager)
        untouched = all(manager.get_array(key).tobytes() == image.tobytes()
                        for key, image in zip(keys, images))
        return [manager.get_array(out).copy() for out in outputs], untouched


def whole(image_filter, images, params):
    """The filter on the whole image, on copies of the inputs."""
    return image_filter([image.copy() for image in images], [{}] * len(images), params)


@pytest.fixture
def image():
    return np.random.default_rng(11).uniform(0, 100, (2, 37, 45)).astype(np.float32)


@pytest.mark.parametrize("nb_workers", WORKERS)
@pytest.mark.parametrize("tile_mode, tile_max_size", TILINGS)
def test_an_in_place_threshold(image, nb_workers, tile_mode, tile_max_size):
    params = {"threshold": 60.0}
    [got], untouched = run(threshold_in_place, [image], params, 0, nb_workers, tile_mode,
                         tile_max_size)
    np.testing.assert_array_equal(got, whole(threshold_in_place, [image], params))
    assert untouched


@pytest.mark.parametrize("nb_workers", WORKERS)
@pytest.mark.parametrize("tile_mode, tile_max_size", TILINGS)
def test_a_write_over_the_whole_read_window_reaches_no_other_tile(image, nb_workers, tile_mode,
                                                                  tile_max_size):
    params = {"bonus": 1000.0}
    [got], untouched = run(bonus_then_smooth, [image], params, 1, nb_workers, tile_mode,
                         tile_max_size)
    np.testing.assert_allclose(got, whole(bonus_then_smooth, [image], params), rtol=1e-6)
    assert untouched


@pytest.mark.parametrize("nb_workers", WORKERS)
@pytest.mark.parametrize("tile_mode, tile_max_size", TILINGS)
def test_a_filter_that_writes_into_one_input_and_reads_another(image, nb_workers, tile_mode,
                                                               tile_max_size):
    mask = np.random.default_rng(12).uniform(0, 1, image.shape).astype(np.float32)
    params = {"threshold": 0.9}
    (got, second), untouched = run(mask_then_maximum, [image, mask], params, 2, nb_workers,
                                   tile_mode, tile_max_size)
    np.testing.assert_array_equal(got, whole(mask_then_maximum, [image, mask], params))
    assert not second.any()  # one image for two default profiles: as in 1.0, the other stays 0
    assert untouched


@pytest.mark.parametrize("nb_workers", WORKERS)
def test_scalar_filters_and_concatenated_images_may_write_too(nb_workers):
    image = np.random.default_rng(13).normal(size=(1, 40, 33))
    with EOContextManager(nb_workers=nb_workers, tile_mode=True, tile_max_size=9) as manager:
        key = shared(manager, image)
        [total] = eoexe.n_images_to_m_scalars(inputs=[key], image_filter=clipped_sum,
                                              concatenate_filter=add, nb_output_scalars=1,
                                              context_manager=manager)
        params = {"threshold": 0.5}

        def paste(outputs, chunks, tile):
            outputs[0][:, tile.start_y:tile.end_y + 1, tile.start_x:tile.end_x + 1] = chunks[0]

        [out] = eoexe.n_images_to_m_images_filter(
            inputs=[key], image_filter=threshold_in_place, filter_parameters=params,
            concatenate_filter=paste, context_manager=manager)
        np.testing.assert_array_equal(manager.get_array(out),
                                      whole(threshold_in_place, [image], params))
        assert manager.get_array(key).tobytes() == image.tobytes()
    assert total == pytest.approx(np.clip(image, 0, None).sum())


def test_a_memory_view_written_into_stays_as_it_was(image):
    params = {"threshold": 60.0}
    kept = image.copy()
    with EOContextManager(nb_workers=2, tile_mode=True) as manager:
        profile = {"count": 2, "height": 37, "width": 45, "dtype": "float32"}
        key = manager.create_memview(key="parent", arr_subset=image, arr_subset_profile=profile)
        [out] = eoexe.n_images_to_m_images_filter(inputs=[key], image_filter=threshold_in_place,
                                                  filter_parameters=params,
                                                  context_manager=manager)
        np.testing.assert_array_equal(manager.get_array(out),
                                      whole(threshold_in_place, [kept], params))
    np.testing.assert_array_equal(image, kept)


@pytest.mark.parametrize("nb_workers", WORKERS)
def test_each_tile_gets_the_parameters_as_given(nb_workers):
    params = {"threshold": 1}
    with EOContextManager(nb_workers=nb_workers, tile_mode=True, tile_max_size=4) as manager:
        key = shared(manager, np.zeros((1, 12, 12)))
        calls = eoexe.n_images_to_m_scalars(inputs=[key], image_filter=counts_its_calls,
                                            concatenate_filter=extend, nb_output_scalars=1,
                                            filter_parameters=params, context_manager=manager)
    assert calls == [[1] * 9]
    assert params == {"threshold": 1}


@pytest.mark.parametrize("nb_workers, tile_mode", [(1, True), (2, True), (3, False)])
def test_1_0s_dsm_with_nodata_filled_in_place(dsm, nb_workers, tile_mode):
    data, profile = read(dsm)
    params = {"fill": 1000.0}
    with EOContextManager(nb_workers=nb_workers, tile_mode=tile_mode) as manager:
        key = manager.open_raster(raster_path=str(dsm))
        [out] = eoexe.n_images_to_m_images_filter(inputs=[key], image_filter=fill_then_maximum,
                                                  filter_parameters=params, stable_margin=1,
                                                  context_manager=manager)
        np.testing.assert_array_equal(manager.get_array(out),
                                      fill_then_maximum([data.copy()], [profile], params))
        assert manager.get_array(key).tobytes() == data.tobytes()
    assert (data == profile["nodata"]).any()
