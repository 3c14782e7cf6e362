"""The pipeline as frozen, typed values: what the loader makes and everything after it reads.

Every part of a spec knows where it was written (:class:`Location`: file, line, column and a path
such as ``steps -> 1 -> map``, or the command-line flag that set it), so that later stages can
report problems at the right place. Mappings are :class:`FrozenMap` (read-only and, unlike
``MappingProxyType``, picklable, so a spec can travel to worker processes). Params are frozen
deeply (mappings become :class:`FrozenMap`, lists become tuples);
:func:`eoscale.pipeline.resolve.resolve_params` gives back the plain dicts and lists a callable
receives.

A params value written exactly ``${name}`` or ``${name.key}`` is a :class:`Reference` to the
result of an earlier reduce step (``key`` indexes a mapping result; everything after the first
dot is the key).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from eoscale.engine.tiling import Tiling
from eoscale.errors import Problem
from eoscale.io.layout import ImageLayout
from eoscale.io.paths import RasterLocation
from eoscale.io.quicklook import QuicklookStyle

K = TypeVar("K")
V = TypeVar("V")

StepKind = Literal["map", "reduce"]
KINDS: tuple[StepKind, ...] = ("map", "reduce")

_REFERENCE = re.compile(r"\$\{([^.{}]+)(?:\.([^{}]+))?\}")


class FrozenMap(Mapping[K, V]):
    """A read-only mapping that pickles (``MappingProxyType`` does not)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[K, V] | None = None) -> None:
        self._data: dict[K, V] = dict(data or {})

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


