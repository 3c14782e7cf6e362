"""What a resume computes again (issue 20): the turns not finished, and those that make an image
a turn still to run needs when no file kept it; a run's key and journal place; Staging's kept
and adopted files."""

from __future__ import annotations

from pathlib import Path

import pytest

from eoscale.io.raster import Staging
from eoscale.pipeline import load_pipeline, plan_run
from eoscale.pipeline.resume import journal_path, run_key, steps_to_run

#: 'smooth' is held in memory (no output), read by 'scaled' and the reduce 'total'.
PIPELINE = """
    version: 1
    workers: 2
    tiling: {mode: tiles, tile_size: 32}
    inputs: {dem: dem.tif}
    steps:
      - {name: smooth, map: eoscale.ops.median_filter, inputs: [dem], params: {size: 3}}
      - {name: scaled, map: eoscale.ops.median_filter, inputs: [smooth], params: {size: 3}}
      - {name: total, reduce: eoscale.ops.stats, inputs: [smooth]}
    outputs: {scaled: out/scaled.tif, total: out/total.json}
    """


def planned(make_raster, write_pipeline):
    make_raster("dem.tif", width=64, height=48, dtype="float32")
    return plan_run(load_pipeline(write_pipeline(PIPELINE)))


def turns(plan, names):
    return {step.fused_into if step.fused_into is not None else step.index
            for step in plan.steps if step.name in names}


def test_a_finished_turn_is_run_again_only_for_an_image_no_file_kept(make_raster,
                                                                     write_pipeline):
    plan = planned(make_raster, write_pipeline)
    everything = turns(plan, {"smooth", "scaled", "total"})
    assert steps_to_run(plan, frozenset(), {}, {}) == everything
    assert steps_to_run(plan, frozenset(everything), {}, {}) == frozenset()
    smooth = turns(plan, {"smooth"})
    # 'smooth' finished, held in memory: lost, computed again for the turns that read it
    assert steps_to_run(plan, frozenset(smooth), {}, {}) == everything
    # ...unless a file kept it (spilled)
    kept = {"smooth": Path("/scratch/smooth.tif")}
    assert steps_to_run(plan, frozenset(smooth), kept, {}) == everything - smooth


def test_the_run_key_follows_the_pipeline_and_its_outputs(make_raster, write_pipeline,
                                                          tmp_path):
    make_raster("dem.tif", width=64, height=48, dtype="float32")
    path = write_pipeline(PIPELINE)
    spec = load_pipeline(path)
    assert run_key(spec) == run_key(load_pipeline(path))
    other = load_pipeline(write_pipeline(PIPELINE.replace("out/scaled", "out/other")))
    assert run_key(other) != run_key(spec)
    scratch = load_pipeline(write_pipeline("scratch: work\n" + PIPELINE.replace("\n    ", "\n")))
    assert journal_path(scratch).parent == tmp_path / "work"
    assert journal_path(scratch).name == f"eoscale_run_{run_key(scratch)}.journal"


def test_staging_keeps_what_a_journal_names_and_adopts_a_killed_run_s_files(tmp_path):
    kept_output, other_output = tmp_path / "a.tif", tmp_path / "b.tif"
    with Staging() as staging:
        kept, other = staging.stage(kept_output), staging.stage(other_output)
        kept.write_bytes(b"finished")
        other.write_bytes(b"half")
        part = Path(f"{kept}.part-host-1")
        part.write_bytes(b"blocks")
        staging.keep({kept, part})
    assert kept.exists() and part.exists() and not other.exists()
    with Staging() as staging:
        staging.adopt(kept_output, kept)
        staging.commit()
    assert kept_output.read_bytes() == b"finished" and not kept.exists()
    assert not part.exists()  # the commit removes the parts named after the file it renames


