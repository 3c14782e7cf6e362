"""Typed values read out of a pipeline document, each problem kept with where it was written.

:class:`ValueReader` is what every section reader of the loader works with: it reads one value
as the type the format wants (a whole number, a name, a dotted path, a file...), and when the
value is wrong it records a problem at the value's place (file, line, column, path, or the flag
that gave it) and returns None, so that reading goes on and every problem is found at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from eoscale.errors import Problem
from eoscale.io.paths import RasterLocation, raster_location
from eoscale.pipeline.document import Document, KeyPath, PlacedProblem
from eoscale.pipeline.keys import KeyTable
from eoscale.errors import close_match, did_you_mean
from eoscale.pipeline.resolve import split_dotted
from eoscale.pipeline.spec import Location
from eoscale.sizes import parse_size

#: Characters a name may not contain: '.' splits ${step.key} and --param STEP.KEY, '=' splits
#: --input NAME=PATH, and '$', '{', '}' write references.
RESERVED = ".=${}"


def describe(value: Any, *, text: bool = False) -> str:
    """How a value found in a pipeline is named in messages (``text``: where text was expected)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        hint = "; put it in quotes to make it text" if text else ""
        return f"a boolean ({str(value).lower()}{hint})"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value!r}" if value.strip() else "blank text"
    if isinstance(value, Mapping):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, (list, tuple)):
        return "a list" if value else "an empty list"
    return f"a {type(value).__name__}"


