"""Failures of a run whose output the workers encode, through the real ``eoscale`` command on
the process pool (``--workers 2``).

The output is a tiled deflate GeoTIFF whose 64 x 64 blocks are the tiles' cores, so the workers
encode its blocks and write them in tile order at their places in the staged file
(``.<name>.eoscale-tmp-<pid>-<hex>``), or, for a tile done before an earlier one's size is
known, into a part file beside it (``.part-<worker host>-<worker pid>``), and the main process
finishes the file when the map ends. Whatever stops the run (a callable raising, a worker
dying, Ctrl-C, SIGTERM, a full disk while the blocks are written or while the file is
finished), the command exits with its code and a message naming the step, tile or file, and
leaves the previous output byte for byte, and no part file, staged file, scratch file,
shared-memory segment or record of its folders. A run killed outright (SIGKILL to its whole
process group) cannot clean up: ``eoscale cleanup``, told nothing, or the next run finds what it
left beside its outputs and in its scratch folder, and removes it, never a live run's.
"""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from failure_helpers import (
    assert_stopped_on_full_disk,
    discard_kept,
    pipeline,
    run,
    run_on_full_disk,
    running,
    segments_of,
    wait_gone,
    write_raster,
)
from leak_checks import own_scratch

from eoscale.io.blocks import IN_ORDER_HEAD
from eoscale.io.journal import read_journal
from eoscale.io.runfiles import list_records

#: 64 x 64 blocks: the tiles' cores (tile_size 64) are whole blocks, so the workers encode them.
ENCODED = ("{path: out/result.tif, options: {compress: deflate, tiled: true, blockxsize: 64, "
           "blockysize: 64}}")
TILING = "tiling: {tile_size: 64}\n"
#: What the previous output holds: a small real GeoTIFF a failed run must leave byte for byte.
PREVIOUS = np.arange(16 * 16, dtype=np.uint8).reshape(1, 16, 16)


@pytest.fixture
def encoded_dir(run_dir: Path) -> Path:
    """run_dir with ``noise.tif`` (1 x 256 x 384 uint8 noise: its 24 tiles encode to about
    96 KiB, deflate cannot shrink noise), a scratch folder and a previous ``out/result.tif``."""
    noise = np.random.default_rng(5).integers(0, 256, size=(1, 256, 384), dtype=np.uint8)
    write_raster(run_dir / "noise.tif", noise)
    (run_dir / "scratch").mkdir()
    (run_dir / "out").mkdir()
    write_raster(run_dir / "out" / "result.tif", PREVIOUS)
    return run_dir


def step_pipeline(folder: Path, step: str, outputs: str = f"{{copy: {ENCODED}}}",
                  name: str = "p.yaml") -> Path:
    return pipeline(folder, step, inputs="{scene: noise.tif}", outputs=outputs, extra=TILING,
                    name=name)


def out_files(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder/out``, hidden ones included, by name."""
    return {p.name: p.read_bytes() for p in (folder / "out").iterdir()}


def records_of(pid: int) -> list[Path]:
    """The records of the folders the run ``pid`` writes in (in $TMPDIR)."""
    return [path for path, owner in list_records() if owner == pid]


def parts(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part-" in p.name)


def assert_clean(folder: Path, previous: dict[str, bytes], pid: int | None = None) -> None:
    """The previous output as it was and nothing else beside it; no scratch file, segment or
    record of the run ``pid``."""
    assert out_files(folder) == previous
    assert list((folder / "scratch").iterdir()) == []
    if pid is not None:
        assert segments_of(pid) == []
        assert own_scratch([pid]) == set() and records_of(pid) == []  # in $TMPDIR


def staged(folder: Path) -> list[str]:
    """The staged files and part files in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if ".eoscale-tmp-" in p.name)


