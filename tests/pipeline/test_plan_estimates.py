"""The plan's memory estimate of a fused chain: a worker runs the chain's steps one after the other
on a tile, so its tile holds the worst step's buffers beside the results still to be read, never
every step's buffers at once."""

from __future__ import annotations

import pytest
from test_pipeline_fitting import budget, shape_of

from eoscale.ops import MEMORY_FACTORS
from eoscale.pipeline import load_pipeline
from eoscale.pipeline.plan import fit, least_budget

#: The benchmarks' out-of-core chain (ooc_chain.yaml): fill (margin 10) -> 3 x 3 median (1) ->
#: gaussian (4) -> GeoTIFF, and its statistics fed by the gaussian's tiles.
OOC = {
    "version": 1,
    "inputs": {"dsm": "dsm.tif"},
    "steps": [
        {"name": "filled", "map": "eoscale.ops.fill_nodata", "inputs": ["dsm"],
         "params": {"max_distance": 10}},
        {"name": "median", "map": "eoscale.ops.median_filter", "inputs": ["filled"],
         "params": {"size": 3}},
        {"name": "smooth", "map": "eoscale.ops.gaussian_filter", "inputs": ["median"],
         "params": {"sigma": 1.0}},
        {"name": "stats", "reduce": "eoscale.ops.stats", "inputs": ["smooth"]},
    ],
    "outputs": {"smooth": "out/smooth.tif", "stats": "out/stats.json"},
}


def fused_plan(workers: int, size: int):
    """The plan of the chain on a ``size`` x ``size`` float32 image under the least budget
    (in steps of 10 %) that fuses filled and median into smooth."""
    shape = shape_of(load_pipeline(OOC), size, size, block=(512, 512))
    memory = least_budget(shape, budget(workers, 0))
    for _ in range(40):
        found = fit(shape, budget(workers, memory))
        if found.images["filled"].lives == found.images["median"].lives == "fused":
            return found
        memory = int(memory * 1.1)
    raise AssertionError("the chain is fused under no budget")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_fused_chain_holds_its_worst_step_beside_the_results_still_read(workers: int) -> None:
    plan = fused_plan(workers, 6144)
    smooth = next(step for step in plan.steps if step.name == "smooth")
    assert smooth.chain and smooth.tiling.mode == "tiles"
    tile = smooth.tiling.tile_size
    # Each step computes on the tile grown by how far the chain reads around it from there on:
    # fill 4 + 1 + 10 px, the median 4 + 1, the gaussian 4 (tiles inside the image).
    fill, median, gauss = ((tile + 2 * reach) ** 2 for reach in (15, 5, 4))
    pixel = 4  # float32
    at_fill = fill * pixel * (MEMORY_FACTORS["fill_nodata"] + 1)  # + dsm's decoded window
    # The median's buffers beside filled's results (kept whole: a view of them), the gaussian's
    # beside the median's, and the gaussian's core cast and encoded into the file.
    at_median = fill * pixel + median * pixel * MEMORY_FACTORS["median_filter"]
    at_gauss = (median * pixel + gauss * pixel * MEMORY_FACTORS["gaussian_filter"]
                + 2 * tile * tile * pixel)
    gdal_cache = min(6144 * 6144 * pixel, plan.resources.gdal_cache)
    assert max(at_fill, at_median, at_gauss) == at_median
    # Tiles that are not whole blocks of the output (512 px): the main process writes it, and
    # holds a block's rows and two tiles' across the image until their blocks are whole.
    written_here = 0 if tile % 512 == 0 else (512 + 2 * tile) * 6144 * pixel
    assert plan.images["smooth"].encoded is (written_here == 0)
    assert smooth.memory.tiles == workers * (at_median + gdal_cache) + written_here
    # Counting every step's buffers at once, as the plan did, is about twice as much.
    assert at_median < 0.6 * (at_fill + at_median + at_gauss)
