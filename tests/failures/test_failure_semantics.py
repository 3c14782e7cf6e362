"""Whatever goes wrong, the real ``eoscale`` command stops promptly with a message saying what and
where, leaves no shared memory, no worker, no temporary file, no partial output, and leaves an
existing output that was to be replaced intact."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from failure_helpers import (
    alive,
    discard_kept,
    leftovers,
    pipeline,
    run,
    running,
    segments_of,
    start,
    wait_gone,
    write_raster,
)


def assert_clean(folder, pid=None, previous=None):
    """No temporary file, no output but the previous ones (intact), no segment of ``pid``."""
    assert leftovers(folder) == []
    out = folder / "out"
    now = {p.name: p.read_bytes() for p in out.iterdir()} if out.exists() else {}
    assert now == (previous or {})
    if pid is not None:
        assert segments_of(pid) == []


@pytest.fixture
def previous(run_dir):
    """An output that exists before the run, which a failed run must leave as it was."""
    out = run_dir / "out"
    out.mkdir()
    (out / "result.tif").write_bytes(b"the previous result")
    return {"result.tif": b"the previous result"}


# -- 1. a callable raises -----------------------------------------------------------------------

@pytest.mark.parametrize("workers", ["1", "2"])
def test_callable_raises(run_dir, previous, workers):
    pipeline(run_dir, "{name: boom, map: failing_ops.raises_at, inputs: [scene], params: {tile: 3}}",
             extra="tiling: {tile_size: 64}\n")
    done, seconds = run(run_dir, "run", "p.yaml", "--overwrite", "-w", workers)
    assert done.returncode == 1 and seconds < 30
    err = done.stderr
    assert "error: step 'boom', tile 3 (rows 0:64, cols 192:256): KeyError: \"no band named 'nir'\"" in err
    assert 'failing_ops.py", line' in err and "in raises_at" in err and "in _user_helper" in err
    assert "eoscale/engine" not in err and "site-packages" not in err
    assert_clean(run_dir, previous=previous)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_callable_calling_sys_exit_is_a_failed_tile(run_dir, previous, workers):
    """A SystemExit in user code is the tile's error on every executor, not the command's own
    exit (with one worker the tile is computed in the command's process)."""
    pipeline(run_dir, "{name: quits, map: failing_ops.sys_exits_at, inputs: [scene], "
             "params: {tile: 3, code: 2}}", extra="tiling: {tile_size: 64}\n")
    done, _ = run(run_dir, "run", "p.yaml", "--overwrite", "-w", workers)
    assert done.returncode == 1, done.stderr
    assert "error: step 'quits', tile 3 (rows 0:64, cols 192:256): SystemExit: 2" in done.stderr
    assert 'failing_ops.py", line' in done.stderr and "in sys_exits_at" in done.stderr
    assert_clean(run_dir, previous=previous)


# -- 2. a worker dies ---------------------------------------------------------------------------

@pytest.mark.parametrize("callable_, expected", [
    ("exits_at", "died (exited with code 3)"),
    ("killed_at", "died (killed by SIGKILL); SIGKILL usually comes from the kernel's out-of-memory"),
    ("segfaults_at", "died (killed by SIGSEGV)"),
])
def test_worker_dies(run_dir, previous, callable_, expected):
    pipeline(run_dir, f"{{name: fragile, map: failing_ops.{callable_}, inputs: [scene], "
             "params: {tile: 2}}", extra="tiling: {tile_size: 50}\n")
    done, seconds = run(run_dir, "run", "p.yaml", "--overwrite", "-w", "2")
    assert done.returncode == 1, done.stderr
    assert seconds < 30
    assert "step 'fragile'" in done.stderr and expected in done.stderr
    assert "Traceback" not in done.stderr
    assert_clean(run_dir, previous=previous)


@pytest.mark.parametrize("callable_, params, expected", [
    ("exits_at", "{tile: 0, code: 9}", "died (exited with code 9)"),
    ("segfaults_at", "{tile: 0}", "died (killed by SIGSEGV)"),
])
def test_a_worker_dying_on_the_first_tile_is_a_dead_worker(run_dir, previous, callable_, params,
                                                           expected):
    # Without a profile function the first tile is computed first, to learn the outputs' dtypes:
    # on a worker, so the command survives, says what died where, and leaves nothing behind.
    pipeline(run_dir, f"{{name: fragile, map: failing_ops.{callable_}, inputs: [scene], "
             f"params: {params}}}", extra="tiling: {tile_size: 50}\n")
    process = start("run", "p.yaml", "--overwrite", "-w", "2", cwd=run_dir)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert "error: step 'fragile', tile 0 (rows 0:50, cols 0:50): a worker process (pid " in err
    assert expected in err and "Traceback" not in err
    assert_clean(run_dir, process.pid, previous=previous)


# -- 3. SIGINT to the group and SIGTERM to the main process, in every phase ----------------------

PHASES = {
    # phase: (line that starts it, pipeline step, outputs)
    # a margin makes the input load into shared memory (margin-0 single readers stream it)
    "loading": ("read scene:", "{name: copy, map: failing_ops.identity, inputs: [scene], "
                "margin: 1}", "{}"),
    "computing": ("map slow:", "{name: slow, map: failing_ops.slow, inputs: [scene], "
                  "params: {seconds: 2}}", "{}"),
    # an output nothing reads is written while its tiles are computed
    "writing as computed": ("map copy:", "{name: copy, map: failing_ops.identity, "
                            "inputs: [scene]}",
                            "{copy: {path: out/result.tif, options: {compress: deflate, "
                            "zlevel: 9}}}"),
    # an output a later map reads is held, and written once its step is done
    "writing": ("write out", "{name: copy, map: failing_ops.identity, inputs: [scene]}\n"
                "  - {name: again, map: failing_ops.identity, inputs: [copy]}",
                "{copy: {path: out/result.tif, options: {compress: deflate, zlevel: 9}}}"),
}


def stop_with(process, signum, timeout: float) -> float:
    """Stop the run as a user would (Ctrl-C reaches the whole process group; SIGTERM the main
    process); the seconds until it exited."""
    sent = time.monotonic()
    if signum == signal.SIGINT:
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM)
    process.wait(timeout=timeout)
    return time.monotonic() - sent


