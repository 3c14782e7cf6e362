"""``eoscale run --resume``: a run killed (SIGKILL to its whole process group) or stopped
(SIGTERM, then SIGKILL a few seconds later: a walltime) at several moments, resumed through the
real command, ends with the very files an uninterrupted run writes; a change to what the
finished work depends on is refused by name; a rerun without ``--resume`` is refused; the
journal and what it kept are gone after a success."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from failure_helpers import HERE, environment, leftovers, run, running, write_raster

#: Three maps and a reduce over 20 tiles of 64 x 64 (``S1``, ``S2``, ``S3``: seconds per tile
#: of each map); the outputs' blocks are the tiles, so the workers encode them.
PIPELINE = """\
version: 1
tiling: {tile_size: 64}
inputs: {scene: small.tif}
steps:
  - {name: first, map: resume_ops.scaled, profile: resume_ops.float32_profile, inputs: [scene],
     params: {factor: 2, seconds: S1, name: first}}
  - {name: second, map: resume_ops.scaled, profile: resume_ops.float32_profile, inputs: [first],
     params: {factor: 3, seconds: S2, name: second}}
  - {name: third, map: resume_ops.scaled, profile: resume_ops.float32_profile, inputs: [second],
     params: {factor: 0.5, seconds: S3, name: third}}
  - {name: total, reduce: resume_ops.tile_sum, combine: resume_ops.add,
     finalize: resume_ops.mean, inputs: [third]}
outputs:
  first: {path: out/first.tif, options: {blockxsize: 64, blockysize: 64}}
  third: {path: out/third.tif, options: {blockxsize: 64, blockysize: 64}, quicklook: {}}
  total: out/total.json
"""
#: A budget under which 'first' is spilled (written to its output file as computed, read back),
#: 'second' fused into 'third' (the chain 'second > third'), written as computed, which feeds
#: 'total': every map's tiles are recorded as they are written.
SPILLING = ("--memory", "1300KiB")


@pytest.fixture
def resume_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with resume_ops.py, the pipeline p.yaml, a 300 x 200 input and a scratch
    folder (where the runs keep their journal). The runs' $TMPDIR is a folder of the test's
    own: the records of a killed run's folders are in $TMPDIR, and another eoscale session on
    the machine (an older version, which knows no journal) would remove the files they name."""
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    shutil.copy(HERE / "resume_ops.py", tmp_path / "resume_ops.py")
    array = np.random.default_rng(3).integers(1, 1000, size=(2, 200, 300), dtype=np.uint16)
    write_raster(tmp_path / "small.tif", array)
    (tmp_path / "p.yaml").write_text(pipeline_text(0.1, 0.1, 0.1), encoding="utf-8")
    (tmp_path / "scratch").mkdir()
    return tmp_path


def pipeline_text(*seconds: float) -> str:
    text = PIPELINE
    for index, value in enumerate(seconds, 1):
        text = text.replace(f"S{index}", str(value))
    return text


def computed(folder: Path) -> dict[str, int]:
    """The tiles each step computed, by the callables' notes (and forget them)."""
    log = folder / "calls.log"
    counts: dict[str, int] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            counts[line.split()[0]] = counts.get(line.split()[0], 0) + 1
        log.unlink()
    return counts


def args(*extra: str) -> tuple[str, ...]:
    return ("run", "p.yaml", "-w", "2", "--scratch", "scratch", *extra)


def outputs(folder: Path) -> dict[str, bytes]:
    out = folder / "out"
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())} if out.exists() else {}


def placed(folder: Path) -> list[str]:
    """The outputs in place (not the staged ones)."""
    return [name for name in outputs(folder) if not name.startswith(".")]


#: The callables do not sleep (``resume_ops``): for the runs whose timing no kill depends on.
NO_PAUSE = {"EOSCALE_TEST_NO_PAUSE": "1"}

#: The outputs of the uninterrupted runs made so far, by what they depend on (the pipeline, its
#: callables' module, the input, the options): tests that share them run them once.
_REFERENCES: dict[tuple[bytes, ...], dict[str, bytes]] = {}


