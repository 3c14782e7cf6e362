"""A killed run as its journal tells it: where runs of a pipeline keep their journal (the run's
*key*), the turns a dead run finished, the tiles it recorded and what its finished work left
(:class:`KilledRun`, :class:`Restored`); :mod:`eoscale.pipeline.resume` decides from them what a
resume computes again.

A journal's records are read as :func:`~eoscale.io.journal.read_journal` trusts them: after the
machine restarted, the records whose files were not yet flushed to the disk are not (see
:mod:`eoscale.io.journal`), so a killed run never claims work a restart lost.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import hashlib
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eoscale.engine.scratch import default_scratch, forget_journal
from eoscale.engine.shared import pid_alive
from eoscale.errors import ResumeRefused
from eoscale.io.journal import JournalContents, read_journal, rewrite_path
from eoscale.io.runfiles import parts_of, remove_named
from eoscale.pipeline.fingerprint import Fingerprint
from eoscale.pipeline.plan import RunPlan, StepPlan
from eoscale.pipeline.spec import PipelineSpec


def run_key(spec: PipelineSpec) -> str:
    """The identity of a pipeline's runs: its file's path and its outputs' paths, hashed."""
    paths = sorted(os.path.abspath(path) for output in spec.outputs.values()
                   for path in output.paths())
    source = os.path.abspath(spec.source) if spec.source else ""
    text = json.dumps([source, paths])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def journal_path(spec: PipelineSpec) -> Path:
    """Where runs of ``spec`` keep their journal: in its scratch folder."""
    folder = Path(spec.scratch) if spec.scratch is not None else default_scratch()
    return folder / f"eoscale_run_{run_key(spec)}.journal"


def engine_name(plan: RunPlan, step: StepPlan) -> str:
    """The name the engine runs a turn by (its tiles are recorded by it): a fused chain's
    steps joined by ``>``, else the step's."""
    return " > ".join(plan.steps[i].name for i in step.chain) if step.chain else step.name


def iteration_of(plan: RunPlan, step: StepPlan) -> int:
    """The step whose turn computes ``step``: its fused chain's last one, else itself."""
    return step.fused_into if step.fused_into is not None else step.index


def encode_result(value: Any) -> str | None:
    try:
        return base64.b64encode(pickle.dumps(value)).decode()
    except Exception:  # noqa: BLE001 - a result that does not pickle is computed again
        return None


def decode_result(text: str) -> Any:
    return pickle.loads(base64.b64decode(text))


