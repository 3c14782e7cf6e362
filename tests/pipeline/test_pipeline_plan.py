"""The run plan: where each image lives and why, release points, tilings, and that the run
executes exactly what the plan says."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio

from eoscale.engine.tiling import TileLayout, plan_step
from eoscale.pipeline import Resources, load_pipeline, plan_run, validate
from eoscale.pipeline.runner import run_pipeline
from eoscale.pipeline.spec import PipelineSpec

Writer = Callable[..., Path]

MIXED = """
    version: 1
    workers: 2
    tiling: {tile_size: 8}
    inputs: {a: a.tif, b: b.tif, c: c.tif, unused: d.tif, copied: e.tif}
    steps:
      - name: ndvi
        map: pipeline_callables.ndvi
        profile: pipeline_callables.ndvi_profile
        inputs: [a, b]
      - name: count
        reduce: pipeline_callables.one_per_tile
        inputs: [ndvi]
      - {name: smooth, map: pipeline_callables.smooth, inputs: [a], params: {radius: 2}}
      - {name: edge, map: pipeline_callables.smooth, inputs: [c]}
      - name: late
        map: pipeline_callables.smooth
        inputs: [copied]
        params: {radius: "${count}"}
    outputs: {ndvi: out/ndvi.tif, count: out/count.json, copied: out/copy.tif, late: out/late.tif}
    """

TWO = Resources(workers=2, memory=None, base=0, executor="processes")


@pytest.fixture
def mixed(write_pipeline: Writer, make_raster: Writer) -> PipelineSpec:
    for name in "abcde":
        make_raster(f"{name}.tif", width=32, height=24, count=2)
    return load_pipeline(write_pipeline(MIXED))


def test_where_each_image_lives_and_why(mixed: PipelineSpec) -> None:
    images = plan_run(mixed, TWO).images
    lives = {name: (image.lives, image.arrives, image.released_after)
             for name, image in images.items()}
    assert lives == {
        "a": ("shared", 0, 2),        # two steps read it
        "b": ("file", 0, 0),          # one step, without margin: streamed
        "c": ("shared", 3, 3),        # one step, but with margin 4
        "unused": ("file", 5, -1),    # never brought in
        "copied": ("shared", -1, 4),  # an output too: loaded at the start, copied
        "ndvi": ("written", 0, 1),    # an output only a reduce reads: written, the reduce fed
        "smooth": ("shared", 2, 2),
        "edge": ("shared", 3, 3),
        "late": ("written", 4, 4),    # an output nothing reads: written as computed
    }
    assert "2 steps read it" in images["a"].why
    assert "margin 4" in images["c"].why
    assert "only reduces read it" in images["ndvi"].why
    assert "not read back (count is fed by step ndvi's tiles)" in images["ndvi"].why
    assert "written to its file as tiles are computed" in images["late"].why
    assert images["ndvi"].output == mixed.outputs["ndvi"].path
    assert images["ndvi"].known and not images["smooth"].known


def test_loads_stages_releases_and_margins(mixed: PipelineSpec) -> None:
    plan = plan_run(mixed, TWO)
    assert plan.copied == ("copied",)
    steps = {step.name: (step.loads, step.saves, step.releases) for step in plan.steps}
    assert steps == {
        "ndvi": (("a", "b"), (), ("b",)),  # written as computed: nothing to save after
        "count": ((), ("count",), ("ndvi",)),
        "smooth": ((), (), ("a", "smooth")),
        "edge": (("c",), (), ("c", "edge")),
        "late": ((), (), ("copied", "late")),
    }
    margins = [(step.margin, step.margin_from) for step in plan.steps]
    assert margins == [(0, "none"), (0, "none"), (2, "declared"), (4, "declared"),
                       (None, "params")]


def test_tilings_are_the_engines(mixed: PipelineSpec) -> None:
    plan = plan_run(mixed, TWO)
    for step in plan.steps:
        assert step.tiling == plan_step(24, 32, margin=step.margin or 0, tiling=mixed.tiling,
                                        workers=2, block_shape=(8, 32))
        assert step.tiling.tile_count == len(step.tiling.tiles()) == 12
    # A margin derived from ${...} params is planned the same way once the params are known.
    assert plan.steps[-1].tiling_for({"radius": 5}) == TileLayout(24, 32, 8, 5, "tiles")


def test_the_run_executes_the_plan(mixed: PipelineSpec) -> None:
    plan = plan_run(mixed, TWO)
    result = run_pipeline(plan)
    assert result.plan is plan
    assert result.results["count"] == 12
    tiles = {report.name: report.tiles for report in result.reports
             if report.kind in ("map", "reduce")}
    assert plan.steps[1].fed_by == 0  # count runs on ndvi's tiles: no report of its own
    assert tiles == {step.name: step.tiling.tile_count for step in plan.steps
                     if step.fed_by is None}
    assert sorted(path.name for path in result.written.values()) == [
        "copy.tif", "count.json", "late.tif", "ndvi.tif"]
    with rasterio.open(mixed.outputs["late"].path) as late, \
            rasterio.open(mixed.inputs["copied"].path) as copied:
        assert np.array_equal(late.read(), copied.read())
    if result.peak_bytes is not None:
        assert result.peak_bytes > 0


def test_the_plan_as_json_is_plain_values(mixed: PipelineSpec) -> None:
    import json

    document = json.loads(json.dumps(plan_run(mixed, TWO).to_dict()))
    assert [step["tiling"]["tiles"] for step in document["steps"]] == [12] * 5
    assert document["steps"][4]["margin"] is None
    peak = document["estimate"]
    assert peak["peak_bytes"] == max(step["memory"]["total_bytes"] for step in document["steps"])
    assert peak["peak_bytes"] == peak["images_bytes"] + peak["tiles_bytes"] + peak["fixed_bytes"]


def test_resources_follow_the_cpu_affinity() -> None:
    found = Resources.detect()
    assert found.workers == len(os.sched_getaffinity(0))
    assert found.executor == ("processes" if found.workers > 1 else "inline")
    assert Resources.detect(1).executor == "inline"


def test_one_grid_tolerance_for_validation_and_engine(write_pipeline: Writer,
                                                      make_raster: Writer) -> None:
    make_raster("a.tif")
    text = """
        version: 1
        workers: 2
        inputs: {a: a.tif, b: b.tif}
        steps:
          - {name: ndvi, map: pipeline_callables.ndvi, inputs: [a, b]}
        """
    # A billionth of a pixel apart: one grid, for validation and for the engine alike.
    make_raster("b.tif", origin=(1000.0 + 1e-8, 2000.0))
    spec = load_pipeline(write_pipeline(text))
    assert validate(spec) == []
    assert run_pipeline(spec).reports
    # A thousandth of a pixel: two grids, and validation says so before anything runs.
    make_raster("b.tif", origin=(1000.01, 2000.0))
    found = validate(load_pipeline(write_pipeline(text)))
    assert [p.message for p in found] == [
        "b.tif is not on the grid of input 'a' (a.tif): origin (1000.01, 2000), not (1000, 2000) "
        "(to read it on that grid, set 'grid: {like: a}' at the top of the pipeline)"]


WRITES = """
    version: 1
    workers: 2
    tiling: {tile_size: 8}
    inputs: {a: a.tif}
    steps:
      - name: clipped
        map: pipeline_callables.clip_in_place
        inputs: [a]
        params: {high: 300}
        margin: 1
        WRITABLE
      - {name: total, reduce: pipeline_callables.tile_sum, inputs: [a]}
    outputs: {clipped: out/clipped.tif, total: out/total.json}
    """


def test_writable_inputs_from_the_pipeline(write_pipeline: Writer, make_raster: Writer) -> None:
    import json

    from eoscale.errors import StepError

    make_raster("a.tif", width=32, height=24, dtype="uint16")
    spec = load_pipeline(write_pipeline(WRITES.replace("WRITABLE", "writable_inputs: true")))
    result = run_pipeline(spec)
    with rasterio.open(spec.inputs["a"].path) as source:
        original = source.read()
    with rasterio.open(spec.outputs["clipped"].path) as clipped:
        assert np.array_equal(clipped.read(), np.minimum(original, 300))
    # The shared input stayed as it was: the later step sums the original pixels.
    total = json.loads(spec.outputs["total"].path.read_text())["result"]
    assert total == result.results["total"] == float(original.sum())
    refused = load_pipeline(write_pipeline(WRITES.replace("WRITABLE", ""), name="p2.yaml"))
    with pytest.raises(StepError, match="writable_inputs: true"):
        run_pipeline(refused, overwrite=True)
