"""Fixtures for the failure tests: a run folder with inputs and the failing callables, and a
helper that starts the real ``eoscale`` command and watches its processes."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from kept_work import discard_kept  # noqa: F401 - the failure tests take it from here

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


def run(folder: Path, *args: str, timeout: float = 60, env: dict[str, str] | None = None
        ) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``python -m eoscale ARGS`` in ``folder`` (``env``: more environment variables);
    return the result and the seconds it took."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "eoscale", *args], cwd=folder, capture_output=True,
                          text=True, timeout=timeout, env=dict(environment(), **(env or {})))
    return done, time.monotonic() - started


def environment() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1")


#: Runs ``eoscale`` with a small tmpfs over the folder $1 (holding what it held), $2 a work
#: folder (before/, after/: the tmpfs's content afterwards, pid: eoscale's pid), $3 ``fill`` to
#: fill the tmpfs before the run, $4 the tmpfs's size; exits with eoscale's code, 97 if the tmpfs cannot be set up.
IN_SMALL_TMPFS = r"""
folder=$1 work=$2 fill=$3 size=$4; shift 4
cp -a "$folder/." "$work/before/" && mount -t tmpfs -o size=$size tmpfs "$folder" &&
  cp -a "$work/before/." "$folder/" || exit 97
if [ "$fill" = fill ]; then cat /dev/zero > "$folder/filler" 2>/dev/null; fi
"$@" &
pid=$!
echo "$pid" > "$work/pid"
wait "$pid"
code=$?
cp -a "$folder/." "$work/after/"
exit "$code"
"""
NAMESPACE = ("unshare", "--user", "--map-root-user", "--mount")
FULL = re.compile(r"^error: (?P<file>.+?): cannot write( rows \d+:\d+, cols \d+:\d+)?: no space "
                  r"left on device \(the filesystem holding it is full\)$", re.MULTILINE)


@pytest.fixture(scope="session")
def small_tmpfs(tmp_path_factory) -> None:
    """Skip unless this machine lets an unprivileged namespace mount a tmpfs."""
    folder = tmp_path_factory.mktemp("mount-check")
    try:
        done = subprocess.run([*NAMESPACE, "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$1"',
                               "sh", str(folder)], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("the full-disk tests need unshare (util-linux) to mount a small tmpfs")
    if done.returncode != 0:
        pytest.skip("the full-disk tests need to mount a tmpfs in a user and mount namespace, "
                    f"which this machine does not allow: {done.stderr.strip()}")


def run_on_full_disk(run_dir: Path, folder: Path, *args: str, fill: bool = False,
                     size: str = "128k"
                     ) -> tuple[subprocess.CompletedProcess, int, dict[str, bytes]]:
    """Run ``eoscale ARGS`` in ``run_dir`` with ``folder`` on a tmpfs of ``size`` (filled first
    with ``fill``); return the result, eoscale's pid and the files the tmpfs held afterwards."""
    work = run_dir / "namespace"
    for sub in ("before", "after"):
        (work / sub).mkdir(parents=True)
    done = subprocess.run([*NAMESPACE, "sh", "-c", IN_SMALL_TMPFS, "sh", str(folder), str(work),
                           "fill" if fill else "-", size, sys.executable, "-m", "eoscale", *args],
                          cwd=run_dir, capture_output=True, text=True, timeout=120,
                          env=environment())
    assert done.returncode != 97, f"the tmpfs could not be set up: {done.stderr}"
    left = {p.name: p.read_bytes() for p in (work / "after").iterdir() if p.name != "filler"}
    return done, int((work / "pid").read_text()), left


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def assert_stopped_on_full_disk(done: subprocess.CompletedProcess) -> str:
    """Exit 1 with one error line saying the disk is full, no traceback; the file it names."""
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1, done.stderr
    found = FULL.search(done.stderr)
    assert found, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    return found.group("file")