def reference(folder: Path, *extra: str) -> dict[str, bytes]:
    """The files an uninterrupted run of the folder's pipeline writes (in a copy of it)."""
    key = (*(folder.joinpath(name).read_bytes()
             for name in ("p.yaml", "resume_ops.py", "small.tif")), *map(str.encode, extra))
    if key not in _REFERENCES:
        copy = folder.parent / f"{folder.name}-reference"
        shutil.copytree(folder, copy, ignore=shutil.ignore_patterns(
            "out", "scratch", "tmp", "__pycache__", "calls.log"))
        (copy / "scratch").mkdir()
        done, _ = run(copy, *args(*extra), env=NO_PAUSE)
        assert done.returncode == 0, done.stderr
        _REFERENCES[key] = outputs(copy)
    return dict(_REFERENCES[key])


def journals(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "scratch").glob("eoscale_run_*.journal"))


def kill_group(process) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def assert_resumes(folder: Path, expected: dict[str, bytes], *extra: str) -> str:
    """Resume; the outputs are the uninterrupted run's, and nothing is left behind. The
    resumed run's stdout."""
    done, _ = run(folder, *args("--resume", *extra), env=NO_PAUSE)
    assert done.returncode == 0, done.stderr
    assert outputs(folder) == expected
    assert leftovers(folder) == []
    assert list((folder / "scratch").iterdir()) == []  # no journal, no scratch file
    return done.stdout


# 'second', read by 'third' only, is fused into it whatever the budget: the chain 'second > third'.
@pytest.mark.parametrize("until, delay", [("map first", 0.3), ("map second > third", 0.0),
                                          ("map second > third", 0.3)],
                         ids=["during the first step", "between steps", "during the chain"])
def test_killed_then_resumed_writes_the_uninterrupted_outputs(resume_dir, until, delay):
    expected = reference(resume_dir)
    with running(resume_dir, *args(), until=until) as (process, _):
        time.sleep(delay)
        kill_group(process)
    assert journals(resume_dir)
    stdout = assert_resumes(resume_dir, expected)
    assert "resuming a run of this pipeline killed after" in stdout


def test_a_spilled_run_killed_resumes_without_computing_its_finished_steps(resume_dir):
    expected = reference(resume_dir, *SPILLING)
    done, _ = run(resume_dir, *args(*SPILLING, "--dry-run"))
    assert "first: 2 x 200 x 300 float32, 468.8 KiB; lives spilled" in done.stdout, (
        done.stdout + done.stderr)
    assert "runs the fused chain second > third" in done.stdout
    with running(resume_dir, *args(*SPILLING), until="map second > third") as (process, _):
        time.sleep(0.5)
        kill_group(process)
    computed(resume_dir)
    done, _ = run(resume_dir, *args(*SPILLING, "--dry-run", "--resume"))
    assert "skipping 'first'" in done.stdout, done.stdout + done.stderr
    done, _ = run(resume_dir, *args(*SPILLING, "--dry-run", "--resume", "--json"))
    outlook = json.loads(done.stdout)["resume"]
    assert outlook["mode"] == "resume" and Path(outlook["journal"]).exists(), outlook
    assert outlook["steps_done"] == ["first"] and outlook["skipped"] == ["first"], outlook
    assert outlook["computed_again"] == [] and 0 < outlook["tiles_done"] < 1, outlook
    assert set(outlook["taken_back"]) <= {"second > third"}, outlook
    stdout = assert_resumes(resume_dir, expected, *SPILLING)
    assert "skipping 'first'" in stdout
    assert "map first" not in stdout and computed(resume_dir).get("first", 0) == 0
    assert "map second > third" in stdout


def test_sigterm_then_sigkill_keeps_what_is_finished_and_says_how_to_resume(resume_dir):
    expected = reference(resume_dir, *SPILLING)
    with running(resume_dir, *args(*SPILLING), until="map second > third") as (process, _):
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)  # a walltime: SIGKILL follows a few seconds later
        try:
            process.wait(timeout=3)
        except Exception:  # noqa: BLE001 - still there: the batch system kills it
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        stderr = process.stderr.read()
    assert process.returncode == 143, stderr
    assert "its finished work is kept" in stderr
    assert "`eoscale run p.yaml --resume` (with the same options)" in stderr
    assert "`eoscale cleanup`" in stderr
    assert leftovers(resume_dir) and journals(resume_dir)  # 'first' staged, the chain's parts
    stdout = assert_resumes(resume_dir, expected, *SPILLING)
    assert "skipping 'first'" in stdout


