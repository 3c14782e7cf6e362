"""Fused chains in pipelines: under a budget the plan computes a map's image inside the tiles of
the map steps that read it, and the outputs are bit for bit those of the run in memory."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from test_pipeline_budget import budget, outputs_of, same, smallest_budget

from eoscale.api import plan
from eoscale.engine.scratch import list_scratch
from eoscale.pipeline import load_pipeline, plan_run
from eoscale.pipeline.plan import fit, least_budget, plan_shape
from eoscale.pipeline.runner import run_pipeline

Writer = Callable[..., Path]

# Margins 0 (a two-in, two-out step), 1 and 10 (reading an image of the first step too), a
# reduce in the middle whose result the next step reads, then margin 100. The output's blocks
# are the inputs' (128 px), so that tiles aligned to them can shrink under a budget.
CHAIN = """
    version: 1
    workers: WORKERS
    tiling: {mode: MODE}
    scratch: scratch
    inputs: {a: a.tif, b: b.tif}
    steps:
      - {name: pair, map: fused_callables.pair, inputs: [a, b], outputs: [total, diff]}
      - {name: near, map: fused_callables.extreme, inputs: [total], params: {radius: 1}}
      - {name: wide, map: fused_callables.extreme, inputs: [near, diff],
         params: {radius: 10, low: true}}
      - {name: level, reduce: fused_callables.level, inputs: [wide]}
      - {name: scaled, map: fused_callables.scale, inputs: [wide], params: {level: "${level.max}"}}
      - {name: far, map: fused_callables.extreme, inputs: [scaled], params: {radius: 100}}
      - {name: last, map: fused_callables.extreme, inputs: [far], params: {radius: 1, low: true}}
    outputs:
      last: {path: out/last.tif, options: {blockxsize: 128, blockysize: 128}}
      level: out/level.json
    """


def _write(path: Path, data: np.ndarray) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype.name, crs="EPSG:32631",
                       transform=Affine(5, 0, 600000, 0, -5, 5000000), tiled=True,
                       blockxsize=128, blockysize=128) as out:
        out.write(data)
    return path


def tightest_fused(spec, workers: int, name: str):
    """The plan under the tightest budget (in steps of 10 % above the least that fits) at which
    image ``name`` is fused: below it, where fused chains no longer fit, the plan only spills.
    The run's shape is read once, the plans fitted from it."""
    shape = plan_shape(spec)
    memory = least_budget(shape, budget(workers, 0))
    for _ in range(30):
        found = fit(shape, budget(workers, memory))
        if found.images[name].lives == "fused":
            return found
        memory = int(memory * 1.1)
    raise AssertionError(f"'{name}' is fused under no budget up to {memory} bytes")


@pytest.fixture
def pair_inputs(tmp_path: Path) -> Path:
    rng = np.random.default_rng(7)
    rows, cols = np.mgrid[0:800, 0:900]
    relief = 50 * np.sin(rows / 29.0) * np.cos(cols / 17.0)
    _write(tmp_path / "a.tif", (relief + rng.normal(0, 3, relief.shape)).astype("float32")[None])
    _write(tmp_path / "b.tif", rng.integers(0, 1000, (1, 800, 900)).astype("uint16"))
    (tmp_path / "scratch").mkdir()
    return tmp_path


@pytest.mark.parametrize("workers, mode", [(1, "tiles"), (2, "tiles"), (2, "strips")])
def test_fused_chains_with_margins_0_1_10_100_give_the_results_in_memory(
        write_pipeline: Writer, pair_inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        workers: int, mode: str) -> None:
    spec = load_pipeline(write_pipeline(CHAIN.replace("WORKERS", str(workers))
                                        .replace("MODE", mode)))
    roomy = plan_run(spec, budget(workers, 1 << 34))
    assert not any(image.lives == "fused" for image in roomy.images.values())
    run_pipeline(roomy)
    expected = outputs_of(spec)

    # Margin 100 recomputes far more than spilling would cost on these tiles: allow it, so that
    # the chain through it is fused too.
    monkeypatch.setattr("eoscale.pipeline.plan.fusion.FUSE_MAX_RECOMPUTE", 100.0)
    # (In strips, the margin-100 chain's windows, 202 rows taller than its strips, are the peak
    # under every budget tight enough to move near out of memory: near is spilled there.)
    cases = [("near", ["near", "wide"])] if mode == "tiles" else []
    for name, chain in [*cases, ("far", ["scaled", "far", "last"])]:
        fused = tightest_fused(spec, workers, name)
        chains = [[fused.steps[i].name for i in step.chain] for step in fused.steps if step.chain]
        assert any(found[-len(chain):] == chain for found in chains)
        run_pipeline(fused, overwrite=True)
        assert same(outputs_of(spec), expected)
        assert list_scratch(tmp_path / "scratch") == []
    assert fused.images["scaled"].lives == "fused" and fused.steps[-1].tiling.margin == 101


def test_the_budget_fuses_cheap_chains_and_spills_costly_ones(
        write_pipeline: Writer, pair_inputs: Path) -> None:
    spec = load_pipeline(write_pipeline(CHAIN.replace("WORKERS", "2").replace("MODE", "tiles")))
    tight = tightest_fused(spec, 2, "far")
    lives = {name: image.lives for name, image in tight.images.items()}
    assert lives["near"] == lives["far"] == "fused"  # near > wide, far > last: cheap
    # Fusing scaled into far (margin 100) would compute it on windows 200 px wider than its
    # tiles: spilled, and the plan says why.
    assert lives["scaled"] == "spilled"
    assert "not fused: the chain would compute" in tight.images["scaled"].why
    for step in tight.steps:
        if step.chain:
            assert 0 < step.recompute <= 0.25
            made = tight.steps[step.chain[0]].step.outputs[0]
            assert f"{step.recompute:.1%} more pixels" in tight.images[made].why


