"""Load a pipeline, a YAML file or a mapping, into a checked, frozen :class:`PipelineSpec`.

The format, version 1::

    version: 1                   # required, must be 1
    name: ndvi-smooth            # optional
    workers: 4                   # optional, >= 1; default: all CPUs
    memory: 4GiB                 # optional budget (B, KB, MB, GB, KiB, MiB, GiB); default: the
                                 # memory available less 10 % (at least 512 MiB kept free)
    scratch: /tmp                # optional folder for spilled images; default: the temp folder
    cluster: local:4             # optional Dask cluster (the 'dask' extra): local, local:N or a
                                 # scheduler address, tcp://host:8786
    tiling:                      # optional
      mode: tiles                # tiles (squares) or strips (full width)
      tile_size: 1024            # >= 1; default automatic
    grid: {like: scene}          # optional working grid, every input read on it: an input's
                                 # grid, or {like: NAME, resolution: 20}, or
                                 # {crs: EPSG:32631, resolution: 10, bounds: [l, b, r, t]}
    inputs:                      # required, not empty: name -> raster file, or long forms:
      scene: data/scene.tif
      dsm: {path: data/dsm.tif, resampling: bilinear}    # warped onto the grid if not on it
      s2: {bands: [B04.jp2, B08.jp2, B11.jp2]}           # one file per band, stacked
    steps:                       # required, not empty; run in order
      - name: ndvi               # required
        description: NDVI        # optional text
        map: my_ops.ndvi         # map or reduce, not both: "pkg.mod.func" or "pkg.mod:Class.method"
        inputs: [scene]          # required: pipeline inputs or images of earlier steps
        params: {red: 3, nir: 4} # optional; "${stats}", "${stats.key}": an earlier reduce's result
        margin: 0                # optional, >= 0; default the callable's declared margin, else 0
        writable_inputs: false   # optional: true gives each tile private arrays it may write into
        profile: my_ops.prof     # map only: fn(profiles, params) -> profile | list of profiles
        outputs: [ndvi]          # map only; default [step name]
      - name: stats
        reduce: my_ops.tile_stats
        combine: my_ops.merge    # reduce only; needed unless the callable has a `combine` attribute
        finalize: my_ops.final   # reduce only, optional
        inputs: [ndvi]
    outputs:                     # optional, may be empty: result name -> file or a mapping
      ndvi: out/ndvi.tif         # an image, to .tif/.tiff
      stats: out/stats.json      # a reduce result (named by its step), to .json
      slope:                     # the long form of an image output:
        path: out/slope.tif      # required
        options: {compress: zstd}  # GDAL creation options of the format's driver
        format: COG              # GTiff (default) or COG
        overviews: [2, 4, 8]     # overview factors (>= 2); a COG has automatic ones without
        resampling: average      # of overviews; default average for floats, else nearest
        quicklook: true          # a PNG beside the output; or its path, or a mapping:
                                 # {path, colormap: viridis | magma | gray, bands: [3, 2, 1], size}
    gdal:                        # optional GDAL configuration options, main process and workers
      GDAL_DISABLE_READDIR_ON_OPEN: EMPTY_DIR

Unknown keys are refused, with the closest known key suggested. Names of inputs, steps and step
outputs are unique, not blank, and contain none of ``. = $ { }`` (unicode and spaces are fine).
Relative paths resolve against the pipeline file's folder (for a mapping: ``base_dir``, default
the current folder) and ``~`` is expanded; an input written as an address (``https://...``,
``s3://...``, ``/vsizip/...``) is kept exactly as written. Credentials go in the environment,
never in ``gdal:`` (keys that hold them are refused). A key written null counts as absent. Every problem is
collected and raised together, as one :class:`PipelineError` whose problems each carry file,
line, column, path (``steps -> 1 -> map``) and step.

YAML anchors, aliases and merge keys (``<<``) are allowed, but a document holds at most
:data:`MAX_NODES` values once aliases are expanded: an alias bomb ("billion laughs") is refused
at once, without being expanded. Recursive aliases and tags other than YAML's own are refused;
mapping keys in the document may not repeat.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn, cast

import yaml
from rasterio.crs import CRS
from rasterio.errors import CRSError

from eoscale.engine.tiling import MODES, Tiling, TilingMode
from eoscale.errors import PipelineError, Problem
from eoscale.io.layout import FORMATS, RESAMPLINGS, ImageLayout
from eoscale.io.paths import RasterLocation, is_address, raster_location
from eoscale.io.quicklook import COLORMAPS, QUICKLOOK_SIZE, QuicklookStyle
from eoscale.io.sources import RESAMPLINGS as WARP_RESAMPLINGS
from eoscale.pipeline.resolve import close_match, did_you_mean, split_dotted
from eoscale.pipeline.spec import (
    KINDS, FrozenMap, GridSpec, InputSpec, Location, OutputSpec, Overrides, PipelineSpec,
    QuicklookSpec, StepKind, StepSpec, freeze, join_path,
)
from eoscale.pipeline.validate import check_graph
from eoscale.sizes import parse_size

#: The most values a document may hold once its aliases are expanded.
MAX_NODES = 100_000

TOP_KEYS = ("version", "name", "workers", "memory", "scratch", "cluster", "grid", "tiling",
            "inputs", "steps", "outputs", "gdal")
GRID_KEYS = ("like", "crs", "resolution", "bounds")
INPUT_KEYS = ("path", "bands", "resampling")
TILING_KEYS = ("mode", "tile_size")
STEP_KEYS = ("name", "description", "map", "reduce", "inputs", "params", "margin",
             "writable_inputs", "profile", "outputs", "combine", "finalize")
OUTPUT_KEYS = ("path", "options", "format", "overviews", "resampling", "quicklook")
QUICKLOOK_KEYS = ("path", "colormap", "bands", "size")
#: Every mapping whose keys the loader checks, by its place in the document ("*": any name or
#: index), with its known keys: the JSON Schema (schema.json) must allow exactly these.
KEY_TABLES: dict[tuple[str, ...], tuple[str, ...]] = {
    (): TOP_KEYS,
    ("grid",): GRID_KEYS,
    ("inputs", "*"): INPUT_KEYS,
    ("tiling",): TILING_KEYS,
    ("steps", "*"): STEP_KEYS,
    ("outputs", "*"): OUTPUT_KEYS,
    ("outputs", "*", "quicklook"): QUICKLOOK_KEYS,
}
#: The output keys that only an image output can have.
IMAGE_ONLY = ("format", "overviews", "resampling", "quicklook")
#: Words in a GDAL option's name that say it holds a credential: those come from the environment.
SECRET_WORDS = ("SECRET", "PASSWORD", "USERPWD", "TOKEN", "ACCESS_KEY", "CONNECTION_STRING",
                "SAS", "HEADERS", "HEADER_FILE")
#: The step keys that belong to one kind of step only.
ONLY_FOR: dict[str, StepKind] = {"profile": "map", "outputs": "map",
                                 "combine": "reduce", "finalize": "reduce"}
#: Characters a name may not contain: '.' splits ${step.key} and --param STEP.KEY, '=' splits
#: --input NAME=PATH, and '$', '{', '}' write references.
RESERVED = ".=${}"

_STANDARD_TAG = "tag:yaml.org,2002:"
_MAP_TAG = _STANDARD_TAG + "map"
_SEQ_TAG = _STANDARD_TAG + "seq"
_MERGE_TAG = _STANDARD_TAG + "merge"

KeyPath = tuple[Any, ...]
Mark = tuple[int, int]


class _Stop(Exception):
    """Ends the walk of a document at a node that cannot be read any further."""

    def __init__(self, node: yaml.Node, message: str):
        super().__init__(message)
        self.node = node


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


def gdal_value(value: Any) -> str | None:
    """A GDAL configuration value as GDAL reads it (booleans as YES/NO), None if not a scalar."""
    if isinstance(value, bool):
        return "YES" if value else "NO"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None
def misspelt(mapping: Mapping[str, Any], allowed: tuple[str, ...]) -> set[str]:
    """The known keys that the unknown keys of ``mapping`` look like (reported as misspelt)."""
    return {close_match(key, allowed) or "" for key in mapping if key not in allowed} - {""}


def absolute(text: str, base: Path) -> Path:
    """A path as written (``~`` expanded), made absolute against ``base`` and normalised."""
    return Path(os.path.normpath(base / os.path.expanduser(text)))


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


class _Reader:
    """Reads a document into spec values, collecting every problem with where it was written."""

    def __init__(self, file: str | None):
        self.file = file
        self.problems: list[Problem] = []
        self.step_names: dict[int, str] = {}
        self.output_keys: dict[str, tuple[str, ...]] = {}
        self._in_step: dict[int, int] = {}  # problem found by the YAML walk -> index of its step
        self.value_marks: dict[KeyPath, Mark] = {}
        self.key_marks: dict[KeyPath, Mark] = {}
        self._loader = yaml.SafeLoader("")
        self._visited = 0
        self._seen: set[int] = set()
        self._open: list[tuple[yaml.Node, bool]] = []  # the nodes being read, and if by an alias
        self._open_ids: set[int] = set()

    def at(self, path: KeyPath, *, key: bool = False) -> Location:
        """Where the value (or, with ``key``, the key) at ``path`` is written, else its parent."""
        mark = self.key_marks.get(path) if key else None
        for size in range(len(path), -1, -1):
            if mark is not None:
                break
            mark = self.value_marks.get(path[:size])
        line, column = mark or (None, None)
        return Location(self.file, line, column, join_path(*path))

    def report(self, path: KeyPath, message: str, step: str | None = None, *,
               key: bool = False) -> None:
        self.problems.append(self.at(path, key=key).problem(message, step))

    def _report_node(self, node: yaml.Node, path: KeyPath, message: str) -> None:
        if len(path) > 1 and path[0] == "steps" and isinstance(path[1], int):
            self._in_step[len(self.problems)] = path[1]
        mark = node.start_mark
        self.problems.append(Problem(message, self.file, mark.line + 1, mark.column + 1,
                                     join_path(*path)))

    def finished(self) -> list[Problem]:
        """The problems, those the YAML walk found inside a step given the step's name."""
        return [replace(problem, step=self.step_names[self._in_step[number]])
                if self._in_step.get(number) in self.step_names else problem
                for number, problem in enumerate(self.problems)]

    # -- YAML text to values, with marks ------------------------------------------------------

    def parse(self, text: str) -> Any:
        """The document's value; None (with a problem) if it is empty or not YAML."""
        try:
            self._loader = yaml.SafeLoader(text)
            node = self._loader.get_single_node()
            if node is None:
                self.problems.append(Problem("the pipeline is empty", self.file, 1))
                return None
            _refuse_alias_bombs(node)
            return self._node(node, ())
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            detail = f"{error.context}, {error.problem}" if error.context else error.problem
            self.problems.append(Problem(f"not valid YAML: {detail}", self.file,
                                         mark.line + 1 if mark else None,
                                         mark.column + 1 if mark else None))
        except yaml.reader.ReaderError as error:
            line = text.count("\n", 0, error.position) + 1
            self.problems.append(Problem(f"not valid YAML: character #x{error.character:04x} "
                                         "is not allowed", self.file, line))
        except RecursionError:
            self.problems.append(Problem("not readable: values nested too deeply", self.file))
        except _Stop as stop:
            self._report_node(stop.node, (), str(stop))
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
            self._report_node(node, path, f"unsupported tag '{node.tag}'")
            value = None
        self._open.pop()
        self._open_ids.discard(id(node))
        self.value_marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        return value

    def _scalar(self, node: yaml.ScalarNode, path: KeyPath) -> Any:
        try:
            return self._loader.construct_object(node)
        except Exception:  # PyYAML's constructors raise ValueError, KeyError, AttributeError...
            tag = node.tag.removeprefix(_STANDARD_TAG)
            known = node.tag.startswith(_STANDARD_TAG)
            self._report_node(node, path, f"cannot read {node.value!r} as {tag}" if known
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
                        self._report_node(source, path, "a merge key ('<<') takes a mapping "
                                                        "or a list of mappings")
                        continue
                    for key, item in value.items():
                        merged.setdefault(key, item)
        explicit: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._report_node(key_node, path, "a key must be a plain value, "
                                                  "not a list or mapping")
                continue
            key = self._scalar(key_node, path)
            key_path = (*path, key)
            if key in explicit:
                line = self.key_marks[key_path][0]
                self._report_node(key_node, key_path,
                                  f"duplicate key '{key}' (first at line {line})")
                continue
            mark = key_node.start_mark
            self.key_marks[key_path] = (mark.line + 1, mark.column + 1)
            explicit[key] = self._node(value_node, key_path)
        return {**merged, **explicit}

    # -- typed readers: each reports what is wrong and returns None --------------------------

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

    def check_keys(self, mapping: Mapping[str, Any], path: KeyPath, allowed: tuple[str, ...],
                   required: tuple[str, ...], step: str | None) -> None:
        """Report unknown keys (with the closest known one) and missing required keys."""
        suggested = set()
        for key in mapping:
            if key not in allowed:
                close = close_match(key, allowed)
                suggested.add(close)
                hint = (f"did you mean '{close}'?" if close
                        else f"expected one of: {', '.join(allowed)}")
                self.report((*path, key), f"unknown key '{key}' ({hint})", step, key=True)
        for key in required:
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

    # -- the document ------------------------------------------------------------------------

    def read(self, document: Any, base: Path, source: Path | None) -> PipelineSpec | None:
        """The spec, best effort; None when inputs or steps are unusable. Problems are collected."""
        root = self.mapping(document, (), None,
                            "a mapping with keys version, inputs, steps, outputs")
        if root is None:
            return None
        self.check_keys(root, (), TOP_KEYS, ("version", "inputs", "steps"), None)
        version = root.get("version")
        if "version" in root and (type(version) is not int or version != 1):
            self.report(("version",), f"unsupported version: expected 1, found {describe(version)}")
        name = None if root.get("name") is None else self.text(root["name"], ("name",), None)
        workers = None if root.get("workers") is None else self.integer(
            root["workers"], ("workers",), None, 1)
        memory = None if root.get("memory") is None else self.size(root["memory"], ("memory",))
        scratch = None if root.get("scratch") is None else self.file_path(
            root["scratch"], ("scratch",), None, base)
        cluster = None if root.get("cluster") is None else self.cluster(root["cluster"],
                                                                        ("cluster",))
        tiling = self.tiling(root.get("tiling"))
        inputs = self.inputs(root["inputs"], base) if "inputs" in root else None
        steps = self.steps(root["steps"]) if "steps" in root else None
        outputs = self.outputs(root.get("outputs"), base)
        gdal = self.gdal(root.get("gdal"))
        grid = None if root.get("grid") is None else self.grid(root["grid"], inputs)
        if inputs is None or steps is None:
            return None
        self.image_only(outputs, steps)
        return PipelineSpec(1, name, workers, tiling, FrozenMap(inputs), steps, FrozenMap(outputs),
                            source, base, memory, scratch, FrozenMap(gdal), grid, cluster)

    def cluster(self, value: Any, path: KeyPath) -> str | None:
        text = self.text(value, path, None, "a cluster address")
        if text is None:
            return None
        problem = cluster_problem(text)
        if problem is not None:
            self.report(path, problem)
            return None
        return text.strip()

    def size(self, value: Any, path: KeyPath) -> int | None:
        try:
            return parse_size(value)
        except ValueError as error:
            self.report(path, str(error))
            return None

    def gdal(self, value: Any) -> dict[str, str]:
        if value is None:
            return {}
        path: KeyPath = ("gdal",)
        raw = self.mapping(value, path, None, "a mapping of GDAL configuration options") or {}
        options = {}
        for key, item in raw.items():
            secret = next((word for word in SECRET_WORDS if word in key.upper()), None)
            text = gdal_value(item)
            if secret is not None:
                self.report((*path, key), f"'{key}' holds a credential: set it in the environment, "
                                          "never in a pipeline", key=True)
            elif text is None:
                self.report((*path, key), f"expected text, a number or a boolean, found "
                                          f"{describe(item)}")
            else:
                options[key] = text
        return options

    def image_only(self, outputs: Mapping[str, OutputSpec], steps: tuple[StepSpec, ...]) -> None:
        """Report image-only keys on the output of a reduce step's result."""
        reduced = {step.name for step in steps if step.kind == "reduce"}
        for name in outputs:
            keys = self.output_keys.get(name, ())
            for key in (key for key in IMAGE_ONLY if key in keys and name in reduced):
                self.report(("outputs", name, key), f"'{name}' is a reduce result, written as "
                                                    f"JSON: '{key}' is for images only", key=True)

    def grid(self, value: Any, inputs: Mapping[str, InputSpec] | None) -> GridSpec | None:
        """The working grid: ``{like: NAME}``, ``{like: NAME, resolution: ...}`` or
        ``{crs: ..., resolution: ..., bounds: [...]}``."""
        path: KeyPath = ("grid",)
        raw = self.mapping(value, path, None, "a mapping like {like: NAME} or {crs: ..., "
                                              "resolution: ..., bounds: [left, bottom, right, top]}")
        if raw is None:
            return None
        self.check_keys(raw, path, GRID_KEYS, (), None)
        written = set(raw) | misspelt(raw, GRID_KEYS)  # a misspelt key is not also missing
        like = None if raw.get("like") is None else self.name(raw["like"], (*path, "like"), None)
        if like is not None and inputs is not None and like not in inputs:
            self.report((*path, "like"), f"unknown input '{like}'{did_you_mean(like, inputs)}")
        crs = None if raw.get("crs") is None else self.crs(raw["crs"], (*path, "crs"))
        resolution = (None if raw.get("resolution") is None
                      else self.resolution(raw["resolution"], (*path, "resolution")))
        bounds = (None if raw.get("bounds") is None
                  else self.bounds(raw["bounds"], (*path, "bounds")))
        if "like" in written:
            extra = [f"'{key}'" for key in ("crs", "bounds") if key in raw]
            if extra:
                self.report(path, f"'like' takes the CRS and bounds of its input: remove "
                                  f"{' and '.join(extra)} (or 'like')")
        elif not any(key in written for key in GRID_KEYS):
            self.report(path, "missing key 'like' (or 'crs', 'resolution' and 'bounds')")
        else:
            for key in ("crs", "resolution", "bounds"):
                if key not in written:
                    self.report(path, f"missing key '{key}' (a grid without 'like' needs crs, "
                                      "resolution and bounds)")
        return GridSpec(like, crs, resolution, bounds, self.at(path))

    def crs(self, value: Any, path: KeyPath) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool):
            value = f"EPSG:{value}"
        text = self.text(value, path, None, "a CRS like 'EPSG:32631' (or WKT, or PROJ text)")
        if text is None:
            return None
        try:
            CRS.from_user_input(text)
        except CRSError as error:
            self.report(path, f"not a CRS: {text!r} ({error})")
            return None
        return text

    def resolution(self, value: Any, path: KeyPath) -> tuple[float, float] | None:
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(values) not in (1, 2) or len(numbers) != len(values):
            self.report(path, f"expected a pixel size: a number, or [x, y], found "
                              f"{describe(value)}")
            return None
        if any(not number > 0 or number == float("inf") for number in numbers):
            self.report(path, f"a pixel size must be positive, found {value!r}")
            return None
        return float(numbers[0]), float(numbers[-1])

    def bounds(self, value: Any, path: KeyPath) -> tuple[float, float, float, float] | None:
        numbers = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)
                   and math.isfinite(v)] if isinstance(value, (list, tuple)) else []
        if not isinstance(value, (list, tuple)) or len(value) != 4 or len(numbers) != 4:
            self.report(path, f"expected 4 numbers [left, bottom, right, top], found "
                              f"{describe(value)}")
            return None
        left, bottom, right, top = (float(v) for v in numbers)
        if not (left < right and bottom < top):
            self.report(path, f"bounds [left, bottom, right, top] are empty: expected left < "
                              f"right and bottom < top, found {list(value)!r}")
            return None
        return left, bottom, right, top

    def tiling(self, value: Any) -> Tiling:
        if value is None:
            return Tiling()
        path: KeyPath = ("tiling",)
        raw = self.mapping(value, path, None, "a mapping with keys mode, tile_size")
        if raw is None:
            return Tiling()
        self.check_keys(raw, path, TILING_KEYS, (), None)
        mode = raw.get("mode", "tiles")
        if mode not in MODES:
            hint = did_you_mean(mode, MODES) if isinstance(mode, str) else ""
            self.report((*path, "mode"), f"expected one of {', '.join(MODES)}, found "
                                         f"{describe(mode)}{hint}")
            mode = "tiles"
        size = raw.get("tile_size")
        if size is not None:
            size = self.integer(size, (*path, "tile_size"), None, 1)
        return Tiling(mode, size)

    def inputs(self, value: Any, base: Path) -> dict[str, InputSpec] | None:
        raw = self.mapping(value, ("inputs",), None, "a mapping of input names to raster files",
                           empty=False)
        if raw is None:
            return None
        inputs = {}
        for name, item in raw.items():
            path = ("inputs", name)
            if isinstance(item, Mapping):
                files, resampling = self.input_entry(item, path, base)
            else:
                files, resampling = (self.raster_file(item, path, base),), "nearest"
            if self.name(name, path, None, key=True) is not None:  # kept, so steps can name it
                first = files[0] if files and files[0] is not None else base
                bands = tuple(file or base for file in files) if len(files) > 1 else ()
                inputs[name] = InputSpec(name, first, self.at(path), bands, resampling)
        return inputs

    def input_entry(self, value: Mapping[str, Any], path: KeyPath,
                    base: Path) -> tuple[tuple[RasterLocation | None, ...], str]:
        """An input's long form: ``{path: ...}`` or ``{bands: [...]}``, and ``resampling``."""
        entry = self.mapping(value, path, None, "a mapping") or {}
        self.check_keys(entry, path, INPUT_KEYS, (), None)
        resampling = entry.get("resampling")
        if resampling is None:
            resampling = "nearest"
        elif resampling not in WARP_RESAMPLINGS:
            text = isinstance(resampling, str)
            shown = repr(resampling) if text else describe(resampling)
            hint = did_you_mean(resampling, WARP_RESAMPLINGS) if text else ""
            self.report((*path, "resampling"), f"unknown resampling {shown}{hint}; expected one "
                                               f"of {', '.join(WARP_RESAMPLINGS)}")
            resampling = "nearest"
        given = [key for key in ("path", "bands") if entry.get(key) is not None]
        if len(given) > 1 or not (given or misspelt(entry, INPUT_KEYS) & {"path", "bands"}):
            found = " and ".join(f"'{key}'" for key in given) or "neither"
            self.report(path, f"an input has exactly one of 'path' (a file) or 'bands' (a list "
                              f"of files), found {found}")
        if "path" in given:
            return (self.raster_file(entry["path"], (*path, "path"), base),), resampling
        if "bands" in given:
            bands = entry["bands"]
            if not isinstance(bands, (list, tuple)) or not bands:
                self.report((*path, "bands"), f"expected a non-empty list of files, one per "
                                              f"band, found {describe(bands)}")
                return (), resampling
            return tuple(self.raster_file(item, (*path, "bands", index), base)
                         for index, item in enumerate(bands)), resampling
        return (), resampling

    def raster_file(self, value: Any, path: KeyPath, base: Path) -> RasterLocation | None:
        """A raster's location: a local path made absolute, or an address kept as written."""
        text = self.text(value, path, None, "a file path")
        return None if text is None else raster_location(text, base)

    def steps(self, value: Any) -> tuple[StepSpec, ...] | None:
        if not isinstance(value, (list, tuple)) or not value:
            self.report(("steps",), f"expected a non-empty list of steps, found {describe(value)}")
            return None
        marks: dict[Any, dict[str, Location]] = {}
        for path, (line, column) in self.value_marks.items():
            if len(path) > 2 and path[0] == "steps":
                inside = " -> ".join(map(str, path[2:]))
                marks.setdefault(path[1], {})[inside] = Location(
                    self.file, line, column, f"steps -> {path[1]} -> {inside}")
        read = (self.step(index, item, marks.get(index, {})) for index, item in enumerate(value))
        return tuple(step for step in read if step is not None)

    def step(self, index: int, value: Any, locations: dict[str, Location]) -> StepSpec | None:
        path: KeyPath = ("steps", index)
        raw = self.mapping(value, path, None, "a step: a mapping with name, map or reduce, inputs")
        if raw is None:
            return None
        name = self.name(raw["name"], (*path, "name"), None) if "name" in raw else None
        if name is not None:
            self.step_names[index] = name
        self.check_keys(raw, path, STEP_KEYS, ("name", "inputs"), name)
        kinds = [kind for kind in KINDS if kind in raw]
        if len(kinds) != 1:
            found = " and ".join(f"'{kind}'" for kind in kinds) or "neither"
            self.report(path, f"a step has exactly one of 'map' or 'reduce', found {found}", name)
        kind: StepKind = kinds[0] if kinds else "map"
        for key, only in ONLY_FOR.items():
            if key in raw and only != kind and len(kinds) == 1:
                self.report((*path, key), f"'{key}' is for {only} steps only", name, key=True)

        def optional(key: str, read: Callable[..., Any], *args: Any) -> Any:
            return None if raw.get(key) is None else read(raw[key], (*path, key), name, *args)

        target = self.dotted(raw[kind], (*path, kind), name) if kinds else None
        inputs = self.names(raw["inputs"], (*path, "inputs"), name) if "inputs" in raw else None
        params = optional("params", self.mapping, "a mapping of parameter names to values")
        margin = optional("margin", self.integer, 0)
        writable_inputs = optional("writable_inputs", self.boolean)
        profile = optional("profile", self.dotted)
        outputs = optional("outputs", self.names)
        combine = optional("combine", self.dotted)
        finalize = optional("finalize", self.dotted)
        description = optional("description", self.text)
        if name is None:
            return None
        is_map = kind == "map"
        return StepSpec(
            name, kind, target or "", inputs or (), freeze(params or {}), margin,
            profile if is_map else None, (outputs or (name,)) if is_map else (),
            None if is_map else combine, None if is_map else finalize, description,
            writable_inputs, self.at(path), FrozenMap(locations))

    def outputs(self, value: Any, base: Path) -> dict[str, OutputSpec]:
        if value is None:
            return {}
        raw = self.mapping(value, ("outputs",), None, "a mapping of result names to files")
        outputs = {}
        for name, item in (raw or {}).items():
            path = ("outputs", name)
            output = self.output(name, item, path, base)
            if self.name(name, path, None, key=True) is not None and output is not None:
                outputs[name] = output
        self.quicklook_clashes(outputs)
        return outputs

    def output(self, name: str, value: Any, path: KeyPath, base: Path) -> OutputSpec | None:
        """An output, written ``file`` or as a mapping with ``path`` and the keys of images."""
        if not isinstance(value, Mapping):
            file = self.output_path(value, path, base)
            return None if file is None else OutputSpec(name, file, where=self.at(path))
        entry = self.mapping(value, path, None, "a mapping") or {}
        self.output_keys[name] = tuple(entry)
        self.check_keys(entry, path, OUTPUT_KEYS, ("path",), None)
        file = None
        if "path" in entry:
            file = self.output_path(entry["path"], (*path, "path"), base)
        options: dict[str, Any] = {}
        if entry.get("options") is not None:
            options = self.mapping(entry["options"], (*path, "options"), None,
                                   "a mapping of GDAL creation options") or {}
        for key, item in options.items():
            if not isinstance(item, (str, int, float)):
                self.report((*path, "options", key), f"expected text or a number, found "
                                                     f"{describe(item)}")
        layout = ImageLayout(
            self.choice(entry.get("format", "GTiff"), (*path, "format"), FORMATS),
            self.overviews(entry.get("overviews"), (*path, "overviews")),
            None if entry.get("resampling") is None else self.choice(
                entry["resampling"], (*path, "resampling"), RESAMPLINGS))
        quicklook = self.quicklook(entry.get("quicklook"), (*path, "quicklook"), base)
        if file is None:
            return None
        return OutputSpec(name, file, FrozenMap(options), self.at(path), layout, quicklook)

    def output_path(self, value: Any, path: KeyPath, base: Path) -> Path | None:
        text = self.text(value, path, None, "a file path")
        if text is not None and is_address(text):
            self.report(path, f"outputs are written to local files, found the address {text!r}")
            return None
        return None if text is None else absolute(text, base)

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

    def overviews(self, value: Any, path: KeyPath) -> tuple[int, ...]:
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)) or not value:
            self.report(path, f"expected a list of overview factors like [2, 4, 8], found "
                              f"{describe(value)}")
            return ()
        factors = [self.integer(item, (*path, index), None, 2) for index, item in enumerate(value)]
        kept = tuple(factor for factor in factors if factor is not None)
        if len(set(kept)) != len(kept):
            self.report(path, f"overview factors repeat: {list(kept)}")
        return tuple(sorted(set(kept)))

    def quicklook(self, value: Any, path: KeyPath, base: Path) -> QuicklookSpec | None:
        """``true``, a PNG path, or a mapping with path, colormap, bands and size."""
        if value is None or value is False:
            return None
        if value is True:
            return QuicklookSpec()
        entry = {"path": value} if not isinstance(value, Mapping) else (
            self.mapping(value, path, None, "a mapping") or {})
        if isinstance(value, Mapping):
            self.check_keys(entry, path, QUICKLOOK_KEYS, (), None)
        file = None
        if entry.get("path") is not None:
            at = (*path, "path") if isinstance(value, Mapping) else path
            file = self.output_path(entry["path"], at, base)
            if file is not None and file.suffix.lower() != ".png":
                self.report(at, f"a quicklook is a PNG: expected a .png path, found '{file.name}'")
        colormap = self.choice(entry.get("colormap", "viridis"), (*path, "colormap"), COLORMAPS)
        bands = None
        if entry.get("bands") is not None:
            bands = self.names_of_bands(entry["bands"], (*path, "bands"))
        size = QUICKLOOK_SIZE
        if entry.get("size") is not None:
            size = self.integer(entry["size"], (*path, "size"), None, 1) or QUICKLOOK_SIZE
        return QuicklookSpec(file, QuicklookStyle(size, colormap, bands))

    def names_of_bands(self, value: Any, path: KeyPath) -> tuple[int, ...] | None:
        if not isinstance(value, (list, tuple)) or len(value) not in (1, 3):
            self.report(path, f"expected one band or three (red, green, blue) like [4, 1, 2], "
                              f"found {describe(value)}")
            return None
        bands = [self.integer(item, (*path, index), None, 1) for index, item in enumerate(value)]
        return None if None in bands else tuple(int(band) for band in bands if band is not None)

    def quicklook_clashes(self, outputs: Mapping[str, OutputSpec]) -> None:
        """Report a quicklook written where an output, or another quicklook, is written."""
        written: dict[Path, str] = {output.path: f"output '{name}'"
                                    for name, output in outputs.items()}
        for name, output in outputs.items():
            quicklook = output.quicklook_path()
            if quicklook is None:
                continue
            if quicklook in written:
                self.report(("outputs", name, "quicklook"),
                            f"the quicklook {quicklook} is also the path of {written[quicklook]}")
            else:
                written[quicklook] = f"the quicklook of output '{name}'"


