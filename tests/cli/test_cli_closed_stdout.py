"""A reader of the command's output that stops reading (``| head -1``, a ``tee`` that dies) does
not stop the run: what it prints after is dropped, the run finishes and writes its outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
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


def _closed_stdout() -> None:
    os.close(1)  # as `>&-` does: the command starts with no standard output


def test_a_command_started_without_stdout_runs(examples) -> None:
    done = subprocess.run([sys.executable, "-m", "eoscale", "run", "quickstart.yaml"],
                          cwd=examples, stderr=subprocess.PIPE, text=True, timeout=120,
                          preexec_fn=_closed_stdout)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    assert json.loads((examples / "out" / "ndvi_stats.json").read_text())
    for args in (["validate", "quickstart.yaml"], ["run", "quickstart.yaml", "--dry-run"]):
        done = subprocess.run([sys.executable, "-m", "eoscale", *args], cwd=examples,
                              stderr=subprocess.PIPE, text=True, timeout=120,
                              preexec_fn=_closed_stdout)
        assert done.returncode == 0 and "Traceback" not in done.stderr, (args, done.stderr)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_a_full_stdout_lets_the_run_finish(examples) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "eoscale", "run", "quickstart.yaml"],
                              cwd=examples, stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    with rasterio.open(examples / "out" / "ndvi_smooth.tif") as dataset:
        assert dataset.count == 1
