"""Fitting a plan to a budget from a run's shape alone (band counts, dtypes, the grid, margins):
no raster is read, and the plan is the one planned from rasters of that shape; the least budget
that fits is found directly."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine

from eoscale.errors import Problem
from eoscale.pipeline import load_pipeline, plan_run
from eoscale.pipeline.plan import (
    BUDGET_HEADROOM,
    Resources,
    RunShape,
    fit,
    least_budget,
    run_shape,
    step_callables,
)
from eoscale.pipeline.spec import PipelineSpec

Writer = Callable[..., Path]

CHAIN = {
    "version": 1,
    "inputs": {"dem": "dem.tif"},
    "steps": [
        {"name": "filled", "map": "eoscale.ops.fill_nodata", "inputs": ["dem"],
         "params": {"max_distance": 10}},
        {"name": "median", "map": "eoscale.ops.median_filter", "inputs": ["filled"],
         "params": {"size": 3}},
        {"name": "stats", "reduce": "eoscale.ops.stats", "inputs": ["median"]},
        {"name": "smooth", "map": "eoscale.ops.gaussian_filter", "inputs": ["median"],
         "params": {"sigma": 1.0}},
        {"name": "low", "map": "eoscale.ops.cast", "inputs": ["median"],
         "params": {"dtype": "float32", "scale": 2.0}},
    ],
    "outputs": {"smooth": "out/smooth.tif", "low": "out/low.tif", "stats": "out/stats.json"},
}

#: One step reading its input without margin, its image written as computed, tiles of a given
#: size: on a cluster (GDAL's cache is the workers', outside the budget) no budget changes its
#: plan.
SINGLE = {
    "version": 1,
    "tiling": {"tile_size": 128},
    "inputs": {"dem": "dem.tif"},
    "steps": [{"name": "low", "map": "eoscale.ops.cast", "inputs": ["dem"],
               "params": {"dtype": "float32", "scale": 2.0}}],
    "outputs": {"low": "out/low.tif"},
}


def budget(workers: int, memory: int | None) -> Resources:
    return Resources(workers, memory, base=0, executor="inline" if workers == 1 else "processes",
                     given=memory is not None)


def shape_of(spec: PipelineSpec, height: int, width: int, dtype: str = "float32",
             block: tuple[int, int] = (256, 256)) -> RunShape:
    """The run's shape for inputs of ``height`` x ``width`` pixels, one band: no file read."""
    problems: list[Problem] = []
    callables = step_callables(spec, problems)
    profiles = {name: {"height": height, "width": width, "count": 1, "dtype": dtype,
                       "block_shape": block} for name in spec.inputs}
    shape = run_shape(spec, profiles, callables, problems)
    assert shape is not None, problems
    return shape


def test_no_raster_is_read() -> None:
    spec = load_pipeline(CHAIN)
    assert not any(path.exists() for item in spec.inputs.values() for path in item.paths)
    plan = fit(shape_of(spec, 3000, 2000), budget(2, 1 << 34))
    assert plan.images["dem"].nbytes == 3000 * 2000 * 4
    assert plan.fits


@pytest.mark.parametrize("workers", [1, 2])
def test_a_plan_from_shapes_is_the_plan_from_rasters(write_pipeline: Writer, tmp_path: Path,
                                                    workers: int) -> None:
    """For budgets from roomy down to the least that fits, every decision and estimate."""
    data = np.random.default_rng(5).normal(100, 10, (1, 500, 600)).astype("float32")
    with rasterio.open(tmp_path / "dem.tif", "w", driver="GTiff", width=600, height=500, count=1,
                       dtype="float32", crs="EPSG:32631", transform=Affine(2, 0, 0, 0, -2, 0),
                       tiled=True, blockxsize=256, blockysize=256) as out:
        out.write(data)
    spec = load_pipeline(write_pipeline(yaml.safe_dump(CHAIN)))
    shape = shape_of(spec, 500, 600)
    least = least_budget(shape, budget(workers, None))
    roomy = fit(shape, budget(workers, None)).peak.held
    for memory in (None, roomy, roomy // 2, roomy // 4, least * 2, least):
        from_rasters = plan_run(spec, budget(workers, memory))
        assert fit(shape, budget(workers, memory)).to_dict() == from_rasters.to_dict(), memory


@pytest.mark.parametrize("workers, mode", [(1, "tiles"), (2, "tiles"), (2, "strips")])
def test_the_least_budget_that_fits(workers: int, mode: str) -> None:
    """It fits at that budget, not a byte below; the plan there has moved images out of
    memory, fused, spilled or read from their files."""
    spec = load_pipeline({**CHAIN, "tiling": {"mode": mode}})
    shape = shape_of(spec, 1500, 1200)
    least = least_budget(shape, budget(workers, None), resolution=1)
    tight = fit(shape, budget(workers, least))
    assert tight.fits
    assert not fit(shape, budget(workers, least - 1)).fits
    roomy = fit(shape, budget(workers, None))
    assert least < roomy.peak.held / (1 - BUDGET_HEADROOM)
    moved = {image.lives for image in tight.images.values()} - {"shared", "written"}
    assert moved and moved <= {"fused", "spilled", "file"}


def test_the_least_budget_of_a_plan_no_budget_changes() -> None:
    """What its one plan holds, with the headroom the budget keeps: on a cluster, the tiles two
    workers send back to this process as they are written (2 x 2 x 128 x 128 float32), and,
    its 128 px tiles not being whole blocks of the file (512 px), the pixels this process holds
    until their blocks are whole: a block's rows and two tiles' across the image (768 x 900)."""
    spec = load_pipeline(SINGLE)
    shape = shape_of(spec, 1000, 900)
    cluster = Resources(2, None, base=0, executor="cluster", cluster="local:2")
    plan = fit(shape, cluster)
    assert [image.lives for image in plan.images.values()] == ["file", "written"]
    assert plan.peak.held == 2 * 2 * 128 * 128 * 4 + (512 + 2 * 128) * 900 * 4
    least = least_budget(shape, cluster, resolution=1)
    assert abs(least - math.ceil(plan.peak.held / (1 - BUDGET_HEADROOM))) <= 1