@pytest.mark.parametrize("machine", ["no boot id", "boot id", "boot id, marks due"])
def test_the_last_step_to_compute_is_not_recorded_nor_its_outputs_flushed(
        make_raster, write_pipeline, tmp_path, monkeypatch, machine):
    """A step's record claims its files, durable first: flushed before the record where the
    system gives no boot identifier; else flushed only by a ``synced`` mark, when one is due
    (never in a run shorter than SYNC_SECONDS). The last step that computes anything has no
    record: the run commits right after it, and flushing its outputs would cost more than the
    journal's budget for the instants before the commit (a run killed in them takes the tiles
    back from their parts, which the journal removes at the end: none is left)."""
    from eoscale.io.journal import SYNCED, Journal
    from eoscale.pipeline import resume as resume_module
    from eoscale.pipeline.runner import run_pipeline

    make_raster("dem.tif", width=64, height=48, dtype="float32")
    plan = plan_run(load_pipeline(write_pipeline("""
        version: 1
        workers: 1
        tiling: {mode: tiles, tile_size: 32}
        inputs: {dem: dem.tif}
        steps:
          - {name: first, map: eoscale.ops.median_filter, inputs: [dem], params: {size: 3}}
          - {name: second, map: eoscale.ops.median_filter, inputs: [first], params: {size: 3}}
          - {name: total, reduce: eoscale.ops.stats, inputs: [second]}
        outputs: {first: out/first.tif, second: out/second.tif, total: out/total.json}
        """)))
    assert [step.fused_into for step in plan.steps[:2]] == [None, None]  # two turns
    if machine == "no boot id":
        monkeypatch.setattr(resume_module, "boot_id", lambda: None)
    else:
        monkeypatch.setattr(resume_module, "boot_id", lambda: "this-boot")
        monkeypatch.setattr(resume_module, "SYNC_SECONDS", 0.0 if "due" in machine else 3600.0)
    events = []  # ("record", kind, fields) and ("flush", path), in order
    real_record, real_fsync = Journal.record, resume_module._fsync
    monkeypatch.setattr(Journal, "record",
                        lambda self, kind, **fields: (events.append(("record", kind, fields)),
                                                      real_record(self, kind, **fields))[1])
    monkeypatch.setattr(resume_module, "_fsync",
                        lambda path: (events.append(("flush", Path(path))), real_fsync(path))[1])
    run_pipeline(plan, resuming=resume_module.Resuming(resume_module.FRESH, "test"))
    records = [(event[1], event[2]) for event in events if event[0] == "record"]
    flushed = [event[1] for event in events if event[0] == "flush"]
    assert [fields["name"] for kind, fields in records if kind == "step"] == ["first"]
    assert records[0][1]["boot"] == (None if machine == "no boot id" else "this-boot")
    at, first = next((at, event[2]) for at, event in enumerate(events)
                     if event[:2] == ("record", "step"))
    files = [Path(name) for name in first["files"]]
    assert files
    if machine == "no boot id":  # each flushed before the record, and no mark
        assert all(("flush", path) in events[:at] for path in files)
        assert not [kind for kind, _ in records if kind == SYNCED]
    elif machine == "boot id":  # nothing flushed, no mark: the run ended before one was due
        assert flushed == [] and not [kind for kind, _ in records if kind == SYNCED]
    else:  # a mark after the step's record, its files flushed between the two
        mark = next(i for i, event in enumerate(events)
                    if i > at and event[:2] == ("record", SYNCED))
        assert all(("flush", path) in events[at:mark] for path in files)
    staged_second = [path for path in flushed if "second.tif" in path.name]
    assert not [path for path in staged_second if ".part" not in path.name]
    assert (tmp_path / "out" / "second.tif").exists()
    assert not journal_path(plan.spec).exists()
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "first.tif", "second.tif", "total.json"]  # no part file, no staged file left


@pytest.mark.parametrize("elsewhere", [False, True])
def test_a_journal_says_this_boot_unless_a_worker_writes_on_another_machine(
        make_raster, write_pipeline, tmp_path, monkeypatch, elsewhere):
    """Workers on another machine: no boot said, so every record is trusted anywhere (the files
    flushed before each record); else this machine's boot."""
    from eoscale.engine.scratch import Scratch
    from eoscale.io.journal import read_journal
    from eoscale.pipeline import resume as resume_module

    monkeypatch.setattr(resume_module, "boot_id", lambda: "this-boot")
    plan = planned(make_raster, write_pipeline)
    with Staging() as staging, Scratch(tmp_path) as scratch:
        journal = resume_module.RunJournal(plan, resume_module.Resuming(resume_module.FRESH, "t"),
                                           staging, scratch, elsewhere=elsewhere)
        with journal.ended():
            first = read_journal(journal.journal.path).records[0]
            assert first["kind"] == "run"
            assert first["boot"] == (None if elsewhere else "this-boot")
    assert not journal_path(plan.spec).exists()


def test_a_commit_removes_the_parts_still_named_after_a_staged_file(tmp_path) -> None:
    """A resumed run adopts its killed predecessor's staged file; a part file that run's
    worker appended to after the journal's last record is named by nothing the resumed run
    reads: the commit removes every part named after the file it renames, whoever wrote it."""
    from eoscale.io.raster import Staging
    from eoscale.io.runfiles import PART_MARK

    with Staging() as staging:
        temp = staging.stage(tmp_path / "out.tif")
        temp.write_bytes(b"the file")
        late = temp.with_name(temp.name + PART_MARK + "node_1-4242")
        late.write_bytes(b"blocks of a killed run")
        staging.commit()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.tif"]


@pytest.mark.parametrize("named", ["a part", "the staged file"])
def test_the_end_of_a_run_removes_every_part_of_a_file_its_journal_names(
        make_raster, write_pipeline, tmp_path, named) -> None:
    """A killed run's worker may have appended to a part file after the journal's last record
    of tiles; a resumed run that took those tiles from it, computing them again, ends by
    removing what the journal names: with each file, the staged file it is a part of and every
    part of that file, whoever wrote them (the part unnamed was left behind: one run in five of
    test_a_spilled_run_killed_resumes_without_computing_its_finished_steps)."""
    from eoscale.engine.scratch import Scratch
    from eoscale.io.runfiles import PART_MARK
    from eoscale.pipeline import resume as resume_module

    plan = planned(make_raster, write_pipeline)
    staged = tmp_path / "out" / ".second.tif.eoscale-tmp-4242-0123abcd"
    staged.parent.mkdir(exist_ok=True)
    recorded, unrecorded = (staged.with_name(staged.name + PART_MARK + writer)
                            for writer in ("node_1-4243", "node_1-4244"))
    for path in (staged, recorded, unrecorded):
        path.write_bytes(b"blocks of a killed run")
    beside = tmp_path / "out" / ".other.tif.eoscale-tmp-4242-0123abcd.part-node_1-4243"
    beside.write_bytes(b"another file's part, named by nothing here")
    with Staging() as staging, Scratch(tmp_path) as scratch:
        journal = resume_module.RunJournal(plan, resume_module.Resuming(resume_module.FRESH, "t"),
                                           staging, scratch)
        with journal.ended():
            journal.journal.record("tiles", step="second", tiles={},
                                   files=[str(recorded if named == "a part" else staged)])
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [beside.name]
