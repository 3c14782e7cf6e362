"""``eoscale run --dry-run``: the plan of every example, its JSON form, and the plan's memory
estimate against the peak a real run measures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import eoscale
from eoscale.engine.memory import TreeSampler

EXAMPLES = sorted(p.name for p in (Path(__file__).resolve().parents[2] / "pipelines").glob("*.yaml"))
#: How far the estimate may be from the measured peak, as a share of the measured peak.
ESTIMATE_TOLERANCE = 0.25
UNITS = {"bytes": 1, "KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30}


@pytest.mark.parametrize("pipeline", EXAMPLES)
def test_dry_run_prints_the_plan_of_every_example(examples: Path, pipeline: str) -> None:
    done = eoscale("run", pipeline, "--dry-run", "-w", "2", cwd=examples)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("run plan: ")
    assert "estimated peak memory" in done.stdout
    for line in done.stdout.splitlines():
        if line.startswith("  step "):
            assert re.search(r"; (\d+ (tiles|strips) of \d+ (px|rows), \d+ chunks(; .+)?|fused "
                             r"into \w+: computed inside its tiles); memory [\d.]+ \w+$", line), line
    assert not (examples / "out").exists()  # nothing computed, nothing written


def test_dry_run_json(examples: Path) -> None:
    done = eoscale("run", "builtin_indices.yaml", "--dry-run", "--json", "-w", "2", cwd=examples)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    steps = {step["name"]: step for step in plan["steps"]}
    images = {image["name"]: image for image in plan["images"]}
    # 512 x 512 for 2 workers: 4 tiles a worker or more, so tiles of 181 px, 3 x 3 of them; but
    # rgb_ndvi, written as computed, is tiled on its file's 512-px blocks: one tile.
    assert {name: step["tiling"]["tiles"] for name, step in steps.items()
            if step["tiling"]["tiles"] != 9} == {"rgb_ndvi": 1}
    assert images["rgb_ndvi"]["encoded_by_workers"] is True
    assert steps["ndvi_smooth"]["margin"] == 2 and steps["ndvi_smooth"]["margin_from"] == "declared"
    # The scene is read by two steps: held in shared memory from the first to the last.
    assert images["scene"]["lives"] == "shared"
    assert (images["scene"]["arrives_before_step"], images["scene"]["released_after_step"]) == (0, 6)
    assert steps["ndvi"]["loads"] == ["scene"] and steps["rgb"]["releases"] == ["scene"]
    # ndvi is released once ndvi_smooth has read it; ndvi_smooth once its last reader ran.
    assert steps["ndvi_smooth"]["releases"] == ["ndvi"]
    assert images["ndvi_smooth"]["released_after_step"] == 5
    assert steps["ndvi_smooth"]["stages"] == ["ndvi_smooth"]
    estimate = plan["estimate"]
    assert estimate["peak_bytes"] == max(s["memory"]["total_bytes"] for s in steps.values())
    assert estimate["peak_step"] in steps and estimate["fits"] is True
    assert plan["resources"]["workers"] == 2
    assert not (examples / "out").exists()


def test_json_needs_dry_run(examples: Path) -> None:
    done = eoscale("run", "quickstart.yaml", "--json", cwd=examples)
    assert done.returncode == 2 and "--json goes with --dry-run" in done.stderr


def sampled_run(*args: str, cwd: Path | None = None) -> tuple[str, int]:
    """Run ``eoscale ARGS`` (it must succeed), sampling its process tree's PSS every 20 ms from
    this process; its stdout and the peak seen. eoscale's own sampler (a nice-10 thread under a
    CPU share, while the workers take both cores) can miss a short run's peak: it measured runs
    of 0.3 s and 4 s 20-30 % under their peaks in CI."""
    process = subprocess.Popen([sys.executable, "-m", "eoscale", *args], text=True, cwd=cwd,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=dict(os.environ, COLUMNS="300"))
    sampler = TreeSampler(process.pid, 0.02)
    sampler.start()
    try:
        stdout, stderr = process.communicate(timeout=120)
    finally:
        sampler.stop()
    assert process.returncode == 0, stderr
    return stdout, sampler.peak


def measured_peak(stdout: str) -> float:
    """The peak a run's summary says it measured, in bytes (0 if none)."""
    found = re.search(r"peak memory ([\d.]+) (\w+) \(estimated", stdout)
    return float(found.group(1)) * UNITS[found.group(2)] if found else 0.0