def killed_after_first(folder: Path) -> None:
    """Run the spilled pipeline and kill it once 'first' is finished."""
    with running(folder, *args(*SPILLING), until="map second > third") as (process, _):
        kill_group(process)


def test_a_rerun_without_resume_is_refused_and_restart_discards(resume_dir):
    killed_after_first(resume_dir)
    done, _ = run(resume_dir, *args(*SPILLING))
    assert done.returncode == 4, done.stderr
    assert "a run of this pipeline killed after" in done.stderr
    assert re.search(r"finished \d+ % of its tiles \(steps done: 'first'\)", done.stderr)
    assert "`--resume` to continue it, `--restart` to discard it" in done.stderr
    assert placed(resume_dir) == []  # no output in place, the staged ones kept
    expected = reference(resume_dir, *SPILLING)
    done, _ = run(resume_dir, *args(*SPILLING, "--restart"), env=NO_PAUSE)
    assert done.returncode == 0, done.stderr
    assert "discarding a run of this pipeline" in done.stdout
    assert outputs(resume_dir) == expected
    assert leftovers(resume_dir) == [] and list((resume_dir / "scratch").iterdir()) == []


def test_a_resume_refused_for_an_existing_output_keeps_the_killed_run_s_work(resume_dir):
    """An output in place from an earlier run, and ``--resume`` without ``--overwrite``: refused
    before the journal is taken over, so what the killed run kept is still there to resume."""
    expected = reference(resume_dir, *SPILLING)
    (resume_dir / "out").mkdir()
    (resume_dir / "out" / "first.tif").write_bytes(b"an earlier result")
    with running(resume_dir, *args(*SPILLING, "--overwrite"),
                 until="map second > third") as (process, _):
        kill_group(process)
    kept = {path.name for path in (resume_dir / "scratch").iterdir()}
    staged = [name for name in outputs(resume_dir) if name.startswith(".first.tif")]
    assert journals(resume_dir) and staged  # 'first' finished: its staged file is kept
    done, _ = run(resume_dir, *args(*SPILLING, "--resume"), env=NO_PAUSE)
    assert done.returncode == 1, done.stderr
    assert ("first.tif: already exists (use --overwrite, or overwrite=True from Python, to "
            "replace it)") in done.stderr
    assert "resuming" not in done.stdout
    assert {path.name for path in (resume_dir / "scratch").iterdir()} == kept
    assert [name for name in outputs(resume_dir) if name.startswith(".first.tif")] == staged
    assert outputs(resume_dir)["first.tif"] == b"an earlier result"
    stdout = assert_resumes(resume_dir, expected, *SPILLING, "--overwrite")
    assert "skipping 'first'" in stdout


def test_changes_since_the_killed_run_are_refused_by_name(resume_dir):
    killed_after_first(resume_dir)
    done, _ = run(resume_dir, *args(*SPILLING, "--resume", "--param", "second.factor=5"))
    assert done.returncode == 4, done.stderr
    assert "cannot resume the killed run" in done.stderr
    assert "step 'second': params.factor 3 -> 5" in done.stderr

    ops = resume_dir / "resume_ops.py"
    source = ops.read_text(encoding="utf-8")
    ops.write_text(source + "\n# changed\n", encoding="utf-8")
    done, _ = run(resume_dir, *args(*SPILLING, "--resume"))
    assert done.returncode == 4, done.stderr
    assert "step 'first': the code of its callables changed (resume_ops.py)" in done.stderr
    ops.write_text(source, encoding="utf-8")

    array = np.full((2, 200, 300), 7, dtype=np.uint16)
    write_raster(resume_dir / "small.tif", array)
    done, _ = run(resume_dir, *args(*SPILLING, "--resume"))
    assert done.returncode == 4, done.stderr
    assert "input 'scene': modified since the killed run" in done.stderr
    assert placed(resume_dir) == []  # refused before anything was computed

    expected = reference(resume_dir, *SPILLING)
    done, _ = run(resume_dir, *args(*SPILLING, "--restart"), env=NO_PAUSE)
    assert done.returncode == 0, done.stderr
    assert outputs(resume_dir) == expected