@dataclass(frozen=True)
class KilledRun:
    """A dead run's journal, read: the turns it finished with what they left."""

    path: Path
    contents: JournalContents

    @property
    def fingerprint(self) -> Fingerprint | None:
        for record in self.contents.of_kind("run"):
            return Fingerprint.from_json(record.get("fingerprint") or {})
        return None

    @property
    def steps(self) -> list[dict[str, Any]]:
        return list(self.contents.of_kind("step"))

    @property
    def has_work(self) -> bool:
        """Whether it recorded anything finished (a step, tiles)."""
        return any(record.get("kind") in ("step", "tiles") for record in self.contents.records)

    @property
    def when(self) -> str:
        """When it last recorded something (local time): about when it stopped."""
        try:
            stamp = _dt.datetime.fromtimestamp(self.path.stat().st_mtime)
        except OSError:
            return "an unknown time"
        today = _dt.date.today()
        return stamp.strftime("%H:%M" if stamp.date() == today else "%Y-%m-%d %H:%M")

    def restored(self) -> Restored:
        """What its finished turns left that is still there: a turn whose staged files (those
        it staged, its outputs) are not all there any more is not finished (its last record
        says: a turn a resume computed again was recorded again)."""
        finished: dict[int, bool] = {}
        staged: dict[Path, Path] = {}
        spilled: dict[str, Path] = {}
        results: dict[str, Any] = {}
        fed: dict[str, Any] = {}
        for record in self.steps:
            now = {Path(k): Path(v) for k, v in (record.get("staged") or {}).items()}
            finished[int(record["index"])] = all(
                temp.exists() for path, temp in now.items() if staged.get(path) != temp)
            staged.update(now)
            spilled.update((k, Path(v)) for k, v in (record.get("spilled") or {}).items())
            results.update((k, decode_result(v)) for k, v in (record.get("results") or {}).items())
            fed.update((k, decode_result(v)) for k, v in (record.get("fed") or {}).items())
        names = {record.get("name") for record in self.steps}
        results.update((k, v) for k, v in fed.items() if k in names)  # fed reduces finished
        done = frozenset(index for index, kept in finished.items() if kept)
        return Restored(done, results,
                        {k: v for k, v in fed.items() if k not in results},
                        {k: v for k, v in staged.items() if v.exists()},
                        {k: v for k, v in spilled.items() if v.exists()})

    def units(self) -> dict[str, dict[int, Any]]:
        """The tiles it recorded, by step (as the engine names it: :func:`engine_name`)."""
        found: dict[str, dict[int, Any]] = {}
        for record in self.contents.of_kind("tiles"):
            found.setdefault(str(record["step"]), {}).update(
                (int(index), unit) for index, unit in record["tiles"].items())
        return found

    def marked_steps(self) -> set[str]:
        """The steps whose tiles it recorded as durable on the disk (before a ``synced`` mark,
        or flushed before each record: no boot said): a resume that removes their files
        first makes its own record of the step durable."""
        return {str(record["step"]) for record in self.contents.flushed("tiles")}

    def tile_files(self) -> dict[str, set[Path]]:
        """The files holding the blocks of the tiles it recorded (part files, a file written
        in place), by step."""
        found: dict[str, set[Path]] = {}
        for record in self.contents.of_kind("tiles"):
            found.setdefault(str(record["step"]), set()).update(map(Path, record["files"]))
        return found

    def tiles_done(self, plan: RunPlan) -> float:
        """The share of the plan's tiles it computed: its finished turns', and the tiles it
        recorded of the others."""
        counts = {step.index: step.tiling.tile_count for step in plan.steps
                  if step.fused_into is None and step.fed_by is None}
        done = {int(record["index"]) for record in self.steps}
        units = self.units()
        total = sum(counts.values())
        finished = sum(n if index in done else
                       min(n, len(units.get(engine_name(plan, plan.steps[index]), ())))
                       for index, n in counts.items())
        return finished / total if total else 0.0

    def summary(self, plan: RunPlan) -> str:
        done = [record.get("name") for record in self.steps]
        share = round(100 * self.tiles_done(plan))
        steps = f" (steps done: {', '.join(repr(name) for name in done)})" if done else ""
        return (f"a run of this pipeline killed after {self.when} finished {share} % of its "
                f"tiles{steps}")

    def drop_lost(self) -> None:
        """Remove the files that only its ``lost`` records name (written before a restart of
        the machine and never flushed: see :func:`~eoscale.io.journal.read_journal`), and
        their parts: their work is computed again."""
        trusted = {path for record in self.contents.records
                   for path in map(Path, record.get("files") or ())}
        for record in self.contents.lost:
            for path in map(Path, record.get("files") or ()):
                for found in (path, *parts_of(path)):
                    if found not in trusted:
                        with contextlib.suppress(FileNotFoundError):
                            found.unlink()

    def discard(self) -> None:
        """Remove the journal and the files it keeps (and their parts)."""
        for path in self.contents.files:
            remove_named(path)
        for path in (self.path, rewrite_path(self.path)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        forget_journal(self.path)


@dataclass
class Restored:
    """What a resumed run starts from: the killed run's finished turns, its reduce results
    (``fed``: those computed by a map for a later step), its staged files still there (output
    path -> staged file) and its spilled images' files still there."""

    done: frozenset[int] = frozenset()
    results: dict[str, Any] = field(default_factory=dict)
    fed: dict[str, Any] = field(default_factory=dict)
    staged: dict[Path, Path] = field(default_factory=dict)
    spilled: dict[str, Path] = field(default_factory=dict)


def find_killed_run(spec: PipelineSpec) -> KilledRun | None:
    """The journal a dead run of this pipeline and outputs left (None: none); a run of it
    still alive is refused (two runs would write the same files)."""
    path = journal_path(spec)
    if not path.exists():
        return None
    contents = read_journal(path)
    pids = contents.pids
    if pids and pids[-1] != os.getpid() and pid_alive(pids[-1]):
        raise ResumeRefused(f"another run of this pipeline is running (pid {pids[-1]}, journal "
                            f"{path}): wait for it to end, or stop it first")
    return KilledRun(path, contents)
