"""A filesystem fills during a run: the scratch folder's (an image spilled there does not fit) or
the outputs' (an output written as it is computed, spilled to its own file, or held and written
at the end, does not fit).

Each run is the real ``eoscale run``, started in a user and mount namespace of its own where a
128 KiB tmpfs is mounted over that folder, holding what the folder held
(:func:`failure_helpers.run_on_full_disk`): a real full filesystem, failing the writes with ENOSPC. The run must stop with exit 1 and one error line naming the file
being written and saying that its filesystem is full, and leave no scratch file, no staged file,
no shared-memory segment, and the previous output as it was, byte for byte.

Last, a staged file that cannot be renamed into place when the outputs are committed.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from failure_helpers import (assert_stopped_on_full_disk, files, pipeline, run, run_on_full_disk,
                             segments_of, write_raster)

from eoscale.errors import RasterError
from eoscale.io.raster import Staging
from eoscale.io.runfiles import journal_pointer


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


def assert_lives(run_dir: Path, args: tuple[str, ...], *lives: str) -> None:
    """The plan puts the images where the case says (``copy: ... lives spilled``...)."""
    done, _ = run(run_dir, *args, "--dry-run")
    for expected in lives:
        name, where = expected.split()
        assert re.search(rf"^  {name}: .*; lives {where} ", done.stdout, re.MULTILINE), (
            done.stdout + done.stderr)


#: Output blocks that the tiles (64 px) are made of: the workers write the file. On larger blocks
#: the main process would hold a block's rows of it, the whole 400-row image, and spilling it
#: would cost more than holding it.
BLOCKS_64 = "{blockxsize: 64, blockysize: 64}"

# A step's image read by a later step: under a tight budget it is spilled, written as computed.
SPILLED = ("{name: copy, map: failing_ops.identity, inputs: [scene]}\n"
           "  - {name: tiles, reduce: failing_ops.tile_count, inputs: [copy]}")
# An output a later map reads: held whole and written at the end, or, under a tight budget,
# spilled to its file (an output only reduces read is written as computed, the reduces fed).
READ_BY_A_MAP = ("{name: copy, map: failing_ops.identity, inputs: [scene]}\n"
                 "  - {name: again, map: failing_ops.identity, inputs: [copy]}")


def test_a_full_scratch_filesystem_stops_a_spilled_run(full_disk_dir):
    run_dir, scratch = full_disk_dir, full_disk_dir / "scratch"
    previous = files(run_dir / "out")
    pipeline(run_dir, SPILLED + "\n  - {name: again, map: failing_ops.identity, inputs: [copy]}",
             inputs="{scene: scene.tif}",
             outputs="{again: {path: out/result.tif, options: " + BLOCKS_64 + "}}",
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


def test_a_scratch_filesystem_too_full_for_the_journal_leaves_nothing(full_disk_dir):
    """The run's journal (in the scratch folder) cannot be written: exit 1 naming it, and no
    empty journal, no record of the run's folders, no pointer to the journal left."""
    run_dir, scratch = full_disk_dir, full_disk_dir / "scratch"
    previous = files(run_dir / "out")
    pipeline(run_dir, SPILLED, inputs="{scene: scene.tif}",
             outputs="{copy: {path: out/result.tif, options: " + BLOCKS_64 + "}}",
             extra="tiling: {tile_size: 64}\n")
    done, pid, left = run_on_full_disk(run_dir, scratch, "run", "p.yaml", "--overwrite", "-w",
                                       "2", "--scratch", str(scratch), fill=True)
    assert done.returncode == 1, done.stderr
    found = re.search(r"^error: (\S+\.journal): cannot write the journal: no space left on "
                      r"device", done.stderr, re.MULTILINE | re.IGNORECASE)
    assert found, done.stderr
    assert "Traceback" not in done.stderr
    assert left == {}  # no journal, empty or torn
    assert files(run_dir / "out") == previous
    assert not list(Path(tempfile.gettempdir()).glob(f"eoscale_{pid}_*"))
    assert not journal_pointer(found.group(1)).exists()
    assert segments_of(pid) == []


# case: (pipeline steps, outputs, extra run arguments, where the plan puts the images, fill)
OUTPUT_CASES = {
    "streamed": ("{name: copy, map: failing_ops.identity, inputs: [scene]}",
                 "{copy: out/result.tif}", (), ("scene file", "copy written"), False),
    "spilled to its output": (READ_BY_A_MAP,
                              "{copy: {path: out/result.tif, options: " + BLOCKS_64 + "}}",
                              ("--memory", "1550KiB"), ("copy spilled",), False),
    "held, written at the end": (READ_BY_A_MAP, "{copy: out/result.tif}", (), ("copy shared",),
                                 False),
    "written, a reduce fed": (SPILLED, "{copy: out/result.tif}", (), ("copy written",), False),
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
    assert written.endswith(re.search(r"out/\S+\.(?:tif|json)", outputs).group(0))
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
