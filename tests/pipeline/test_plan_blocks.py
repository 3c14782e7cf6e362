"""The plan tiles a step that writes a file as it computes on that file's block grid, and says
per written image whether the workers encode it or why the main process writes it; the run
agrees with the plan.

Oracles: the engine's own decision when the step runs (:func:`~eoscale.engine.encoded.
encoded_target` on the plan's tiles, and what :class:`~eoscale.engine.assembly.OutputFiles`
chose in real runs), and for pixels the same op computed on the whole array and written by
rasterio in one go.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eoscale.engine.assembly as assembly_module
from eoscale.cli.render import plan_text
from eoscale.engine.encoded import encoded_target
from eoscale.engine.filed import OutputFile
from eoscale.engine.tiling import Tiling
from eoscale.errors import Problem
from eoscale.io.layout import tiff_options
from eoscale.io.raster import creation_profile
from eoscale.ops import mean_filter
from eoscale.pipeline import load_pipeline, plan_run
from eoscale.pipeline.plan import Resources, RunPlan, fit, run_shape, step_callables
from eoscale.pipeline.plan.decide import Choices, decide
from eoscale.pipeline.runner import run_pipeline
from eoscale.pipeline.spec import PipelineSpec

REPO = Path(__file__).resolve().parents[2]
TWO = Resources(2, None, base=0, executor="processes")
#: Creation options of a written output, and whether the block encoder handles them.
OPTIONS: dict[str, tuple[dict[str, Any], bool]] = {
    "default": ({}, True),
    "256 blocks": ({"blockxsize": 256, "blockysize": 256}, True),
    "oblong blocks": ({"blockxsize": 128, "blockysize": 256, "compress": "zstd"}, True),
    "strips": ({"tiled": False, "compress": "lzw"}, True),
    "packbits": ({"compress": "packbits"}, False),
}


def pipeline(options: dict[str, Any], *, tile_size: int | None = None, fmt: str = "GTiff",
             readers: int = 0, reader: str = "reduce") -> dict[str, Any]:
    """A 3 x 3 mean of ``dem`` written to ``out/mean.tif`` with ``options`` (and ``readers``
    later steps reading it, reduces or maps, so that it may be spilled)."""
    steps = [{"name": "mean", "map": "eoscale.ops.mean_filter", "inputs": ["dem"],
              "params": {"size": 3}}]
    steps += [{"name": f"stats{n}", "reduce": "eoscale.ops.stats", "inputs": ["mean"]}
              if reader == "reduce" else
              {"name": f"again{n}", "map": "eoscale.ops.mean_filter", "inputs": ["mean"],
               "params": {"size": 3}} for n in range(readers)]
    document: dict[str, Any] = {
        "version": 1, "inputs": {"dem": "dem.tif"}, "steps": steps,
        "outputs": {"mean": {"path": "out/mean.tif", "options": options, "format": fmt}}}
    if tile_size is not None:
        document["tiling"] = {"tile_size": tile_size}
    return document


def shaped(spec: PipelineSpec, height: int, width: int):
    """The run's shape for a one-band float32 input of ``height`` x ``width``: no file read."""
    problems: list[Problem] = []
    profiles = {name: {"height": height, "width": width, "count": 1, "dtype": "float32",
                       "block_shape": (256, 256)} for name in spec.inputs}
    shape = run_shape(spec, profiles, step_callables(spec, problems), problems)
    assert shape is not None, problems
    return shape


def engine_decisions(plan: RunPlan) -> dict[str, bool]:
    """For each image the plan writes as computed: whether the engine, given the plan's tiles,
    has the workers encode it (:func:`encoded_target`; a cluster's workers too)."""
    decisions = {}
    for name, image in plan.images.items():
        if image.file is None:
            continue
        step = next(step for step in plan.steps if name in step.step.outputs)
        if image.file.scratch:
            options = image.file.options
        else:
            output = plan.spec.outputs[name]
            options = tiff_options(output.layout, output.options)
        profile = {"count": image.count, "height": image.height, "width": image.width,
                   "dtype": image.dtype}
        target = OutputFile(Path("unused.tif"), dict(options or {}), name)
        found = encoded_target(profile, target, step.tiling.tiles())
        decisions[name] = found is not None
    return decisions


# -- the plan's tiles and its claims, for many sizes --------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(height=st.integers(1, 3000), width=st.integers(1, 3000), workers=st.integers(1, 8),
       options=st.sampled_from(sorted(OPTIONS)), fmt=st.sampled_from(["GTiff", "COG"]))