def integer_problem(value: Any, minimum: int) -> str | None:
    """What is wrong with a value that should be a whole number >= ``minimum``, if anything."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"expected a whole number >= {minimum}, found {describe(value)}"
    if value < minimum:
        return f"must be >= {minimum}, found {value}"
    return None


def misspelt(mapping: Mapping[str, Any], allowed: tuple[str, ...]) -> set[str]:
    """The known keys that the unknown keys of ``mapping`` look like (reported as misspelt)."""
    return {close_match(key, allowed) or "" for key in mapping if key not in allowed} - {""}


def absolute(text: str, base: Path) -> Path:
    """A path as written (``~`` expanded), made absolute against ``base`` and normalised."""
    return Path(os.path.normpath(base / os.path.expanduser(text)))


def cluster_problem(text: str) -> str | None:
    """What is wrong with a cluster address, or None
    (:func:`~eoscale.engine.cluster.parse_cluster`)."""
    from eoscale.engine.cluster import parse_cluster

    try:
        parse_cluster(text)
    except ValueError as error:
        return str(error)
    return None


class ValueReader:
    """Reads the values of one document, collecting every problem with where it was written.

    Each typed reader returns the value, or None after recording what is wrong with it.
    ``step_names`` maps a step's index to its name once the step's name has been read, so that
    problems found inside a step by the YAML walk are told the step (:meth:`finished`).
    """

    def __init__(self, document: Document):
        self.document = document
        self.file = document.file
        self.problems: list[Problem] = []
        self.step_names: dict[int, str] = {}

    def at(self, path: KeyPath, *, key: bool = False) -> Location:
        """Where the value (or, with ``key``, the key) at ``path`` was written."""
        return self.document.at(path, key=key)

    def report(self, path: KeyPath, message: str, step: str | None = None, *,
               key: bool = False) -> None:
        self.problems.append(self.at(path, key=key).problem(message, step))

    def finished(self, walked: list[PlacedProblem]) -> list[Problem]:
        """The problems the YAML walk found (``walked``, those inside a step told its name), then
        those of the reading."""
        named = []
        for path, problem in walked:
            index = path[1] if len(path) > 1 and path[0] == "steps" else None
            name = self.step_names.get(index) if isinstance(index, int) else None
            named.append(problem if name is None else replace(problem, step=name))
        return named + self.problems

    def shown(self, value: Any, path: KeyPath) -> str:
        """How a value is named in a message: as typed when a flag gave it (flags are text),
        else described (:func:`describe`)."""
        return repr(value) if self.document.from_flag(path) else describe(value)

    def mapping(self, value: Any, path: KeyPath, step: str | None, what: str,
                *, empty: bool = True) -> dict[str, Any] | None:
        """A mapping with text keys (other keys are reported and left out)."""
        if not isinstance(value, Mapping) or not (value or empty):
            self.report(path, f"expected {what}, found {describe(value)}", step)
            return None
        result = {}
        for key, item in value.items():
            if isinstance(key, str):
                result[key] = item
            else:
                self.report((*path, key), f"keys must be text, found {describe(key, text=True)}",
                            step, key=True)
        return result

    def check_keys(self, mapping: Mapping[str, Any], path: KeyPath, table: KeyTable,
                   step: str | None) -> None:
        """Report unknown keys (with the closest known one) and missing required keys."""
        suggested = set()
        for key in mapping:
            if key not in table.keys:
                close = close_match(key, table.keys)
                suggested.add(close)
                hint = (f"did you mean '{close}'?" if close
                        else f"expected one of: {', '.join(table.keys)}")
                self.report((*path, key), f"unknown key '{key}' ({hint})", step, key=True)
        for key in table.required:
            if key not in mapping and key not in suggested:
                self.report(path, f"missing key '{key}'", step)

    def integer(self, value: Any, path: KeyPath, step: str | None, minimum: int) -> int | None:
        problem = integer_problem(value, minimum)
        if problem is not None:
            self.report(path, problem, step)
            return None
        return int(value)

    def boolean(self, value: Any, path: KeyPath, step: str | None) -> bool | None:
        if isinstance(value, bool):
            return value
        self.report(path, f"expected true or false, found {describe(value)}", step)
        return None

    def text(self, value: Any, path: KeyPath, step: str | None, what: str = "text", *,
             key: bool = False) -> str | None:
        if isinstance(value, str) and value.strip():
            return value
        self.report(path, f"expected {what}, found {describe(value, text=True)}", step, key=key)
        return None

    def name(self, value: Any, path: KeyPath, step: str | None, *, key: bool = False) -> str | None:
        name = self.text(value, path, step, "a name", key=key)
        reserved = [char for char in RESERVED if char in (name or "")]
        if reserved:
            self.report(path, f"name {name!r} may not contain {' '.join(reserved)} "
                              f"(reserved: {' '.join(RESERVED)})", step, key=key)
            return None
        return name

    def names(self, value: Any, path: KeyPath, step: str | None) -> tuple[str, ...] | None:
        if not isinstance(value, (list, tuple)) or not value:
            self.report(path, f"expected a non-empty list of names like [a, b], found "
                              f"{describe(value)}", step)
            return None
        names = [self.name(item, (*path, index), step) for index, item in enumerate(value)]
        return tuple(name for name in names if name is not None)

    def dotted(self, value: Any, path: KeyPath, step: str | None) -> str | None:
        what = "a dotted path like 'module.function' or 'package.module:Class.method'"
        text = self.text(value, path, step, what)
        if text is not None and split_dotted(text) is None:
            self.report(path, f"expected {what}, found {text!r}", step)
            return None
        return text

    def file_path(self, value: Any, path: KeyPath, step: str | None, base: Path) -> Path | None:
        text = self.text(value, path, step, "a file path")
        return None if text is None else absolute(text, base)

    def raster_file(self, value: Any, path: KeyPath, base: Path) -> RasterLocation | None:
        """A raster's location: a local path made absolute, or an address kept as written."""
        text = self.text(value, path, None, "a file path")
        return None if text is None else raster_location(text, base)

    def choice(self, value: Any, path: KeyPath, choices: tuple[str, ...]) -> Any:
        """``value`` if it is one of ``choices``, else the first one, reported."""
        if value in choices:
            return value
        hint = ""
        if isinstance(value, str):
            same = [choice for choice in choices if choice.lower() == value.lower()]
            hint = f" (did you mean '{same[0]}'?)" if same else did_you_mean(value, choices)
        self.report(path, f"expected one of {', '.join(choices)}, found {describe(value)}{hint}")
        return choices[0]

    def size(self, value: Any, path: KeyPath) -> int | None:
        """A size in bytes: a number, or text like ``4GiB`` or ``512 MB``."""
        try:
            return parse_size(value)
        except ValueError as error:
            self.report(path, str(error))
            return None

    def cluster(self, value: Any, path: KeyPath) -> str | None:
        """A Dask cluster's address (``local``, ``local:4``, ``tcp://host:8786``)."""
        text = self.text(value, path, None, "a cluster address")
        if text is None:
            return None
        problem = cluster_problem(text)
        if problem is not None:
            self.report(path, problem)
            return None
        return text.strip()
