"""The leak checks hold while other eoscale runs start, fail, crash and end on the same machine.

``other_runs.py`` runs the real ``eoscale`` command over and over in processes of its own, as
another user or another test session would: their segments and scratch files, alive or left by a
killed run, must never count as this session's leaks, and a leak of the session's own must still
be found among them.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from affine import Affine

from eoscale.engine import Engine, Tiling, tile_context
from eoscale.engine.filed import OutputFile
from eoscale.engine.scratch import list_scratch
from eoscale.engine.shared import SharedRaster, list_segments, pid_alive
from eoscale.errors import StepError
from leak_checks import leaked_scratch, leaked_segments, own_segments, session_pids

HERE = Path(__file__).resolve().parent
PROFILE = {"transform": Affine(10, 0, 1000, 0, -10, 2000), "crs": "EPSG:32631", "nodata": -1}
T = TypeVar("T")


@dataclass
class OtherRuns:
    """The script running other eoscale commands, and the kind of each run it started, by pid."""

    process: subprocess.Popen
    started: dict[int, str] = field(default_factory=dict)

    def read(self) -> None:
        for line in self.process.stdout:
            pid, kind = line.split(maxsplit=1)
            self.started[int(pid)] = kind.strip()

    def pids(self) -> set[int]:
        return set(self.started.copy())  # copied at once: the reading thread adds to it


@pytest.fixture(scope="module")
def other_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OtherRuns]:
    folder = tmp_path_factory.mktemp("other-runs")
    process = subprocess.Popen([sys.executable, str(HERE / "other_runs.py"), str(folder)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    runs = OtherRuns(process)
    reader = threading.Thread(target=runs.read, daemon=True)
    try:
        assert process.stdout.readline() == "ready\n"
        reader.start()
        yield runs
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            reader.join(timeout=10)
            process.stdout.close()


def eventually(find: Callable[[], T | None], what: str, timeout: float = 120) -> T:
    """Poll ``find`` every 10 ms until it finds something (the other runs take turns)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find()
        if found is not None:
            return found
        time.sleep(0.01)
    raise AssertionError(f"never saw {what} in {timeout} s: the other runs did not run")


def raises_at_tile_3(arrays, profiles, params):
    if tile_context().index == 3:
        raise ZeroDivisionError("user code divided by zero")
    return arrays[0]


def test_a_failing_run_s_leak_check_passes_while_other_runs_come_and_go(other_runs, tmp_path):
    """The check of test_written_outputs, repeated until other runs made or freed segments during
    it at least 3 times: comparing the machine's whole listing would have failed then."""
    image = np.random.default_rng(0).integers(-3000, 3000, (2, 61, 75)).astype("int16")
    during_others = 0
    deadline = time.monotonic() + 180
    while during_others < 3 and time.monotonic() < deadline:
        with Engine(2, tiling=Tiling("tiles", 16)) as engine:
            source = engine.from_array(image, PROFILE)
            machine, before = set(list_segments()), own_segments()
            with pytest.raises(StepError, match="tile 3"):
                engine.map(raises_at_tile_3, [source], margin=0,
                           files=[OutputFile(tmp_path / "out.tif")])
            assert own_segments() == before
            during_others += set(list_segments()) != machine
    assert during_others == 3, "other runs never made or freed a segment during a check"


def _others_now(listing: Callable[[], list[tuple[T, int]]], other_runs: OtherRuns, *,
                dead: bool) -> tuple[T, ...] | None:
    """What the other runs' processes own now in ``listing``: of dead processes only (what a
    killed run left) or of live ones; None if nothing."""
    theirs = other_runs.pids()
    found = tuple(item for item, pid in listing() if pid in theirs and pid_alive(pid) != dead)
    return found or None


@pytest.mark.parametrize("dead", [False, True], ids=["live runs", "killed runs"])
def test_the_suite_s_checks_ignore_the_segments_of_other_runs(other_runs, dead):
    """A killed run's segments were what the former check counted (owner dead, made since the
    session began): seen while they exist, they are not this session's leaks."""
    while True:
        theirs = eventually(lambda: _others_now(list_segments, other_runs, dead=dead),
                            "segments of other runs")
        leaked = leaked_segments()
        still_there = set(theirs) & {name for name, _ in list_segments()}
        if still_there:  # seen by the check, not removed just before it by another run's start
            break
    assert still_there.isdisjoint(leaked)
    assert not session_pids() & other_runs.pids()


@pytest.mark.parametrize("dead", [False, True], ids=["live runs", "killed runs"])
def test_the_suite_s_checks_ignore_the_scratch_files_of_other_runs(other_runs, dead):
    while True:
        theirs = eventually(lambda: _others_now(list_scratch, other_runs, dead=dead),
                            "scratch files of other runs")
        leaked = leaked_scratch()
        still_there = set(theirs) & {path for path, _ in list_scratch()}
        if still_there:
            break
    assert still_there.isdisjoint(leaked)


LEAKER = """\
import sys
from eoscale.engine.scratch import Scratch
from eoscale.engine.shared import SHM_DIR, new_segment_name

segment = SHM_DIR / new_segment_name()
segment.write_bytes(bytes(4096))
scratch = Scratch().path("leaked")
scratch.write_bytes(b"a spilled image, never removed")
print(segment.name, scratch, flush=True)
sys.stdin.read()
"""


def test_a_leak_of_the_session_s_own_is_found_among_other_runs(other_runs):
    """In this process, and in a command the test started (still alive while checked, so that
    no other run's start removes what it left as a dead run's)."""
    segments_before, scratch_before = set(leaked_segments()), set(leaked_scratch())
    raster = SharedRaster.create({"count": 1, "height": 8, "width": 8, "dtype": "uint8"})
    try:
        assert set(leaked_segments()) - segments_before == {raster.ref.segment}
    finally:
        raster.release()
    assert set(leaked_segments()) == segments_before

    leaker = subprocess.Popen([sys.executable, "-c", LEAKER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    segment, scratch = leaker.stdout.readline().split()
    try:
        eventually(lambda: other_runs.pids() or None, "a run started")  # they run meanwhile
        assert set(leaked_segments()) - segments_before == {segment}
        assert set(leaked_scratch()) - scratch_before == {Path(scratch)}
    finally:
        leaker.communicate("")
        (Path("/dev/shm") / segment).unlink(missing_ok=True)
        Path(scratch).unlink(missing_ok=True)
    assert set(leaked_segments()) == segments_before
    assert set(leaked_scratch()) == scratch_before
