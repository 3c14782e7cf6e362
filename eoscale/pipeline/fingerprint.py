"""What a run's finished work depends on: its fingerprint, readable so that what changed is named.

A killed run's finished work (encoded blocks, spilled images, reduce partials, finished steps) may
be reused by a later run only when nothing it depends on has changed. The fingerprint is a table
of *subjects* (``eoscale``, ``pipeline``, ``input 'dsm'``, ``step 'median'``, ``output 'dem'``,
``plan``), each with *aspects* and their values as short text (JSON for values), so that two
fingerprints compare aspect by aspect and every difference reads as a sentence:
``step 'median': params.size 3 -> 5``, ``input 'dsm': modified since the killed run``.

What it holds:
- eoscale's version;
- the pipeline as it runs, after overrides and ``--param``s: its tiling and grid, each step's
  callable, inputs, outputs, params, margin, profile, combine and finalize;
- each step's code: a hash of the source files of the modules that define its callables (the
  module the dotted path names and the one that defines the function, when they differ);
- each input's identity: for a local file, its size, modification time and a hash of its first
  :data:`HEAD_BYTES` (the header and the first blocks); for a band file or a STAC Item, the same of
  every file; for an address (``https://``, ``s3://``), the address only (nothing is fetched to
  fingerprint it: say so, :data:`REMOTE`);
- each output's path, creation options and layout;
- the plan's tilings and block grids, given by the caller (:func:`fingerprint` ``plan``), which
  decide what a recorded unit (a block, a tile's partial) is.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eoscale.io.paths import is_address, redact
from eoscale.pipeline.remote import RemoteCallable
from eoscale.pipeline.resolve import resolve_callable, source_files
from eoscale.pipeline.spec import InputSpec, OutputSpec, PipelineSpec, StacInput, StepSpec

if TYPE_CHECKING:
    from eoscale.pipeline.plan import RunPlan

#: How much of an input file's start is hashed: its header and its first blocks.
HEAD_BYTES = 1 << 16
#: The identity of an input read from an address: not fetched, so not checked.
REMOTE = "an address (not checked)"
#: The aspects of a local file that say whether it changed since it was fingerprinted.
_FILE_ASPECTS = ("size", "modified", "head")


@dataclass(frozen=True)
class Fingerprint:
    """What a run's finished work depends on, subject by subject, aspect by aspect."""

    subjects: Mapping[str, Mapping[str, str]]

    def as_json(self) -> dict[str, dict[str, str]]:
        return {subject: dict(aspects) for subject, aspects in self.subjects.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Mapping[str, str]]) -> Fingerprint:
        return cls({str(subject): {str(k): str(v) for k, v in aspects.items()}
                    for subject, aspects in data.items()})

    def changes(self, earlier: Fingerprint) -> list[str]:
        """What differs from ``earlier`` (the killed run's), one sentence each, in this
        fingerprint's order (subjects only the earlier run had last); [] when nothing did."""
        found: list[str] = []
        for subject, aspects in self.subjects.items():
            before = earlier.subjects.get(subject)
            if before is None:
                found.append(f"{subject}: not in the killed run")
            else:
                found.extend(_subject_changes(subject, before, aspects))
        found.extend(f"{subject}: no longer in the pipeline" for subject in earlier.subjects
                     if subject not in self.subjects)
        return found


def _subject_changes(subject: str, before: Mapping[str, str], now: Mapping[str, str]
                     ) -> list[str]:
    found, aspects = [], list(dict.fromkeys([*now, *before]))
    if subject.startswith("input ") and before.get("path") == now.get("path"):
        files = _file_aspects(aspects)
        if any(before.get(aspect) != now.get(aspect) for aspect in files):
            found.append(f"{subject}: modified since the killed run")
        aspects = [aspect for aspect in aspects if aspect not in files]
    for aspect in aspects:
        old, new = before.get(aspect), now.get(aspect)
        if old == new:
            continue
        if aspect == "code":
            found.append(f"{subject}: the code of its callables changed ({now.get('modules')})")
        elif aspect == "modules":
            continue  # said with the code
        elif old is None:
            found.append(f"{subject}: {aspect} {new} added")
        elif new is None:
            found.append(f"{subject}: {aspect} {old} removed")
        else:
            found.append(f"{subject}: {aspect} {old} -> {new}")
    return found


def _file_aspects(aspects: Iterable[str]) -> list[str]:
    """The aspects that say whether an input's files changed (their size, time, start)."""
    return [aspect for aspect in aspects
            if aspect.rsplit(" ", 1)[-1] in (*_FILE_ASPECTS, "address")]


def fingerprint(spec: PipelineSpec, *, version: str, plan: Mapping[str, str] | None = None,
                callables: Callable[[str], Callable[..., Any]] | None = None) -> Fingerprint:
    """The fingerprint of running ``spec`` (overrides applied) with eoscale ``version``;
    ``plan``: the plan's tilings and block grids as text, by aspect; ``callables``: resolves a
    step's dotted path (default: :func:`~eoscale.pipeline.resolve.resolve_callable` from the
    pipeline's folder) to find the code it runs."""
    if callables is None:
        def callables(dotted: str) -> Callable[..., Any]:
            return resolve_callable(dotted, spec.base_dir)

    subjects: dict[str, dict[str, str]] = {"eoscale": {"version": version}}
    subjects["pipeline"] = {
        "tiling": _text(spec.tiling), "grid": _text(spec.grid),
        "gdal": _text(dict(spec.gdal))}
    for name, spec_input in spec.inputs.items():
        subjects[f"input '{name}'"] = input_identity(spec_input)
    for step in spec.steps:
        subjects[f"step '{step.name}'"] = _step_aspects(step, callables)
    for name, output in spec.outputs.items():
        subjects[f"output '{name}'"] = _output_aspects(output)
    if plan:
        subjects["plan"] = {str(k): str(v) for k, v in plan.items()}
    return Fingerprint(subjects)


