"""Pipelines on a working grid, run through the runner: inputs not on it are warped on the fly
and give, pixel for pixel, one plain ``rasterio.warp.reproject`` of the whole file onto it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, reproject

from eoscale.pipeline import load_pipeline
from eoscale.pipeline.runner import run_pipeline

Writer = Callable[..., Path]
NAIP_2012 = "naip_m_4709963_se_14_1_20120731.tif"
NAIP_2020 = "naip_m_4709963_se_14_1_20200831.tif"


def read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as dataset:
        return dataset.read(), dict(dataset.profile)


def whole_reproject(path: Path, like: dict, resampling: str) -> np.ndarray:
    """The oracle: rasterio's reproject of the whole file, with its defaults, onto a grid."""
    with rasterio.open(path) as src:
        out = np.zeros((src.count, like["height"], like["width"]), src.dtypes[0])
        reproject(rasterio.band(src, list(range(1, src.count + 1))), out,
                  dst_transform=like["transform"], dst_crs=like["crs"],
                  resampling=Resampling[resampling])
    return out


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("tile_size", [64, 200])
@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
def test_naip_2020_on_the_2012_grid(write_pipeline: Writer, shared_data: Path, workers: int,
                                    tile_size: int, resampling: str) -> None:
    spec = load_pipeline(write_pipeline(f"""
        version: 1
        workers: {workers}
        tiling: {{tile_size: {tile_size}}}
        grid: {{like: old}}
        inputs:
          old: {shared_data / NAIP_2012}
          new: {{path: {shared_data / NAIP_2020}, resampling: {resampling}}}
        steps:
          - {{name: both, map: eoscale.ops.stack, inputs: [old, new]}}
        outputs: {{both: out/both.tif}}
        """))
    run_pipeline(spec)
    both, profile = read(spec.outputs["both"].path)
    old, old_profile = read(shared_data / NAIP_2012)
    assert profile["transform"] == old_profile["transform"] and profile["crs"] == old_profile["crs"]
    assert np.array_equal(both[:4], old)
    assert np.array_equal(both[4:], whole_reproject(shared_data / NAIP_2020, old_profile,
                                                    resampling))


def test_a_dsm_averaged_onto_a_grid_twice_as_coarse(write_pipeline: Writer,
                                                   shared_data: Path) -> None:
    _, own = read(shared_data / "dsm.tif")
    spec = load_pipeline(write_pipeline(f"""
        version: 1
        workers: 2
        grid: {{like: dsm, resolution: {2 * own["transform"].a}}}
        inputs:
          dsm: {{path: {shared_data / "dsm.tif"}, resampling: average}}
        steps:
          - {{name: coarse, map: eoscale.ops.select_bands, inputs: [dsm], params: {{bands: [1]}}}}
        outputs: {{coarse: out/coarse.tif}}
        """))
    plan_images = run_pipeline(spec).plan.images
    assert "warped onto the working grid (average)" in plan_images["dsm"].why
    coarse, profile = read(spec.outputs["coarse"].path)
    assert profile["transform"].a == 2 * own["transform"].a
    assert np.array_equal(coarse, whole_reproject(shared_data / "dsm.tif", profile, "average"))


def test_a_band_stack_of_the_ls5_red_and_nir_files(write_pipeline: Writer,
                                                  shared_data: Path) -> None:
    red, nir = (shared_data / f"ls5_nbar_19920323_B{band}.tif" for band in ("30_red", "40_nir"))
    spec = load_pipeline(write_pipeline(f"""
        version: 1
        workers: 2
        inputs:
          ls5: {{bands: [{red}, {nir}]}}
        steps:
          - {{name: copy, map: eoscale.ops.select_bands, inputs: [ls5], params: {{bands: [1, 2]}}}}
        outputs: {{copy: out/stack.tif}}
        """))
    run_pipeline(spec)
    stack, profile = read(spec.outputs["copy"].path)
    assert np.array_equal(stack, np.concatenate([read(red)[0], read(nir)[0]]))
    assert (profile["nodata"], profile["dtype"]) == (-999, "int16")


def test_an_output_may_not_overwrite_a_band_file(write_pipeline: Writer, make_raster: Writer,
                                                 tmp_path: Path) -> None:
    from eoscale.errors import PipelineError

    make_raster("b1.tif")
    make_raster("b2.tif")
    with pytest.raises(PipelineError) as raised:
        load_pipeline(write_pipeline("""
            version: 1
            inputs: {s: {bands: [b1.tif, b2.tif]}}
            steps:
              - {name: copy, map: eoscale.ops.select_bands, inputs: [s], params: {bands: [1]}}
            outputs: {copy: b2.tif}
            """))
    assert [p.message for p in raised.value.problems] == [
        f"{tmp_path / 'b2.tif'} is also the path of input 's'"]