def test_automatic_tiles_are_whole_blocks_and_the_plan_says_what_the_engine_does(
        height: int, width: int, workers: int, options: str, fmt: str) -> None:
    given_options, handled = OPTIONS[options]
    spec = load_pipeline(pipeline(given_options, fmt=fmt))
    plan = fit(shaped(spec, height, width), replace(TWO, workers=workers))
    image = plan.images["mean"]
    assert image.file is not None and image.writes_file
    # The COG's intermediate GeoTIFF is written with its own options, which the encoder handles.
    assert image.encoded is (handled or fmt == "COG")
    assert engine_decisions(plan) == {"mean": image.encoded}
    if not image.encoded:
        assert image.not_encoded == "compression packbits not handled by block encoding"


@pytest.mark.parametrize("size, tile, encoded", [(1000, 512, True), (1000, 100, False),
                                                 (1000, 1024, True), (300, 100, False)])
def test_a_tile_size_the_pipeline_forces_is_kept_and_the_plan_says_why(
        size: int, tile: int, encoded: bool) -> None:
    spec = load_pipeline(pipeline({}, tile_size=tile))
    plan = fit(shaped(spec, size, size), TWO)
    assert plan.steps[0].tiling.tile_size == tile
    image = plan.images["mean"]
    assert image.encoded is encoded and engine_decisions(plan) == {"mean": encoded}
    if not encoded:
        assert image.not_encoded == (f"step 'mean' runs {tile} px tiles (asked for by "
                                     "tiling: tile_size or --tile-size), not whole blocks of "
                                     "the file's 512 x 512 "
                                     "blocks (tiled)")


def test_small_images_are_tiled_on_whole_blocks_even_with_fewer_tiles_than_workers() -> None:
    plan = fit(shaped(load_pipeline(pipeline({})), 700, 700), replace(TWO, workers=4))
    tiling = plan.steps[0].tiling
    assert (tiling.tile_size, tiling.tile_count) == (512, 4)  # cores 512 and 188
    assert plan.images["mean"].encoded


def test_a_budget_that_shrinks_tiles_below_a_block_is_said() -> None:
    spec = load_pipeline(pipeline({}))
    shape = shaped(spec, 2048, 2048)
    aligned = decide(shape, TWO, Choices(tile_sizes=((0, 700),)))
    assert aligned.steps[0].tiling.tile_size == 512 and aligned.images["mean"].encoded
    small = decide(shape, TWO, Choices(tile_sizes=((0, 256),)))
    assert small.steps[0].tiling.tile_size == 256
    assert small.images["mean"].not_encoded == (
        "step 'mean' runs 256 px tiles (the memory budget shrank them below one block), not "
        "whole blocks of the file's 512 x 512 blocks (tiled)")
    assert engine_decisions(small) == {"mean": False}


def test_spilled_and_held_images_and_the_cluster() -> None:
    fed = fit(shaped(load_pipeline(pipeline({}, readers=1)), 900, 700), TWO)
    assert fed.images["mean"].lives == "written" and fed.images["mean"].encoded
    assert fed.steps[1].fed_by == 0  # only a reduce reads it: written, the reduce fed
    spec = load_pipeline(pipeline({}, readers=1, reader="map"))
    shape = shaped(spec, 900, 700)
    held = fit(shape, TWO).images["mean"]
    assert held.file is None and held.writes_file and held.encoded is False
    assert held.not_encoded == "held whole in memory, then written once step 'mean' has run"
    spilled = decide(shape, TWO, Choices(spill=frozenset({"mean"})))
    assert spilled.images["mean"].encoded and engine_decisions(spilled) == {"mean": True}
    cluster = fit(shape, Resources(2, None, base=0, executor="cluster", cluster="local:2"))
    assert cluster.images["mean"].not_encoded is None and cluster.images["mean"].encoded
    assert engine_decisions(cluster) == {"mean": True, "again0": True}  # a scratch file
    assert cluster.images["dem"].encoded is None  # an input that is no output writes no file


# -- runs: the engine does what the plan said, pixels as rasterio writes them whole -------------

Writer = Callable[..., Path]

RUNS = {  # name: (options, tile size, format, size)
    "700 default": ({}, None, "GTiff", (700, 700)),
    "strips": ({"tiled": False, "compress": "zstd", "predictor": 3}, None, "GTiff", (300, 450)),
    "forced 100": ({}, 100, "GTiff", (300, 300)),
    "packbits": ({"compress": "packbits"}, None, "GTiff", (200, 260)),
    "cog": ({}, None, "COG", (600, 500)),
    "cog 256 blocks, 256 tiles": ({"blocksize": 256}, 256, "COG", (600, 500)),
    "oblong": ({"blockxsize": 64, "blockysize": 32, "compress": "deflate"}, None, "GTiff",
               (250, 330)),
}


