"""Failures on a Dask cluster map to the errors and exit codes of one machine: a callable raising,
a worker lost (retried by Dask, or a dead-worker error naming step and tile), a scheduler that
does not answer, Ctrl-C; none leaves a scratch file or a partial output."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from kept_work import discard_kept

import eoscale
from eoscale.engine import NoProgress
from eoscale.errors import StepError, WorkerDiedError


def write_input(folder: Path, size: int = 512) -> Path:
    array = np.random.default_rng(3).integers(1, 1000, size=(2, size, size), dtype=np.uint16)
    path = folder / "small.tif"
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=2,
                       dtype="uint16", crs="EPSG:32631", nodata=0,
                       transform=Affine(10, 0, 600000, 0, -10, 4800000)) as dst:
        dst.write(array)
    return path


def pipeline(folder: Path, steps: str, outputs: str, tile_size: int = 128) -> Path:
    write_input(folder)
    path = folder / "p.yaml"
    path.write_text(f"version: 1\ntiling: {{tile_size: {tile_size}}}\ninputs: {{scene: small.tif}}\n"
                    f"steps:\n{steps}outputs: {outputs}\n", encoding="utf-8")
    return path


RAISES = "  - {name: boom, map: cluster_ops.raises_at, inputs: [scene], params: {tile: 5}}\n"
#: Two steps: the first one's image is fused into the second (computed inside its tiles), or
#: spilled to a scratch file the second one reads when a reduce reads it too.
SLOW_CHAIN = ("  - {name: first, map: cluster_ops.slow_copy, inputs: [scene], params: {seconds: %s}}\n"
              "  - {name: second, map: cluster_ops.slow_copy, inputs: [first], params: {seconds: %s}}\n")


def eoscale_command(folder: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eoscale", *args], cwd=folder, text=True,
                          capture_output=True, timeout=timeout, check=False)


def no_partial_output(folder: Path) -> None:
    out = folder / "out"
    assert not out.exists() or list(out.iterdir()) == [], list(out.iterdir())
    assert [p for p in folder.rglob("*") if ".eoscale-tmp-" in p.name] == []


def test_a_callable_raising_names_the_step_the_tile_and_the_user_s_frames(client, ops_dir):
    path = pipeline(ops_dir, RAISES, "{boom: out/boom.tif}")
    with pytest.raises(StepError) as raised:
        eoscale.run(path, cluster=client, scratch=ops_dir / "scratch")
    error = raised.value
    assert error.step == "boom" and error.tile is not None and "tile 5 " in error.tile
    assert "KeyError" in str(error) and "no band named 'nir'" in str(error)
    assert "_user_helper" in (error.details or "")
    no_partial_output(ops_dir)


def test_a_callable_raising_through_the_command_exits_1(client, ops_dir):
    pipeline(ops_dir, RAISES, "{boom: out/boom.tif}")
    done = eoscale_command(ops_dir, "run", "p.yaml", "--cluster", client.scheduler.address,
                           "--scratch", "scratch")
    assert done.returncode == 1, done.stderr
    assert "step 'boom'" in done.stderr and "KeyError" in done.stderr
    assert "_user_helper" in done.stderr and "Traceback" in done.stderr
    assert f"cluster: {client.scheduler.address}, 2 workers" in done.stdout
    no_partial_output(ops_dir)
    assert list((ops_dir / "scratch").iterdir()) == []


class Counting(NoProgress):
    def __init__(self):
        self.done = 0

    def advance(self, done: int) -> None:
        self.done += done


def test_a_worker_killed_mid_run_is_retried_and_the_outputs_are_identical(client, ops_dir):
    """Dask runs the lost worker's task again on the other worker (the nanny restarts the lost
    one, which is set up again by the run's worker plugin): the run completes, and its output is
    the input, pixel for pixel."""
    path = pipeline(ops_dir, SLOW_CHAIN % (0.15, 0.15), "{second: out/second.tif}")
    progress = Counting()
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(eoscale.run(path, cluster=client, scratch=ops_dir / "scratch",
                                       progress=progress))
        except BaseException as error:  # noqa: BLE001 - the test reports it
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while progress.done < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    victim = min(client.scheduler_info()["workers"])
    killed_at = progress.done
    with contextlib.suppress(Exception):  # the worker dies before it answers
        client.run(os._exit, 1, workers=[victim])
    thread.join(120)
    assert not thread.is_alive()
    assert not isinstance(outcome[0], BaseException), outcome[0]
    assert 4 <= killed_at < 32 and victim not in client.scheduler_info()["workers"]  # mid-run
    with rasterio.open(ops_dir / "out" / "second.tif") as result, \
            rasterio.open(ops_dir / "small.tif") as source:
        assert result.read().tobytes() == source.read().tobytes()
    assert list((ops_dir / "scratch").iterdir()) == []


def test_a_callable_that_kills_its_worker_every_time_is_a_dead_worker_naming_step_and_tile(
        client, ops_dir):
    path = pipeline(ops_dir, "  - {name: crash, map: cluster_ops.exits_at, inputs: [scene], "
                             "params: {tile: 3}}\n", "{crash: out/crash.tif}")
    with pytest.raises(WorkerDiedError) as raised:
        eoscale.run(path, cluster=client, scratch=ops_dir / "scratch")
    # Tile 3 kills its workers; Dask counts a death against every task the dying worker held,
    # so the task it gives up on is tile 3's or one that ran beside it on the same workers.
    assert raised.value.step == "crash" and re.match(r"tile \d+ \(rows", raised.value.tile or "")
    assert "died" in str(raised.value)
    no_partial_output(ops_dir)


def test_a_forked_worker_lost_mid_run_is_restarted_and_the_run_completes(ops_dir):
    """The command's local cluster forks its workers; one dies at tile 3 (once): the nanny starts
    another (spawned), the run's set-up reaches it, the task runs again, the output is whole."""
    marker = ops_dir / "died"
    pipeline(ops_dir, "  - {name: copy, map: cluster_ops.exits_once_at, inputs: [scene], "
                      f"params: {{tile: 3, marker: '{marker}'}}}}\n", "{copy: out/copy.tif}")
    done = eoscale_command(ops_dir, "run", "p.yaml", "--cluster", "local:2")
    assert done.returncode == 0, done.stderr
    assert marker.exists()
    with rasterio.open(ops_dir / "out" / "copy.tif") as result, \
            rasterio.open(ops_dir / "small.tif") as source:
        assert result.read().tobytes() == source.read().tobytes()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_scheduler_fails_at_once_naming_it(ops_dir):
    pipeline(ops_dir, RAISES, "{boom: out/boom.tif}")
    address = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = eoscale_command(ops_dir, "run", "p.yaml", "--cluster", address, "--scratch", "scratch")
    assert done.returncode == 1, done.stderr
    assert address in done.stderr and "cannot reach the Dask scheduler" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 8
    no_partial_output(ops_dir)