def test_the_dry_run_names_the_chain(write_pipeline: Writer, pair_inputs: Path) -> None:
    from eoscale.cli.render import plan_text

    spec = load_pipeline(write_pipeline(CHAIN.replace("WORKERS", "2").replace("MODE", "tiles")
                                        .replace("version: 1", "version: 1\n    memory: 8MB")))
    text = plan_text(plan(spec))
    assert "step 2 near (map fused_callables.extreme): margin 1 (declared); fused into wide: " \
        "computed inside its tiles" in text
    # (pair > near > wide under this budget, with spills tiled on their scratch files' blocks;
    # far > last on whole 128 px blocks of last's file: at 6MB the chain far > last would need
    # 64 px tiles, whose pixels would wait in the main process for their blocks, and nothing
    # is fused there)
    assert "last.tif; encoded by the workers" in text
    assert re.search(r"runs the fused chain (pair > )?near > wide \(reads 11 px around each "
                     r"tile, computes ", text)
    assert "  near: 1 x 800 x 900 float64 (assumed; the first tile tells), 5.5 MiB; lives fused" \
        in text


def test_a_fused_chain_on_real_data(write_pipeline: Writer, shared_data: Path) -> None:
    """EOScale 1.0's example DSM: holes filled (margin 10), a median, a gaussian, in one chain."""
    text = f"""
        version: 1
        workers: 2
        inputs: {{dsm: {shared_data / 'eoscale_dsm.tif'}}}
        steps:
          - {{name: filled, map: eoscale.ops.fill_nodata, inputs: [dsm], params: {{max_distance: 10}}}}
          - {{name: median, map: eoscale.ops.median_filter, inputs: [filled], params: {{size: 3}}}}
          - {{name: smooth, map: eoscale.ops.gaussian_filter, inputs: [median], params: {{sigma: 1.0}}}}
        outputs: {{smooth: out/smooth.tif}}
        """
    spec = load_pipeline(write_pipeline(text))
    run_pipeline(plan_run(spec, budget(2, 1 << 34)))
    expected = outputs_of(spec)
    tight = tightest_fused(spec, 2, "filled")
    assert tight.images["median"].lives == "fused"
    assert [tight.steps[i].name for i in tight.steps[-1].chain] == ["filled", "median", "smooth"]
    run_pipeline(tight, overwrite=True)
    assert same(outputs_of(spec), expected)


KINDS_ON_NAIP = """
    version: 1
    workers: WORKERS
    tiling: {mode: MODE}
    scratch: scratch
    inputs: {scene: SCENE}
    steps:
      - name: ndvi
        map: eoscale.ops.band_math
        inputs: [scene]
        params: {expression: "(scene[4] - scene[1]) / (scene[4] + scene[1])", dtype: float32}
      - {name: median, map: eoscale.ops.median_filter, inputs: [ndvi], params: {size: 5}}
      - {name: smooth, map: eoscale.ops.gaussian_filter, inputs: [median],
         params: {sigma: 1.5, truncate: 2.0}}
      - {name: stats, reduce: fused_callables.level, inputs: [smooth]}
      - {name: standard, map: fused_callables.scale, inputs: [smooth],
         params: {level: "${stats.max}"}}
      - {name: wide, map: fused_callables.extreme, inputs: [standard], params: {radius: 10}}
    outputs: {wide: {path: out/wide.tif, options: OPTIONS}, stats: out/stats.json}
    """


@pytest.mark.parametrize("workers, mode", [(1, "tiles"), (2, "tiles"), (2, "strips")])
def test_every_kind_on_real_data_as_the_budget_shrinks(write_pipeline: Writer, shared_data: Path,
                                                      tmp_path: Path, workers: int,
                                                      mode: str) -> None:
    """NAIP (934 x 723, 4 bands): from the plan in memory down to the least budget that fits,
    each distinct plan is run; together they hold every kind a budget makes (file, fused,
    spilled, written; shared only where the chain is not fused whatever the budget), and each
    gives the outputs of the run in memory, bit for bit (the stats' tiles
    are never shrunk here, so they are exact too)."""
    (tmp_path / "scratch").mkdir()
    # In strips, an untiled output: strips of 512-px blocks would be 512 rows tall, the peak.
    text = (KINDS_ON_NAIP.replace("WORKERS", str(workers)).replace("MODE", mode)
            .replace("OPTIONS", "{tiled: false}" if mode == "strips" else "{}")
            .replace("SCENE", str(shared_data / "naip_m_4709963_se_14_1_20120731.tif")))
    spec = load_pipeline(write_pipeline(text))
    roomy = plan_run(spec, budget(workers, 1 << 34))
    run_pipeline(roomy)
    expected = outputs_of(spec)
    least = smallest_budget(spec, workers)
    seen: dict[tuple[str, ...], int] = {}
    memory = int(roomy.peak.held * 1.05)
    while memory >= least:
        found = plan_run(spec, budget(workers, memory))
        lives = tuple(image.lives for image in found.images.values())
        if lives not in seen and found.fits:
            seen[lives] = memory
            run_pipeline(found, overwrite=True)
            result = outputs_of(spec)
            assert same({"wide": result["wide"]}, {"wide": expected["wide"]}), (memory, lives)
            if all(step.tiling == roomy.steps[step.index].tiling for step in found.steps
                   if step.kind == "reduce"):
                assert result["stats"] == expected["stats"]
            assert list_scratch(tmp_path / "scratch") == []
        memory = int(memory * 0.8)
    kinds = {kind for lives in seen for kind in lives}
    assert kinds >= {"file", "fused", "spilled", "written"}, seen
