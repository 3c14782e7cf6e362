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
      l8: {stac: item.json, assets: [red, nir]}          # a STAC Item's assets, stacked
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

Unknown keys are refused, with the closest known key suggested (the known keys are those of the
JSON Schema, :mod:`eoscale.pipeline.keys`). Names of inputs, steps and step outputs are unique,
not blank, and contain none of ``. = $ { }`` (unicode and spaces are fine). Relative paths
resolve against the pipeline file's folder (for a mapping: ``base_dir``, default the current
folder) and ``~`` is expanded; an input written as an address (``https://...``, ``s3://...``,
``/vsizip/...``) is kept exactly as written. Credentials go in the environment, never in
``gdal:`` (keys that hold them are refused). A key written null counts as absent. Every problem
is collected and raised together, as one :class:`PipelineError` whose problems each carry file,
line, column, path (``steps -> 1 -> map``) and step.

YAML anchors, aliases and merge keys (``<<``) are allowed, but a document holds at most
:data:`~eoscale.pipeline.document.MAX_NODES` values once aliases are expanded: an alias bomb
("billion laughs") is refused at once, without being expanded. Recursive aliases and tags other
than YAML's own are refused; mapping keys in the document may not repeat.

Loading is: the text to a :class:`~eoscale.pipeline.document.Document` (values with their lines,
:mod:`~eoscale.pipeline.document`); command-line values put into it, marked with their flags
(:mod:`~eoscale.pipeline.overrides`); each section read into spec values, every problem kept
(:mod:`~eoscale.pipeline.read_inputs`, :mod:`~eoscale.pipeline.read_steps`,
:mod:`~eoscale.pipeline.read_outputs`, the top-level settings here); then the graph of names
checked (:func:`~eoscale.pipeline.validate.check_graph`), once: the spec records it, so that
``validate`` and ``checked_plan`` do not check it again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eoscale.engine.tiling import MODES, Tiling
from eoscale.errors import PipelineError, Problem
from eoscale.pipeline import keys
from eoscale.pipeline.document import (
    Document,
    KeyPath,
    PlacedProblem,
    parse_document,
    read_text,
)
from eoscale.pipeline.overrides import apply_overrides
from eoscale.pipeline.read_inputs import read_grid, read_inputs
from eoscale.pipeline.read_outputs import image_only, item_statistics, read_outputs
from eoscale.pipeline.read_steps import read_steps
from eoscale.errors import did_you_mean
from eoscale.pipeline.spec import FrozenMap, Overrides, PipelineSpec
from eoscale.pipeline.validate import check_graph
from eoscale.pipeline.values import ValueReader, absolute, describe

#: Words in a GDAL option's name that say it holds a credential: those come from the environment.
SECRET_WORDS = ("SECRET", "PASSWORD", "USERPWD", "TOKEN", "ACCESS_KEY", "CONNECTION_STRING",
                "SAS", "HEADERS", "HEADER_FILE")


def load_pipeline(source: str | os.PathLike[str] | Mapping[str, Any], *,
                  overrides: Overrides | None = None,
                  base_dir: str | os.PathLike[str] | None = None) -> PipelineSpec:
    """Read, check and normalise a pipeline (a YAML file, or a mapping of the same shape).

    ``base_dir`` replaces the folder relative paths resolve against (default: the file's folder,
    or the current folder for a mapping). ``overrides`` take the place of the document's values
    before it is read, and are checked as they are. Raises :class:`PipelineError` holding every
    problem found, schema and references alike.
    """
    cwd = Path.cwd()
    walked: list[PlacedProblem] = []
    if isinstance(source, Mapping):
        document: Document | None = Document(source)
        path = None
        base = absolute(os.fspath(base_dir or "."), cwd)
    else:
        display = os.fspath(source)
        path = absolute(display, cwd)
        document, walked = parse_document(read_text(path, display), display)
        base = path.parent if base_dir is None else absolute(os.fspath(base_dir), cwd)
    if document is None:
        raise PipelineError(sorted((problem for _, problem in walked), key=_order))
    flagged = [] if overrides is None else apply_overrides(document, overrides, cwd)
    reader = ValueReader(document)
    spec = _read(reader, document.value, base, path)
    problems = reader.finished(walked) + flagged
    if spec is not None:
        problems += check_graph(spec)
    if spec is None or problems:
        raise PipelineError(sorted(problems, key=_order))
    object.__setattr__(spec, "graph_checked", True)
    return spec