def freeze(value: Any) -> Any:
    """``value`` with every mapping made a :class:`FrozenMap` and every list a tuple, deeply."""
    if isinstance(value, Mapping):
        return FrozenMap({key: freeze(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    return value


@dataclass(frozen=True, slots=True)
class Reference:
    """A params value ``${result}`` or ``${result.key}``: the result of an earlier reduce step."""

    result: str
    key: str | None = None

    def __str__(self) -> str:
        return f"${{{self.result}}}" if self.key is None else f"${{{self.result}.{self.key}}}"


def parse_reference(value: Any) -> Reference | None:
    """The reference ``value`` is, if it is a string written exactly ``${name}``/``${name.key}``."""
    if not isinstance(value, str):
        return None
    match = _REFERENCE.fullmatch(value)
    return Reference(match[1], match[2]) if match else None


def references(value: Any, keys: tuple[Any, ...] = (),
               ) -> Iterator[tuple[tuple[Any, ...], Reference]]:
    """Every reference inside a params value, with the keys leading to it."""
    reference = parse_reference(value)
    if reference is not None:
        yield keys, reference
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from references(item, (*keys, key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from references(item, (*keys, index))


def join_path(*parts: object) -> str | None:
    """A path for messages, ``steps -> 1 -> map``, from its parts other than None."""
    kept = [str(part) for part in parts if part is not None]
    return " -> ".join(kept) or None


@dataclass(frozen=True, slots=True)
class Location:
    """Where something was written: pipeline file, line and column (1-based), and its path.

    ``path`` is the place inside the document (``steps -> 1 -> map``) or the command-line option
    that set the value (``--input scene``). Any part may be unknown (a mapping has no lines).
    """

    file: str | None = None
    line: int | None = None
    column: int | None = None
    path: str | None = None

    def problem(self, message: str, step: str | None = None) -> Problem:
        """A problem found here."""
        return Problem(message, self.file, self.line, self.column, self.path, step)

    def child(self, *keys: str | int) -> Location:
        """A place inside this one whose own line is unknown: same line, longer path."""
        return Location(self.file, self.line, self.column, join_path(self.path, *keys))

    def line_note(self) -> str:
        """`` (line 12)`` when the line is known, for messages that point at a second place."""
        return f" (line {self.line})" if self.line is not None else ""


@dataclass(frozen=True, slots=True)
class StacInput:
    """The assets of a STAC Item an input reads (``{stac: ITEM, assets: [...]}``), stacked as
    bands in the order named (by key or common name), and whether their ``raster:bands`` scale
    and offset are applied (:mod:`eoscale.io.stac`). ``assets_where``: where each name is
    written, for problems about it. For an ItemCollection or a Collection, mosaicked
    (:mod:`eoscale.io.mosaic`): the Items kept, those meeting ``bbox`` (WGS84) and the
    ``datetime`` interval (as written, and parsed: ``interval``), and the ``order`` they fill
    pixels in (None: ``newest`` first)."""

    item: RasterLocation
    assets: tuple[str, ...]
    scale: bool = False
    assets_where: tuple[Location, ...] = field(default=(), compare=False)
    bbox: tuple[float, float, float, float] | None = None
    datetime: str | None = None
    interval: tuple[_dt.datetime | None, _dt.datetime | None] | None = None
    order: str | None = None

    @property
    def filters(self) -> bool:
        """Whether the input selects Items (``bbox``, ``datetime`` or ``order`` is given): it
        is then a mosaic, even of one Item."""
        return self.bbox is not None or self.interval is not None or self.order is not None

    def asset_where(self, index: int, default: Location) -> Location:
        """Where the asset name ``index`` is written (``default`` when it is not known)."""
        return self.assets_where[index] if index < len(self.assets_where) else default


@dataclass(frozen=True, slots=True)
class InputSpec:
    """A pipeline input, by name: a raster file, or ``bands`` (one file per band, stacked in
    order; ``path`` is then the first), or ``stac``: assets of a STAC Item (``path`` is then
    the Item's JSON; its files are known once it is read, when the run is planned), and the
    ``resampling`` that warps it onto the working grid when it is not on it (see
    :mod:`eoscale.pipeline.inputs`). A file is local (a ``Path``) or an address GDAL reads as
    written (a ``str``: ``https://...``, ``s3://...``, ``/vsizip/...``; see
    :mod:`eoscale.io.paths`)."""

    name: str
    path: RasterLocation
    where: Location = field(default=Location(), compare=False)
    bands: tuple[Path, ...] = ()
    resampling: str = "nearest"
    stac: StacInput | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        """The input's files: its band files, or its one file."""
        return self.bands or (self.path,)


@dataclass(frozen=True, slots=True)
class GridSpec:
    """The pipeline's working grid (``grid:``), the one every input is read on: the grid of the
    input ``like``; or ``like``'s CRS and bounds at ``resolution``; or ``crs`` (as written:
    ``EPSG:32631``, WKT, PROJ), ``resolution`` (x, y) and ``bounds`` (left, bottom, right, top),
    pixel edges snapped to multiples of the resolution
    (:meth:`eoscale.io.sources.Grid.from_bounds`)."""

    like: str | None = None
    crs: str | None = None
    resolution: tuple[float, float] | None = None
    bounds: tuple[float, float, float, float] | None = None
    where: Location = field(default=Location(), compare=False)


@dataclass(frozen=True, slots=True)
class QuicklookSpec:
    """An output's PNG quicklook: its ``path`` (None: beside the output, ``<stem>.png``) and style."""

    path: Path | None = None
    style: QuicklookStyle = field(default_factory=QuicklookStyle)


@dataclass(frozen=True, slots=True)
class OutputItemSpec:
    """An image output's STAC Item (``stac: true``), written beside it (``<stem>.json``;
    :mod:`eoscale.io.stac_out`): ``statistics`` names the reduce step whose result gives each
    band's ``raster:bands`` statistics (None: none)."""

    statistics: str | None = None
    where: Location = field(default=Location(), compare=False)


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """A result to write: an image to GeoTIFF or COG (GDAL creation ``options``, overviews, a
    quicklook, a STAC Item), or JSON."""

    name: str
    path: Path
    options: Mapping[str, Any] = field(default_factory=FrozenMap)
    where: Location = field(default=Location(), compare=False)
    layout: ImageLayout = field(default_factory=ImageLayout)
    quicklook: QuicklookSpec | None = None
    item: OutputItemSpec | None = None

    def quicklook_path(self) -> Path | None:
        """Where the quicklook is written, if there is one."""
        if self.quicklook is None:
            return None
        return self.quicklook.path or self.path.with_suffix(".png")

    def item_path(self) -> Path | None:
        """Where the STAC Item is written (beside the output, ``<stem>.json``), if there is one."""
        return None if self.item is None else self.path.with_suffix(".json")

    def paths(self) -> tuple[Path, ...]:
        """Every file this output writes: its own, its quicklook's and its Item's."""
        return tuple(path for path in (self.path, self.quicklook_path(), self.item_path())
                     if path is not None)


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One step: a map (N images -> M images) or a reduce (N images -> one result, tile by tile).

    ``callable``, ``profile``, ``combine`` and ``finalize`` are dotted paths, resolved later.
    ``margin`` None means the callable's declared margin, else 0; ``writable_inputs`` None means
    the callable's attribute of that name, else False (read-only inputs). ``outputs`` names the images a
    map step makes (the loader fills in the default, the step's name); it is empty for a reduce
    step, whose result is named by the step. ``locations`` holds where the step's values are
    written, keyed by their path inside the step (``inputs -> 0``); see :meth:`locate`. Where a
    thing is written is not part of what it is: locations take no part in comparisons.
    """

    name: str
    kind: StepKind
    callable: str
    inputs: tuple[str, ...]
    params: Mapping[str, Any] = field(default_factory=FrozenMap)
    margin: int | None = None
    profile: str | None = None
    outputs: tuple[str, ...] = ()
    combine: str | None = None
    finalize: str | None = None
    description: str | None = None
    writable_inputs: bool | None = None
    where: Location = field(default=Location(), compare=False)
    locations: Mapping[str, Location] = field(default_factory=FrozenMap, compare=False, repr=False)

    def locate(self, *keys: str | int) -> Location:
        """Where a value inside the step is written: its own place, else its closest parent's."""
        parts = [str(key) for key in keys]
        for count in range(len(parts), 0, -1):
            found = self.locations.get(" -> ".join(parts[:count]))
            if found is not None:
                return found.child(*parts[count:])
        return self.where.child(*parts)

    def references(self) -> Iterator[tuple[tuple[str | int, ...], Reference]]:
        """Every ``${...}`` reference in the params, with the keys to it (``params`` first)."""
        return references(self.params, ("params",))


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """A whole pipeline, normalised: paths absolute, defaults filled in, overrides applied.

    ``workers`` None means all CPUs; ``tiling.tile_size`` None means an automatic size. ``source``
    is the pipeline file (None for a mapping) and ``base_dir`` the folder relative paths and
    callables' modules are looked up in. ``memory`` is the run's memory budget in bytes (None:
    the memory available, less a margin); ``scratch`` the folder for spilled images (None: the
    system's temporary folder). ``gdal`` holds GDAL configuration options (as text) for the main
    process and every worker. ``grid`` None: no working grid, inputs must share one. ``cluster``
    None: worker processes of this machine; else a Dask cluster's address (``local:4``,
    ``tcp://host:8786``; see :func:`eoscale.engine.cluster.parse_cluster`).

    ``graph_checked`` is True on a spec :func:`~eoscale.pipeline.loader.load_pipeline` made, whose
    names and references it has checked (:func:`~eoscale.pipeline.validate.check_graph`), so that
    validating it does not check them again. It is no argument: a spec made by hand, or by
    ``dataclasses.replace``, has it False and is checked.
    """

    version: int
    name: str | None
    workers: int | None
    tiling: Tiling
    inputs: Mapping[str, InputSpec]
    steps: tuple[StepSpec, ...]
    outputs: Mapping[str, OutputSpec]
    source: Path | None
    base_dir: Path
    memory: int | None = None
    scratch: Path | None = None
    gdal: Mapping[str, str] = field(default_factory=FrozenMap)
    grid: GridSpec | None = None
    cluster: str | None = None
    graph_checked: bool = field(default=False, init=False, compare=False, repr=False)

    def producer(self, name: str) -> StepSpec | None:
        """The step that makes an image or result; None for an input; KeyError if unknown."""
        if name in self.inputs:
            return None
        for step in self.steps:
            if name in step.outputs or (step.kind == "reduce" and step.name == name):
                return step
        raise KeyError(name)


@dataclass(frozen=True)
class Overrides:
    """Values given on the command line, applied over the pipeline file's.

    Paths resolve against the current folder. ``params`` maps (step, key) to an already-typed
    value. A replaced output keeps its creation options.
    """

    workers: int | None = None
    tile_size: int | None = None
    tiling_mode: str | None = None
    inputs: Mapping[str, str] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[tuple[str, str], Any] = field(default_factory=dict)
    memory: str | int | None = None
    scratch: str | None = None
    cluster: str | None = None
