"""A reduce fed by the tiles of the map that makes its image (issue 19, item 5): its partials are
computed by the workers as they compute the map's tiles, folded in tile order, and the image's
file is never read back. Results equal today's (the reduce run over the image in memory, or over
its written file, on the same tiles) bit for bit, and numpy's on the whole image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from leak_checks import own_segments

from eoscale.cli.render import plan_text
from eoscale.engine import Engine, Tiling
from eoscale.engine.core import step_layout
from eoscale.engine.feeding import FedReduce, Feeding
from eoscale.engine.filed import FileRaster, OutputFile
from eoscale.engine.fused import ChainStep, assemble_chain
from eoscale.engine.scratch import list_scratch
from eoscale.engine.tiling import TileLayout
from eoscale.errors import StepError
from eoscale.ops import gaussian_filter, histogram, median_filter, stats
from eoscale.pipeline import Resources, load_pipeline, plan_run
from eoscale.pipeline.plan import RunPlan, least_budget, plan_shape
from eoscale.pipeline.plan.decide import Choices, decide
from eoscale.pipeline.plan.feeding import with_feeding
from eoscale.pipeline.runner import run_pipeline

Writer = Callable[..., Path]

#: filled (margin 10) -> median (margin 1) -> median.tif; three reduces of the median.
CHAIN = """
    version: 1
    workers: WORKERS
    tiling: {mode: tiles, tile_size: 64}
    scratch: scratch
    inputs: {dem: dem.tif}
    steps:
      - {name: filled, map: eoscale.ops.fill_nodata, inputs: [dem], params: {max_distance: 10}}
      - {name: median, map: eoscale.ops.median_filter, inputs: [filled], params: {size: 3}}
      - {name: stats, reduce: eoscale.ops.stats, inputs: [median]}
      - name: hist
        reduce: eoscale.ops.histogram
        inputs: [median]
        params: {bins: 16, range: [80, 140]}
    outputs: {median: out/median.tif, stats: out/stats.json, hist: out/hist.json}
    """

#: Reduces a map's tiles cannot feed: a margin, images of two steps, params from a fed reduce.
NOT_FED = """
      - {name: sums, reduce: pipeline_callables.tile_sum, inputs: [median], margin: 2}
      - {name: both, reduce: pipeline_callables.tile_sum, inputs: [median, filled]}
      - {name: later, reduce: eoscale.ops.histogram, inputs: [median], params: {range: '${stats}'}}
    outputs: {median: out/median.tif, stats: out/stats.json, hist: out/hist.json,
              sums: out/sums.json}
"""


@pytest.fixture
def dem(tmp_path: Path) -> Path:
    """A 200 x 180 float32 surface with NaN holes (nodata NaN), in 64-pixel blocks."""
    rows, cols = np.mgrid[0:200, 0:180]
    surface = (100 + 20 * np.sin(rows / 17.0) * np.cos(cols / 13.0) + rows * 0.05)
    surface = surface.astype("float32")
    surface[np.random.default_rng(3).random(surface.shape) < 0.02] = np.nan
    path = tmp_path / "dem.tif"
    with rasterio.open(path, "w", driver="GTiff", width=180, height=200, count=1,
                       dtype="float32", crs="EPSG:32631", nodata=float("nan"), tiled=True,
                       blockxsize=64, blockysize=64,
                       transform=Affine(2, 0, 500000, 0, -2, 4000000)) as out:
        out.write(surface[np.newaxis])
    (tmp_path / "scratch").mkdir()
    return path


def resources(workers: int, memory: int | None = None) -> Resources:
    return Resources(workers, memory, base=0, given=memory is not None,
                     executor="inline" if workers == 1 else "processes")


def chosen(spec: Any, workers: int, spill: Collection[str], fuse: Collection[int] = ()) -> RunPlan:
    """The plan with the images the budget would move moved as asked (spilled, fused), its
    reduces fed as :func:`plan_run` feeds them."""
    return with_feeding(decide(plan_shape(spec), resources(workers),
                               Choices(spill=frozenset(spill), fuse=frozenset(fuse))))


def held(spec: Any, workers: int) -> RunPlan:
    """The plan that holds every step's image in shared memory, its reduces reading it there
    (what a roomy plan did before an output only reduces read was written and fed)."""
    return with_feeding(decide(plan_shape(spec), resources(workers), Choices()))


def results_of(spec: Any) -> dict[str, Any]:
    return {name: json.loads(output.path.read_text())["result"]
            for name, output in spec.outputs.items() if output.path.suffix == ".json"}


def median_image(spec: Any) -> np.ndarray:
    with rasterio.open(spec.outputs["median"].path) as dataset:
        return dataset.read()


@pytest.fixture
def file_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the file rasters read in this process (the in-process executor's reads)."""
    reads: list[str] = []
    read = FileRaster.read_private

    def counted(self: FileRaster, window: Any) -> np.ndarray:
        reads.append(self.name)
        return read(self, window)

    monkeypatch.setattr(FileRaster, "read_private", counted)
    return reads


