"""A pipeline document: its value as plain data, and where each value and key was written.

:func:`parse_document` reads YAML text by walking PyYAML's node graph (``compose``, then each
node built by hand), so that every value and every mapping key keeps its line and column, and a
:class:`Document` holds them by their path in the document (``("steps", 1, "map")``). A mapping
given instead of a file is a document without lines. Command-line values are put into the
document before it is read (:meth:`Document.put`), marked with the flag that gave them, so that
the readers check them as they check the file's values and name the flag in their messages.

YAML anchors, aliases and merge keys (``<<``) are allowed, but a document holds at most
:data:`MAX_NODES` values once aliases are expanded: an alias bomb ("billion laughs") is refused
at once, counted on the node graph without expanding it. Recursive aliases and tags other than
YAML's own are refused; mapping keys may not repeat. Every problem is collected, the walk goes on.

Why not ruamel.yaml's round-trip marks (``.lc``) instead of this walker: they could give the
lines and columns, but not the rest with the same messages and meaning. ruamel reads YAML 1.2 by
default, where ``yes``, ``no``, ``on``, ``off`` are text and ``010`` is ten: the same file would
mean something else than it does with PyYAML (YAML 1.1), and messages such as "found a boolean
(false; put it in quotes...)" for ``no`` would go. Only mappings and lists carry ``.lc`` (a
scalar's place is asked of its parent, and the keys a merge brings have none in the mapping that
merges them). A repeated key stops its loading at the first one (``DuplicateKeyError``) instead
of being one problem among all the others. Aliases become shared objects, so the alias-bomb
count before expansion would still need its node graph walked, which is this module's job. And
it would be one more dependency. The walker stays; its marks are what the messages need.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from eoscale.errors import PipelineError, Problem
from eoscale.pipeline.spec import Location, join_path

#: The most values a document may hold once its aliases are expanded.
MAX_NODES = 100_000

_STANDARD_TAG = "tag:yaml.org,2002:"
_MAP_TAG = _STANDARD_TAG + "map"
_SEQ_TAG = _STANDARD_TAG + "seq"
_MERGE_TAG = _STANDARD_TAG + "merge"

#: The place of a value in a document: its keys and list indexes from the top.
KeyPath = tuple[Any, ...]
#: A problem found while walking a document, with the place it was found at.
PlacedProblem = tuple[KeyPath, Problem]


@dataclass
class Document:
    """A pipeline's value as plain data (mappings, lists, scalars) and where its parts were
    written: ``values`` and ``keys`` hold the place of each value and of each mapping key, by
    path; a value given on the command line is placed at its flag (``--workers``), and is in
    ``flags``; a mapping a flag changed part of is placed at the flag in ``changed``."""

    value: Any
    file: str | None = None
    values: dict[KeyPath, Location] = field(default_factory=dict)
    keys: dict[KeyPath, Location] = field(default_factory=dict)
    flags: set[KeyPath] = field(default_factory=set)
    changed: dict[KeyPath, Location] = field(default_factory=dict)

    def at(self, path: KeyPath, *, key: bool = False) -> Location:
        """Where the value (or, with ``key``, the key) at ``path`` was written, else where its
        closest parent was, with the whole path."""
        found = self.keys.get(path) if key else self.changed.get(path)
        if found is not None:
            return found
        for size in range(len(path), -1, -1):
            found = self.values.get(path[:size])
            if found is not None:
                return found.child(*path[size:])
        return Location(self.file, None, None, join_path(*path))

    def from_flag(self, path: KeyPath) -> bool:
        """Whether the value at ``path`` was given on the command line."""
        return path in self.flags

    def get(self, path: KeyPath) -> Any:
        """The value at ``path``; None if there is none."""
        found = self.value
        for key in path:
            found = _child(found, key)
        return found

    def mapping_at(self, path: KeyPath) -> Mapping[Any, Any] | None:
        """The mapping at ``path``, an empty one put there if it held nothing and its parent is
        a mapping; None if it holds something else (the readers report that)."""
        found = self.get(path)
        if found is None and isinstance(self.get(path[:-1]), Mapping):
            self.value = _replaced(self.value, path, {})
            return {}
        return found if isinstance(found, Mapping) else None

    def mark(self, path: KeyPath, flag: str) -> None:
        """Place the mapping at ``path`` at ``flag``, which changed part of it: the mapping
        itself is then where the flag is, while its other values keep their own places."""
        self.changed[path] = Location(path=flag)

    def put(self, path: KeyPath, value: Any, flag: str) -> None:
        """Set the value at ``path`` (its parents exist, as mappings or lists) to one given by
        ``flag``. The containers on the way are copied, never changed: a mapping given as the
        source stays as its caller made it."""
        self.value = _replaced(self.value, path, value)
        self.values = {at: where for at, where in self.values.items() if at[:len(path)] != path}
        self.keys = {at: where for at, where in self.keys.items()
                     if at == path or at[:len(path)] != path}
        self.flags = {at for at in self.flags if at[:len(path)] != path}
        self.changed = {at: where for at, where in self.changed.items() if at[:len(path)] != path}
        self.values[path] = Location(path=flag)
        self.flags.add(path)


def _child(container: Any, key: Any) -> Any:
    """The value under ``key`` in a mapping or at index ``key`` in a list; None if there is none."""
    if isinstance(container, Mapping):
        return container.get(key)
    if isinstance(container, (list, tuple)) and isinstance(key, int) and 0 <= key < len(container):
        return container[key]
    return None


def _replaced(container: Any, path: KeyPath, value: Any) -> Any:
    """A copy of ``container`` with the value at ``path`` replaced."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy: Any = list(container) if isinstance(container, (list, tuple)) else dict(container)
    copy[head] = _replaced(copy.get(head) if isinstance(copy, dict) else copy[head], rest, value)
    return copy