def write_dem(path: Path, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(height * width)
    data = rng.normal(100, 20, (1, height, width)).astype("float32")
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1,
                       dtype="float32", crs="EPSG:32631", transform=Affine(2, 0, 0, 0, -2, 0),
                       tiled=True, blockxsize=256, blockysize=256) as out:
        out.write(data)
    return data


@pytest.fixture
def chosen(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """What the engine chose for each written file it opened, by the file's display name."""
    chosen: dict[str, bool] = {}
    add = assembly_module.OutputFiles.add

    def recording(self, profile, target):
        encoded = add(self, profile, target)
        chosen[str(target.display)] = encoded is not None
        return encoded

    monkeypatch.setattr(assembly_module.OutputFiles, "add", recording)
    return chosen


def whole_write(path: Path, array: np.ndarray, profile: dict[str, Any],
                options: dict[str, Any] | None) -> np.ndarray:
    """``array`` written by rasterio in one go with ``options``, read back."""
    with rasterio.open(path, "w", **creation_profile(profile, options)) as out:
        out.write(array)
    with rasterio.open(path) as back:
        return back.read()


@pytest.mark.parametrize("case", sorted(RUNS))
def test_the_run_agrees_with_the_plan_and_pixels_equal_a_whole_write(
        case: str, write_pipeline: Writer, tmp_path: Path, chosen: dict[str, bool]) -> None:
    options, tile, fmt, (height, width) = RUNS[case]
    data = write_dem(tmp_path / "dem.tif", height, width)
    spec = load_pipeline(write_pipeline(yaml.safe_dump(pipeline(options, tile_size=tile,
                                                                fmt=fmt))))
    plan = plan_run(spec, TWO)
    run_pipeline(plan)
    assert list(chosen.values()) == [plan.images["mean"].encoded]
    if case.startswith("cog"):  # the COG's own blocks, not its intermediate file's default
        assert plan.images["mean"].encoded
    with rasterio.open(tmp_path / "dem.tif") as dem:
        profile = dem.profile
    expected = mean_filter([data], [profile], {"size": 3})
    out = tmp_path / "out" / "mean.tif"
    with rasterio.open(out) as written:
        got = written.read()
        written_profile = written.profile
    oracle = whole_write(tmp_path / "oracle.tif", expected, {**profile, "dtype": "float32"},
                         tiff_options(spec.outputs["mean"].layout, options))
    np.testing.assert_array_equal(got, oracle)
    np.testing.assert_array_equal(got, expected)
    if fmt == "GTiff" and options.get("tiled") is not False:
        assert written_profile["blockxsize"] == options.get("blockxsize", 512)


def test_a_spilled_image_is_encoded_as_planned(write_pipeline: Writer, tmp_path: Path,
                                               chosen: dict[str, bool]) -> None:
    data = write_dem(tmp_path / "dem.tif", 400, 300)
    document = pipeline({}, readers=1)
    document["steps"].append({"name": "again", "map": "eoscale.ops.mean_filter",
                              "inputs": ["mean"], "params": {"size": 3}})
    document["outputs"] = {"again": "out/again.tif", "stats0": "out/stats.json"}
    spec = load_pipeline(write_pipeline(yaml.safe_dump(document)))
    shape = shaped(spec, 400, 300)
    plan = decide(shape, TWO, Choices(spill=frozenset({"mean"})))
    spilled = plan.images["mean"]
    assert spilled.file is not None and spilled.file.scratch and spilled.encoded
    run_pipeline(plan)
    assert len(chosen) == 2 and all(chosen.values())
    assert any("spilled" in display for display in chosen)
    with rasterio.open(tmp_path / "dem.tif") as dem:
        profile = dem.profile
    first = mean_filter([data], [profile], {"size": 3})
    expected = mean_filter([first], [{**profile, "dtype": "float32"}], {"size": 3})
    with rasterio.open(tmp_path / "out" / "again.tif") as written:
        np.testing.assert_array_equal(written.read(), expected)


# -- what --dry-run says ------------------------------------------------------------------------

def eoscale(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "eoscale", *args], check=False, cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=env)


