"""A run under a memory budget four times smaller than its images holds what the budget allows:
its peak (PSS summed over its process tree, measured as the benchmarks measure it), less the same
command's peak on a tiny raster (the interpreters and libraries, which no budget can shrink)."""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from eoscale.engine.memory import own_pss

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
PIPELINE = """version: 1
inputs: {dem: dem.tif}
steps:
  - {name: filled, map: eoscale.ops.fill_nodata, inputs: [dem], params: {max_distance: 10}}
  - {name: median, map: eoscale.ops.median_filter, inputs: [filled], params: {size: 3}}
  - {name: stats, reduce: eoscale.ops.stats, inputs: [median]}
  - {name: smooth, map: eoscale.ops.gaussian_filter, inputs: [median], params: {sigma: 1.0}}
outputs: {smooth: out/smooth.tif, stats: out/stats.json}
"""


def write_dem(path: Path, size: int) -> None:
    rows, cols = np.mgrid[0:size, 0:size]
    surface = (100 + 20 * np.sin(rows / 37.0) * np.cos(cols / 23.0) + rows * 0.05)
    surface = surface.astype("float32")
    surface[np.random.default_rng(3).random(surface.shape) < 0.02] = np.nan
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1,
                       dtype="float32", crs="EPSG:32631", nodata=float("nan"),
                       transform=Affine(2, 0, 500000, 0, -2, 4000000), tiled=True,
                       blockxsize=256, blockysize=256) as out:
        out.write(surface[np.newaxis])


@pytest.mark.skipif(own_pss() is None, reason="needs /proc/PID/smaps_rollup (Linux) for PSS")
def test_a_budget_four_times_smaller_than_the_images(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from measure import run_measured
    finally:
        sys.path.remove(str(BENCHMARKS))
    (tmp_path / "p.yaml").write_text(PIPELINE)
    write_dem(tmp_path / "dem.tif", 3000)
    write_dem(tmp_path / "tiny.tif", 512)
    images = 4 * 3000 * 3000 * 4          # dem, filled, median, smooth: 34 MiB each
    budget = images // 4
    peaks: dict[str, list[int]] = {"dem.tif": [], "tiny.tif": []}
    # The tiny run (512 x 512: 1 MiB an image) gets a budget that gives it the same plan (filled
    # fused, the median spilled, so its workers load the block encoder as the big run's do; the
    # smooth image written by the main process from tiles smaller than its blocks): its peak is
    # the fixed part, libraries included.
    budgets = {"dem.tif": budget, "tiny.tif": 3_500_000}
    for _ in range(3):  # alternated, so that both see the same machine
        for dem in peaks:
            run = run_measured([sys.executable, "-m", "eoscale", "run", "p.yaml", "-w", "2",
                                "--overwrite", "--memory", str(budgets[dem]),
                                "--input", f"dem={dem}"],
                               # short runs: sample often, or a tiny run's workers (alive for
                               # a few tenths of a second) fall between two finds of the tree
                               interval=0.005, cwd=str(tmp_path),
                               env=dict(os.environ, COLUMNS="300"))
            assert run.returncode == 0, run.stderr
            peaks[dem].append(run.peak_pss)
    # A tiny run's peak is sampled over a second or so: its largest sample is the best estimate.
    held = statistics.median(peaks["dem.tif"]) - max(peaks["tiny.tif"])
    assert held <= budget, (held, budget, peaks)