def test_resume_with_no_journal_runs_from_the_start_and_success_leaves_nothing(resume_dir):
    expected = reference(resume_dir)
    done, _ = run(resume_dir, *args("--resume"), env=NO_PAUSE)
    assert done.returncode == 0, done.stderr
    assert "no killed run of this pipeline to resume: running from the start" in done.stdout
    assert outputs(resume_dir) == expected
    assert leftovers(resume_dir) == [] and list((resume_dir / "scratch").iterdir()) == []


def test_cleanup_lists_and_removes_a_killed_runs_journal_and_kept_files(resume_dir):
    killed_after_first(resume_dir)
    kept = journals(resume_dir)
    assert kept and leftovers(resume_dir)
    # The clean-up at a run's start leaves them: another pipeline's run in the same folders.
    (resume_dir / "other.yaml").write_text(
        pipeline_text(0, 0, 0).replace("out/", "other/"), encoding="utf-8")
    done, _ = run(resume_dir, "run", "other.yaml", "-w", "2", "--scratch", "scratch", "-q")
    assert done.returncode == 0, done.stderr
    assert journals(resume_dir) == kept and leftovers(resume_dir)
    done, _ = run(resume_dir, "cleanup", "--dry-run", "--scratch", "scratch")
    assert kept[0] in done.stdout
    done, _ = run(resume_dir, "cleanup", "--scratch", "scratch")
    assert done.returncode == 0, done.stderr
    assert journals(resume_dir) == [] and leftovers(resume_dir) == []
    assert list((resume_dir / "scratch").iterdir()) == []


def killed_during(folder: Path, step: str, seconds: float) -> tuple[dict[str, bytes], dict[str, int]]:
    """The outputs of an uninterrupted run of the folder's pipeline under SPILLING; then the
    same run killed ``seconds`` after its ``step`` line, and the tiles it computed by step."""
    expected = reference(folder, *SPILLING)
    with running(folder, *args(*SPILLING), until=step) as (process, _):
        time.sleep(seconds)
        kill_group(process)
    return expected, computed(folder)


def test_a_step_killed_in_the_middle_resumes_from_its_recorded_tiles(resume_dir):
    (resume_dir / "p.yaml").write_text(pipeline_text(0, 0, 0.3), encoding="utf-8")
    expected, before = killed_during(resume_dir, "map second > third", 2.2)
    assert 0 < before.get("third", 0) < 20, before
    stdout = assert_resumes(resume_dir, expected, *SPILLING)
    assert re.search(r"taking back \d+ of 20 tiles of 'second > third' \(recorded\)", stdout)
    after = computed(resume_dir)
    assert after.get("first", 0) == 0, after
    # Only the tiles not recorded: at most those done in the last second before the kill.
    assert after["third"] <= 20 - before["third"] + 8, (before, after)
    assert after["third"] < 20, (before, after)


#: 'first' is no output and two chains read it ('second > third', and 'fourth'): under
#: SPILLING it is spilled to an uncompressed scratch file, its blocks written in place by the
#: workers, and its tiles are recorded too.
IN_PLACE_SPILL = (PIPELINE.replace(
    "  first: {path: out/first.tif, options: {blockxsize: 64, blockysize: 64}}\n", "").replace(
    "  - {name: total,", "  - {name: fourth, map: resume_ops.scaled, profile: resume_ops.float32_profile,"
    " inputs: [first],\n     params: {factor: 5, seconds: 0, name: fourth}}\n  - {name: total,")
    + "  fourth: {path: out/fourth.tif, options: {blockxsize: 64, blockysize: 64, "
    "compress: deflate}}\n")


