"""EOScale 1.0's example chain, unchanged, gives the whole-image results whatever the workers.

The chain (1.0's ``examples/pipeline.py``): nodata mask, hole filling with
``rasterio.fill.fillnodata`` and a 100-pixel margin, 3 x 3 mean, minimum and maximum. The mask and
the mean are position-independent, so every tiling gives them bit for bit. GDAL's hole filling
looks for valid pixels up to ``max_search_distance`` away (100 here), so a margin of 100 makes it
tile-exact too, as long as ``smoothing_iterations`` is 0 (each smoothing pass reaches one pixel
further); on this DSM it is bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import scipy.ndimage

import eoscale.eo_executors as eoexe
import eoscale.manager as eom

from compat_helpers import (fillnodata, fillnodata_filter, fillnodata_profile, nodata_filter,
                            nodata_profile, stats_concatenate, stats_filter, uniform_filter)

FILL = {"max_search_distance": 100.0, "smoothing_iterations": 0}


@pytest.fixture
def expected(dsm):
    """The chain on the whole image, without eoscale."""
    with rasterio.open(dsm) as dataset:
        dsm, nodata = dataset.read(1), dataset.nodata
    mask = (dsm == nodata).astype(np.uint8)
    filled = fillnodata(dsm.copy(), mask=1 - mask, **FILL)
    smooth = scipy.ndimage.uniform_filter(filled, size=3)
    return mask, filled, smooth, [smooth.min(), smooth.max()]


def run_chain(dsm, tmp_path, **manager_options):
    """1.0's examples/pipeline.py, as written for 1.0 (paths aside)."""
    with eom.EOContextManager(**manager_options) as eoscale_manager:
        img_1 = eoscale_manager.open_raster(raster_path=str(dsm))
        nodata_outputs = eoexe.n_images_to_m_images_filter(
            inputs=[img_1], image_filter=nodata_filter, generate_output_profiles=nodata_profile,
            context_manager=eoscale_manager, filter_desc="Nodata processing...")
        eoscale_manager.write(key=nodata_outputs[0], img_path=str(tmp_path / "nodata_mask.tif"))
        fillnodata_outputs = eoexe.n_images_to_m_images_filter(
            inputs=[img_1, nodata_outputs[0]], image_filter=fillnodata_filter,
            filter_parameters=dict(FILL), generate_output_profiles=fillnodata_profile,
            context_manager=eoscale_manager, stable_margin=100,
            filter_desc="Fill nodata processing...")
        eoscale_manager.release(key=img_1)
        eoscale_manager.release(key=nodata_outputs[0])
        eoscale_manager.write(key=fillnodata_outputs[0], img_path=str(tmp_path / "filled_dsm.tif"))
        outputs = eoexe.n_images_to_m_images_filter(
            inputs=[fillnodata_outputs[0]], image_filter=uniform_filter,
            filter_parameters={"size": 3}, stable_margin=1, context_manager=eoscale_manager,
            filter_desc="Uniform filter processing...")
        eoscale_manager.write(key=outputs[0], img_path=str(tmp_path / "smooth_dsm.tif"))
        eoscale_manager.release(key=fillnodata_outputs[0])
        stats = eoexe.n_images_to_m_scalars(
            inputs=[outputs[0]], image_filter=stats_filter, nb_output_scalars=2,
            concatenate_filter=stats_concatenate, context_manager=eoscale_manager,
            filter_desc="Min value processing...")
    return stats


@pytest.mark.parametrize("options", [
    {"nb_workers": 1, "tile_mode": True},
    {"nb_workers": 2, "tile_mode": True},
    {"nb_workers": 3, "tile_mode": False},
    {"nb_workers": 3, "tile_mode": True, "tile_max_size": 48},
    {"nb_workers": 2, "tile_mode": False, "tile_max_size": 7},
], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_the_example_chain_equals_the_whole_image_chain(dsm, tmp_path, expected, options):
    stats = run_chain(dsm, tmp_path, **options)
    mask, filled, smooth, minmax = expected
    for name, image, dtype in [("nodata_mask", mask, "uint8"), ("filled_dsm", filled, "float32"),
                               ("smooth_dsm", smooth, "float32")]:
        with rasterio.open(tmp_path / f"{name}.tif") as dataset:
            assert dataset.dtypes[0] == dtype
            np.testing.assert_array_equal(dataset.read(1), image, err_msg=name)
    assert stats == minmax
    assert 0 < minmax[0] < minmax[1]
