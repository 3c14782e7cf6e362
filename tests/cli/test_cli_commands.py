"""``eoscale validate``, ``info`` and ``cleanup``, and the real console script in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio

from cli_helpers import eoscale
from eoscale.cli.main import cli
from eoscale.engine import shared
from eoscale.engine.scratch import cleanup_stale_scratch
from eoscale.engine.shared import list_segments


def test_validate_accepts_every_example(runner, examples):
    for pipeline in sorted(examples.glob("*.yaml")):
        result = runner.invoke(cli, ["validate", str(pipeline)])
        assert result.exit_code == 0, result.output
        assert "valid" in result.output and "estimated peak memory" in result.output


def test_validate_reports_every_problem_with_file_and_line(runner, examples):
    broken = examples / "broken.yaml"
    broken.write_text(
        "version: 1\n"
        "inputs:\n"
        "  scene: data/scene.tif\n"
        "  missing: data/nowhere.tif\n"
        "steps:\n"
        "  - name: ndvi\n"
        "    map: example_ops.ndvi_typo\n"
        "    inputs: [scene]\n"
        "    params: {red: 3}\n"
        "outputs:\n"
        "  ndvi: out/ndvi.tif\n")
    result = runner.invoke(cli, ["validate", str(broken)])
    assert result.exit_code == 3
    out = result.output
    assert "2 problems" in out
    assert "broken.yaml:4" in out and "nowhere.tif" in out
    assert "broken.yaml:7" in out and "ndvi_typo" in out and "step 'ndvi'" in out
    broken.write_text(broken.read_text().replace("params:", "parms:").replace("ndvi.tif", "ndvi.json"))
    result = runner.invoke(cli, ["validate", str(broken)])
    assert result.exit_code == 3
    assert "broken.yaml:9" in result.output and "did you mean 'params'" in result.output
    assert "broken.yaml:11" in result.output and "expected a .tif or .tiff path" in result.output


def test_validate_rejects_inputs_on_shifted_grids(runner, examples, shared_data):
    pipeline = examples / "naip.yaml"
    pipeline.write_text(
        "version: 1\n"
        f"inputs:\n  a: {shared_data / 'naip_m_4709963_se_14_1_20120731.tif'}\n"
        f"  b: {shared_data / 'naip_m_4709963_se_14_1_20200831.tif'}\n"
        "steps:\n  - {name: s, map: example_ops.split_bands, inputs: [a, b]}\n")
    result = runner.invoke(cli, ["validate", str(pipeline)])
    assert result.exit_code == 3
    assert "grid" in result.output


def test_info_text_and_strict_json(runner, shared_data):
    result = runner.invoke(cli, ["info", str(shared_data / "nz_elev.tif")])
    assert result.exit_code == 0
    assert "1115 x 1450 pixels, 1 band(s)" in result.output
    assert "no EPSG code" in result.output and "nan" in result.output
    result = runner.invoke(cli, ["info", "--json", str(shared_data / "nz_elev.tif")])
    data = json.loads(result.output, parse_constant=lambda token: pytest.fail(f"{token} in JSON"))
    assert data["epsg"] is None and data["nodata"] == "nan" and data["block_shape"] == [1, 1115]
    result = runner.invoke(cli, ["info", "--json", str(shared_data / "RGB.byte.tif")])
    data = json.loads(result.output)
    assert data["epsg"] == 32618 and data["count"] == 3 and data["nodata"] == 0


def test_info_stats_equal_numpy(runner, shared_data):
    pytest.importorskip("eoscale.ops")
    path = shared_data / "ls5_nbar_19920323_B30_red.tif"
    result = runner.invoke(cli, ["info", "--stats", "--json", "-w", "2", str(path)])
    assert result.exit_code == 0, result.output
    band = json.loads(result.output)["stats"][0]
    with rasterio.open(path) as src:
        values = src.read(1)
    valid = values[values != -999].astype(np.float64)
    assert band["count"] == valid.size
    assert band["min"] == valid.min() and band["max"] == valid.max()
    assert band["mean"] == pytest.approx(valid.mean(), rel=1e-12)
    assert band["std"] == pytest.approx(valid.std(), rel=1e-9)


def test_info_on_missing_and_non_raster_files(runner, tmp_path):
    result = runner.invoke(cli, ["info", str(tmp_path / "missing.tif")])
    assert result.exit_code == 1 and "file not found" in result.output and "missing.tif" in result.output
    text = tmp_path / "notes.tif"
    text.write_text("hello")
    result = runner.invoke(cli, ["info", str(text)])
    assert result.exit_code == 1 and "as a raster" in result.output
    assert "Traceback" not in result.output


def test_cleanup_removes_only_segments_of_dead_owners(runner, tmp_path, monkeypatch):
    # A shared-memory folder of the test's own: in /dev/shm, another eoscale run on the machine
    # could remove the stale segment first, or leave stale segments of its own to be counted.
    monkeypatch.setattr(shared, "SHM_DIR", tmp_path)
    dead = subprocess.run(["true"]).returncode == 0 and _dead_pid()
    stale = tmp_path / f"eoscale_{dead}_0123456789ab"
    live = tmp_path / f"eoscale_{os.getpid()}_ba9876543210"
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    try:
        result = runner.invoke(cli, ["cleanup", "--dry-run"])
        assert stale.name in result.output and live.name not in result.output
        assert stale.exists()
        result = runner.invoke(cli, ["cleanup"])
        assert result.exit_code == 0 and "removed 1 stale segment(s)" in result.output
        assert not stale.exists() and live.exists()
    finally:
        for path in (stale, live):
            path.unlink(missing_ok=True)


def test_cleanup_passes_over_what_it_may_not_remove(runner, tmp_path, monkeypatch):
    """Another user's stale segment or scratch file, in a sticky folder, cannot be removed: the
    clean-up (which every run starts with) passes over it instead of failing."""
    monkeypatch.setattr(shared, "SHM_DIR", tmp_path)
    dead = _dead_pid()
    segment = tmp_path / f"eoscale_{dead}_0123456789ab"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    scratch_file = scratch / f"eoscale_{dead}_0123456789ab_smooth.tif"
    theirs = {segment, scratch_file}
    for path in theirs:
        path.write_bytes(b"x")
    unlink = Path.unlink

    def refused(path: Path, missing_ok: bool = False) -> None:
        if path in theirs:
            raise PermissionError(1, "Operation not permitted", str(path))
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refused)
    assert shared.cleanup_stale_segments() == []
    assert cleanup_stale_scratch(scratch) == []
    assert all(path.exists() for path in theirs)


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_console_script_and_python_dash_m(examples):
    script = shutil.which("eoscale")
    if script is None:
        pytest.skip("the eoscale console script is not installed (pip install -e .)")
    done = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "eoscale" in done.stdout
    done = eoscale("run", "quickstart.yaml", "-w", "2", cwd=examples)
    assert done.returncode == 0, done.stderr
    assert "map ndvi: done" in done.stdout  # plain log lines when not on a terminal
    assert "wrote stats" in done.stdout
    done = eoscale("validate", "nowhere.yaml", cwd=examples)
    assert done.returncode == 3 and "pipeline file not found" in done.stderr
    assert "Traceback" not in done.stderr
    assert not [name for name, pid in list_segments() if pid == os.getpid()]
