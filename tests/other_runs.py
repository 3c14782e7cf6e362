"""Other eoscale runs on the same machine, as another user or another test session would make.

    python other_runs.py FOLDER

Until its standard input closes, it runs the real ``eoscale`` command in FOLDER over and over,
each run in a process of its own (so with a pid of its own, unknown to whoever started this
script): a run that holds an image in shared memory, one that spills it to a scratch file in the
system's temporary folder, one whose step raises, and runs killed outright in the middle of their
map (SIGKILL to the whole process group: their segments and scratch files stay behind until the
next run's start removes them, as every ``eoscale run`` does). It prints ``<pid> <kind>`` for
every run it starts. When told to stop, it stops the current run with SIGTERM (the run cleans
up), runs ``eoscale cleanup`` for what killed runs left, and exits.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

HERE = Path(__file__).resolve().parent

PIPELINE = """\
version: 1
tiling: {tile_size: 64}
inputs: {scene: medium.tif}
steps:
  - {name: copy, map: failing_ops.identity, inputs: [scene]}
  - {name: slow, map: failing_ops.slow, profile: failing_ops.float32_profile, inputs: [copy],
     params: {seconds: 0.005}}
  - {name: tiles, reduce: failing_ops.tile_count, inputs: [copy]}
outputs: {slow: {path: out/result.tif, options: {blockxsize: 64, blockysize: 64}}}
"""
# (The output on blocks the 64 px tiles are made of, written by the workers: on larger blocks
# the main process would hold a block's rows of it, more than BUDGET lets it spill 'copy'.)
RAISING = PIPELINE.replace("failing_ops.slow", "failing_ops.raises_at").replace(
    "{seconds: 0.005}", "{tile: 40}")
BUDGET = ("--memory", "2MiB")
#: Each kind of run, in the order they take turns: its arguments, and whether it is killed.
RUNS: dict[str, tuple[tuple[str, ...], bool]] = {
    "shared": (("copy.yaml",), False),  # 'copy' lives in a shared-memory segment
    "spills": (("copy.yaml", *BUDGET), False),  # 'copy' spilled to a scratch file
    "raises": (("raises.yaml",), False),
    "killed shared": (("copy.yaml",), True),
    "killed spilling": (("copy.yaml", *BUDGET), True),
}


def prepare(folder: Path) -> None:
    """The callables, a 2 x 1000 x 1000 uint16 input (4 MB) and the pipelines, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "failures" / "failing_ops.py", folder / "failing_ops.py")
    array = np.random.default_rng(2).integers(1, 1000, size=(2, 1000, 1000), dtype=np.uint16)
    with rasterio.open(folder / "medium.tif", "w", driver="GTiff", width=1000, height=1000,
                       count=2, dtype="uint16", crs="EPSG:32631", nodata=0,
                       transform=Affine(10, 0, 600000, 0, -10, 4800000)) as dst:
        dst.write(array)
    (folder / "copy.yaml").write_text(PIPELINE, encoding="utf-8")
    (folder / "raises.yaml").write_text(RAISING, encoding="utf-8")


def eoscale(folder: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "eoscale", *args], cwd=folder, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def one_run(folder: Path, kind: str, stop: threading.Event) -> None:
    args, killed = RUNS[kind]
    # --restart: a killed run keeps its journal (to be resumed), which a rerun without it refuses
    process = eoscale(folder, "run", *args, "-w", "2", "--overwrite", "--restart")
    print(process.pid, kind, flush=True)
    killer = None
    if killed:
        killer = threading.Thread(target=kill_in_map, args=(process,), daemon=True)
        killer.start()
    else:
        threading.Thread(target=process.stdout.read, daemon=True).start()
    while process.poll() is None:
        if stop.wait(0.05):
            with_signal(process, signal.SIGTERM)
            break
    process.wait()
    if killer is not None:
        killer.join()
    process.stdout.close()


def kill_in_map(process: subprocess.Popen) -> None:
    """SIGKILL the run's process group once its slow map has begun (its images exist)."""
    for line in process.stdout:
        if "map slow:" in line:
            with_signal(process, signal.SIGKILL)
            break
    process.stdout.read()


def with_signal(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def main(folder: Path) -> None:
    prepare(folder)
    stop = threading.Event()

    def wait_for_stdin_closed() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_stdin_closed, daemon=True).start()
    print("ready", flush=True)
    while not stop.is_set():
        for kind in RUNS:
            if stop.is_set():
                break
            one_run(folder, kind, stop)
    subprocess.run([sys.executable, "-m", "eoscale", "cleanup", "-q"], cwd=folder, check=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