def test_a_peer_that_accepts_but_never_answers_fails_after_the_connect_time(monkeypatch):
    """Not a scheduler, or a hung one: it accepts the connection and says nothing. Dask's own
    timeout does not bound its handshake (the run waited for ever); eoscale gives up after
    its connect time and a grace, naming the address."""
    from eoscale.engine import cluster

    monkeypatch.setattr(cluster, "GRACE_SECONDS", 0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(cluster.ClusterError, match=re.escape(
                f"cannot reach the Dask scheduler at {address} (TimeoutError: it accepted the "
                "connection but did not answer in 2 s)")):
            cluster.DaskExecutor.connect(address, connect_seconds=1.0)
        assert time.monotonic() - started < 10


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_a_local_cluster_run_leaves_nothing_behind(ops_dir, signum):
    """Ctrl-C reaches the whole process group (the local cluster's workers ignore it), SIGTERM
    the main process only: either way the futures are cancelled, the cluster closed, the scratch
    file removed, and no output written."""
    # A reduce reads the first image too, so that it is spilled (not fused into the second).
    pipeline(ops_dir, SLOW_CHAIN % (0.3, 0.3) + "  - {name: peek, reduce: eoscale.ops.stats, "
                                                "inputs: [first]}\n", "{second: out/second.tif}")
    scratch = ops_dir / "scratch"
    process = subprocess.Popen(
        [sys.executable, "-m", "eoscale", "run", "p.yaml", "--cluster", "local:2", "--scratch",
         "scratch"], cwd=ops_dir, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1"))
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if not line or "map first" in line:
                break
        assert "map first" in lines[-1], (lines, process.stderr.read())
        while not list(scratch.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # some tiles computed and written
        assert list(scratch.iterdir())  # the spilled image, being written
        workers = _descendants(process.pid)
        if signum == signal.SIGINT:
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a hang: its threads' stacks (faulthandler on SIGABRT)
            process.send_signal(signal.SIGABRT)
            process.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):  # its workers hold the pipe open
                os.killpg(process.pid, signal.SIGKILL)
            pytest.fail("the run did not stop within 30 s; where it was:\n"
                        + process.stderr.read()[-6000:])
        stderr = process.stderr.read()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    assert process.returncode == (130 if signum == signal.SIGINT else 143), stderr
    assert "Traceback" not in stderr, stderr
    # Tiles recorded before the signal are kept to be resumed (issue 20): the journal (in the
    # scratch folder) and the files it names, said in the message; discarded to check the rest.
    discard_kept(stderr)
    assert list(scratch.iterdir()) == []
    no_partial_output(ops_dir)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if _alive(pid)], "a worker outlived the run"


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_path_the_workers_cannot_see_stops_the_run_before_it_starts(client, tmp_path):
    from eoscale.engine.cluster import ClusterError, DaskExecutor

    executor = DaskExecutor.connect(client)
    try:
        executor.check_visible([str(tmp_path)])
        with pytest.raises(ClusterError, match=r"cannot see /nowhere/scratch \(nor can 1 other"):
            executor.check_visible([str(tmp_path), "/nowhere/scratch"])
    finally:
        executor.close()
    assert client.status == "running"  # a given client is left open
