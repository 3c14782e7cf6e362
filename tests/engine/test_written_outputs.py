"""Map outputs written to their file as tiles are computed, never held: the file holds exactly the
whole-image result, whatever the tiling, the workers and the order tiles finish in."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine

from eoscale.engine import Engine, Tiling
from eoscale.engine.filed import OutputFile, WrittenRaster
from eoscale.errors import StepError

from callables import raises, scipy_filter, sum_diff_max, sum_diff_max_profiles
from leak_checks import own_segments

PROFILE = {"transform": Affine(10, 0, 1000, 0, -10, 2000), "crs": "EPSG:32631", "nodata": -1}


def make_image(shape=(2, 61, 75), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-3000, 3000, shape).astype("int16")


def read(path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as dataset:
        return dataset.read(), dict(dataset.profile)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("tiling", [Tiling("tiles", 16), Tiling("tiles", 7), Tiling("strips", 9),
                                    Tiling("tiles")])
def test_a_written_output_is_the_whole_image_result(tmp_path, workers, tiling):
    image = make_image()
    params = {"filter": "median", "radius": 2, "mode": "reflect"}
    with Engine(workers, tiling=tiling) as engine:
        source = engine.from_array(image, PROFILE)
        # No profile function: the first tile is probed on a worker and written too.
        [written] = engine.map(scipy_filter, [source], params=params, margin=2,
                               files=[OutputFile(tmp_path / "median.tif")])
    assert isinstance(written, WrittenRaster) and written.released
    pixels, profile = read(tmp_path / "median.tif")
    assert np.array_equal(pixels, scipy_filter([image], [{}], params))
    assert (profile["dtype"], profile["count"], profile["nodata"]) == ("int16", 2, -1)
    assert profile["transform"] == PROFILE["transform"] and profile["crs"] == "EPSG:32631"
    assert profile["blockxsize"] == 512 or not profile.get("tiled")


@pytest.mark.parametrize("workers", [1, 3])
def test_written_and_shared_outputs_of_one_step(tmp_path, workers):
    a, b = make_image(seed=1), make_image(seed=2)
    with Engine(workers, tiling=Tiling("tiles", 11)) as engine:
        ra, rb = engine.from_array(a, PROFILE), engine.from_array(b, PROFILE)
        total, diff, top = engine.map(
            sum_diff_max, [ra, rb], profile_fn=sum_diff_max_profiles,
            output_names=["sum", "diff", "max"],
            files=[OutputFile(tmp_path / "sum.tif", {"compress": "zstd"}), None,
                   OutputFile(tmp_path / "max.tif", {"tiled": False})])
        expected = sum_diff_max([a, b], [], {})
        assert np.array_equal(diff.array, expected[1].astype("float32"))
    assert np.array_equal(read(tmp_path / "sum.tif")[0], expected[0])
    assert read(tmp_path / "sum.tif")[1]["compress"] == "zstd"
    assert np.array_equal(read(tmp_path / "max.tif")[0], expected[2])
    assert (total.name, top.name) == ("sum", "max")


def test_a_failing_step_closes_its_files_and_frees_its_memory(tmp_path):
    with Engine(2, tiling=Tiling("tiles", 16)) as engine:
        source = engine.from_array(make_image(), PROFILE)
        before = own_segments()  # not the machine's: other eoscale runs come and go beside it
        with pytest.raises(StepError, match="tile 3"):
            engine.map(raises, [source], params={"bad_tile": 3}, margin=0,
                       files=[OutputFile(tmp_path / "out.tif")])
        assert own_segments() == before