def wait_for_blocks(folder: Path, timeout: float = 30) -> list[str]:
    """The staged and part files in ``folder`` once encoded blocks are in them (a staged file
    longer than the head its blocks follow, or a part file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = staged(folder)
        if parts(folder) or any((folder / name).stat().st_size > IN_ORDER_HEAD
                                for name in found if (folder / name).exists()):
            return found
        time.sleep(0.02)
    raise AssertionError(f"no encoded block appeared in {folder}: {staged(folder)}")


SLOW = "{name: copy, map: failing_ops.slow, inputs: [scene], params: {seconds: %s}}"


def test_the_workers_encode_this_output(encoded_dir):
    """The premise of every case here: the output is encoded, its blocks written in tile order
    after the head the main process writes last (zeros until then), and finished into the file
    rasterio reads back equal to the input, its IFD after its blocks."""
    step_pipeline(encoded_dir, SLOW % 0.1)
    with running(encoded_dir, "run", "p.yaml", "--overwrite", "-w", "2",
                 until="map copy:") as (process, _):
        [name] = [name for name in wait_for_blocks(encoded_dir / "out") if ".part-" not in name]
        assert str(process.pid) in name
        assert (encoded_dir / "out" / name).read_bytes()[:IN_ORDER_HEAD] == bytes(IN_ORDER_HEAD)
        assert process.wait(timeout=60) == 0, process.stderr.read()
    with rasterio.open(encoded_dir / "noise.tif") as source, \
            rasterio.open(encoded_dir / "out" / "result.tif") as result:
        assert result.profile["compress"] == "deflate" and result.block_shapes == [(64, 64)]
        assert np.array_equal(result.read(), source.read().astype(np.float32))
    content = (encoded_dir / "out" / "result.tif").read_bytes()
    assert content[:4] == b"II*\0" and content[8:IN_ORDER_HEAD] == bytes(8)
    assert struct.unpack_from("<I", content, 4)[0] > 24 * 64 * 64  # after the blocks
    assert staged(encoded_dir / "out") == [] and records_of(process.pid) == []


# -- a callable raises, a worker dies -------------------------------------------------------------

@pytest.mark.parametrize("callable_, expected", [
    ("raises_at", ("error: step 'copy', tile 7 (rows 64:128, cols 64:128): KeyError: \"no band "
                   "named 'nir'\"")),
    ("exits_at", "error: step 'copy', tile 7 (rows 64:128, cols 64:128): a worker process (pid "),
    ("killed_at", "error: step 'copy', tile 7 (rows 64:128, cols 64:128): a worker process (pid "),
])
def test_a_failing_tile_leaves_the_previous_output_and_no_part(encoded_dir, callable_, expected):
    step_pipeline(encoded_dir, f"{{name: copy, map: failing_ops.{callable_}, inputs: [scene], "
                  "params: {tile: 7}}")
    previous = out_files(encoded_dir)
    done, seconds = run(encoded_dir, "run", "p.yaml", "--overwrite", "-w", "2")
    assert done.returncode == 1, done.stderr
    assert expected in done.stderr, done.stderr
    assert "eoscale/engine" not in done.stderr and "site-packages" not in done.stderr
    if callable_ == "exits_at":
        assert "died (exited with code 3)" in done.stderr
    if callable_ == "killed_at":
        assert "died (killed by SIGKILL)" in done.stderr
    assert seconds < 30
    assert_clean(encoded_dir, previous)


# -- Ctrl-C and SIGTERM while the workers write the blocks ---------------------------------

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_parts_are_written(encoded_dir, signum):
    step_pipeline(encoded_dir, SLOW % 0.2)
    previous = out_files(encoded_dir)
    with running(encoded_dir, "run", "p.yaml", "--overwrite", "-w", "2",
                 until="map copy:") as (process, workers):
        wait_for_blocks(encoded_dir / "out")
        if signum == signal.SIGINT:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
        else:
            process.send_signal(signal.SIGTERM)  # a batch system's walltime, to the main process
        process.wait(timeout=10)
    stderr = process.stderr.read()
    assert process.returncode == (130 if signum == signal.SIGINT else 143)
    assert f"interrupted by {signal.Signals(signum).name}" in stderr
    assert wait_gone(workers, 2.0) == set()
    # The tiles whose blocks were written are kept to be resumed (issue 20), in the parts the
    # journal names: discarded here, to check that nothing else is left.
    discard_kept(stderr)
    assert_clean(encoded_dir, previous, process.pid)


# -- a full disk ---------------------------------------------------------------------------------

#: A COG of the same blocks: its blocks (and its overviews') go to part files, and are copied
#: into the file assembled when the map ends (GDAL's layout: the overviews first).
COG = "{path: out/result.tif, format: COG, options: {compress: deflate, blocksize: 64}}"


@pytest.mark.parametrize("size, when", [("64k", "parts"), ("160k", "assembly")])
def test_a_full_disk_leaves_the_previous_output_and_no_part(encoded_dir, small_tmpfs, size, when):
    """On a 64 KiB filesystem the GeoTIFF's 96 KiB of blocks do not fit; on 160 KiB the COG's
    parts (its blocks and overviews, about 128 KiB) do, and the file assembled from them
    (as much again) does not."""
    step_pipeline(encoded_dir, "{name: copy, map: failing_ops.identity, inputs: [scene]}",
                  outputs=f"{{copy: {ENCODED if when == 'parts' else COG}}}")
    previous = out_files(encoded_dir)
    done, pid, left = run_on_full_disk(encoded_dir, encoded_dir / "out", "run", "p.yaml",
                                       "--overwrite", "-w", "2", size=size)
    written = assert_stopped_on_full_disk(done)
    assert written == "out/result.tif"
    # the map reports its tiles done before its file is assembled, not when a part failed
    assert ("map copy: done" in done.stdout) == (when == "assembly"), done.stdout
    assert left == previous
    assert segments_of(pid) == [] and own_scratch([pid]) == set() and records_of(pid) == []


# -- SIGKILL to the whole process group: nobody cleans up ------------------------------------

SPILLING = ("{name: copy, map: failing_ops.identity, inputs: [scene]}\n"
            "  - {name: slow, map: failing_ops.slow, inputs: [copy], params: {seconds: 0.2}}\n"
            "  - {name: tiles, reduce: failing_ops.tile_count, inputs: [copy]}")
KILLED = {
    # case: (pipeline steps, outputs, extra arguments, the folder whose parts show the run is on)
    "encoded output": (SLOW % 0.2, f"{{copy: {ENCODED}}}", (), "out"),
    # the default 512 x 512 blocks are not whole tiles: written here, the staged file grows
    "output written here": (SLOW % 0.2, "{copy: out/result.tif}", (), None),
    # 'copy' is spilled to a scratch file in --scratch (written by the time 'slow' starts)
    "spilled in --scratch": (SPILLING, f"{{slow: {ENCODED}}}", ("--memory", "300KiB"), "out"),
}


def start_and_kill(folder: Path, case: str) -> tuple[int, dict[str, bytes], dict[str, int]]:
    """Run the case and SIGKILL its process group while it writes; eoscale's pid, what out/
    held before, and what the run left (file names: sizes) in out/ and scratch/."""
    steps, outputs, extra, watch = KILLED[case]
    step_pipeline(folder, steps, outputs=outputs)
    previous = out_files(folder)
    args = ("run", "p.yaml", "--overwrite", "-w", "2", "--scratch", str(folder / "scratch"),
            *extra)
    if "--memory" in extra:  # the premise: 'copy' goes to a scratch file
        planned, _ = run(folder, *args, "--dry-run")
        assert re.search(r"^  copy: .*; lives spilled ", planned.stdout, re.MULTILINE), (
            planned.stdout + planned.stderr)
    with running(folder, *args, until="map slow:" if "slow" in outputs else "map copy:") as (
            process, workers):
        if watch is not None:
            wait_for_blocks(folder / watch)
        else:  # its staged file, written as the map goes (a fixed sleep after the map's first
            # line could end after the run on a busy machine: nothing left to find)
            deadline = time.monotonic() + 30
            while not staged(folder / "out") and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGKILL)  # main, workers and resource tracker
        process.wait(timeout=10)
    assert wait_gone(workers, 5.0) == set()
    left = {f"{sub}/{p.name}": p.stat().st_size for sub in ("out", "scratch")
            for p in (folder / sub).iterdir()
            if p.name not in previous and not p.name.endswith(".journal")}
    return process.pid, previous, left


@pytest.mark.parametrize("case", list(KILLED))
def test_what_a_killed_run_left_is_removed_by_a_cleanup_told_nothing(encoded_dir, case):
    pid, previous, left = start_and_kill(encoded_dir, case)
    where = {name.split("/")[0] for name in left}
    assert where == ({"out", "scratch"} if "scratch" in case else {"out"}), left
    assert all(re.search(rf"(eoscale-tmp-|eoscale_){pid}[-_]", name) for name in left), left
    assert records_of(pid), "the killed run should have left the record of its folders"

    listed, _ = run(encoded_dir, "cleanup", "--dry-run")
    for name in left:
        assert str(encoded_dir / name) in listed.stdout.splitlines(), listed.stdout
    assert out_files(encoded_dir) != previous  # a dry run removes nothing

    done, _ = run(encoded_dir.parent, "cleanup")  # from elsewhere, told nothing
    assert done.returncode == 0, done.stderr
    assert "stale file(s)" in done.stdout
    assert_clean(encoded_dir, previous, pid)


def test_what_a_killed_run_left_is_removed_by_the_next_run(encoded_dir):
    """...but what its journal keeps to be resumed (issue 20): the parts holding the blocks of
    the tiles it recorded, and the journal, until a --resume, a --restart or a cleanup."""
    pid, previous, left = start_and_kill(encoded_dir, "encoded output")
    assert left
    (encoded_dir / "elsewhere").mkdir()
    step_pipeline(encoded_dir, "{name: copy, map: failing_ops.identity, inputs: [scene]}",
                  outputs="{copy: elsewhere/other.tif}", name="next.yaml")
    done, _ = run(encoded_dir, "run", "next.yaml", "-q", "-w", "2", "--scratch", "scratch")
    assert done.returncode == 0, done.stderr
    journals = list((encoded_dir / "scratch").glob("eoscale_run_*.journal"))
    kept = {str(path) for journal in journals for path in read_journal(journal).files}
    assert {name for name in out_files(encoded_dir) if name not in previous} == {
        Path(path).name for path in kept if Path(path).exists()}
    done, _ = run(encoded_dir, "run", "p.yaml", "-q", "-w", "2", "--overwrite", "--scratch",
                  "scratch", "--restart")
    assert done.returncode == 0, done.stderr
    assert list((encoded_dir / "scratch").iterdir()) == []
    assert [name for name in out_files(encoded_dir) if name != "result.tif"] == []
    assert records_of(pid) == []


def test_a_cleanup_never_touches_a_live_run_s_parts(encoded_dir):
    step_pipeline(encoded_dir, SLOW % 0.2)
    with running(encoded_dir, "run", "p.yaml", "--overwrite", "-w", "2",
                 until="map copy:") as (process, _):
        live = wait_for_blocks(encoded_dir / "out")
        done, _ = run(encoded_dir, "cleanup")
        assert done.returncode == 0, done.stderr
        assert not [name for name in live if name in done.stdout]
        assert set(live) <= set(staged(encoded_dir / "out"))
        assert process.wait(timeout=60) == 0, process.stderr.read()
    with rasterio.open(encoded_dir / "out" / "result.tif") as result:
        assert result.shape == (256, 384)
    assert staged(encoded_dir / "out") == [] and records_of(process.pid) == []


# -- what a cleanup removes, and what it never does ----------------------------------------------

def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_cleanup_removes_only_the_files_named_after_a_dead_recorded_run(tmp_path, monkeypatch):
    from eoscale.engine.scratch import cleanup_stale_files, stale_files
    from eoscale.io.runfiles import MADE, SCRATCH, STAGED, FolderRecord

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where records are kept
    (tmp_path / "tmp").mkdir()
    dead, live = dead_pid(), os.getpid()
    out, scratch, made = tmp_path / "out", tmp_path / "scratch", tmp_path / "made" / "deeper"
    for folder_ in (out, scratch, made):
        folder_.mkdir(parents=True)
    # Part files are named by their writer's host and pid (writer_name: '-' in a host is '_').
    theirs = [out / f".r.tif.eoscale-tmp-{dead}-0a1b2c3d",
              out / f".r.tif.eoscale-tmp-{dead}-0a1b2c3d.part-node_1.example-{dead + 1}",
              scratch / f"eoscale_{dead}_00ff00ff_copy.tif",
              scratch / f"eoscale_{dead}_00ff00ff_copy.tif.part-node_2-77"]
    kept = [out / "r.tif", out / f".r.tif.eoscale-tmp-{live}-0a1b2c3d.part-node_1-1",
            out / f".r.tif.eoscale-tmp-{dead}1-0a1b2c3d", scratch / f"eoscale_{live}_0a_x.tif",
            out / f"r.tif.eoscale-tmp-{dead}-0a1b2c3d"]  # not hidden: not a staged name
    for path in theirs + kept:
        path.write_bytes(b"x")
    (out / f"eoscale_{dead}_00ff00ff_output.tif").write_bytes(b"x")  # an output's, as named
    kept.append(out / f"eoscale_{dead}_00ff00ff_output.tif")  # where it staged: not scratch
    record = FolderRecord()
    record.note(out, STAGED)
    record.note(scratch, SCRATCH)
    record.note(made.parent, MADE)
    record.note(made, MADE)
    [path] = list((tmp_path / "tmp").iterdir())  # this process's record, passed for the dead's
    recorded = path.rename(path.with_name(path.name.replace(f"_{live}_", f"_{dead}_")))

    listed = stale_files()
    assert sorted(path for path, _ in listed) == sorted([*theirs, recorded])
    assert {pid for _, pid in listed} == {dead}
    monkeypatch.chdir(tmp_path)  # the scratch folder named relatively, as --scratch scratch
    again = stale_files("scratch")  # its files are the record's too: each named once
    assert sorted(os.path.abspath(path) for path, _ in again) == sorted(
        str(path) for path in [*theirs, recorded])
    assert sorted(cleanup_stale_files()) == sorted([*theirs, recorded])
    assert all(path.exists() for path in kept)
    assert not (tmp_path / "made").exists()  # made by the dead run, empty: removed
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs to give a file to another user (root)")
def test_another_user_s_record_is_never_read(tmp_path, monkeypatch):
    from eoscale.engine.scratch import cleanup_stale_files
    from eoscale.io.runfiles import STAGED

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = dead_pid()
    mine = tmp_path / "out" / f".r.tif.eoscale-tmp-{dead}-0a1b2c3d"
    mine.parent.mkdir()
    mine.write_bytes(b"x")
    record = tmp_path / f"eoscale_{dead}_0a1b2c3d.folders"
    record.write_text(f"{STAGED} {mine.parent}\n")
    os.chown(record, 4242, 4242)  # written by someone else, naming this user's folder
    cleanup_stale_files()
    assert mine.exists() and record.exists()