def _order(problem: Problem) -> tuple[bool, int, int]:
    return problem.line is not None, problem.line or 0, problem.column or 0


def _read(r: ValueReader, document: Any, base: Path, source: Path | None) -> PipelineSpec | None:
    """The spec, best effort; None when inputs or steps are unusable. Problems are collected."""
    root = r.mapping(document, (), None, "a mapping with keys version, inputs, steps, outputs")
    if root is None:
        return None
    r.check_keys(root, (), keys.TOP, None)
    version = root.get("version")
    if "version" in root and (type(version) is not int or version != 1):
        r.report(("version",), f"unsupported version: expected 1, found {describe(version)}")
    name = None if root.get("name") is None else r.text(root["name"], ("name",), None)
    workers = None if root.get("workers") is None else r.integer(
        root["workers"], ("workers",), None, 1)
    memory = None if root.get("memory") is None else r.size(root["memory"], ("memory",))
    scratch = None if root.get("scratch") is None else r.file_path(
        root["scratch"], ("scratch",), None, base)
    cluster = None if root.get("cluster") is None else r.cluster(root["cluster"], ("cluster",))
    tiling = _tiling(r, root.get("tiling"))
    inputs = read_inputs(r, root["inputs"], base) if "inputs" in root else None
    steps = read_steps(r, root["steps"]) if "steps" in root else None
    outputs = read_outputs(r, root.get("outputs"), base)
    gdal = _gdal(r, root.get("gdal"))
    grid = None if root.get("grid") is None else read_grid(r, root["grid"], inputs)
    if inputs is None or steps is None:
        return None
    image_only(r, root.get("outputs"), outputs, steps)
    item_statistics(r, outputs, steps)
    return PipelineSpec(1, name, workers, tiling, FrozenMap(inputs), steps, FrozenMap(outputs),
                        source, base, memory, scratch, FrozenMap(gdal), grid, cluster)


def _tiling(r: ValueReader, value: Any) -> Tiling:
    if value is None:
        return Tiling()
    path: KeyPath = ("tiling",)
    raw = r.mapping(value, path, None, "a mapping with keys mode, tile_size")
    if raw is None:
        return Tiling()
    r.check_keys(raw, path, keys.TILING, None)
    mode = raw.get("mode", "tiles")
    if mode not in MODES:
        hint = did_you_mean(mode, MODES) if isinstance(mode, str) else ""
        r.report((*path, "mode"), f"expected one of {', '.join(MODES)}, found "
                                  f"{r.shown(mode, (*path, 'mode'))}{hint}")
        mode = "tiles"
    size = raw.get("tile_size")
    if size is not None:
        size = r.integer(size, (*path, "tile_size"), None, 1)
    return Tiling(mode, size)


def gdal_value(value: Any) -> str | None:
    """A GDAL configuration value as GDAL reads it (booleans as YES/NO), None if not a scalar."""
    if isinstance(value, bool):
        return "YES" if value else "NO"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _gdal(r: ValueReader, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    path: KeyPath = ("gdal",)
    raw = r.mapping(value, path, None, "a mapping of GDAL configuration options") or {}
    options = {}
    for key, item in raw.items():
        secret = next((word for word in SECRET_WORDS if word in key.upper()), None)
        text = gdal_value(item)
        if secret is not None:
            r.report((*path, key), f"'{key}' holds a credential: set it in the environment, "
                                   "never in a pipeline", key=True)
        elif text is None:
            r.report((*path, key), f"expected text, a number or a boolean, found "
                                   f"{describe(item)}")
        else:
            options[key] = text
    return options
