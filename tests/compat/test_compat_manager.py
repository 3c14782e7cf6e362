"""EOContextManager as EOScale 1.0's documentation and tests use it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eoscale.data_types import DataType, VirtualPath
from eoscale.manager import EOContextManager
from eoscale.utils import MpTile

from compat_helpers import own_segments, read


def test_data_types_are_1_0s():
    assert VirtualPath is str
    assert (DataType.RASTER.value, DataType.POINTCLOUD.value) == (1, 2)
    assert MpTile._fields == ("start_x", "start_y", "end_x", "end_y", "top_margin",
                              "right_margin", "left_margin", "bottom_margin")


def test_open_raster_shares_the_file_as_bands_rows_cols(dsm):
    data, profile = read(dsm)
    with EOContextManager(nb_workers=2) as manager:
        key = manager.open_raster(raster_path=str(dsm))
        assert isinstance(key, str)
        array = manager.get_array(key)
        assert array.shape == (1, 512, 512)
        assert array.flags["OWNDATA"] is False
        np.testing.assert_array_equal(array, data)
        got = manager.get_profile(key)
        assert got == dict(profile)
        got["nodata"] = 0
        assert manager.get_profile(key)["nodata"] == -32768


def test_get_array_of_a_tile_includes_its_margins(dsm):
    data, _ = read(dsm)
    tile = MpTile(start_x=10, start_y=20, end_x=19, end_y=39, top_margin=2, right_margin=3,
                  left_margin=4, bottom_margin=5)
    with EOContextManager(nb_workers=1) as manager:
        key = manager.open_raster(raster_path=str(dsm))
        memview = manager.create_memview(key="parent", arr_subset=data, arr_subset_profile={})
        for name in (key, memview):
            np.testing.assert_array_equal(manager.get_array(name, tile), data[:, 18:45, 6:23])


def test_create_image_is_zero_filled_and_keeps_its_profile(dsm):
    _, profile = read(dsm)
    with EOContextManager(nb_workers=4, tile_mode=True) as manager:
        key = manager.create_image(profile)
        array = manager.get_array(key)
        assert array.shape == (1, 512, 512) and not array.any()
        assert profile == manager.get_profile(key)


def test_create_memview_gives_the_array_back_and_goes_with_its_parent():
    data = np.random.default_rng(0).random((1, 32, 48))
    with EOContextManager(nb_workers=4, tile_mode=True) as manager:
        parent = manager.create_image({"count": 1, "height": 32, "width": 48, "dtype": "uint8"})
        key = manager.create_memview(key=parent, arr_subset=data, arr_subset_profile={"a": 1})
        assert manager.get_array(key) is data
        assert manager.get_profile(key) == {"a": 1}
        manager.release(parent)
        with pytest.raises(KeyError):
            manager.get_array(key)


def test_release_frees_the_memory_and_forgets_the_key(dsm):
    with EOContextManager(nb_workers=2) as manager:
        key = manager.open_raster(raster_path=str(dsm))
        segments = own_segments()
        manager.release(key)
        assert len(own_segments()) == len(segments) - 1
        for access in (manager.get_array, manager.get_profile, manager.release):
            with pytest.raises(KeyError):
                access(key)


def test_leaving_the_context_releases_everything(dsm):
    before = own_segments()
    with EOContextManager(nb_workers=3) as manager:
        manager.open_raster(raster_path=str(dsm))
        manager.create_image({"count": 2, "height": 5, "width": 7, "dtype": "int16"})
        assert len(own_segments() - before) == 2
    assert own_segments() == before


def test_write_keeps_the_pixels_and_the_profile(dsm, tmp_path):
    data, profile = read(dsm)
    with EOContextManager(nb_workers=2) as manager:
        key = manager.open_raster(raster_path=str(dsm))
        manager.write(key=key, img_path=str(tmp_path / "out.tif"))
        manager.write(key=key, img_path=str(tmp_path / "out.tif"))  # 1.0 overwrites
        with pytest.warns(UserWarning, match="not known"):
            manager.write(key="unknown", img_path=str(tmp_path / "unknown.tif"))
    written, written_profile = read(tmp_path / "out.tif")
    np.testing.assert_array_equal(written, data)
    assert written_profile == profile
    assert not (tmp_path / "unknown.tif").exists()


def test_update_profile_gives_a_new_key_for_the_same_pixels(dsm):
    data, _ = read(dsm)
    with EOContextManager(nb_workers=2) as manager:
        key = manager.open_raster(raster_path=str(dsm))
        profile = manager.get_profile(key)
        profile["nodata"] = -1.0
        new_key = manager.update_profile(key, profile)
        assert new_key != key
        assert manager.get_profile(new_key) == profile
        np.testing.assert_array_equal(manager.get_array(new_key), data)
        with pytest.raises(KeyError):
            manager.get_array(key)
        as_int = manager.update_profile(new_key, dict(profile, dtype="int32"))
        np.testing.assert_array_equal(manager.get_array(as_int), data.view(np.int32))


def test_a_crs_without_epsg_code_opens_and_writes(shared_data, tmp_path):
    data, profile = read(shared_data / "nz_elev.tif")
    assert profile["crs"].to_epsg() is None
    with EOContextManager(nb_workers=3, tile_mode=True) as manager:
        key = manager.open_raster(raster_path=str(shared_data / "nz_elev.tif"))
        assert manager.get_profile(key)["crs"] == profile["crs"]
        manager.write(key, str(tmp_path / "nz.tif"))
    written, written_profile = read(tmp_path / "nz.tif")
    np.testing.assert_array_equal(written, data)
    assert written_profile["crs"] == profile["crs"]
    assert written_profile["transform"] == profile["transform"]
    assert math.isnan(written_profile["nodata"])


def test_point_clouds_are_not_supported(tmp_path):
    with (EOContextManager(nb_workers=1) as manager,
          pytest.raises(NotImplementedError, match="point clouds are not supported")):
        manager.open_point_cloud(str(tmp_path / "cloud.las"))


def test_keys_must_be_strings():
    with (EOContextManager(nb_workers=1) as manager,
          pytest.raises(TypeError, match="must be type 'str' not 'int'")):
        manager.get_array(3)
