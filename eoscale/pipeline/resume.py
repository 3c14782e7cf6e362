"""Resume a killed run: the run's identity and journal, and what a resume computes again.

Every run of a pipeline file from the command line keeps a journal
(:class:`~eoscale.io.journal.Journal`), without being asked: a walltime, a preempted node or
the out-of-memory killer is never planned. The journal is named after the run's *key* (a hash
of the pipeline file's path and its outputs' paths: :func:`run_key`), in the run's scratch
folder (shared by a cluster's machines, and where the clean-up already looks), so that a later
run of the same pipeline and outputs finds it: ``eoscale_run_<key>.journal``.

Its records, each appended once what it names is durable (see :mod:`eoscale.io.journal`:
written, for a process that dies; flushed to the disk before a ``synced`` mark, for a machine
that stops):

- ``run``: the key, the pid, the time, and the run's fingerprint
  (:func:`~eoscale.pipeline.fingerprint.fingerprint`, with the plan's tilings, fusions and
  where each image lives as ``plan`` aspects): what its finished work depends on;
- ``resume``: the pid of each run that took it over (both say the machine's boot);
- ``step``: a step finished (a fused chain with its last step; a reduce fed by a map's tiles on
  its own), after its outputs were staged and its saves written: the staged files so far
  (``staged``: output path -> staged file) and the spilled images (``spilled``), listed in
  ``files`` (what the clean-up keeps for it), and the reduce results known so far
  (pickled, base64: ``results``, and ``fed`` for those a map computed for a later step).
- ``tiles``: tiles of a step in progress (by the engine's name for it), as
  :mod:`eoscale.engine.units` makes them: where their blocks lie in the part files (listed in
  ``files``), or a reduce's partials; written at most every :data:`FLUSH_SECONDS`, and when a
  signal stops the run;
- ``synced``: the files named so far are flushed to the disk (at most every
  :data:`SYNC_SECONDS`, before the parts of a step whose tiles a mark vouched for are removed,
  and when a signal stops the run): what a restart of the machine keeps.

A run that succeeds, or fails on an error, removes its journal, as it removes its staged files.
A run stopped by SIGINT or SIGTERM keeps both (nothing is renamed into place), and says how to
resume and how to discard them. ``eoscale run --resume`` reads the journal, refuses it if the
fingerprint changed (naming what), and skips every finished step whose results are still
there: the steps after them run as before, taking back the tiles recorded of them (those of
a map whose outputs are all encoded into part files, and a reduce's). An image a finished step held in memory is lost with the
process: the steps that make it are computed again (:func:`steps_to_run`), the whole step,
when an unfinished one needs it; an image written to a file (an output, a spilled image) is
read back from the file the journal names.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rasterio.windows import Window

from eoscale.engine.encoded import remove_parts
from eoscale.engine.scratch import Scratch, forget_journal
from eoscale.errors import Interrupted, ResumeRefused
from eoscale.io.journal import SYNCED, Journal, JournalError, boot_id, read_journal
from eoscale.io.raster import Staging
from eoscale.io.runfiles import JOURNAL, FolderRecord, point_to, remove_named
from eoscale.pipeline.fingerprint import Fingerprint, fingerprint, plan_callables
from eoscale.pipeline.killed import (KilledRun, Restored, encode_result, engine_name,
                                      find_killed_run, iteration_of, journal_path, run_key)
from eoscale.pipeline.plan import RunPlan, StepPlan

#: How often, at most, recorded tiles are written to the journal (seconds): a kill loses at
#: most this much of a step's finished tiles. Written by a thread of its own
#: (:class:`RunJournal`), so that the main process goes on handing tiles to the workers
#: meanwhile (where there is no boot identifier, a batch first flushes its part files: done in
#: the main loop, each flush left a worker idle while it lasted, 36 ms under load).
FLUSH_SECONDS = 0.25
#: How often, at most, the files the journal names are flushed to the disk, then a ``synced``
#: mark recorded (seconds): a restart of the machine loses at most this much work. A run shorter
#: than this flushes nothing: its part files are removed before the kernel writes them out
#: (it does after 30 s, on its own), which spares the disk and about 5 % of the wall of W1 at
#: 8192 (its fsyncs made the disk write its 500 MB of parts; removing flushed files costs
#: 0.1 s per 250 MB against 0.013 s for files never written out).
SYNC_SECONDS = 30.0
#: What a run does with a killed run's journal: refuse to start (``FRESH``: say how far it got
#: and how to go on), resume it, or discard it and run from the start.
FRESH, RESUME, RESTART = "fresh", "resume", "restart"


@dataclass(frozen=True)
class Resuming:
    """How a run keeps its journal: ``mode`` (:data:`FRESH`, :data:`RESUME`, :data:`RESTART`)
    and eoscale's ``version`` (a fingerprint's first aspect)."""

    mode: str = FRESH
    version: str = ""


def plan_aspects(plan: RunPlan) -> dict[str, str]:
    """The plan's decisions a recorded unit depends on, as fingerprint aspects: each step's
    tiling, fusion and feeding, and where each image lives."""
    aspects = {}
    for step in plan.steps:
        tiling = step.tiling
        aspects[f"step '{step.name}'"] = json.dumps({
            "tiling": [tiling.height, tiling.width, tiling.tile_size, tiling.margin, tiling.mode],
            "chain": [plan.steps[i].name for i in step.chain], "fed_by": step.fed_by,
            "file_blocks": step.file_blocks})
    for name, image in plan.images.items():
        aspects[f"image '{name}'"] = image.lives.value
    return aspects


def needed_images(plan: RunPlan, step: StepPlan) -> list[str]:
    """The images the turn of ``step`` reads (its chain's inputs from outside the chain) or
    saves (not a reduce's result); none for a reduce fed by a map's tiles."""
    if step.fed_by is not None:
        return []
    members = [plan.steps[i] for i in (step.chain or (step.index,))]
    made = {name for member in members for name in member.step.outputs}
    names = [name for member in members for name in member.step.inputs if name not in made]
    return [name for name in dict.fromkeys([*names, *step.saves]) if name in plan.images]


def steps_to_run(plan: RunPlan, done: frozenset[int], spilled: Mapping[str, Path],
                 fed: Mapping[str, Any]) -> frozenset[int]:
    """The turns (:func:`iteration_of`) a resume runs: those not ``done``, and the finished
    ones that make an image they need which no file kept (held in memory, lost with the killed
    process), or a fed reduce's result the journal does not hold."""
    turns = {iteration_of(plan, step) for step in plan.steps}
    running = {turn for turn in turns if turn not in done}
    by_name = {step.name: step for step in plan.steps}
    changed = True
    while changed:
        changed = False
        for turn in sorted(running):
            step = plan.steps[turn]
            wanted = set()
            for name in needed_images(plan, step):
                maker = plan.images[name].made_by
                if maker is not None and name not in spilled:
                    wanted.add(iteration_of(plan, by_name[maker]))
            if step.fed_by is not None and step.name not in fed:
                wanted.add(step.fed_by)
            if not wanted <= running:
                running |= wanted
                changed = True
    return frozenset(running)


def outlook(plan: RunPlan, resuming: Resuming) -> dict[str, Any]:
    """What a run will do about a killed run of the plan's pipeline, as ``resuming`` says, as
    JSON values (``--dry-run --resume --json``; :func:`describe` says it); a resume that would
    be refused is refused here."""
    return _outlook(plan, resuming)[1]


def _outlook(plan: RunPlan, resuming: Resuming) -> tuple[KilledRun | None, dict[str, Any]]:
    mode = resuming.mode
    killed = find_killed_run(plan.spec)
    if mode == FRESH and killed is not None and killed.has_work:
        raise unasked(killed, plan)
    found: dict[str, Any] = {"mode": mode, "journal": None if killed is None else str(killed.path)}
    if killed is None or mode != RESUME:
        return killed, found
    check_unchanged(killed, fingerprint(plan.spec, version=resuming.version,
                                        plan=plan_aspects(plan), callables=plan_callables(plan)))
    restored = killed.restored()
    running = steps_to_run(plan, restored.done, restored.spilled, restored.fed)
    units = killed.units()
    return killed, dict(
        found, stopped_after=killed.when, tiles_done=killed.tiles_done(plan),
        steps_done=[record.get("name") for record in killed.steps],
        skipped=[step.name for step in plan.steps if iteration_of(plan, step) not in running],
        computed_again=[step.name for step in plan.steps if step.fused_into is None
                        and step.index in restored.done and step.index in running],
        taken_back={name: {"tiles": len(units[name]), "of": step.tiling.tile_count}
                    for step in plan.steps if step.index in running and step.fused_into is None
                    and units.get(name := engine_name(plan, step))})


def describe(plan: RunPlan, resuming: Resuming) -> str:
    """What a run will do about a killed run of the plan's pipeline, as ``resuming`` says (for
    the CLI, and ``--dry-run --resume``); a resume that would be refused is refused here."""
    killed, found = _outlook(plan, resuming)
    if resuming.mode == RESTART:
        return ("discarding " + killed.summary(plan) + ": running from the start"
                if killed is not None else "no killed run to discard: running from the start")
    if resuming.mode != RESUME:
        return ""
    if killed is None:
        return "no killed run of this pipeline to resume: running from the start"
    skipped, again = found["skipped"], found["computed_again"]
    text = f"resuming {killed.summary(plan)}: "
    text += (f"skipping {', '.join(repr(name) for name in skipped)}" if skipped
             else "nothing to skip")
    if again:
        text += (f"; computing again {', '.join(repr(name) for name in again)} (held in memory, "
                 "lost with the killed run)")
    taken = [f"{back['tiles']} of {back['of']} tiles of '{name}'"
             for name, back in found["taken_back"].items()]
    if taken:
        text += f"; taking back {', '.join(taken)} (recorded)"
    return text


def unasked(killed: KilledRun, plan: RunPlan) -> ResumeRefused:
    """The refusal of a run told neither to resume nor to discard a killed run's work."""
    return ResumeRefused(f"{killed.summary(plan)} (journal {killed.path}): `--resume` to "
                         "continue it, `--restart` to discard it and run from the start")


def check_unchanged(killed: KilledRun, now: Fingerprint) -> None:
    """Refuse to resume ``killed`` if what its finished work depends on changed, naming each
    change."""
    changes = now.changes(killed.fingerprint or Fingerprint({}))
    if changes:
        raise ResumeRefused(
            f"cannot resume the killed run (journal {killed.path}): what its finished work "
            "depends on changed since:\n" + "\n".join(f"  - {change}" for change in changes)
            + "\n`--restart` to discard it and run from the start")


class RunJournal:
    """This run's journal: opened as :class:`Resuming` says, written as steps finish, removed
    when the run ends unless a signal stopped it (:meth:`ended`)."""

    def __init__(self, plan: RunPlan, resuming: Resuming, staging: Staging, scratch: Scratch,
                 elsewhere: bool = False):
        self.plan = plan
        self.staging = staging
        self.scratch = scratch
        self.restored = Restored()
        self._record = FolderRecord()
        self._recorded: set[str] = set()
        self._synced: set[Path] = set()  # flushed (where there is no boot identifier)
        # Workers on other machines (a cluster's): files are flushed before each record, and
        # no boot is said, so that a resume from any machine trusts every record (a worker
        # on another host flushes its own appends: see eoscale.engine.encoded.sync_appends).
        # Else this machine's boot (see the module, and eoscale.io.journal).
        self._boot = None if elsewhere else boot_id()
        self._unsynced: set[Path] = set()  # named by a record, not flushed since
        self._marked: set[str] = set()  # the steps with tiles recorded before a mark
        self._tiled: set[str] = set()  # the steps with tiles recorded
        self._units: dict[str, dict[int, Any]] = {}
        self._taken_from: dict[str, set[Path]] = {}  # the killed run's files, by step
        self._pending: list[tuple[str, Mapping[int, Any], set[str]]] = []
        self._flushed = self._marked_at = time.monotonic()
        self._flusher: ThreadPoolExecutor | None = None  # started at the first tiles recorded
        self._flushing: Future[None] | None = None
        now = fingerprint(plan.spec, version=resuming.version, plan=plan_aspects(plan),
                          callables=plan_callables(plan))
        killed = find_killed_run(plan.spec)
        path = journal_path(plan.spec)
        if killed is not None and (resuming.mode == RESTART or (
                resuming.mode == FRESH and not killed.has_work)):  # nothing finished to lose
            killed.discard()
            killed = None
        elif killed is not None and resuming.mode != RESUME:
            raise unasked(killed, plan)
        elif killed is not None:
            check_unchanged(killed, now)
            killed.drop_lost()
            self.restored = killed.restored()
            self._units, self._taken_from = killed.units(), killed.tile_files()
            self._recorded = {*self.restored.results, *self.restored.fed}
            self._synced = set(self.restored.staged.values()) | set(self.restored.spilled.values())
            # what the killed run named may not be on the disk: the next mark flushes it
            self._unsynced = {path for path in killed.contents.files if path.exists()}
            self._marked = killed.marked_steps()
        self._record.note(path, JOURNAL)
        point_to(path)
        if killed is not None:  # resumed
            self.journal = Journal.reopen(path)
            self.journal.record("resume", pid=os.getpid(), at=time.time(), boot=self._boot)
        else:
            try:
                self.journal = Journal.create(path, {
                    "kind": "run", "key": run_key(plan.spec), "pid": os.getpid(),
                    "at": time.time(), "boot": self._boot,
                    "pipeline": str(plan.spec.source or ""), "fingerprint": now.as_json()})
            except BaseException:  # a full disk: nothing of this journal is left
                self._record.close()
                forget_journal(path)
                raise
        self.running = steps_to_run(plan, self.restored.done, self.restored.spilled,
                                    self.restored.fed)

    def skips(self, step: StepPlan) -> bool:
        """Whether this run skips ``step`` (finished by the killed run, its results kept)."""
        return iteration_of(self.plan, step) not in self.running

    def step_done(self, step: StepPlan, spilled: Mapping[str, Path], results: Mapping[str, Any],
                  fed: Mapping[str, Any]) -> None:
        """Record that ``step``'s turn finished, once its files are durable (flushed first
        where there is no boot identifier, else named for the next mark: see the module).
        Not recorded when no step after it computes anything (only reduces its tiles fed
        remain, or nothing): the run commits next, and the flush of its outputs (0.4 s for the
        8192 chain's 100 MB on a local disk, 2.5 % of its run: more than the journal's budget)
        would buy only the instants before the commit; a run killed in them takes its tiles
        back from their parts. The engine leaves the parts of a map whose tiles a journal
        recorded: they are removed here once the step is recorded, with the killed run's files
        a resume took its tiles from, else with the journal at the run's end (a run killed
        after the assembly loses none of those tiles)."""
        self._flush()  # its tiles' records first, in order
        staged = self.staging.files
        files = [*staged.values(), *spilled.values()]
        if files and self._last_to_compute(step):
            return
        self._make_durable(files, once=True)
        new_results = {name: encode_result(value) for name, value in results.items()
                       if name not in self._recorded}
        new_fed = {name: encode_result(value) for name, value in fed.items()
                   if name not in self._recorded}
        if None in new_results.values() or None in new_fed.values():
            return  # a result that does not pickle: this turn is computed again on a resume
        self.journal.record("step", index=step.index, name=step.name, at=time.time(),
                            files=[str(path) for path in files],
                            staged={str(k): str(v) for k, v in staged.items()},
                            spilled={k: str(v) for k, v in spilled.items()},
                            results=new_results, fed=new_fed)
        if self._boot is None:
            self.journal.sync()
        elif engine_name(self.plan, step) in self._marked:
            self._mark()  # a mark vouched for its tiles: the step is durable before the parts go
        else:
            self._mark_if_due()
        self._recorded |= {*new_results, *new_fed}
        for path in staged.values():  # the step is recorded: its tiles' parts are not needed
            remove_parts(path)
        for path in self._taken_from.pop(engine_name(self.plan, step), set()) - set(files):
            remove_named(path)  # nor the killed run's files its blocks were taken from

    def _last_to_compute(self, step: StepPlan) -> bool:
        """Whether no step after ``step`` computes tiles in this run (only reduces a map's
        tiles fed, or none, remain)."""
        return all(later.fed_by is not None for later in self.plan.steps
                   if later.index > step.index and later.fused_into is None
                   and iteration_of(self.plan, later) in self.running)

    def recorded(self, step: str) -> Mapping[int, Any]:
        """The tiles of ``step`` the killed run recorded (:class:`~eoscale.engine.units.UnitLog`)."""
        return self._units.get(step, {})

    def needed_windows(self, step: StepPlan, name: str) -> list[Window] | None:
        """What the tiles of map ``step`` still to compute read of input ``name``, when the
        killed run recorded some of them and only this step reads it (None: the whole image):
        a resume loads that much of it (:mod:`~eoscale.engine.loading`, which loads the rest
        if the step runs more tiles than the journal says)."""
        image = self.plan.images[name]
        if (step.kind != "map" or step.margin is None or image.made_by is not None
                or not image.lives.held_whole or image.released_after != step.index):
            return None
        recorded = self.recorded(engine_name(self.plan, step))
        if not recorded:
            return None
        return [tile.read for tile in step.tiling.tiles() if tile.index not in recorded]

    def add(self, step: str, units: Mapping[int, Any], files: set[str], last: bool) -> None:
        """Record tiles, at most every :data:`FLUSH_SECONDS` by the flushing thread, one batch
        at a time, in order (a step's last ones here, at once): the part files they name are
        flushed first. A batch is handed over only once the previous one is written, so the
        records wait rather than pile up behind a slow disk."""
        self._pending.append((step, units, files))
        if last:  # nothing left to hand to the workers: written here, before the step ends
            self._flush()
            return
        due = time.monotonic() - self._flushed >= FLUSH_SECONDS
        if not due or (self._flushing is not None and not self._flushing.done()):
            return
        self._wait()
        if self._flusher is None:  # after the engine has forked its workers
            self._flusher = ThreadPoolExecutor(1, thread_name_prefix="eoscale-journal")
        pending, self._pending = self._pending, []
        self._flushing = self._flusher.submit(self._write, pending)
        self._flushed = time.monotonic()

    def _wait(self) -> None:
        """Wait for the batch the flushing thread is writing (its error raised here)."""
        flushing, self._flushing = self._flushing, None
        if flushing is not None:
            flushing.result()

    def _flush(self) -> None:
        """Write every tile recorded so far, here, once the flushing thread is done."""
        self._wait()
        pending, self._pending = self._pending, []
        self._write(pending)
        self._flushed = time.monotonic()

    def _stop_flushing(self) -> None:
        with contextlib.suppress(Exception):
            self._wait()
        if self._flusher is not None:
            self._flusher.shutdown(wait=True)
            self._flusher = None

    def _write(self, pending: list[tuple[str, Mapping[int, Any], set[str]]]) -> None:
        if not pending:
            return
        self._make_durable({Path(f) for _, _, files in pending for f in files})
        by_step: dict[str, tuple[dict[str, Any], set[str]]] = {}
        for step, units, files in pending:
            tiles, named = by_step.setdefault(step, ({}, set()))
            tiles.update((str(index), unit) for index, unit in units.items())
            named |= files
        for step, (tiles, named) in by_step.items():
            self.journal.record("tiles", step=step, files=sorted(named), tiles=tiles)
        self._tiled.update(by_step)
        self._mark_if_due()

    def _make_durable(self, files: Iterable[Path], once: bool = False) -> None:
        """Make ``files`` durable before a record names them: flushed now where there is no
        boot identifier (``once``: finished files, flushed once for all), else by the next mark
        (written, they outlive the process)."""
        if self._boot is not None:
            self._unsynced.update(files)
            return
        for path in sorted(set(files) - self._synced):
            with contextlib.suppress(FileNotFoundError):
                _fsync(path)
                if once:
                    self._synced.add(path)

    def _mark_if_due(self) -> None:
        if self._boot is not None and time.monotonic() - self._marked_at >= SYNC_SECONDS:
            self._mark()

    def _mark(self) -> None:
        """Flush the files named since the last mark, then record a mark and flush the journal:
        every record so far is durable (see :mod:`eoscale.io.journal`)."""
        for path in sorted(self._unsynced):
            with contextlib.suppress(FileNotFoundError):
                _fsync(path)
        self.journal.record(SYNCED, at=time.time())
        self.journal.sync()
        self._unsynced.clear()
        self._marked |= self._tiled
        self._marked_at = time.monotonic()

    @contextlib.contextmanager
    def ended(self) -> Iterator[RunJournal]:
        """Inside the block the run runs; leaving it on SIGINT or SIGTERM keeps the journal and
        the files it names (and says so on the :class:`Interrupted`), else removes it."""
        try:
            yield self
        except (Interrupted, KeyboardInterrupt) as exc:
            self._flush()  # the tiles that came back before the signal
            self._stop_flushing()
            contents = read_journal(self.journal.path)
            if not any(True for _ in contents.of_kind("step")) and not any(
                    True for _ in contents.of_kind("tiles")):
                self._remove()  # nothing finished: nothing worth keeping
                raise
            kept = set(contents.files)
            self.staging.keep(kept)
            self.scratch.keep(kept)
            with contextlib.suppress(OSError, JournalError):  # else trusted on this boot only
                if self._boot is None:
                    self.journal.sync()
                else:
                    self._mark()  # what is kept outlives a restart of the machine too
            self.journal.close()
            self._record.keep()
            if isinstance(exc, Interrupted):
                source = self.plan.spec.source
                command = f"eoscale run {source.name if source else 'PIPELINE'}"
                exc.kept = (f"its finished work is kept (journal {self.journal.path}): "
                            f"`{command} --resume` (with the same options) to continue, "
                            "`eoscale cleanup` to discard them")
            raise
        except BaseException:
            self._remove()
            raise
        self._remove()

    def _remove(self) -> None:
        """Remove the journal, and what it names that is left: a killed run's part files, whose
        blocks this run assembled (or discarded)."""
        self._stop_flushing()
        try:
            files = read_journal(self.journal.path).files
        except JournalError:
            files = []
        self.journal.remove()
        for path in files:
            remove_named(path)
        self._record.close()
        forget_journal(self.journal.path)


def _fsync(path: Path) -> None:
    """Flush a file's bytes to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