def check_against_numpy(found: dict[str, Any], median: np.ndarray) -> None:
    """Stats and histogram of the median as numpy computes them on the whole image."""
    valid = median[0][~np.isnan(median[0])].astype(np.float64)
    [band] = found["stats"]
    assert band["count"] == valid.size
    assert band["min"] == valid.min() and band["max"] == valid.max()
    assert band["mean"] == pytest.approx(valid.mean(), rel=1e-12)
    assert band["std"] == pytest.approx(valid.std(), rel=1e-9)
    [binned] = found["hist"]
    counts, edges = np.histogram(valid, 16, (80, 140))
    assert binned["counts"] == counts.tolist() and binned["edges"] == edges.tolist()
    assert binned["below"] == int((valid < 80).sum()) and binned["above"] == int((valid > 140).sum())


def separate_pass(spec: Any, plan: RunPlan) -> dict[str, Any]:
    """Today's second pass: the reduces run over the written median.tif, on the cores of the
    tiles that fed them (the stats step's planned tiling)."""
    layout = plan.steps[2].tiling
    with Engine(1) as engine:
        median = engine.open(spec.outputs["median"].path)
        return {"stats": engine.reduce(stats, [median], layout=layout),
                "hist": engine.reduce(histogram, [median], layout=layout,
                                      params={"bins": 16, "range": [80, 140]})}


def test_the_plan_says_which_reduces_are_fed_and_why_the_others_are_not(
        write_pipeline: Writer, dem: Path) -> None:
    spec = load_pipeline(write_pipeline(CHAIN.replace("WORKERS", "1").split("    outputs:")[0]
                                        + NOT_FED))
    roomy = held(spec, 1)
    assert all(image.lives == "shared" for name, image in roomy.images.items() if name != "dem")
    assert [step.fed_by for step in roomy.steps] == [None] * 7  # nothing is read from a file
    assert [step.feeding for step in roomy.steps] == [""] * 7
    plan = chosen(spec, 1, {"filled", "median"})
    steps = {step.name: step for step in plan.steps}
    assert steps["stats"].fed_by == steps["hist"].fed_by == 1
    assert steps["stats"].tiling == replace(steps["median"].tiling, margin=0)  # its cores
    assert steps["stats"].feeding == "fed by step median's tiles (no re-read)"
    assert steps["sums"].fed_by is None and steps["sums"].feeding == (
        "reads median back from its file: not fed by a map's tiles, as its margin is 2 (a map's "
        "tiles feed only a reduce without margin: their cores)")
    assert steps["both"].feeding == (
        "reads median, filled back from their files: not fed by a map's tiles, as its images "
        "come from several steps (median, filled)")
    assert steps["later"].feeding == (
        "reads median back from its file: not fed by a map's tiles, as its params use "
        "${stats}, known only after step median has run")
    text = plan_text(plan)
    assert "step 3 stats (reduce eoscale.ops.stats): margin 0 (declared); 12 tiles of 64 px, " \
           "12 chunks; fed by step median's tiles (no re-read)" in text
    assert "as its margin is 2" in text
    by_name = {step["name"]: step for step in plan.to_dict()["steps"]}
    assert by_name["hist"]["fed_by"] == "median" and by_name["sums"]["fed_by"] is None
    assert by_name["median"]["feeding"] is None


