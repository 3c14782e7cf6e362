"""Under a memory budget the plan moves images out of memory (spilled to disk, read from their
files) and shrinks tiles, and the results stay bit for bit those of the run in memory."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from eoscale.engine.scratch import list_scratch
from eoscale.pipeline import Resources, load_pipeline, plan_run, validate
from eoscale.pipeline.runner import run_pipeline

Writer = Callable[..., Path]


def budget(workers: int, memory: int) -> Resources:
    """``workers`` and a budget of ``memory`` bytes, as ``memory:`` gives it."""
    return Resources(workers, memory, base=0, executor="inline" if workers == 1 else "processes",
                     given=True)

CHAIN = """
    version: 1
    workers: WORKERS
    tiling: {mode: MODE}
    scratch: scratch
    inputs: {dem: dem.tif}
    steps:
      - {name: filled, map: eoscale.ops.fill_nodata, inputs: [dem], params: {max_distance: 10}}
      - {name: median, map: eoscale.ops.median_filter, inputs: [filled], params: {size: 3}}
      - {name: stats, reduce: eoscale.ops.stats, inputs: [median]}
      - name: smooth
        map: eoscale.ops.gaussian_filter
        inputs: [median]
        params: {sigma: 1.0}
      - name: low
        map: eoscale.ops.cast
        inputs: [median]
        params: {dtype: float32, scale: 2.0}
    outputs: {smooth: out/smooth.tif, low: out/low.tif, stats: out/stats.json,
              median: out/median.tif}
    """


@pytest.fixture
def dem(tmp_path: Path) -> Path:
    """A 600 x 500 float32 surface with NaN holes, nodata NaN."""
    rows, cols = np.mgrid[0:500, 0:600]
    surface = (100 + 20 * np.sin(rows / 37.0) * np.cos(cols / 23.0) + rows * 0.05).astype("float32")
    surface[np.random.default_rng(3).random(surface.shape) < 0.02] = np.nan
    surface[200:230, 300:340] = np.nan
    path = tmp_path / "dem.tif"
    with rasterio.open(path, "w", driver="GTiff", width=600, height=500, count=1, dtype="float32",
                       crs="EPSG:32631", transform=Affine(2, 0, 500000, 0, -2, 4000000),
                       nodata=float("nan"), tiled=True, blockxsize=256, blockysize=256) as out:
        out.write(surface[np.newaxis])
    (tmp_path / "scratch").mkdir()
    return path


def outputs_of(spec) -> dict[str, object]:
    found: dict[str, object] = {}
    for name, output in spec.outputs.items():
        if output.path.suffix == ".json":
            found[name] = json.loads(output.path.read_text())["result"]
        else:
            with rasterio.open(output.path) as dataset:
                found[name] = dataset.read()
    return found


def same(a: dict[str, object], b: dict[str, object]) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(a[k], b[k], equal_nan=True) if isinstance(a[k], np.ndarray) else a[k] == b[k]
        for k in a)


def smallest_budget(spec, workers: int) -> int:
    """The smallest budget (to 1 KiB) under which the plan fits."""
    low, high = 1024, 1 << 32
    while high - low > 1024:
        middle = (low + high) // 2
        if plan_run(spec, budget(workers, middle)).fits:
            high = middle
        else:
            low = middle
    return high


@pytest.mark.parametrize("workers, mode", [(1, "tiles"), (2, "tiles"), (2, "strips")])
def test_every_kind_under_a_tight_budget_gives_the_same_results(
        write_pipeline: Writer, dem: Path, tmp_path: Path, workers: int, mode: str) -> None:
    spec = load_pipeline(write_pipeline(CHAIN.replace("WORKERS", str(workers))
                                        .replace("MODE", mode)))
    roomy = plan_run(spec, budget(workers, 1 << 34))
    # Roomy: filled, read by the median only and cheap to recompute in its tiles, is fused
    # into it whatever the budget; the rest is held or written.
    assert {name: image.lives for name, image in roomy.images.items()
            if image.lives not in ("shared", "written")} == {"filled": "fused"}
    run_pipeline(roomy)
    expected = outputs_of(spec)

    # Under what the roomy plan holds: images held at its peak go to disk.
    spilling = plan_run(spec, budget(workers, int(0.8 * roomy.peak.held)))
    moved = {name: image.lives for name, image in spilling.images.items()
             if image.lives != roomy.images[name].lives}
    assert spilling.fits and moved and set(moved.values()) <= {"spilled", "file", "fused"}
    # The least that fits: every image that can leave memory does, and the peak step's tiles
    # shrink (only its: the reduction keeps its tiling, so its floats stay the same).
    tight_budget = smallest_budget(spec, workers)
    tight = plan_run(spec, budget(workers, tight_budget))
    lives = {name: image.lives for name, image in tight.images.items()}
    # The median, an output read by three steps, one of them a reduce, is spilled to its output
    # file; filled, read by the median only, is fused into it or, at the very least budget
    # (where the fused chain's windows no longer fit), spilled too.
    assert lives["dem"] == "file" and lives["median"] == "spilled"
    assert lives["filled"] in {"fused", "spilled"}
    assert any(a.tiling.tile_size < b.tiling.tile_size for a, b in zip(tight.steps, roomy.steps))
    assert tight.peak.held <= tight_budget < 0.6 * roomy.peak.held
    for plan in (spilling, tight):
        run_pipeline(plan, overwrite=True)
        found = outputs_of(spec)
        images = {name: value for name, value in found.items() if name != "stats"}
        assert same(images, {name: expected[name] for name in images})  # maps: tile-exact
        if plan.steps[2].tiling == roomy.steps[2].tiling:  # a reduction: exact on one tiling
            assert found["stats"] == expected["stats"]
        else:  # on smaller tiles its floats are summed in another order
            assert found["stats"][0]["count"] == expected["stats"][0]["count"]
            assert found["stats"][0]["mean"] == pytest.approx(expected["stats"][0]["mean"],
                                                              rel=1e-12)
        assert list_scratch(tmp_path / "scratch") == []
    # Below the least, the pipeline is refused before anything runs, naming the step and the
    # budget that would do.
    problem, = validate(spec, resources=budget(workers, tight_budget - 2048))
    assert "give it at least" in problem.message and problem.step is not None
    # and the budget it names, typed back as shown, is enough (the estimate grows with it)
    import re

    from eoscale.sizes import parse_size

    shown = re.search(r"give it at least ([0-9.]+ [KMGT]iB)", problem.message).group(1)
    assert validate(spec, resources=budget(workers, parse_size(shown))) == []


def test_a_failed_spilled_run_leaves_no_scratch_file(write_pipeline: Writer, dem: Path,
                                                     tmp_path: Path) -> None:
    from eoscale.errors import StepError

    text = CHAIN.replace("WORKERS", "2").replace("MODE", "tiles").replace(
        "params: {dtype: float32, scale: 2.0}", "params: {dtype: uint8, scale: 2.0}")
    spec = load_pipeline(write_pipeline(text))
    plan = plan_run(spec, budget(2, smallest_budget(spec, 2)))
    assert "spilled" in {image.lives for image in plan.images.values()}
    with pytest.raises(StepError, match="step 'low'"):  # 2 x ~110 m does not fit in uint8
        run_pipeline(plan)
    assert list_scratch(tmp_path / "scratch") == []
    assert not (tmp_path / "out").exists()
