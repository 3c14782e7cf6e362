"""Where a pipeline's inputs come from: each input as a :class:`~eoscale.io.sources.Source`, the
working grid of ``grid:``, and the grid check when there is none.

Planning reads every input's own profile (:func:`own_profiles`), makes the working grid from them
(:func:`working_grid`: None without ``grid:``), and then reads each input through
``input_source(spec, name, grid)``: its files, warped onto the grid when they are not on it
(``Source.warped()`` names those), band files stacked. Without ``grid:`` the inputs must share
one grid (:func:`grid_problems`); a band stack is then on its first file's grid.
:func:`input_sources` does all of it (:func:`inputs_on_grid`, with the profiles on the grid).

A STAC input's files are its Item's assets (:mod:`eoscale.io.stac`): the Item is read here,
once per planning, never by the loader (which opens no file); :func:`read_locations` lists
the files a run reads, assets included. An ItemCollection or a Collection (or an Item with
``bbox``, ``datetime`` or ``order``) is a mosaic (:func:`mosaic_reading`,
:mod:`eoscale.io.mosaic`): its source has its own grid, chosen from its Items, which the
pipeline's ``grid:`` replaces.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from eoscale.errors import Problem, RasterError
from eoscale.io.mosaic import MosaicSource, mosaic_grid
from eoscale.io.paths import is_address, location_name, redact
from eoscale.io.sources import Grid, Source
from eoscale.io.stac import (
    StacError,
    StacItems,
    StacSelection,
    assets_source,
    read_stac,
    select_items,
)
from eoscale.pipeline.spec import PipelineSpec, StacInput


def input_sources(spec: PipelineSpec, problems: list[Problem],
                  ) -> tuple[Grid | None, dict[str, Source]]:
    """The working grid (None without ``grid:``) and each readable input's source on it, by
    name; unreadable inputs and, without ``grid:``, inputs off the first one's grid are problems
    added to ``problems`` (the grid is None too when ``like``'s file cannot be read)."""
    found = inputs_on_grid(spec, problems)
    return found.grid, found.sources


@dataclass(frozen=True)
class InputsOnGrid:
    """The inputs as planning reads them: the working ``grid`` (None without ``grid:``), each
    readable input's source on it and its profile there, by name, and what each STAC input
    reads (its Item and assets)."""

    grid: Grid | None
    sources: dict[str, Source]
    profiles: dict[str, dict[str, Any]]
    stac: dict[str, StacSelection]


def inputs_on_grid(spec: PipelineSpec, problems: list[Problem]) -> InputsOnGrid:
    """:func:`input_sources`, with each input's profile on the working grid and what each STAC
    input reads. Without ``grid:`` the inputs' own profiles are those: each file is opened once
    (an address: once over the network), and each STAC Item read once."""
    own_sources, stac = readable_sources(spec, problems)
    own = profiles_of(spec, own_sources, problems)
    problems += grid_problems(spec, own)
    like = spec.grid.like if spec.grid is not None else None
    grid = None if like is not None and like not in own else working_grid(spec, own)
    sources = {name: own_sources[name] if grid is None else replace(own_sources[name], grid=grid)
               for name in own}
    stac = {name: replace(read, grid=grid_reason(grid, read)) for name, read in stac.items()}
    if grid is None:
        return InputsOnGrid(grid, sources, own, stac)
    profiles = {}
    for name, source in sources.items():
        try:
            profiles[name] = source.profile()
        except RasterError as error:
            problems.append(spec.inputs[name].where.problem(str(error)))
    return InputsOnGrid(grid, sources, profiles, stac)


def input_source(spec: PipelineSpec, name: str, grid: Grid | None = None) -> Source:
    """Where input ``name``'s pixels come from, on ``grid`` (None: its own, its first file's).
    A STAC input's Item is read (:func:`input_reading`)."""
    return input_reading(spec, name, grid)[0]


def input_reading(spec: PipelineSpec, name: str, grid: Grid | None = None,
                  ) -> tuple[Source, StacSelection | None]:
    """Input ``name``'s source on ``grid`` and, for a STAC input, what it reads: its Item is
    read (:func:`~eoscale.io.stac.read_item`), a missing Item is a :class:`RasterError`, an
    asset it does not have a :class:`~eoscale.io.stac.StacError`."""
    item = spec.inputs[name]
    if item.stac is None:
        return Source(tuple(str(path) for path in item.paths), grid, item.resampling), None
    found = read_stac(item.stac.item)
    if found.kind != "Item" or item.stac.filters:
        source, selection = mosaic_reading(item.name, item.stac, found, item.resampling)
        return (source if grid is None else replace(source, grid=grid)), selection
    read = found.items[0]
    assets = read.select(item.stac.assets)
    source = assets_source(assets, item.resampling, item.stac.scale)
    selection = StacSelection(read.id, read.location, tuple(zip(item.stac.assets, assets)))
    return replace(source, grid=grid), selection


def mosaic_reading(name: str, stac: StacInput, found: StacItems, resampling: str,
                   ) -> tuple[MosaicSource, StacSelection]:
    """A mosaic input's source, on the grid :func:`~eoscale.io.mosaic.mosaic_grid` chooses
    (the working grid replaces it when the pipeline has ``grid:``), and what it reads: the Items
    :func:`~eoscale.io.stac.select_items` keeps, in the order they fill pixels. None kept is a
    :class:`~eoscale.io.stac.StacError` naming the input, the bbox and the interval."""
    order = stac.order or "newest"
    items = select_items(found.items, stac.bbox, stac.interval, order)
    if not items:
        shown = redact(os.fspath(found.location))
        wanted = ([] if stac.bbox is None else [f"intersects bbox {list(stac.bbox)}"]) + (
            [] if stac.datetime is None else [f"falls within datetime '{stac.datetime}'"])
        raise StacError(f"input '{name}': no Item of the STAC {found.kind} {shown} "
                        f"({len(found.items)} Items) {' and '.join(wanted) or 'to read'}")
    chosen = [each.select(stac.assets) for each in items]
    layers = [assets_source(assets, resampling, stac.scale) for assets in chosen]
    grid, why = mosaic_grid(layers, stac.bbox)
    source = MosaicSource.of_layers(layers, grid, resampling, [each.id for each in items])
    listed = tuple((each.id, each.datetime, tuple(asset.href for asset in assets))
                   for each, assets in zip(items, chosen))
    selection = StacSelection(items[0].id, found.location, tuple(zip(stac.assets, chosen[0])),
                              listed, f"{why}; Items fill pixels {order} first")
    return source, selection


def grid_reason(grid: Grid | None, read: StacSelection) -> str | None:
    """The grid a mosaic is read on, for reports, and why: the pipeline's ``grid:``, or the one
    it chose (already said); None for one Item (read on its first asset's grid, as a band
    stack)."""
    if not read.items:
        return None
    if grid is not None:
        return f"{grid.describe()}: the pipeline's 'grid:'"
    return read.grid


def readable_sources(spec: PipelineSpec, problems: list[Problem],
                     ) -> tuple[dict[str, Source], dict[str, StacSelection]]:
    """Each input's source on its own grid, by name, and what each STAC input reads; a STAC
    input whose Item cannot be read or lacks an asset it names is a problem at its line (the
    asset's), and left out. An Item at an address that does not answer is a failure of the
    run, as for a raster (:func:`profiles_of`)."""
    sources, selections = {}, {}
    for name, item in spec.inputs.items():
        try:
            sources[name], selection = input_reading(spec, name)
        except StacError as error:
            where = item.where
            if item.stac is not None and error.index is not None:
                where = item.stac.asset_where(error.index, where)
            problems.append(where.problem(str(error)))
            continue
        except RasterError as error:
            problem = item.where.problem(str(error))
            if is_address(item.path):
                raise RasterError(str(problem)) from None
            problems.append(problem)
            continue
        if selection is not None:
            selections[name] = selection
    return sources, selections


def own_profiles(spec: PipelineSpec, problems: list[Problem]) -> dict[str, dict[str, Any]]:
    """Each input's profile on its own grid (a band stack: on its first file's), by name
    (:func:`profiles_of` the :func:`readable_sources`)."""
    return profiles_of(spec, readable_sources(spec, problems)[0], problems)


def profiles_of(spec: PipelineSpec, sources: Mapping[str, Source], problems: list[Problem],
                ) -> dict[str, dict[str, Any]]:
    """The profile of each of ``sources``, by input name; an input that cannot be read is a
    problem at its line, and left out. An address (a URL, a ``/vsi...`` path) that does not
    answer is no mistake in the pipeline but a failure of the run: a :class:`RasterError`
    (exit 1) naming the input's line and the address."""
    profiles = {}
    for name, source in sources.items():
        item = spec.inputs[name]
        try:
            profiles[name] = source.profile()
        except RasterError as error:
            problem = item.where.problem(str(error))
            if any(is_address(path) for path in source.paths):
                raise RasterError(str(problem)) from None
            problems.append(problem)
    return profiles


def working_grid(spec: PipelineSpec, profiles: Mapping[str, Mapping[str, Any]]) -> Grid | None:
    """The grid of ``grid:`` (None when the pipeline has none), from the inputs' own profiles
    (:func:`own_profiles`; only ``like``'s is used, and a KeyError says it is missing: its file
    could not be read, already a problem). The loader has checked the CRS, resolution and bounds."""
    wanted = spec.grid
    if wanted is None:
        return None
    if wanted.like is not None:
        like = Grid.of(profiles[wanted.like])
        if wanted.resolution is None:
            return like
        return Grid.from_bounds(like.crs, wanted.resolution, like.bounds)
    assert wanted.crs is not None and wanted.resolution is not None and wanted.bounds is not None
    return Grid.from_bounds(wanted.crs, wanted.resolution, wanted.bounds)


def grid_problems(spec: PipelineSpec, profiles: Mapping[str, Mapping[str, Any]]) -> list[Problem]:
    """Without ``grid:``, each input not on the first input's grid, as a problem at its line that
    suggests ``grid: {like: FIRST}``; with ``grid:``, none (every input is read on it)."""
    if spec.grid is not None or not profiles:
        return []
    names = list(profiles)
    first = spec.inputs[names[0]]
    problems = []
    for name in names[1:]:
        differences = Grid.of(profiles[names[0]]).differences(profiles[name])
        if differences:
            item = spec.inputs[name]
            problems.append(item.where.problem(
                f"{location_name(item.path)} is not on the grid of input '{first.name}' "
                f"({location_name(first.path)}): {'; '.join(differences)} (to read it on that "
                f"grid, set "
                f"'grid: {{like: {first.name}}}' at the top of the pipeline)"))
    return problems


def read_locations(spec: PipelineSpec, sources: Mapping[str, Source]) -> list[str]:
    """Every file or address a run of ``spec`` reads its inputs from: the inputs' own (a STAC
    input's Item) and their sources' (its assets)."""
    found = [str(path) for item in spec.inputs.values() for path in item.paths]
    found += [path for source in sources.values() for path in source.paths]
    return list(dict.fromkeys(found))