def test_a_budget_that_spills_the_image_feeds_its_reduces(write_pipeline: Writer,
                                                          dem: Path) -> None:
    spec = load_pipeline(write_pipeline(CHAIN.replace("WORKERS", "1")))
    roomy = plan_run(spec, resources(1))  # the median, an output only reduces read: written
    assert roomy.images["median"].lives == "written"  # (by the main process: 64-px tiles)
    # filled recomputes 2 %: fused whatever the budget when that holds no more than holding it
    assert roomy.images["filled"].lives in ("fused", "shared")
    assert [step.fed_by for step in roomy.steps] == [None, None, 1, 1]
    assert "only reduces read it" in roomy.images["median"].why
    assert "not read back (stats, hist are fed by step median's tiles)" in \
        roomy.images["median"].why
    # The least budget that fits: filled out of memory, median written as computed, fed
    tight = plan_run(spec, resources(1, least_budget(plan_shape(spec), resources(1, 0))))
    assert tight.fits and tight.images["median"].lives in ("spilled", "written")
    assert [step.fed_by for step in tight.steps] == [None, None, 1, 1]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("moved", ["spilled", "fused"])
def test_fed_reduces_equal_todays_and_numpy_without_reading_the_file(
        write_pipeline: Writer, dem: Path, tmp_path: Path, file_reads: list[str],
        workers: int, moved: str) -> None:
    spec = load_pipeline(write_pipeline(CHAIN.replace("WORKERS", str(workers))))
    roomy = held(spec, workers)  # the reduces read shared memory
    assert roomy.images["median"].lives == "shared" and roomy.steps[2].fed_by is None
    run_pipeline(roomy)
    today = results_of(spec)
    if moved == "spilled":  # filled to a scratch file, median to its output file
        plan = chosen(spec, workers, {"filled", "median"})
    else:  # filled computed inside median's tiles, median to its output file
        plan = chosen(spec, workers, {"median"}, fuse={0})
        assert plan.images["filled"].lives == "fused" and plan.steps[1].chain == (0, 1)
    assert plan.images["median"].lives == "spilled"
    assert plan.steps[2].fed_by == plan.steps[3].fed_by == 1
    assert plan.steps[2].tiling == roomy.steps[2].tiling  # the same tiles: the same floats
    file_reads.clear()
    result = run_pipeline(plan, overwrite=True)
    assert "median" not in file_reads  # in-process: no read (on the pool: none in this process)
    if workers == 1 and moved == "spilled":  # the counting sees the reads it should see
        assert file_reads.count("filled") == plan.steps[1].tiling.tile_count
    found = results_of(spec)
    assert found == today  # bit for bit
    assert found == json.loads(json.dumps(separate_pass(spec, plan)))
    check_against_numpy(found, median_image(spec))
    assert "reduce" not in {report.kind for report in result.reports}  # no reduce phase
    assert list_scratch(tmp_path / "scratch") == []


def test_a_reduce_with_a_margin_reads_the_file_back(write_pipeline: Writer, dem: Path,
                                                    file_reads: list[str]) -> None:
    text = CHAIN.replace("WORKERS", "1").split("    outputs:")[0] + NOT_FED.split("      - {name: both")[0] + """
    outputs: {median: out/median.tif, stats: out/stats.json, hist: out/hist.json,
              sums: out/sums.json}
    """
    spec = load_pipeline(write_pipeline(text))
    run_pipeline(held(spec, 1))
    today = results_of(spec)
    plan = chosen(spec, 1, {"filled", "median"})
    assert plan.steps[4].fed_by is None and "margin is 2" in plan.steps[4].feeding
    file_reads.clear()
    run_pipeline(plan, overwrite=True)
    assert results_of(spec) == today
    assert file_reads.count("median") == plan.steps[4].tiling.tile_count  # its tiles, once each