@pytest.mark.parametrize("phase", list(PHASES))
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signals_stop_within_two_seconds(run_dir, big_input, previous, phase, signum):
    line, step, outputs = PHASES[phase]
    pipeline(run_dir, step, inputs=f"{{scene: {big_input}}}", outputs=outputs,
             extra="tiling: {tile_size: 2000}\n")
    with running(run_dir, "run", "p.yaml", "--overwrite", "-w", "2", until=line) as (process, workers):
        elapsed = stop_with(process, signum, timeout=10)
    stderr = process.stderr.read()
    assert process.returncode == (130 if signum == signal.SIGINT else 143), stderr
    assert elapsed < 2.0
    assert wait_gone(workers, 2.0) == set()
    assert "interrupted" in stderr
    # Tiles written as computed before the signal are kept to be resumed (issue 20): their
    # part files, named in the journal the message names; discarded here to check the rest.
    discard_kept(stderr)
    assert_clean(run_dir, process.pid, previous=previous)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_gdal_makes_the_cog_stops_within_two_seconds(run_dir, big_input, previous,
                                                                    signum):
    """GDAL's pass after the map (here a COG with cubic overviews, which the workers do not
    compute, in lzma: tens of seconds) runs in a process of its own: the main process, waiting
    on it, stops at once and removes what it made, where a call of its own would hold the
    signal until GDAL returned."""
    pipeline(run_dir, "{name: copy, map: failing_ops.identity, inputs: [scene]}",
             inputs=f"{{scene: {big_input}}}",
             outputs="{copy: {path: out/result.tif, format: COG, resampling: cubic, "
                     "options: {compress: lzma, level: 9}}}")
    with running(run_dir, "run", "p.yaml", "--overwrite", "-w", "2",
                 until="map copy: done") as (process, workers):
        time.sleep(1.0)  # into the COG's pass
        elapsed = stop_with(process, signum, timeout=60)
    stderr = process.stderr.read()
    assert process.returncode == (130 if signum == signal.SIGINT else 143), stderr
    assert elapsed < 2.0
    assert wait_gone(workers, 2.0) == set()
    discard_kept(stderr)
    assert_clean(run_dir, process.pid, previous=previous)


# -- 4. the main process is killed ---------------------------------------------------------------

# With a profile function the outputs exist (in shared memory) as soon as the map phase starts.
SLOW = ("{name: slow, map: failing_ops.slow, profile: failing_ops.float32_profile, "
        "inputs: [scene], params: {seconds: %s}}")


def test_main_killed_workers_exit_and_cleanup_removes_segments(run_dir):
    pipeline(run_dir, SLOW % 30, extra="tiling: {tile_size: 100}\n", outputs="{}")
    with running(run_dir, "run", "p.yaml", "-w", "2", until="map slow:") as (process, workers):
        assert len(workers) >= 2
        os.killpg(process.pid, signal.SIGKILL)  # main, workers and resource tracker: nobody cleans
        process.wait(timeout=10)
        # Listed at once: any eoscale run starting on the machine removes a dead run's segments.
        left = segments_of(process.pid)
    assert wait_gone(workers, 5.0) == set()
    assert left, "the killed run should have left its segments"
    done, _ = run(run_dir, "cleanup")
    assert done.returncode == 0 and "removed" in done.stdout
    assert segments_of(process.pid) == []