def input_identity(spec_input: InputSpec) -> dict[str, str]:
    """An input's identity: where it is read from and, for each local file it reads, whether it
    is the same file (size, modification time, a hash of its start)."""
    aspects = {"path": redact(os.fspath(spec_input.path)), "resampling": spec_input.resampling}
    files: list[tuple[str, str | os.PathLike]] = [("", spec_input.path)]
    files += [(f"band {index} ", band) for index, band in enumerate(spec_input.bands, 1)]
    if spec_input.stac is not None:
        stac = spec_input.stac
        aspects["assets"] = _text(list(stac.assets))
        aspects["scale"] = _text(stac.scale)
        for key in ("bbox", "datetime", "order"):
            if getattr(stac, key) is not None:
                aspects[key] = _text(getattr(stac, key))
        files.append(("item ", stac.item))
        files += [(f"asset {redact(os.fspath(href))} ", href) for href in _asset_files(stac)]
    for prefix, location in files:
        if not os.fspath(location):
            continue
        aspects.update({f"{prefix}{key}": value for key, value in file_identity(location).items()})
    return aspects


def _asset_files(stac: StacInput) -> list[str | os.PathLike]:
    """The files of the assets a STAC input reads: those of the Items its selection keeps
    (none when the document cannot be read: the run says why)."""
    from eoscale.io.stac import StacError, read_stac, select_items

    try:
        found = read_stac(stac.item)
        items = found.items
        if found.kind != "Item" or stac.filters:
            items = select_items(items, stac.bbox, stac.interval, stac.order or "newest")
        return [asset.href for item in items for asset in item.select(stac.assets)]
    except (StacError, OSError):
        return []


def file_identity(location: str | os.PathLike) -> dict[str, str]:
    """Size, modification time (ns) and a hash of the first :data:`HEAD_BYTES` of a local file;
    ``{"address": REMOTE}`` for an address; ``{"size": "missing"}`` for a file that is not there."""
    if is_address(location):
        return {"address": REMOTE}
    path = Path(location)
    try:
        stat = path.stat()
        with path.open("rb") as handle:
            head = hashlib.sha256(handle.read(HEAD_BYTES)).hexdigest()[:16]
    except FileNotFoundError:
        return {"size": "missing"}
    except OSError as exc:
        return {"size": f"unreadable ({exc.strerror or exc})"}
    return {"size": str(stat.st_size), "modified": str(stat.st_mtime_ns), "head": head}


def _step_aspects(step: StepSpec, callables: Callable[[str], Callable[..., Any]]
                  ) -> dict[str, str]:
    aspects = {step.kind: step.callable, "inputs": _text(list(step.inputs)),
               "outputs": _text(list(step.outputs))}
    for key in ("margin", "profile", "combine", "finalize"):
        value = getattr(step, key)
        if value is not None:
            aspects[key] = _text(value)
    for key, value in step.params.items():
        aspects[f"params.{key}"] = _text(value)
    dotted = [d for d in (step.callable, step.profile, step.combine, step.finalize)
              if isinstance(d, str) and not d.isdigit()]
    modules = code_files(callables, dotted)
    aspects["modules"] = ", ".join(sorted({path.name for path in modules})) or "-"
    aspects["code"] = _hash_files(modules)
    return aspects


def plan_callables(plan: RunPlan) -> Callable[[str], Callable[..., Any]]:
    """Resolves a dotted path of ``plan``'s steps to the callable the plan holds for it (on a
    cluster, a :class:`~eoscale.pipeline.remote.RemoteCallable`: its module is not imported
    here), any other as :func:`~eoscale.pipeline.resolve.resolve_callable` does."""
    held: dict[str, Callable[..., Any]] = {}
    for step_plan in plan.steps:
        for _, dotted, fn in step_plan.callables.named(step_plan.step):
            if dotted is not None and fn is not None:
                held.setdefault(dotted, fn)

    def callables(dotted: str) -> Callable[..., Any]:
        return held[dotted] if dotted in held else resolve_callable(dotted, plan.spec.base_dir)

    return callables


def code_files(callables: Callable[[str], Callable[..., Any]], dotted: Iterable[str]
               ) -> list[Path]:
    """The source files of the modules that define the callables ``dotted`` names (those that
    cannot be resolved or have no source file are left out: the run says why they fail)."""
    files: dict[str, Path] = {}
    for text in dotted:
        try:
            fn = callables(text)
        except Exception:  # noqa: BLE001 - a step that does not resolve fails the run itself
            continue
        # a RemoteCallable's: as the worker that planned the run found them
        sources = fn.sources if isinstance(fn, RemoteCallable) else source_files(text, fn)
        files.update((source, Path(source)) for source in sources)
    return [files[key] for key in sorted(files)]


def _hash_files(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"unreadable " + os.fsencode(path))
    return digest.hexdigest()[:16]


def _output_aspects(output: OutputSpec) -> dict[str, str]:
    return {"path": os.fspath(output.path), "options": _text(dict(output.options)),
            "layout": _text(output.layout)}


def _text(value: Any) -> str:
    """A value as short, stable text: JSON where it is JSON, its repr otherwise."""
    try:
        return json.dumps(_plain(value), sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "__dataclass_fields__"):
        return {key: _plain(getattr(value, key)) for key in value.__dataclass_fields__
                if key not in ("where", "locations")}
    raise TypeError(type(value).__name__)