# -- the engine: a written output (never readable by a step), a fused chain, failures ---------

PROFILE = {"transform": Affine(10, 0, 1000, 0, -10, 2000), "crs": "EPSG:32631",
           "nodata": -9999.0}


def surface() -> np.ndarray:
    rows, cols = np.mgrid[0:150, 0:130]
    return (50 + 30 * np.sin(rows / 9.0) + cols * 0.3).astype("float32")[np.newaxis]


def float32_profile(profiles: Sequence[dict], params: dict) -> list[dict]:
    return [{**profiles[0], "dtype": "float32"}]


def seen_where(arrays: Sequence[np.ndarray], profiles: Sequence[dict], params: dict) -> Any:
    """A partial saying where it ran, on what, and that its inputs are read-only."""
    from eoscale.engine.tasks import tile_context

    context = tile_context()
    assert context is not None and context.read == context.core
    return [(os.getpid(), context.index, arrays[0].shape, arrays[0].flags.writeable)]


seen_where.combine = lambda a, b: a + b  # type: ignore[attr-defined]


def fails_on_tile_2(arrays: Sequence[np.ndarray], profiles: Sequence[dict], params: dict) -> Any:
    from eoscale.engine.tasks import tile_context

    if tile_context().index == 2:
        raise ValueError("no statistics for this tile")
    return 0


fails_on_tile_2.combine = lambda a, b: a + b  # type: ignore[attr-defined]

HIST = {"bins": 20, "range": [40, 120]}


def fed(names: Sequence[str] = ("stats", "hist")) -> Feeding:
    callables = {"stats": (stats, {}), "hist": (histogram, HIST), "where": (seen_where, {}),
                 "fails": (fails_on_tile_2, {})}
    return Feeding([FedReduce(name, callables[name][0], (0,), params=callables[name][1])
                    for name in names])


def read_back(engine: Engine, path: Path, layout: Any) -> dict[str, Any]:
    """Today's second pass over the written file, on the cores of the map's tiles (``layout``)."""
    layout = replace(layout, margin=0)
    written = engine.open(path)
    return {"stats": engine.reduce(stats, [written], layout=layout),
            "hist": engine.reduce(histogram, [written], layout=layout, params=HIST)}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_written_output_feeds_its_reduces(tmp_path: Path, workers: int) -> None:
    image = surface()
    feeding = fed(("stats", "hist", "where"))
    with Engine(workers, tiling=Tiling("tiles", 32)) as engine:
        source = engine.from_array(image, PROFILE)
        [written] = engine.map(gaussian_filter, [source], params={"sigma": 1.5},
                               files=[OutputFile(tmp_path / "smooth.tif")],
                               profile_fn=float32_profile, feeding=feeding)
    assert written.released  # a written output: no step could read it back
    assert set(feeding.results) == {"stats", "hist", "where"}
    where = feeding.results["where"]
    assert [index for _, index, _, _ in where] == list(range(len(where)))  # in tile order
    assert not any(writeable for *_, writeable in where)
    if workers > 1:  # user code never in the main process when there are workers
        assert os.getpid() not in {pid for pid, *_ in where}
    with rasterio.open(tmp_path / "smooth.tif") as dataset:
        smooth = dataset.read()
    assert sum(rows * cols for _, _, (_, rows, cols), _ in where) == smooth[0].size
    valid = smooth[0].astype(np.float64).ravel()
    [band] = feeding.results["stats"]
    assert band["count"] == valid.size and band["min"] == valid.min()
    assert band["mean"] == pytest.approx(valid.mean(), rel=1e-12)
    assert feeding.results["hist"][0]["counts"] == np.histogram(valid, 20, (40, 120))[0].tolist()


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("probed", [False, True])
def test_fed_results_equal_a_second_pass_over_the_written_file(tmp_path: Path, workers: int,
                                                              probed: bool) -> None:
    feeding = fed()
    with Engine(workers, tiling=Tiling("tiles", 32)) as engine:
        source = engine.from_array(surface(), PROFILE)
        engine.map(gaussian_filter, [source], params={"sigma": 1.5}, name="smooth",
                   files=[OutputFile(tmp_path / "smooth.tif")], feeding=feeding,
                   profile_fn=None if probed else float32_profile)
        layout = step_layout(engine.workers, "smooth", [source], gaussian_filter,
                             {"sigma": 1.5}, None, engine.tiling, None)
        expected = read_back(engine, tmp_path / "smooth.tif", layout)
    assert feeding.results == expected