def assert_estimate_near_peak(stdout: str, seen: int = 0) -> None:
    """The summary's measured peak (or ``seen``, a peak the test measured itself, if higher)
    and the plan's estimate are within the tolerance."""
    found = re.search(r"peak memory ([\d.]+) (\w+) \(estimated ([\d.]+) (\w+)\)", stdout)
    if found is None:
        pytest.skip("no PSS on this system (/proc/PID/smaps_rollup): nothing measured")
    measured = max(float(found.group(1)) * UNITS[found.group(2)], seen)
    estimated = float(found.group(3)) * UNITS[found.group(4)]
    assert abs(estimated - measured) <= ESTIMATE_TOLERANCE * measured, stdout


@pytest.mark.parametrize("pipeline", EXAMPLES)
def test_the_estimate_is_near_the_measured_peak(examples: Path, pipeline: str) -> None:
    assert_estimate_near_peak(*sampled_run("run", pipeline, "-w", "2", cwd=examples))


BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The benchmarks' scene (3 bands uint16, tiled, deflate), at 2048 x 2048 so that its
    images weigh in the estimate beside the processes."""
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    try:
        from datagen import ensure_scene
    finally:
        sys.path.remove(str(BENCHMARKS))
    return ensure_scene(2048, tmp_path_factory.mktemp("bench-data"))


@pytest.mark.parametrize("workload, result", [("w1_mean", "mean"), ("w2_stats", "stats"),
                                              ("w3_ratio_median", "median")])
def test_the_estimate_is_near_the_measured_peak_on_benchmark_data(
        bench_scene: Path, tmp_path: Path, workload: str, result: str) -> None:
    """A sampler can only miss a peak, never see one that was not there: a short run (W2's
    takes 0.25 s) measured under its estimate beyond the tolerance is run again, up to three
    times, and its highest peak kept; an estimate too high stays too high."""
    out = tmp_path / f"{result}{'.json' if workload == 'w2_stats' else '.tif'}"
    args = ("run", str(BENCHMARKS / f"{workload}.yaml"), "-w", "2", "--input",
            f"scene={bench_scene}", "--output", f"{result}={out}", "--overwrite")
    stdout, seen = sampled_run(*args)
    for _ in range(2):
        try:
            assert_estimate_near_peak(stdout, seen)
            return
        except AssertionError:
            again, peak = sampled_run(*args)
            if measured_peak(again) > measured_peak(stdout):
                stdout = again
            seen = max(seen, peak)
    assert_estimate_near_peak(stdout, seen)


@pytest.fixture(scope="module")
def bench_dsm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The benchmarks' surface model (float32, nodata holes) at 4096 x 4096: under 200 MiB its
    out-of-core chain runs fused on tiles of 1024 px, the plan of the 65,536 x 65,536 run."""
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    try:
        from datagen import ensure_dsm
    finally:
        sys.path.remove(str(BENCHMARKS))
    return ensure_dsm(4096, tmp_path_factory.mktemp("bench-dsm"))


@pytest.mark.parametrize("memory, fused", [("200MiB", "filled > median > smooth")])
def test_the_estimate_of_a_fused_chain_is_near_the_measured_peak(
        bench_dsm: Path, tmp_path: Path, memory: str | None, fused: str) -> None:
    budget = ("--memory", memory) if memory else ()
    args = ("run", str(BENCHMARKS / "ooc_chain.yaml"), "-w", "2", *budget,
            "--input", f"dsm={bench_dsm}", "--output", f"smooth={tmp_path / 'smooth.tif'}",
            "--output", f"stats={tmp_path / 'stats.json'}")
    planned = eoscale(*args, "--dry-run")
    assert f"runs the fused chain {fused} (" in planned.stdout
    assert_estimate_near_peak(*sampled_run(*args))


@pytest.mark.parametrize(("cluster", "assumed"), [("tcp://127.0.0.1:1", True), ("local:2", False)])
def test_a_dry_run_on_a_scheduler_s_address_says_its_workers_are_assumed(
        examples: Path, tmp_path: Path, cluster: str, assumed: bool) -> None:
    """A dry run asks no scheduler (here none listens): its workers are the plan's guess,
    which the run replaces by those it finds; a local cluster's are the plan's own."""
    done = eoscale("run", "quickstart.yaml", "--dry-run", "--cluster", cluster, "--scratch",
                   str(tmp_path), cwd=examples)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert re.match(rf"run plan: 3 step\(s\) on \d+ worker\(s\) of the Dask cluster {cluster}",
                    first), first
    assert first.endswith(" (assumed: the scheduler is not asked before the run, which plans "
                          "again for the workers it finds)") is assumed
