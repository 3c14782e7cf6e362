"""The 1.0 ready-made filters, as EOScale 1.0's own tests use them."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest
import rasterio
from affine import Affine
from scipy.ndimage import generic_filter

import eoscale.eo_executors as eoexe
from eoscale.filters.concatenate_images import concatenate_images
from eoscale.filters.generic_kernel import generic_kernel_filter
from eoscale.filters.stats_minmax import minmax_filter
from eoscale.manager import EOContextManager

from compat_helpers import constant, own_segments, read


def write_raster(path, array):
    """A GeoTIFF of ``array`` on a grid of its own (1.0's tests compare it with the DSM)."""
    with rasterio.open(path, "w", driver="GTiff", count=array.shape[0], height=array.shape[1],
                       width=array.shape[2], dtype=array.dtype,
                       transform=Affine(1, 0, 0, 0, -1, array.shape[1])) as dataset:
        dataset.write(array)
    return path


def margin_0(inputs, stable_margin, nb_workers, tile_mode, context_manager):
    return compute_mp_tiles(inputs, 0, nb_workers, tile_mode, context_manager)


compute_mp_tiles = eoexe.compute_mp_tiles


def test_concatenate_a_path_and_a_memory_view(dsm):
    data, profile = read(dsm)
    with EOContextManager(nb_workers=4, tile_mode=True) as eoscale_manager:
        new_key = eoscale_manager.create_memview(key="access_key", arr_subset=data,
                                                 arr_subset_profile=profile)
        imgs = [dsm, new_key]
        concatenate_vpath = concatenate_images(eoscale_manager, imgs)
        concatenate_array = eoscale_manager.get_array(concatenate_vpath)
        assert concatenate_array.shape == (len(imgs), 512, 512)
        assert concatenate_array.dtype == np.float32
        np.testing.assert_array_equal(concatenate_array[0], concatenate_array[1])
        assert eoscale_manager.get_profile(concatenate_vpath)["count"] == 2


def test_a_concatenation_can_be_released(dsm):
    with EOContextManager(nb_workers=4, tile_mode=True) as eoscale_manager:
        before = own_segments()
        concatenate_vpath = concatenate_images(eoscale_manager, [dsm, dsm], as_type=np.float64)
        assert len(own_segments() - before) == 1  # the opened inputs are released
        concatenate_array = eoscale_manager.get_array(concatenate_vpath)
        assert concatenate_array.flags["OWNDATA"] is False
        assert concatenate_array.dtype == np.float64
        eoscale_manager.release(concatenate_vpath)
        with pytest.raises(KeyError):
            eoscale_manager.get_array(concatenate_vpath)


@pytest.mark.parametrize("expected_type", [np.float32, np.uint8])
def test_a_constant_kernel_gives_the_constant_everywhere(dsm, expected_type):
    with EOContextManager(nb_workers=4, tile_mode=True) as eoscale_manager:
        out_vpath = generic_kernel_filter(eoscale_manager, [dsm, dsm], constant, 2,
                                          dtype=expected_type,
                                          func_kwarg={"constant_value": 42})[0]
        arr_const = eoscale_manager.get_array(out_vpath)
        assert arr_const.dtype == expected_type
        assert arr_const.shape == (1, 512, 512)
        assert (arr_const == 42).all()


def test_a_kernel_equals_scipy_on_the_whole_image_and_needs_its_margin(dsm, tmp_path):
    data, profile = read(dsm)
    data, profile = data[:, :100, :150], dict(profile, height=100, width=150, blockxsize=150)
    with EOContextManager(nb_workers=4, tile_mode=True) as eoscale_manager:
        key = eoscale_manager.create_memview(key="dsm", arr_subset=data, arr_subset_profile=profile)
        out_vpath = generic_kernel_filter(eoscale_manager, [key, key], np.sum, 2)[0]
        arr_margin = eoscale_manager.get_array(out_vpath).copy()
        with patch("eoscale.eo_executors.compute_mp_tiles", new=margin_0):
            out_vpath_no_margin = generic_kernel_filter(eoscale_manager, [key], np.sum, 2)[0]
        assert not np.allclose(arr_margin, eoscale_manager.get_array(out_vpath_no_margin))
        eoscale_manager.write(key=out_vpath, img_path=str(tmp_path / "margin.tif"))
    expected = generic_filter(data, np.sum, size=(1, 5, 5), mode="constant", cval=0)
    np.testing.assert_array_equal(arr_margin, expected)
    written, written_profile = read(tmp_path / "margin.tif")
    np.testing.assert_array_equal(written, expected)
    assert written_profile == profile


def test_tiles_and_strips_give_the_same_kernel_results(tmp_path):
    image = np.random.default_rng(0).random((1, 150, 200))
    path = write_raster(tmp_path / "random.tif", image)
    results = []
    for nb_workers, tile_mode in [(4, True), (5, False), (1, False)]:
        with EOContextManager(nb_workers=nb_workers, tile_mode=tile_mode) as eoscale_manager:
            key = eoscale_manager.open_raster(str(path))
            vpath = generic_kernel_filter(eoscale_manager, [key], np.sum, 2, mode="reflect")[0]
            results.append(eoscale_manager.get_array(vpath).copy())
    expected = generic_filter(image, np.sum, size=(1, 5, 5), mode="reflect").astype(np.float32)
    for result in results:
        np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("values", [np.full((1, 512, 512), 50000.0),
                                    np.full((1, 512, 512), -50000.0),
                                    np.random.default_rng(1).random((1, 512, 512))],
                         ids=["positive", "negative", "random"])
def test_minmax_of_files(dsm, tmp_path, values):
    path = write_raster(tmp_path / "values.tif", values)
    with EOContextManager(nb_workers=4, tile_mode=True) as eoscale_manager:
        assert minmax_filter(eoscale_manager, [dsm, path]) == [min(values.min(), -32768.0),
                                                               max(values.max(), 124.62529)]
        assert minmax_filter(eoscale_manager, [path]) == [values.min(), values.max()]