@pytest.mark.parametrize("workers", [1, 2])
def test_a_fused_chain_feeds_its_reduces(tmp_path: Path, workers: int) -> None:
    stages = [ChainStep("smooth", gaussian_filter, ("dem",), ("smooth",), params={"sigma": 1.0}),
              ChainStep("median", median_filter, ("smooth",), ("median",), params={"size": 3})]
    feeding = fed()
    with Engine(workers, tiling=Tiling("tiles", 48)) as engine:
        source = engine.from_array(surface(), PROFILE)
        engine.map_fused(stages, {"dem": source},
                         files=[OutputFile(tmp_path / "median.tif")],
                         feeding=feeding)
        chain = assemble_chain(stages, {"dem"})
        layout = step_layout(engine.workers, chain.name, [source], None, {}, chain.margin,
                             engine.tiling, None)
        expected = read_back(engine, tmp_path / "median.tif", layout)
    assert feeding.results == expected


@pytest.mark.parametrize("workers", [1, 2])
def test_a_fed_reduce_that_raises_names_its_step_and_tile(tmp_path: Path, workers: int) -> None:
    with Engine(workers, tiling=Tiling("tiles", 32)) as engine:
        source = engine.from_array(surface(), PROFILE)
        before = own_segments()
        with pytest.raises(StepError) as raised:
            engine.map(gaussian_filter, [source], params={"sigma": 1.0}, name="smooth",
                       files=[OutputFile(tmp_path / "smooth.tif")], profile_fn=float32_profile,
                       feeding=fed(("stats", "fails")))
        assert own_segments() == before
    message = str(raised.value)
    assert "step 'fails'" in message and "tile 2 (rows 0:32, cols 64:96)" in message
    assert "ValueError: no statistics for this tile" in message
    assert list(tmp_path.glob("*.part-*")) == []  # the file itself is its stager's to discard


# -- through the command: a small --memory fuses and spills, the reduce is fed -----------------

COMMAND = """
    version: 1
    workers: 2
    scratch: scratch
    inputs: {dem: dem.tif}
    steps:
      - {name: filled, map: eoscale.ops.fill_nodata, inputs: [dem], params: {max_distance: 10}}
      - {name: median, map: eoscale.ops.median_filter, inputs: [filled], params: {size: 3}}
      - {name: stats, reduce: eoscale.ops.stats, inputs: [median]}
    outputs: {median: out/median.tif, stats: out/stats.json}
    """