def test_a_spilled_step_written_in_place_resumes_from_its_recorded_tiles(resume_dir):
    text = IN_PLACE_SPILL
    for index, seconds in enumerate((0.3, 0, 0.1), 1):
        text = text.replace(f"S{index}", str(seconds))
    (resume_dir / "p.yaml").write_text(text, encoding="utf-8")
    done, _ = run(resume_dir, *args(*SPILLING, "--dry-run"))
    assert "first: 2 x 200 x 300 float32, 468.8 KiB; lives spilled (" in done.stdout, (
        done.stdout + done.stderr)
    expected, before = killed_during(resume_dir, "map first", 2.0)
    assert 0 < before.get("first", 0) < 20, before
    [killed_file] = (resume_dir / "scratch").glob("eoscale_*_first.tif")
    # Resumed, and killed again once 'first' is finished and recorded: its blocks taken back
    # from the killed run's scratch file are in the resumed run's own, and that file is gone.
    with running(resume_dir, *args(*SPILLING, "--resume"), until="map second > third") as (
            process, _):
        kill_group(process)
    again = computed(resume_dir)
    assert 0 < 20 - again["first"] <= before["first"], (before, again)  # some taken back
    assert not killed_file.exists() and journals(resume_dir)
    assert len(list((resume_dir / "scratch").glob("eoscale_*_first.tif"))) == 1
    stdout = assert_resumes(resume_dir, expected, *SPILLING)
    assert "skipping 'first'" in stdout and computed(resume_dir).get("first", 0) == 0, stdout


def test_killed_during_the_last_output_s_assembly_computes_none_of_its_tiles_again(resume_dir):
    """Killed as the last map's tiles are all done: its file is being assembled from the parts
    (or was, if the kill came a little later): every tile is recorded, none is computed again."""
    expected = reference(resume_dir, *SPILLING)
    with running(resume_dir, *args(*SPILLING), until="map second > third: done") as (
            process, _):
        kill_group(process)
    assert computed(resume_dir).get("third") == 20
    assert_resumes(resume_dir, expected, *SPILLING)
    assert computed(resume_dir).get("third", 0) == 0


#: ``eoscale`` whose main process dies (as if SIGKILLed) where the outputs would be renamed
#: into place: every step done, the last one assembled but not recorded.
DIES_BEFORE_COMMIT = (
    "import os, sys\n"
    "from eoscale.io.raster import Staging\n"
    "Staging.commit = lambda self: os._exit(137)\n"
    "from eoscale.cli.main import main\n"
    "main(sys.argv[1:])\n")


def test_killed_after_the_last_output_s_assembly_takes_every_tile_back(resume_dir):
    """The last computing step is not recorded (the commit follows it): killed after its output
    is assembled, the run leaves the parts its journal names, and the resume takes back every
    tile from them instead of computing the step again."""
    expected = reference(resume_dir, *SPILLING)
    done = subprocess.run([sys.executable, "-c", DIES_BEFORE_COMMIT, *args(*SPILLING)],
                          cwd=resume_dir, capture_output=True, text=True, timeout=60,
                          env=environment())
    assert done.returncode == 137, done.stderr
    assert computed(resume_dir).get("third") == 20
    stdout = assert_resumes(resume_dir, expected, *SPILLING)
    assert "taking back 20 of 20 tiles of 'second > third'" in stdout, stdout
    assert computed(resume_dir).get("third", 0) == 0


def test_a_torn_last_journal_line_is_ignored(resume_dir):
    """Killed while writing the journal: the torn last line is not trusted, the rest is."""
    expected = reference(resume_dir, *SPILLING)
    killed_after_first(resume_dir)
    [journal] = (resume_dir / "scratch").glob("eoscale_run_*.journal")
    with journal.open("ab") as handle:
        handle.write(b'0badc0de {"kind":"step","index":2,"name":"th')
    stdout = assert_resumes(resume_dir, expected, *SPILLING)
    assert "skipping 'first'" in stdout