def _fail(problem: str, file: str, line: int | None = None, column: int | None = None) -> NoReturn:
    raise PipelineError(Problem(problem, file, line, column))


def _read_text(path: Path, display: str) -> str:
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


def _apply(spec: PipelineSpec, overrides: Overrides, problems: list[Problem]) -> PipelineSpec:
    """The spec with command-line values put in; problems name the option."""

    def flag(option: str, message: str) -> None:
        problems.append(Problem(message, path=option))

    def checked(option: str, value: Any, default: int | None) -> int | None:
        problem = None if value is None else integer_problem(value, 1)
        if problem is not None:
            flag(option, problem)
        return default if value is None or problem is not None else int(value)

    workers = checked("--workers", overrides.workers, spec.workers)
    memory = spec.memory
    if overrides.memory is not None:
        try:
            memory = parse_size(overrides.memory)
        except ValueError as error:
            flag("--memory", str(error))
    cwd = Path.cwd()
    scratch = spec.scratch if overrides.scratch is None else absolute(overrides.scratch, cwd)
    cluster = spec.cluster
    if overrides.cluster is not None:
        problem = cluster_problem(overrides.cluster)
        if problem is not None:
            flag("--cluster", problem)
        else:
            cluster = overrides.cluster.strip()
    tile_size = checked("--tile-size", overrides.tile_size, spec.tiling.tile_size)
    mode = spec.tiling.mode
    if overrides.tiling_mode in MODES:
        mode = cast(TilingMode, overrides.tiling_mode)
    elif overrides.tiling_mode is not None:
        flag("--tiling", f"expected one of {', '.join(MODES)}, found {overrides.tiling_mode!r}"
                         f"{did_you_mean(overrides.tiling_mode, MODES)}")
    inputs = dict(spec.inputs)
    for name, text in overrides.inputs.items():
        if name in inputs:
            inputs[name] = InputSpec(name, raster_location(text, cwd),
                                     Location(path=f"--input {name}"),
                                     resampling=inputs[name].resampling)
        else:
            flag(f"--input {name}", f"unknown input '{name}'{did_you_mean(name, inputs)}")
    outputs = dict(spec.outputs)
    for name, text in overrides.outputs.items():
        where = Location(path=f"--output {name}")
        if is_address(text):
            flag(where.path or "", f"outputs are written to local files, found the address {text!r}")
            continue
        kept = outputs.get(name, OutputSpec(name, Path()))
        outputs[name] = replace(kept, path=absolute(text, cwd), where=where)
    steps = list(spec.steps)
    names = [step.name for step in steps]
    for (step_name, key), value in overrides.params.items():
        option = f"--param {step_name}.{key}"
        if step_name not in names:
            flag(option, f"unknown step '{step_name}'{did_you_mean(step_name, names)}")
            continue
        index = names.index(step_name)
        step = steps[index]
        prefix = f"params -> {key}"
        locations = {at: where for at, where in step.locations.items()
                     if at != prefix and not at.startswith(prefix + " -> ")}
        locations[prefix] = Location(path=option)
        steps[index] = replace(step, params=FrozenMap({**step.params, key: freeze(value)}),
                               locations=FrozenMap(locations))
    return replace(spec, workers=workers, tiling=Tiling(mode, tile_size), inputs=FrozenMap(inputs),
                   steps=tuple(steps), outputs=FrozenMap(outputs), memory=memory, scratch=scratch,
                   cluster=cluster)