def _fail(problem: str, file: str, line: int | None = None, column: int | None = None) -> NoReturn:
    raise PipelineError(Problem(problem, file, line, column))


def read_text(path: Path, display: str) -> str:
    """A pipeline file's text; a :class:`PipelineError` (named ``display``) if it cannot be
    read or is not UTF-8."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        _fail(f"pipeline file not found: {path}", display)
    except IsADirectoryError:
        _fail("this is a folder, not a pipeline file", display)
    except OSError as error:
        _fail(f"cannot read the pipeline file: {error.strerror or error}", display)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - data.rfind(b"\n", 0, error.start)
        _fail(f"not UTF-8 text: byte 0x{data[error.start]:02x} cannot be decoded; save the file "
              "as UTF-8", display, line, column)


def parse_document(text: str, file: str) -> tuple[Document | None, list[PlacedProblem]]:
    """The document YAML ``text`` holds, with its marks (None when it is empty or not YAML), and
    the problems found on the way, each with its place."""
    walker = _Walker(file)
    value = walker.parse(text)
    if value is None and walker.problems:
        return None, walker.problems
    return Document(value, file, walker.values, walker.keys), walker.problems


class _Stop(Exception):
    """Ends the walk of a document at a node that cannot be read any further."""

    def __init__(self, node: yaml.Node, message: str):
        super().__init__(message)
        self.node = node


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int | None:
    """How many values ``node`` holds once its aliases are expanded, counted without expanding
    them (each node once, however many aliases name it); None for a recursive alias, which the
    walk reports itself."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    if id(node) in open_:
        return None
    open_.add(id(node))
    total = 1
    children = (node.value if isinstance(node, yaml.SequenceNode) else
                [item for pair in node.value for item in pair]
                if isinstance(node, yaml.MappingNode) else [])
    for child in children:
        size = _expanded_size(child, sizes, open_)
        if size is None:
            return None
        total += size
    open_.discard(id(node))
    sizes[id(node)] = total
    return total