def test_the_command_under_a_small_memory_feeds_the_reduce(write_pipeline: Writer,
                                                           tmp_path: Path) -> None:
    rows, cols = np.mgrid[0:500, 0:600]
    dem = (100 + 20 * np.sin(rows / 37.0) * np.cos(cols / 23.0) + rows * 0.05).astype("float32")
    dem[np.random.default_rng(3).random(dem.shape) < 0.02] = np.nan
    with rasterio.open(tmp_path / "dem.tif", "w", driver="GTiff", width=600, height=500, count=1,
                       dtype="float32", crs="EPSG:32631", nodata=float("nan"), tiled=True,
                       blockxsize=256, blockysize=256,
                       transform=Affine(2, 0, 500000, 0, -2, 4000000)) as out:
        out.write(dem[np.newaxis])
    (tmp_path / "scratch").mkdir()
    pipeline = write_pipeline(COMMAND)

    def eoscale(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "eoscale", "run", str(pipeline),
                               "--memory", "4MiB", *args], check=False, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)

    planned = eoscale("--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert "; fed by step median's tiles (no re-read)" in planned.stdout
    assert "not read back (stats is fed by step median's tiles)" in planned.stdout
    plan = json.loads(eoscale("--dry-run", "--json").stdout)
    lives = {image["name"]: image["lives"] for image in plan["images"]}
    assert lives == {"dem": "file", "filled": "fused", "median": "written"}
    tiling = plan["steps"][2]["tiling"]
    assert plan["steps"][2]["fed_by"] == "median" and tiling == plan["steps"][1]["tiling"]

    ran = eoscale()
    assert ran.returncode == 0, ran.stderr
    found = json.loads((tmp_path / "out" / "stats.json").read_text())["result"]
    with Engine(1) as engine:  # today's second pass, over the file, on the same tiles
        median = engine.open(tmp_path / "out" / "median.tif")
        again = engine.reduce(stats, [median], layout=TileLayout(
            500, 600, tiling["tile_size"], 0, tiling["mode"]))
    assert found == json.loads(json.dumps(again))
    valid = engine_free_read(tmp_path / "out" / "median.tif")
    assert found[0]["count"] == valid.size and found[0]["max"] == valid.max()
    assert found[0]["mean"] == pytest.approx(valid.mean(), rel=1e-12)
    assert list_scratch(tmp_path / "scratch") == []


def engine_free_read(path: Path) -> np.ndarray:
    """The valid pixels of a one-band float file, read by rasterio, as float64."""
    with rasterio.open(path) as dataset:
        band = dataset.read(1)
    return band[~np.isnan(band)].astype(np.float64)


def low_and_high(arrays: Sequence[np.ndarray], profiles: Sequence[dict], params: dict) -> Any:
    return [arrays[0] - 50, (arrays[0] * 2).astype("float64")]


def low_and_high_profiles(profiles: Sequence[dict], params: dict) -> list[dict]:
    return [{**profiles[0], "dtype": "float32"}, {**profiles[0], "dtype": "float32"}]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_reduce_of_a_maps_second_output_gets_that_output_as_stored(tmp_path: Path,
                                                                     workers: int) -> None:
    feeding = Feeding([FedReduce("stats", stats, (1,))])  # float64 results, stored as float32
    with Engine(workers, tiling=Tiling("tiles", 40)) as engine:
        source = engine.from_array(surface(), PROFILE)
        engine.map(low_and_high, [source], profile_fn=low_and_high_profiles, margin=0,
                   files=[OutputFile(tmp_path / "low.tif"), OutputFile(tmp_path / "high.tif")],
                   feeding=feeding)
        layout = step_layout(engine.workers, "low_and_high", [source], low_and_high, {}, 0,
                             engine.tiling, None)
        expected = read_back(engine, tmp_path / "high.tif", layout)["stats"]
    assert feeding.results["stats"] == expected
    assert expected[0]["max"] == float(np.float32(surface().max() * 2))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_fed_reduce_failing_in_a_run_leaves_no_output_and_no_scratch_file(
        write_pipeline: Writer, dem: Path, tmp_path: Path, workers: int) -> None:
    text = CHAIN.replace("WORKERS", str(workers)).replace(
        "reduce: eoscale.ops.histogram", "reduce: test_reduce_fed.fails_on_tile_2").replace(
        "params: {bins: 16, range: [80, 140]}", "params: {}")
    spec = load_pipeline(write_pipeline(text))
    plan = chosen(spec, workers, {"filled", "median"})
    assert plan.steps[3].fed_by == 1
    before = own_segments()
    with pytest.raises(StepError, match=r"step 'hist'.*tile 2 \(rows 0:64, cols 128:180\)"):
        run_pipeline(plan)
    assert own_segments() == before
    assert not (tmp_path / "out").exists() and list_scratch(tmp_path / "scratch") == []