def test_a_run_on_a_local_dask_cluster_resumes(resume_dir):
    pytest.importorskip("distributed", reason="the cluster tests need the 'dask' extra")
    (resume_dir / "p.yaml").write_text(pipeline_text(0, 0.2, 0.2), encoding="utf-8")
    cluster = ("--cluster", "local:2", *SPILLING)
    expected = reference(resume_dir, *cluster)
    with running(resume_dir, *args(*cluster), until="map second > third") as (process, _):
        time.sleep(3.0)
        kill_group(process)
    before = computed(resume_dir)
    stdout = assert_resumes(resume_dir, expected, *cluster)
    assert "skipping 'first'" in stdout
    after = computed(resume_dir)
    assert after.get("first", 0) == 0, after
    assert 0 < before.get("third", 0) < 20, before
    assert after.get("third", 0) <= 20 - before["third"] + 8, (before, after)
    assert "taking back" in stdout and after.get("third", 0) < 20, (before, after, stdout)


def test_a_finished_step_whose_staged_file_is_gone_is_computed_again(resume_dir):
    """Its output would otherwise be missing: a step is finished only while its files are."""
    expected = reference(resume_dir, *SPILLING)
    killed_after_first(resume_dir)
    [staged] = (resume_dir / "out").glob(".first.tif.eoscale-tmp-*[0-9a-f]")
    staged.unlink()
    computed(resume_dir)
    stdout = assert_resumes(resume_dir, expected, *SPILLING)
    assert "skipping" not in stdout and computed(resume_dir).get("first") == 20


def test_after_a_restart_of_the_machine_only_work_flushed_to_the_disk_is_taken_back(resume_dir):
    """The journal's records need no flush to survive a killed process, but a machine that
    restarts keeps only what was flushed: a run shorter than SYNC_SECONDS flushed nothing, so
    its journal, read after a restart (its boot is not this one), vouches for nothing and the
    resume computes every tile again; its files are discarded, the outputs still equal."""
    from eoscale.io.journal import encode_record, read_journal

    (resume_dir / "p.yaml").write_text(pipeline_text(0, 0, 0.3), encoding="utf-8")
    expected, before = killed_during(resume_dir, "map second > third", 2.2)
    assert before.get("first") == 20 and 0 < before.get("third", 0) < 20, before
    [journal] = (resume_dir / "scratch").glob("eoscale_run_*.journal")
    records = read_journal(journal).records
    assert records[0]["boot"] and not [r for r in records if r["kind"] == "synced"], records
    assert [r for r in records if r["kind"] == "step"]  # 'first' recorded, not flushed
    journal.write_bytes(b"".join(encode_record(dict(r, boot="before-the-restart")
                                               if r["kind"] == "run" else r) for r in records))
    done, _ = run(resume_dir, *args(*SPILLING, "--dry-run", "--resume"))
    assert "skipping" not in done.stdout and "taking back" not in done.stdout, done.stdout
    stdout = assert_resumes(resume_dir, expected, *SPILLING)
    assert "skipping" not in stdout
    after = computed(resume_dir)
    assert after.get("first") == 20 and after.get("third") == 20, after


def test_a_run_on_a_cluster_reached_at_an_address_resumes_on_it(resume_dir, monkeypatch):
    """A scheduler and its workers that outlive the killed client (a remote cluster's, here on
    127.0.0.1): the client killed once 'first' is finished, the resume on the same cluster
    skips it and ends with the uninterrupted run's outputs."""
    distributed = pytest.importorskip("distributed",
                                      reason="the cluster tests need the 'dask' extra")
    import logging

    monkeypatch.chdir(resume_dir)  # the workers' folder: the callables note their tiles there
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None,
                                       silence_logs=logging.CRITICAL)
    try:
        remote = ("--cluster", cluster.scheduler_address, *SPILLING)
        expected = reference(resume_dir, *remote)
        computed(resume_dir)
        with running(resume_dir, *args(*remote), until="map second > third") as (process, _):
            kill_group(process)  # the client only: the cluster runs on
        assert computed(resume_dir).get("first") == 20
        stdout = assert_resumes(resume_dir, expected, *remote)
        assert "skipping 'first'" in stdout, stdout
        assert computed(resume_dir).get("first", 0) == 0
    finally:
        cluster.close()