def test_main_killed_alone_workers_notice_and_exit(run_dir):
    pipeline(run_dir, SLOW % 1, extra="tiling: {tile_size: 50}\n", outputs="{}")
    with running(run_dir, "run", "p.yaml", "-w", "2", until="map slow:") as (process, workers):
        process.kill()  # SIGKILL to the main process only
        process.wait(timeout=10)
    assert wait_gone(workers, 5.0) == set()
    # the next run removes what the dead one left (the resource tracker may have done it already)
    pipeline(run_dir, "{name: copy, map: failing_ops.identity, inputs: [scene]}", name="next.yaml")
    done, _ = run(run_dir, "run", "next.yaml", "-q")
    assert done.returncode == 0, done.stderr
    assert segments_of(process.pid) == []


def test_live_runs_segments_are_never_removed(run_dir):
    pipeline(run_dir, SLOW % 1, extra="tiling: {tile_size: 100}\n", outputs="{}")
    with running(run_dir, "run", "p.yaml", "-w", "2", until="map slow:") as (process, _):
        live = segments_of(process.pid)
        assert live
        done, _ = run(run_dir, "cleanup")
        # Not "removed 0": other eoscale runs on the machine may have left stale segments.
        assert done.returncode == 0 and "stale segment(s)" in done.stdout
        assert not [name for name in live if name in done.stdout]
        assert process.wait(timeout=60) == 0, process.stderr.read()
    assert alive(process.pid) is False and segments_of(process.pid) == []


# -- 5. a run under a memory budget, with images spilled to scratch files ----------------------

SPILLING = ("{name: copy, map: failing_ops.identity, inputs: [scene]}\n"
            "  - {name: slow, map: failing_ops.slow, profile: failing_ops.float32_profile, "
            "inputs: [copy], params: {seconds: SECONDS}}\n"
            "  - {name: tiles, reduce: failing_ops.tile_count, inputs: [copy]}")


#: The output on blocks the tiles (64 px) are made of, written by the workers: on larger blocks
#: the main process would hold a block's rows of it (2 MiB of 512 rows), more than the budget.
SPILLED_OUTPUT = "{slow: {path: out/result.tif, options: {blockxsize: 64, blockysize: 64}}}"


@pytest.fixture
def spill_dir(run_dir):
    """run_dir with a scratch folder and an input of 4 MB, ``medium.tif``."""
    array = np.random.default_rng(2).integers(1, 1000, size=(2, 1000, 1000), dtype=np.uint16)
    write_raster(run_dir / "medium.tif", array)
    (run_dir / "scratch").mkdir()
    return run_dir


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signals_during_a_spilled_run_leave_no_scratch_file(spill_dir, previous, signum):
    run_dir, scratch = spill_dir, spill_dir / "scratch"
    pipeline(run_dir, SPILLING.replace("SECONDS", "2"), extra="tiling: {tile_size: 64}\n",
             inputs="{scene: medium.tif}", outputs=SPILLED_OUTPUT)
    args = ("run", "p.yaml", "--overwrite", "-w", "2", "--memory", "2MiB", "--scratch",
            str(scratch))
    done, _ = run(run_dir, *args, "--dry-run")
    assert "lives spilled" in done.stdout, done.stdout + done.stderr  # 'copy' goes to scratch
    with running(run_dir, *args, until="map slow:") as (process, workers):
        spilled = [p.name for p in scratch.iterdir() if p.name.endswith("_copy.tif")]
        assert spilled  # the spilled image, being read
        if signum == signal.SIGINT:
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    stderr = process.stderr.read()
    assert process.returncode == (130 if signum == signal.SIGINT else 143)
    assert wait_gone(workers, 2.0) == set()
    # The finished step 'copy' is kept to be resumed (issue 20, tests/failures/test_resume.py):
    # its spilled image and the journal, and nothing else.
    assert "`eoscale run p.yaml --resume` (with the same options)" in stderr
    left = sorted(p.name for p in scratch.iterdir())
    assert spilled[0] in left and any(name.endswith(".journal") for name in left), left
    assert discard_kept(stderr) is not None
    assert list(scratch.iterdir()) == []
    assert_clean(run_dir, process.pid, previous=previous)


def test_a_callable_raising_in_a_spilled_run_leaves_no_scratch_file(spill_dir, previous):
    run_dir, scratch = spill_dir, spill_dir / "scratch"
    pipeline(run_dir, SPILLING.replace("failing_ops.slow", "failing_ops.raises_at")
             .replace("{seconds: SECONDS}", "{tile: 3}"), extra="tiling: {tile_size: 64}\n",
             inputs="{scene: medium.tif}", outputs=SPILLED_OUTPUT)
    done, _ = run(run_dir, "run", "p.yaml", "--overwrite", "-w", "2", "--memory", "2MiB",
                  "--scratch", str(scratch))
    assert done.returncode == 1 and "step 'slow', tile 3" in done.stderr
    assert list(scratch.iterdir()) == []
    assert_clean(run_dir, previous=previous)
