"""A map stopped in the middle on a Dask cluster (a tile that raised, a signal) leaves no part
file, even though a cancel does not stop the tasks its workers are running: those finish their
tile after the run removed the step's files, and must not write its blocks again. The clusters
here are the tests' own, which outlive each run, so such a late tile always gets to write; each
test checks that one did finish after the run had stopped, then that nothing is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import eoscale
from eoscale.engine.encoded import (
    PART_MARK,
    StepEndedError,
    append_to_part,
    part_path,
    writing_for,
)
from eoscale.errors import StepError
from eoscale.io import blocks as blocks_module

from test_cluster_failures import no_partial_output, pipeline

#: Every tile but the failing one sleeps this long: the failure comes while one of them runs.
SLOW_SECONDS = 1.0


def slow_step(marks: Path, extra: str = "", seconds: float = SLOW_SECONDS) -> str:
    return ("  - {name: slow, map: cluster_ops.slow_marked, profile: cluster_ops.same_profile, "
            f"inputs: [scene], params: {{marks: '{marks}', seconds: {seconds}{extra}}}}}\n")


#: 16 tiles of 128 x 128, the output's blocks (deflated: appended to the workers' parts), in a
#: folder that exists before the run (else removed with the failed run: no late write could
#: make a file in it).
OUTPUT = "{slow: {path: out/slow.tif, options: {blockxsize: 128, blockysize: 128}}}"


def slow_pipeline(folder: Path, extra: str = "", seconds: float = SLOW_SECONDS) -> Path:
    """The pipeline of :func:`slow_step` writing :data:`OUTPUT`; the tiles' marks in ``marks``."""
    (folder / "marks").mkdir()
    (folder / "out").mkdir()
    return pipeline(folder, slow_step(folder / "marks", extra, seconds), OUTPUT)


def stopped_while_tiles_run(folder: Path, cluster: str, signum: int
                            ) -> tuple[int, str, float, float]:
    """Run ``p.yaml`` on ``cluster`` and stop it as a user would (Ctrl-C to its process group,
    SIGTERM to the command) once both workers are in their first tile: its exit code, its
    stderr, when the signal was sent (``time.time``) and the seconds until the command
    exited."""
    marks = folder / "marks"
    process = subprocess.Popen(
        [sys.executable, "-m", "eoscale", "run", "p.yaml", "--cluster", cluster,
         "--scratch", "scratch"], cwd=folder, text=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (marks / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # both workers in their first tile
        assert not list(marks.glob("done-*"))
        stopped = time.time()
        if signum == signal.SIGINT:
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        took = time.time() - stopped
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    return process.returncode, stderr, stopped, took


def leftovers(folder: Path) -> list[str]:
    """Part files and staged files anywhere below ``folder``."""
    return sorted(path.name for path in folder.rglob("*")
                  if PART_MARK in path.name or ".eoscale-tmp-" in path.name)


def finished_after(marks: Path, moment: float) -> list[str]:
    """The tiles that finished sleeping (and then wrote their blocks) after ``moment``."""
    return [path.name for path in marks.glob("done-*") if path.stat().st_mtime > moment]


def wait_for_late_tiles() -> None:
    """Wait until the tiles running when the run stopped have written their blocks (or would
    have): a tile's sleep, and a margin."""
    time.sleep(SLOW_SECONDS + 1.0)


def test_tiles_still_running_when_a_callable_raises_write_no_part_file(client, ops_dir):
    path = slow_pipeline(ops_dir, ", tile: 5")
    marks = ops_dir / "marks"
    with pytest.raises(StepError) as raised:
        eoscale.run(path, cluster=client, scratch=ops_dir / "scratch")
    failed = time.time()
    assert raised.value.step == "slow" and "tile 5 " in (raised.value.tile or "")
    assert "no band named" in str(raised.value)
    wait_for_late_tiles()
    assert finished_after(marks, failed), "no tile ran on after the failure: the test tests nothing"
    assert leftovers(ops_dir) == []
    no_partial_output(ops_dir)
    assert list((ops_dir / "scratch").iterdir()) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_tiles_still_running_when_a_signal_stops_the_run_write_no_part_file(
        client, ops_dir, signum):
    """The signal comes while the first tiles run, before any tile is recorded by the journal
    (which would keep its part file for a resume): the run leaves nothing, and the tiles the
    workers go on with after it (the cluster is not the run's: it stays) write nothing."""
    slow_pipeline(ops_dir)
    marks = ops_dir / "marks"
    code, stderr, stopped, took = stopped_while_tiles_run(ops_dir, client.scheduler.address,
                                                          signum)
    assert code == (130 if signum == signal.SIGINT else 143), stderr
    assert "stopped, nothing was left behind" in stderr, stderr
    assert took < 5, took  # two seconds, on a quiet machine
    wait_for_late_tiles()
    assert finished_after(marks, stopped + took), "no tile ran on after the run: nothing tested"
    assert leftovers(ops_dir) == []
    no_partial_output(ops_dir)
    assert list((ops_dir / "scratch").iterdir()) == []


class _EndingStep:
    """A step that ends while a block is being appended (from the part file's append)."""

    def __init__(self) -> None:
        self.ended = False

    def __call__(self) -> bool:
        return self.ended


@pytest.mark.parametrize("earlier", [False, True], ids=["new part", "part with earlier blocks"])
def test_an_append_during_which_the_step_ends_is_taken_back(tmp_path, monkeypatch, earlier):
    """The main process may have removed the part file before the append made it again: the
    append is undone (the part removed, or cut back to the blocks appended before it, which a
    stopped run's journal may name) and its records are not returned."""
    staged = tmp_path / ".out.tif.eoscale-tmp-1-ab"
    step = _EndingStep()
    with writing_for(step):
        if earlier:
            before = append_to_part(os.fspath(staged), "out.tif", {0: b"kept block"})
            assert before[0].length == 10
        append = blocks_module.PartFile.append

        def ending(self, data):
            step.ended = True  # the step ends while this block is appended
            return append(self, data)

        monkeypatch.setattr(blocks_module.PartFile, "append", ending)
        with pytest.raises(StepEndedError, match="out.tif: not writing to .*the step has ended"):
            append_to_part(os.fspath(staged), "out.tif", {1: b"late block"})
        part = part_path(staged)
        if earlier:
            assert part.read_bytes() == b"kept block"
        else:
            assert not part.exists()
        with pytest.raises(StepEndedError):  # nothing appended once the step has ended
            append_to_part(os.fspath(staged), "out.tif", {2: b"later block"})
    assert sorted(path.name for path in tmp_path.iterdir()) == ([part.name] if earlier else [])
    monkeypatch.undo()
    assert append_to_part(os.fspath(staged), "out.tif", {3: b"x"})  # outside: written


def test_a_signal_stops_a_local_cluster_s_run_while_its_tiles_run(ops_dir):
    """``--cluster local:2``, every tile sleeping 30 s: a SIGINT while the first tiles run stops
    the command in under two seconds (a quiet machine; 3.5 here), the workers killed rather than
    waited for (Dask's own close waits 4 s for a worker still running a task), nothing left."""
    slow_pipeline(ops_dir, seconds=30)
    code, stderr, _, took = stopped_while_tiles_run(ops_dir, "local:2", signal.SIGINT)
    assert code == 130, stderr
    assert "stopped, nothing was left behind" in stderr and "distributed" not in stderr, stderr
    assert "Traceback" not in stderr and "Process Dask" not in stderr, stderr
    assert took < 3.5, took
    assert leftovers(ops_dir) == []
    no_partial_output(ops_dir)
