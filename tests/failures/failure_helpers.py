"""Fixtures for the failure tests: a run folder with inputs and the failing callables, and a
helper that starts the real ``eoscale`` command and watches its processes."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

HERE = Path(__file__).resolve().parent


def write_raster(path: Path, array: np.ndarray, **options) -> Path:
    count, height, width = array.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count,
                       dtype=array.dtype, crs="EPSG:32631", nodata=0,
                       transform=Affine(10, 0, 600000, 0, -10, 4800000), **options) as dst:
        dst.write(array)
    return path


@pytest.fixture(scope="session")
def big_input(tmp_path_factory) -> Path:
    """An 8000 x 8000 uint16 deflate GeoTIFF: loading and writing it take a noticeable time."""
    folder = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(0)
    array = rng.integers(1, 4000, size=(1, 8000, 8000), dtype=np.uint16)
    return write_raster(folder / "big.tif", array, tiled=True, blockxsize=512, blockysize=512,
                        compress="deflate", num_threads="all_cpus")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A folder with failing_ops.py and a small input ``small.tif`` (300 x 200, 2 bands)."""
    shutil.copy(HERE / "failing_ops.py", tmp_path / "failing_ops.py")
    array = np.random.default_rng(1).integers(1, 1000, size=(2, 200, 300), dtype=np.uint16)
    write_raster(tmp_path / "small.tif", array)
    return tmp_path


def pipeline(folder: Path, step: str, *, inputs: str = "{scene: small.tif}",
             outputs: str | None = None, extra: str = "", name: str = "p.yaml") -> Path:
    """Write a one-step pipeline; by default the step's image goes to out/result.tif."""
    if outputs is None:
        outputs = "{%s: out/result.tif}" % re.search(r"name: ([^,}]+)", step).group(1)
    path = folder / name
    path.write_text(f"version: 1\n{extra}inputs: {inputs}\nsteps:\n  - {step}\noutputs: {outputs}\n",
                    encoding="utf-8")
    return path


def start(*args: str, cwd: Path) -> subprocess.Popen:
    """Start ``python -m eoscale ARGS`` in its own process group, with line-buffered output."""
    return subprocess.Popen([sys.executable, "-m", "eoscale", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env=environment())


@contextlib.contextmanager
def running(folder: Path, *args: str, until: str) -> Iterator[tuple[subprocess.Popen, set[int]]]:
    """Start ``eoscale ARGS`` and wait until a stdout line holds ``until``; yield the process and
    its workers' pids. Whatever happens, the process group is killed on the way out."""
    process = start(*args, cwd=folder)
    try:
        wait_for_line(process, until)
        yield process, children(process.pid)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_for_line(process: subprocess.Popen, fragment: str, timeout: float = 60) -> list[str]:
    """Read stdout until a line holds ``fragment``; return the lines read."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if fragment in line:
            return lines
    raise AssertionError(f"never saw {fragment!r}; got {lines}; stderr: {process.stderr.read()}")


def children(pid: int) -> set[int]:
    """The pids of the direct children of ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return {p for p in pids if alive(p)}


def segments_of(pid: int) -> list[str]:
    from eoscale.engine.shared import list_segments

    return [name for name, owner in list_segments() if owner == pid]


def leftovers(folder: Path) -> list[str]:
    """Temporary files anywhere under ``folder``."""
    return sorted(str(p) for p in folder.rglob("*") if ".eoscale-tmp-" in p.name)


def run(folder: Path, *args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``python -m eoscale ARGS`` in ``folder``; return the result and the seconds it took."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "eoscale", *args], cwd=folder, capture_output=True,
                          text=True, timeout=timeout, env=environment())
    return done, time.monotonic() - started


def environment() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1")
