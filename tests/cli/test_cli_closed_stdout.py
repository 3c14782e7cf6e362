"""A reader of the command's output that stops reading (``| head -1``, a ``tee`` that dies) does
not stop the run: what it prints after is dropped, the run finishes and writes its outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import rasterio



def test_a_closed_stdout_lets_the_run_finish(examples) -> None:
    process = subprocess.Popen([sys.executable, "-m", "eoscale", "run", "quickstart.yaml"],
                               cwd=examples, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    first = process.stdout.readline()
    process.stdout.close()  # as `| head -1` does
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 0, stderr
    assert "map ndvi" in first
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    with rasterio.open(examples / "out" / "ndvi_smooth.tif") as dataset:
        assert dataset.count == 1
    assert json.loads((examples / "out" / "ndvi_stats.json").read_text())
