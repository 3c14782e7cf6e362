"""A filesystem fills during a run: the scratch folder's (an image spilled there does not fit) or
the outputs' (an output written as it is computed, spilled to its own file, or held and written
at the end, does not fit).

Each run is the real ``eoscale run``, started in a user and mount namespace of its own where a
128 KiB tmpfs is mounted over that folder, holding what the folder held: a real full filesystem,
failing the writes with ENOSPC. The run must stop with exit 1 and one error line naming the file
being written and saying that its filesystem is full, and leave no scratch file, no staged file,
no shared-memory segment, and the previous output as it was, byte for byte.

Last, a staged file that cannot be renamed into place when the outputs are committed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from failure_helpers import environment, pipeline, run, segments_of, write_raster

from eoscale.errors import RasterError
from eoscale.io.raster import Staging

#: Runs ``eoscale`` with a small tmpfs over the folder $1 (holding what it held), $2 a work
#: folder (before/, after/: the tmpfs's content afterwards, pid: eoscale's pid), $3 ``fill`` to
#: fill the tmpfs before the run; exits with eoscale's code, 97 if the tmpfs cannot be set up.
IN_SMALL_TMPFS = r"""
folder=$1 work=$2 fill=$3; shift 3
cp -a "$folder/." "$work/before/" && mount -t tmpfs -o size=128k tmpfs "$folder" &&
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


@pytest.fixture
def full_disk_dir(run_dir: Path, small_tmpfs: None) -> Path:
    """run_dir with ``scene.tif`` (2 x 400 x 400 uint16, 625 KiB), a scratch folder, and a
    previous output, ``out/result.tif``."""
    array = np.random.default_rng(3).integers(1, 1000, size=(2, 400, 400), dtype=np.uint16)
    write_raster(run_dir / "scene.tif", array)
    (run_dir / "scratch").mkdir()
    (run_dir / "out").mkdir()
    (run_dir / "out" / "result.tif").write_bytes(b"the previous result")
    return run_dir


def run_on_full_disk(run_dir: Path, folder: Path, *args: str, fill: bool = False
                     ) -> tuple[subprocess.CompletedProcess, int, dict[str, bytes]]:
    """Run ``eoscale ARGS`` in ``run_dir`` with ``folder`` on a 128 KiB tmpfs (filled first with
    ``fill``); return the result, eoscale's pid and the files the tmpfs held afterwards."""
    work = run_dir / "namespace"
    for sub in ("before", "after"):
        (work / sub).mkdir(parents=True)
    done = subprocess.run([*NAMESPACE, "sh", "-c", IN_SMALL_TMPFS, "sh", str(folder), str(work),
                           "fill" if fill else "-", sys.executable, "-m", "eoscale", *args],
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


def assert_lives(run_dir: Path, args: tuple[str, ...], *lives: str) -> None:
    """The plan puts the images where the case says (``copy: ... lives spilled``...)."""
    done, _ = run(run_dir, *args, "--dry-run")
    for expected in lives:
        name, where = expected.split()
        assert re.search(rf"^  {name}: .*; lives {where} ", done.stdout, re.MULTILINE), (
            done.stdout + done.stderr)


# A step's image read by a later step: under a tight budget it is spilled, written as computed.
SPILLED = ("{name: copy, map: failing_ops.identity, inputs: [scene]}\n"
           "  - {name: tiles, reduce: failing_ops.tile_count, inputs: [copy]}")


def test_a_full_scratch_filesystem_stops_a_spilled_run(full_disk_dir):
    run_dir, scratch = full_disk_dir, full_disk_dir / "scratch"
    previous = files(run_dir / "out")
    pipeline(run_dir, SPILLED + "\n  - {name: again, map: failing_ops.identity, inputs: [copy]}",
             inputs="{scene: scene.tif}", outputs="{again: out/result.tif}",
             extra="tiling: {tile_size: 64}\n")
    args = ("run", "p.yaml", "--overwrite", "-w", "2", "--memory", "1MiB", "--scratch",
            str(scratch))
    assert_lives(run_dir, args, "copy spilled")  # to a scratch file: 625 KiB, on 128 KiB

    done, pid, left = run_on_full_disk(run_dir, scratch, *args)

    written = assert_stopped_on_full_disk(done)
    assert re.fullmatch(rf"copy \(spilled to {re.escape(str(scratch))}/eoscale_{pid}_\w+_copy"
                        r"\.tif\)", written), written
    assert left == {}  # no scratch file
    assert files(run_dir / "out") == previous
    assert segments_of(pid) == []


# case: (pipeline steps, outputs, extra run arguments, where the plan puts the images, fill)
OUTPUT_CASES = {
    "streamed": ("{name: copy, map: failing_ops.identity, inputs: [scene]}",
                 "{copy: out/result.tif}", (), ("scene file", "copy written"), False),
    "spilled to its output": (SPILLED, "{copy: out/result.tif}", ("--memory", "1MiB"),
                              ("copy spilled",), False),
    "held, written at the end": (SPILLED, "{copy: out/result.tif}", (), ("copy shared",), False),
    "a reduce's JSON": (SPILLED, "{tiles: out/tiles.json}", (), (), True),
}


@pytest.mark.parametrize("case", list(OUTPUT_CASES))
def test_a_full_output_filesystem_leaves_the_previous_output_intact(full_disk_dir, case):
    steps, outputs, extra, lives, fill = OUTPUT_CASES[case]
    run_dir = full_disk_dir
    previous = files(run_dir / "out")
    pipeline(run_dir, steps, inputs="{scene: scene.tif}", outputs=outputs,
             extra="tiling: {tile_size: 64}\n")
    args = ("run", "p.yaml", "--overwrite", "-w", "2", "--scratch", str(run_dir / "scratch"),
            *extra)
    assert_lives(run_dir, args, *lives)

    done, pid, left = run_on_full_disk(run_dir, run_dir / "out", *args, fill=fill)

    written = assert_stopped_on_full_disk(done)
    assert written.endswith(re.search(r": (\S+)}", outputs).group(1))
    assert left == previous  # no staged file beside it, the previous output byte-identical
    assert list((run_dir / "scratch").iterdir()) == []
    assert segments_of(pid) == []


def test_a_rename_that_fails_at_commit_names_the_output_and_leaves_no_staged_file(tmp_path):
    first, second = tmp_path / "first.tif", tmp_path / "second.tif"
    with pytest.raises(RasterError) as raised, Staging(overwrite=True) as staging:
        staging.stage(first).write_bytes(b"first")
        staging.stage(second).write_bytes(b"second")
        (second / "made meanwhile").mkdir(parents=True)  # a folder now stands where it goes
        staging.commit()
    assert str(raised.value) == (f"{second}: cannot move the finished file into place "
                                 "(Is a directory)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.tif", "second.tif"]
    assert first.read_bytes() == b"first"  # renamed before the failure: it stays
    assert [p.name for p in second.iterdir()] == ["made meanwhile"]