def _refuse_alias_bombs(root: yaml.Node) -> None:
    """Refuse, before walking it, a document holding more than :data:`MAX_NODES` values once its
    aliases are expanded, at the first top-level value that takes it over (an alias bomb)."""
    sizes: dict[int, int] = {}
    if (_expanded_size(root, sizes, set()) or 0) <= MAX_NODES:
        return
    culprit, total = root, 1
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            total += sizes.get(id(key), 1) + sizes.get(id(value), 1)
            if total > MAX_NODES:
                culprit = value
                break
    raise _Stop(culprit, f"more than {MAX_NODES} values once aliases are expanded (an alias "
                         "bomb?); write the values out or use fewer aliases")


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader, but for numbers in exponent form without a dot (``1e-4``, ``2e0``,
    ``1E+9``), which YAML 1.1 reads as text and YAML 1.2 (JSON Schema, editors, JSON) as
    numbers: read here as floats, as an editor checking against the schema shows them."""


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load(text: str) -> Any:
    """A YAML value read as pipelines are (:class:`Loader`)."""
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader


class _Walker:
    """Builds a document's value from its YAML nodes, keeping the marks of values and keys."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[PlacedProblem] = []
        self.values: dict[KeyPath, Location] = {}
        self.keys: dict[KeyPath, Location] = {}
        self._loader = Loader("")
        self._visited = 0
        self._seen: set[int] = set()
        self._open: list[tuple[yaml.Node, bool]] = []  # the nodes being read, and if by an alias
        self._open_ids: set[int] = set()

    def _mark(self, node: yaml.Node, path: KeyPath) -> Location:
        mark = node.start_mark
        return Location(self.file, mark.line + 1, mark.column + 1, join_path(*path))

    def _report(self, node: yaml.Node, path: KeyPath, message: str) -> None:
        self.problems.append((path, self._mark(node, path).problem(message)))

    def _report_text(self, message: str, line: int | None = None,
                     column: int | None = None) -> None:
        self.problems.append(((), Problem(message, self.file, line, column)))

    def parse(self, text: str) -> Any:
        """The document's value; None (with a problem) if it is empty or not YAML."""
        try:
            self._loader = Loader(text)
            node = self._loader.get_single_node()
            if node is None:
                self._report_text("the pipeline is empty", 1)
                return None
            _refuse_alias_bombs(node)
            return self._node(node, ())
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            detail = f"{error.context}, {error.problem}" if error.context else error.problem
            self._report_text(f"not valid YAML: {detail}", mark.line + 1 if mark else None,
                              mark.column + 1 if mark else None)
        except yaml.reader.ReaderError as error:
            line = text.count("\n", 0, error.position) + 1
            self._report_text(f"not valid YAML: character #x{error.character:04x} is not "
                              "allowed", line)
        except RecursionError:
            self._report_text("not readable: values nested too deeply")
        except _Stop as stop:
            self._report(stop.node, (), str(stop))
        finally:
            self._loader.dispose()
        return None

    def _node(self, node: yaml.Node, path: KeyPath) -> Any:
        self._visited += 1
        if self._visited > MAX_NODES:
            # Point at the value holding the outermost alias being expanded, if there is one.
            outer = next((index for index, (_, aliased) in enumerate(self._open) if aliased), 0)
            raise _Stop(self._open[max(outer - 1, 0)][0] if self._open else node,
                        f"more than {MAX_NODES} values once aliases are expanded (an alias "
                        "bomb?); write the values out or use fewer aliases")
        if id(node) in self._open_ids:
            raise _Stop(node, "an alias here refers to a value that contains it (recursive alias)")
        self._open.append((node, id(node) in self._seen))
        self._open_ids.add(id(node))
        self._seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            value = self._scalar(node, path)
        elif isinstance(node, yaml.SequenceNode) and node.tag == _SEQ_TAG:
            value = [self._node(item, (*path, index)) for index, item in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode) and node.tag == _MAP_TAG:
            value = self._mapping(node, path)
        else:
            self._report(node, path, f"unsupported tag '{node.tag}'")
            value = None
        self._open.pop()
        self._open_ids.discard(id(node))
        self.values[path] = self._mark(node, path)
        return value

    def _scalar(self, node: yaml.ScalarNode, path: KeyPath) -> Any:
        try:
            return self._loader.construct_object(node)
        except Exception:  # PyYAML's constructors raise ValueError, KeyError, AttributeError...
            tag = node.tag.removeprefix(_STANDARD_TAG)
            known = node.tag.startswith(_STANDARD_TAG)
            self._report(node, path, f"cannot read {node.value!r} as {tag}" if known
                         else f"unsupported tag '{node.tag}'")
            return node.value

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[Any, Any]:
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                sources = (value_node.value if isinstance(value_node, yaml.SequenceNode)
                           else [value_node])
                for source in sources:
                    value = (self._node(source, path) if isinstance(source, yaml.MappingNode)
                             else None)
                    if not isinstance(value, dict):
                        self._report(source, path, "a merge key ('<<') takes a mapping or a list "
                                                   "of mappings")
                        continue
                    for key, item in value.items():
                        merged.setdefault(key, item)
        explicit: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._report(key_node, path, "a key must be a plain value, not a list or mapping")
                continue
            key = self._scalar(key_node, path)
            key_path = (*path, key)
            if key in explicit:
                line = self.keys[key_path].line
                self._report(key_node, key_path, f"duplicate key '{key}' (first at line {line})")
                continue
            self.keys[key_path] = self._mark(key_node, key_path)
            explicit[key] = self._node(value_node, key_path)
        return {**merged, **explicit}
