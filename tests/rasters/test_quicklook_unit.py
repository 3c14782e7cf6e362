"""The quicklook's pure parts, without a file: size, bands, stretch, colours, alpha."""

from __future__ import annotations

import numpy as np
import pytest

from eoscale.errors import RasterError
from eoscale.io.quicklook import (COLORMAPS, colormap_table, decimated_shape, shown_bands, stretch,
                                  to_rgba)


@pytest.mark.parametrize("height, width, size, expected", [
    (1450, 1115, 1024, (1024, 787)), (512, 512, 1024, (512, 512)), (10, 5000, 1024, (2, 1024)),
    (3000, 3000, 100, (100, 100)), (1, 100000, 1024, (1, 1024)),
])
def test_decimated_shape_keeps_the_aspect_within_the_size(height, width, size, expected):
    assert decimated_shape(height, width, size) == expected


def test_shown_bands():
    assert shown_bands(4, None) == (1, 2, 3)
    assert shown_bands(2, None) == (1,)
    assert shown_bands(4, (4, 1, 2)) == (4, 1, 2)
    with pytest.raises(RasterError, match="cannot show band 5: the raster has 4 bands"):
        shown_bands(4, (5, 1, 2))
    with pytest.raises(RasterError, match="one band or three"):
        shown_bands(4, (1, 2))


def test_stretch_maps_the_2nd_and_98th_percentiles_of_valid_pixels_to_0_and_255():
    rng = np.random.default_rng(1)
    band = rng.normal(100, 20, (50, 60))
    valid = rng.random((50, 60)) > 0.3
    band[~valid] = -9999
    low, high = np.percentile(band[valid], [2, 98])
    scaled = stretch(band, valid)
    assert scaled.dtype == np.uint8
    assert (scaled[valid & (band <= low)] == 0).all() and (scaled[valid & (band >= high)] == 255).all()
    middle = valid & (band > low) & (band < high)
    expected = np.round((band[middle] - low) * 255 / (high - low))
    np.testing.assert_array_equal(scaled[middle], expected)


def test_a_constant_band_and_an_empty_one_do_not_fail():
    assert (stretch(np.full((3, 3), 7.0), np.ones((3, 3), bool)) == 255).all()
    assert (stretch(np.zeros((3, 3)), np.zeros((3, 3), bool)) == 0).all()


def test_colormaps_run_from_their_first_to_their_last_colour():
    assert colormap_table("viridis")[0].tolist() == [0x44, 0x01, 0x54]
    assert colormap_table("viridis")[255].tolist() == [0xfd, 0xe7, 0x25]
    gray = colormap_table("gray")
    np.testing.assert_array_equal(gray, np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, 1))
    for name in COLORMAPS:
        assert colormap_table(name).shape == (256, 3)


def test_rgba_alpha_is_the_valid_mask_and_nan_is_transparent():
    bands = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    bands[1, 0, 0] = np.nan
    valid = np.ones((4, 5), bool)
    valid[3, 4] = False
    rgba = to_rgba(bands, valid)
    expected = valid.copy()
    expected[0, 0] = False
    np.testing.assert_array_equal(rgba[3], np.where(expected, 255, 0))
    assert (rgba[:3, ~expected] == 0).all()
    one = to_rgba(bands[:1], valid, "gray")
    np.testing.assert_array_equal(one[0], one[1])