def cluster_problem(text: str) -> str | None:
    """What is wrong with a cluster address, or None (:func:`~eoscale.engine.cluster.parse_cluster`)."""
    from eoscale.engine.cluster import parse_cluster

    try:
        parse_cluster(text)
    except ValueError as error:
        return str(error)
    return None


def _order(problem: Problem) -> tuple[bool, int, int]:
    return problem.line is not None, problem.line or 0, problem.column or 0


def load_pipeline(source: str | os.PathLike[str] | Mapping[str, Any], *,
                  overrides: Overrides | None = None,
                  base_dir: str | os.PathLike[str] | None = None) -> PipelineSpec:
    """Read, check and normalise a pipeline (a YAML file, or a mapping of the same shape).

    ``base_dir`` replaces the folder relative paths resolve against (default: the file's folder,
    or the current folder for a mapping). ``overrides`` are applied after reading. Raises
    :class:`PipelineError` holding every problem found, schema and references alike.
    """
    cwd = Path.cwd()
    if isinstance(source, Mapping):
        reader, document, path = _Reader(None), source, None
        base = absolute(os.fspath(base_dir or "."), cwd)
    else:
        display = os.fspath(source)
        path = absolute(display, cwd)
        reader = _Reader(display)
        document = reader.parse(_read_text(path, display))
        base = path.parent if base_dir is None else absolute(os.fspath(base_dir), cwd)
    spec = None if document is None and reader.problems else reader.read(document, base, path)
    problems = reader.finished()
    if spec is not None:
        if overrides is not None:
            spec = _apply(spec, overrides, problems)
        problems += check_graph(spec)
    if spec is None or problems:
        raise PipelineError(sorted(problems, key=_order))
    return spec
