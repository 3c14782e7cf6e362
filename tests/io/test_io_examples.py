"""The example pipelines of the working grid and band stacks and their sample data: each input,
read on the working grid by the engine, equals reading its files and one warp of the whole file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from test_io_sources import identity, whole_warp

from eoscale.engine import Engine, Tiling
from eoscale.io.sources import Grid
from eoscale.pipeline import load_pipeline
from eoscale.pipeline.inputs import input_source, own_profiles, working_grid
from eoscale.sample import make_grid_samples

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read()


def test_the_sample_data_of_the_grid_examples_is_what_eoscale_sample_makes(tmp_path: Path) -> None:
    for made in make_grid_samples(tmp_path):
        with rasterio.open(made) as new, rasterio.open(PIPELINES / "data" / made.relative_to(
                tmp_path)) as kept:
            assert new.profile == kept.profile
            np.testing.assert_array_equal(new.read(), kept.read())


def test_the_band_stack_example_reads_its_inputs_on_the_working_grid() -> None:
    spec = load_pipeline(PIPELINES / "grid_bands.yaml")
    found: list = []
    grid = working_grid(spec, own_profiles(spec, found))
    with rasterio.open(PIPELINES / "data" / "bands" / "B04.tif") as red:
        assert found == [] and grid == Grid.of(red.profile)
    bands = [PIPELINES / "data" / "bands" / name for name in ("B04.tif", "B08.tif", "B11.tif")]
    expected = {"s2": np.concatenate([read(bands[0]), read(bands[1]),
                                      whole_warp(bands[2], grid, "bilinear")]),
                "before": whole_warp(PIPELINES / "data" / "before.tif", grid, "cubic")}
    with Engine(2, tiling=Tiling("tiles", 100)) as engine:
        for name, pixels in expected.items():
            source = input_source(spec, name, grid)
            np.testing.assert_array_equal(engine.load(source, name=name).array, pixels)
            [copy] = engine.map(identity, [engine.open(source, name=name)])
            np.testing.assert_array_equal(copy.array, pixels)
    assert (expected["before"] == 0).any() and (expected["before"] != 0).mean() > 0.8


def test_the_coarser_grid_example_averages_the_surface_model() -> None:
    spec = load_pipeline(PIPELINES / "grid_coarser.yaml")
    grid = working_grid(spec, own_profiles(spec, []))
    assert grid.resolution == (2.0, 2.0) and (grid.width, grid.height) == (128, 128)
    source = input_source(spec, "dsm", grid)
    with Engine(1) as engine:
        np.testing.assert_array_equal(
            engine.load(source).array,
            whole_warp(PIPELINES / "data" / "dsm.tif", grid, "average"))