def test_dry_run_says_per_written_image_who_encodes_it(write_pipeline: Writer,
                                                        tmp_path: Path) -> None:
    write_dem(tmp_path / "dem.tif", 700, 700)
    document = pipeline({})
    document["steps"].append({"name": "rough", "map": "eoscale.ops.mean_filter",
                              "inputs": ["dem"], "params": {"size": 5}})
    document["outputs"]["rough"] = {"path": "out/rough.tif", "options": {"compress": "packbits"}}
    document["outputs"]["dem"] = "out/dem_copy.tif"
    path = write_pipeline(yaml.safe_dump(document))
    text = eoscale("run", "--dry-run", "--workers", "2", str(path), cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    lines = {line.split(":")[0].strip(): line for line in text.stdout.splitlines()
             if line.startswith("  ") and ": " in line}
    assert lines["mean"].endswith("; encoded by the workers")
    assert lines["rough"].endswith("; written by the main process: compression packbits not "
                                   "handled by block encoding")
    assert lines["dem"].endswith("; written by the main process: an input copied to its "
                                 "output, strip by strip")
    listed = eoscale("run", "--dry-run", "--json", "--workers", "2", str(path), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    images = {image["name"]: image for image in json.loads(listed.stdout)["images"]}
    assert (images["mean"]["encoded_by_workers"], images["mean"]["not_encoded_why"]) == (True,
                                                                                          None)
    assert images["rough"]["encoded_by_workers"] is False
    assert images["rough"]["not_encoded_why"] == ("compression packbits not handled by block "
                                                  "encoding")
    assert images["dem"]["encoded_by_workers"] is False
    plan = plan_run(load_pipeline(path), TWO)
    assert "mean: " in plan_text(plan) and "encoded by the workers" in plan_text(plan)
    assert not (tmp_path / "out").exists()


def test_a_layout_forced_on_the_engine_is_written_the_old_way(tmp_path: Path,
                                                              chosen: dict[str, bool]) -> None:
    """A tiling given to the engine outright (``layout=``) is run as it is: cores that are not
    whole blocks are sent to the main process, cores that are are encoded."""
    from eoscale.engine import Engine
    from eoscale.engine.tiling import plan_step

    data = write_dem(tmp_path / "dem.tif", 300, 300)
    with Engine(2) as engine:
        dem = engine.load(tmp_path / "dem.tif")
        for size, encoded in ((100, False), (256, True)):
            layout = plan_step(300, 300, margin=1, tiling=Tiling("tiles", size), workers=2)
            target = OutputFile(tmp_path / f"out{size}.tif", {"blockxsize": 256,
                                                              "blockysize": 256}, f"out{size}")
            engine.map(mean_filter, [dem], params={"size": 3}, layout=layout, files=[target])
            assert chosen[f"out{size}"] is encoded
            with rasterio.open(target.path) as written:
                np.testing.assert_array_equal(
                    written.read(), mean_filter([data], [dem.ref.profile], {"size": 3}))


OVERVIEW_RUNS = {  # name: (format, overviews, size, the plan's reason starts with ("": none))
    "cog even": ("COG", None, (600, 500), ""),
    "cog odd": ("COG", None, (601, 500), "its size 601 x 500 is odd"),
    "gtiff 2 4": ("GTiff", [2, 4], (600, 500), ""),
    "gtiff 2 3": ("GTiff", [2, 3], (600, 500), "its overview factors or options are GDAL's"),
}


@pytest.mark.parametrize("case", sorted(OVERVIEW_RUNS))
def test_the_plan_says_who_makes_the_overviews_and_the_run_agrees(
        case: str, write_pipeline: Writer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    """The plan's claim (workers, with the pixels; or why a second pass) against what the run
    did: the second pass over the written file is the only caller of overview_resampling."""
    import eoscale.io.layout as layout_module

    fmt, factors, (height, width), why = OVERVIEW_RUNS[case]
    write_dem(tmp_path / "dem.tif", height, width)
    document = pipeline({}, fmt=fmt)
    if factors:
        document["outputs"]["mean"]["overviews"] = factors
    plan = plan_run(load_pipeline(write_pipeline(yaml.safe_dump(document))), TWO)
    image = plan.images["mean"]
    assert image.encoded
    assert image.overviews_not_encoded is not None
    assert image.overviews_not_encoded.startswith(why) and bool(image.overviews_not_encoded) == \
        bool(why)
    text = plan_text(plan)
    assert ("encoded by the workers, overviews too" in text) == (not why)
    second_passes: list[str] = []
    resampling = layout_module.overview_resampling

    def spy(*args, **kwargs):
        second_passes.append(case)
        return resampling(*args, **kwargs)

    monkeypatch.setattr(layout_module, "overview_resampling", spy)
    run_pipeline(plan)
    assert bool(second_passes) == bool(why)
    with rasterio.open(tmp_path / "out" / "mean.tif") as written:
        assert written.overviews(1)
