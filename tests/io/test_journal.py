"""A run's journal stays true whatever instant its writer dies: torn or damaged lines end it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from eoscale.io.journal import Journal, JournalError, encode_record, read_journal


def _journal(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "run.journal"
    with Journal.create(path, {"kind": "run", "fingerprint": {"eoscale": {"version": "1"}}}) as j:
        for index in range(count):
            j.record("block", output="dem", index=index, offset=index * 10, length=10)
    return path


def test_records_read_back_in_order(tmp_path: Path) -> None:
    contents = read_journal(_journal(tmp_path, 3))
    assert not contents.torn
    assert [r["kind"] for r in contents.records] == ["run", "block", "block", "block"]
    assert [r["index"] for r in contents.of_kind("block")] == [0, 1, 2]
    assert contents.records[0]["fingerprint"] == {"eoscale": {"version": "1"}}


@pytest.mark.parametrize("cut", range(1, 40))
def test_a_torn_last_line_is_dropped_and_every_whole_one_kept(tmp_path: Path, cut: int) -> None:
    """Every length the last write could have been cut at: the records before it, no more."""
    path = _journal(tmp_path, 2)
    whole = path.read_bytes()
    last = encode_record({"kind": "block", "output": "dem", "index": 1, "length": 10,
                          "offset": 10})
    assert whole.endswith(last) and cut < len(last)
    path.write_bytes(whole[:len(whole) - len(last) + cut])
    contents = read_journal(path)
    assert [r.get("index") for r in contents.records] == [None, 0]
    assert contents.torn


def test_a_damaged_line_ends_the_journal(tmp_path: Path) -> None:
    path = _journal(tmp_path, 3)
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"index":1', b'"index":7')  # same length, wrong CRC
    path.write_bytes(b"\n".join(lines))
    contents = read_journal(path)
    assert [r.get("index") for r in contents.records] == [None, 0]
    assert contents.torn


def test_reopen_cuts_a_torn_line_and_appends_after_the_whole_ones(tmp_path: Path) -> None:
    path = _journal(tmp_path, 2)
    path.write_bytes(path.read_bytes()[:-5])
    with Journal.reopen(path) as journal:
        journal.record("step", name="median")
    contents = read_journal(path)
    assert [r["kind"] for r in contents.records] == ["run", "block", "step"]
    assert not contents.torn


def test_a_journal_is_never_created_over_a_file(tmp_path: Path) -> None:
    path = _journal(tmp_path, 1)
    before = path.read_bytes()
    with pytest.raises(JournalError, match=f"{path}: cannot create the run's journal"):
        Journal.create(path, {"kind": "run"})
    assert path.read_bytes() == before
    with pytest.raises(JournalError, match="no journal there"):
        read_journal(tmp_path / "none.journal")


def test_threads_append_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    with Journal.create(path, {"kind": "run"}) as journal:
        def write(thread: int) -> None:
            for index in range(200):
                journal.record("tile", thread=thread, index=index, pad="x" * 300)
        threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    contents = read_journal(path)
    assert not contents.torn and len(contents.records) == 801
    for thread in range(4):
        assert [r["index"] for r in contents.records if r.get("thread") == thread] == \
            list(range(200))


def test_a_writer_killed_at_any_moment_leaves_a_true_journal(tmp_path: Path) -> None:
    """A process appending as fast as it can, SIGKILLed: every record read back is whole and
    they are the first N the writer wrote, in order."""
    path = tmp_path / "run.journal"
    code = (
        "import sys\nfrom eoscale.io.journal import Journal\n"
        "j = Journal.create(sys.argv[1], {'kind': 'run'})\n"
        "print('ready', flush=True)\n"
        "i = 0\n"
        "while True:\n    j.record('tile', index=i, pad='y' * (i % 97)); i += 1\n")
    process = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        while path.stat().st_size < 200_000:
            pass
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        process.stdout.close()
    contents = read_journal(path)
    indices = [r["index"] for r in contents.of_kind("tile")]
    assert len(indices) > 100 and indices == list(range(len(indices)))


def _booted_journal(tmp_path: Path, monkeypatch, boot: str | None) -> Path:
    """A run at ``boot`` recorded tiles 0 and 1, a mark, then tile 2; a resume at the same boot
    recorded tile 3 (no mark after either)."""
    from eoscale.io import journal as journal_module

    monkeypatch.setattr(journal_module, "boot_id", lambda: boot)
    path = tmp_path / "run.journal"
    with Journal.create(path, {"kind": "run", "boot": boot}) as journal:
        for index in (0, 1):
            journal.record("tiles", step="s", files=[f"p{index}"], tiles={str(index): 1})
        journal.record("synced")
        journal.record("tiles", step="s", files=["p2"], tiles={"2": 1})
    with Journal.reopen(path) as journal:
        journal.record("resume", boot=boot)
        journal.record("tiles", step="s", files=["p3"], tiles={"3": 1})
    return path


def _tiles(records) -> list[str]:
    return [key for record in records if record["kind"] == "tiles" for key in record["tiles"]]


@pytest.mark.parametrize("boot", ["a", None])
def test_records_of_this_boot_or_with_no_boot_are_all_trusted(tmp_path, monkeypatch, boot):
    """A process killed leaves its writes in the page cache: the records of this boot are true
    without a flush; a writer that says no boot flushed before each record."""
    contents = read_journal(_booted_journal(tmp_path, monkeypatch, boot))
    assert _tiles(contents.records) == ["0", "1", "2", "3"]
    assert contents.lost == ()


def test_after_a_restart_only_the_records_before_the_last_mark_are_trusted(
        tmp_path, monkeypatch):
    from eoscale.io import journal as journal_module

    path = _booted_journal(tmp_path, monkeypatch, "a")
    monkeypatch.setattr(journal_module, "boot_id", lambda: "b")  # the machine restarted
    contents = read_journal(path)
    assert _tiles(contents.records) == ["0", "1"]
    assert _tiles(contents.lost) == ["2", "3"]
    assert [record["kind"] for record in contents.records] == [
        "run", "tiles", "tiles", "synced", "resume"]
    assert [path.name for path in contents.files] == ["p0", "p1", "p2", "p3"]  # cleaned up too


def test_a_journal_reopened_after_a_restart_loses_its_untrusted_records_for_good(
        tmp_path, monkeypatch):
    """Else a mark the new run records would vouch for them."""
    from eoscale.io import journal as journal_module

    path = _booted_journal(tmp_path, monkeypatch, "a")
    monkeypatch.setattr(journal_module, "boot_id", lambda: "b")
    with Journal.reopen(path) as journal:
        journal.record("resume", boot="b")
        journal.record("tiles", step="s", files=["p4"], tiles={"4": 1})
        journal.record("synced")
    contents = read_journal(path)
    assert _tiles(contents.records) == ["0", "1", "4"] and contents.lost == ()
    assert not path.with_name(path.name + ".rewrite").exists()
    monkeypatch.setattr(journal_module, "boot_id", lambda: "c")  # and after another restart
    assert _tiles(read_journal(path).records) == ["0", "1", "4"]


def test_a_killed_run_s_steps_vouched_for_by_a_mark(tmp_path, monkeypatch):
    from eoscale.pipeline.killed import KilledRun

    path = tmp_path / "run.journal"
    monkeypatch.setattr("eoscale.io.journal.boot_id", lambda: "a")
    with Journal.create(path, {"kind": "run", "boot": "a"}) as journal:
        journal.record("tiles", step="first", files=["p"], tiles={"0": 1})
        journal.record("synced")
        journal.record("tiles", step="second", files=["q"], tiles={"0": 1})
    assert KilledRun(path, read_journal(path)).marked_steps() == {"first"}
    path.unlink()
    with Journal.create(path, {"kind": "run"}) as journal:  # no boot: flushed before each
        journal.record("tiles", step="second", files=["q"], tiles={"0": 1})
    assert KilledRun(path, read_journal(path)).marked_steps() == {"second"}


def test_a_rewrite_left_by_a_machine_that_stopped_goes_with_its_journal(tmp_path):
    from eoscale.io.journal import rewrite_path
    from eoscale.pipeline.killed import KilledRun

    path = _journal(tmp_path, 1)
    rewrite_path(path).write_bytes(b"half")
    Journal.reopen(path).remove()
    assert not path.exists() and not rewrite_path(path).exists()
    path = _journal(tmp_path, 1)
    rewrite_path(path).write_bytes(b"half")
    KilledRun(path, read_journal(path)).discard()
    assert not path.exists() and not rewrite_path(path).exists()
