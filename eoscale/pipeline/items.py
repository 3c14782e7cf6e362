"""The STAC Items of a run's outputs (``stac: true``), staged beside their images.

Once every step has run, and before anything is renamed into place, :func:`stage_items` writes
each asked-for Item (:func:`eoscale.io.stac_out.write_item`) from its image's staged file, to a
staged path of its own: it is renamed with its image when the whole run succeeds, and discarded
with it when the run fails. An Item cites the STAC Items of the inputs its image was made from
(found by walking the steps back from the output), takes its datetime from them, and its
statistics from the reduce step its output names (checked at load time to be a reduce of that
image alone; its result's form is checked here, where it is known).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from typing import Any

import rasterio

from eoscale.errors import ConfigError, PipelineError
from eoscale.io.raster import Staging
from eoscale.io.stac_out import (
    ItemProvenance,
    SourceItem,
    band_statistics,
    source_items,
    write_item,
)
from eoscale.io.stac import read_stac, select_items
from eoscale.pipeline.spec import OutputSpec, PipelineSpec, StacInput


def stage_items(staging: Staging, spec: PipelineSpec, results: Mapping[str, Any]) -> None:
    """Write the Item of every output that asks for one, from its staged image, to a staged
    file; ``results``: the reduce results by step name."""
    now = dt.datetime.now(dt.timezone.utc)
    for name, output in spec.outputs.items():
        item_path = output.item_path()
        if item_path is None:
            continue
        step = spec.producer(name)
        if step is not None and step.kind == "reduce":
            raise ConfigError(f"output '{name}' is a reduce result, written as JSON: a STAC "
                              f"Item is for images only")
        image = staging.staged(output.path)
        provenance = ItemProvenance(
            _sources(spec, name), spec.name,
            None if spec.source is None else spec.source.name, name)
        write_item(image, staging.stage(item_path),
                   image_href=os.path.relpath(output.path, item_path.parent),
                   cog=output.layout.format == "COG",
                   provenance=provenance, statistics=_statistics(output, image, results),
                   now=now, display=str(item_path))


def _sources(spec: PipelineSpec, name: str) -> tuple[SourceItem, ...]:
    """The STAC Items of the inputs ``name`` is made from, in the pipeline's input order."""
    needed, seen = [name], set()
    while needed:
        current = needed.pop()
        if current in seen:
            continue
        seen.add(current)
        step = spec.producer(current)
        if step is not None:
            needed.extend(step.inputs)
    found: dict[str, SourceItem] = {}
    for input_name, item in spec.inputs.items():
        if input_name in seen and item.stac is not None:
            for source in _input_items(item.stac):
                found.setdefault(source.href, source)
    return tuple(found.values())


def _input_items(stac: StacInput) -> list[SourceItem]:
    """The Items a STAC input reads: its one Item, or those of its ItemCollection or Collection
    that its selection keeps (the same :func:`~eoscale.io.stac.select_items` as its mosaic)."""
    found = read_stac(stac.item)
    if found.kind == "Item" and not stac.filters:
        return list(source_items(stac.item))
    kept = select_items(found.items, stac.bbox, stac.interval, stac.order or "newest")
    if found.kind == "Collection":  # each Item read from its own file
        return [source for item in kept for source in source_items(item.location)]
    ids = {item.id for item in kept}
    return [source for source in source_items(stac.item) if source.id in ids]


def _statistics(output: OutputSpec, image: os.PathLike,
                results: Mapping[str, Any]) -> list[dict[str, float | None]] | None:
    """The per-band statistics the output's Item takes from the reduce step it names."""
    assert output.item is not None
    if output.item.statistics is None:
        return None
    with rasterio.open(image) as dataset:
        count, pixels = dataset.count, dataset.width * dataset.height
    try:
        return band_statistics(results.get(output.item.statistics), count, pixels)
    except ValueError as error:
        raise PipelineError(output.item.where.problem(
            f"the result of reduce step '{output.item.statistics}' gives no statistics for the "
            f"STAC Item of '{output.name}': {error}")) from None
