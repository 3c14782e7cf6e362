"""Command-line values (:class:`~eoscale.pipeline.spec.Overrides`) put into a pipeline document
before it is read.

Each value takes the place of the file's at its key, marked with its flag (``--workers``,
``--param ndvi.red``), so the loader's readers check it exactly as they check the file's values
and their messages name the flag. Only what no reader can know is checked here: that
``--input``, ``--param`` name an input or a step the document has. Paths given on the command
line are relative to the current folder, so they go into the document made absolute (the
document's own paths are relative to its folder). A replaced output keeps the rest of its
mapping (creation options, format, quicklook); a replaced input keeps its resampling.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eoscale.errors import Problem, did_you_mean
from eoscale.io.paths import is_address, raster_location
from eoscale.pipeline.document import Document
from eoscale.pipeline.spec import Overrides
from eoscale.pipeline.values import absolute


def apply_overrides(document: Document, overrides: Overrides, cwd: Path) -> list[Problem]:
    """Put ``overrides`` into ``document``; the problems of names the document does not have."""
    problems: list[Problem] = []
    settings: dict[tuple[str, ...], tuple[str, Any]] = {
        ("workers",): ("--workers", overrides.workers),
        ("memory",): ("--memory", overrides.memory),
        ("scratch",): ("--scratch", None if overrides.scratch is None
                       else str(absolute(overrides.scratch, cwd))),
        ("cluster",): ("--cluster", overrides.cluster),
        ("tiling", "tile_size"): ("--tile-size", overrides.tile_size),
        ("tiling", "mode"): ("--tiling", overrides.tiling_mode),
    }
    for path, (flag, value) in settings.items():
        if value is not None and document.mapping_at(path[:-1]) is not None:
            document.put(path, value, flag)
    _put_inputs(document, overrides.inputs, cwd, problems)
    _put_outputs(document, overrides.outputs, cwd)
    _put_params(document, overrides.params, problems)
    return problems


def _put_inputs(document: Document, given: Mapping[str, str], cwd: Path,
                problems: list[Problem]) -> None:
    """Each input's file replaced (its band files, or its STAC Item and assets, dropped), its
    resampling kept."""
    inputs = document.get(("inputs",))
    if not isinstance(inputs, Mapping):
        return
    for name, text in given.items():
        flag = f"--input {name}"
        if name not in inputs:
            problems.append(Problem(f"unknown input '{name}'{did_you_mean(name, inputs)}",
                                    path=flag))
            continue
        location = str(raster_location(text, cwd))
        if isinstance(inputs[name], Mapping):
            document.put(("inputs", name, "path"), location, flag)
            for key in ("bands", "stac", "assets", "scale", "bbox", "datetime", "order"):
                if inputs[name].get(key) is not None:
                    document.put(("inputs", name, key), None, flag)
            document.mark(("inputs", name), flag)
        else:
            document.put(("inputs", name), location, flag)


def _put_outputs(document: Document, given: Mapping[str, str], cwd: Path) -> None:
    """Each output's file replaced (the rest of its mapping kept), or a new output added."""
    outputs = document.mapping_at(("outputs",)) if given else None
    if outputs is None:
        return
    for name, text in given.items():
        flag = f"--output {name}"
        file = text if is_address(text) else str(absolute(text, cwd))
        if isinstance(outputs.get(name), Mapping):
            document.put(("outputs", name, "path"), file, flag)
            document.mark(("outputs", name), flag)
        else:
            document.put(("outputs", name), file, flag)


def _put_params(document: Document, given: Mapping[tuple[str, str], Any],
                problems: list[Problem]) -> None:
    """Each step's param set, the step named by its name (the first step of that name)."""
    steps = document.get(("steps",))
    if not isinstance(steps, (list, tuple)):
        return
    names = [step.get("name") if isinstance(step, Mapping) else None for step in steps]
    indexes = {name: index for index, name in reversed(list(enumerate(names)))
               if isinstance(name, str)}
    for (step, key), value in given.items():
        flag = f"--param {step}.{key}"
        if step not in indexes:
            known = [name for name in names if isinstance(name, str)]
            problems.append(Problem(f"unknown step '{step}'{did_you_mean(step, known)}",
                                    path=flag))
        elif document.mapping_at(("steps", indexes[step], "params")) is not None:
            document.put(("steps", indexes[step], "params", key), value, flag)
