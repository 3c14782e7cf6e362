"""The plan as values: each image (:class:`ImagePlan`), each step (:class:`StepPlan`) and the
whole run (:class:`RunPlan`), frozen, with the JSON that ``eoscale run --dry-run --json``
prints."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eoscale.engine.tiling import TileLayout, Tiling, plan_step
from eoscale.io.paths import redact
from eoscale.io.sources import Source
from eoscale.io.stac import StacSelection
from eoscale.pipeline.plan.files import ImageFile, scratch_refusal
from eoscale.pipeline.plan.margins import MarginFrom, runtime_margin
from eoscale.pipeline.plan.residence import Residence
from eoscale.pipeline.plan.resources import BUDGET_HEADROOM, Memory, Resources
from eoscale.pipeline.resolve import StepCallables
from eoscale.pipeline.spec import FrozenMap, PipelineSpec, StepSpec


@dataclass(frozen=True)
class ImagePlan:
    """One image of the run: its size, where it lives and why, when it comes and goes, and the
    file it is written to as it is computed, if it is."""

    name: str
    made_by: str | None          # the step that makes it; None for a pipeline input
    path: Path | None            # the file of an input
    count: int
    height: int
    width: int
    dtype: str
    lives: Residence
    why: str
    arrives: int                 # index of the step before which it exists (-1: at the start)
    released_after: int          # index of the step after which it is released (-1: at start)
    output: Path | None = None   # where it is written, if it is an output
    known: bool = True           # False: band count and dtype assumed, learnt from a first tile
    source: Source | None = field(default=None, compare=False)  # an input's files, grid, warp
    file: ImageFile | None = None  # written or spilled: the file it is written to as computed
    not_encoded: str | None = None  # written to a file: why the workers do not encode it
    # An output with overviews (a COG's, or overviews:): "" when the workers make them with its
    # pixels, else why a second pass over the written file makes them; None: it has none.
    overviews_not_encoded: str | None = None

    @property
    def writes_file(self) -> bool:
        """Whether the run writes this image to a file (an output, or a spilled image)."""
        return self.file is not None or self.output is not None

    @property
    def encoded(self) -> bool | None:
        """Whether its file's blocks are encoded by the workers (None: it writes no file)."""
        return self.not_encoded is None if self.writes_file else None

    @property
    def nbytes(self) -> int:
        return self.count * self.height * self.width * np.dtype(self.dtype).itemsize

    @property
    def pixel_bytes(self) -> int:
        return self.count * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class StepPlan:
    """One step of the run, as it will execute."""

    index: int
    step: StepSpec = field(compare=False, repr=False)
    callables: StepCallables = field(compare=False, repr=False)
    margin: int | None           # None: derived from ${...} params when the step runs
    margin_from: MarginFrom
    tiling: TileLayout           # with margin None, planned with margin 0 (for the estimate)
    chunks: int
    requested: Tiling            # the tiling asked for: mode, and tile size if one is given
    workers: int
    block_shape: tuple[int, int] | None  # the blocks its tiles are aligned to (inputs', files')
    loads: tuple[str, ...]       # inputs brought in (loaded or opened) before the step
    saves: tuple[str, ...]       # results saved to their (staged) output files after it
    releases: tuple[str, ...]    # images released after it
    memory: Memory
    chain: tuple[int, ...] = ()  # a fused chain's steps, run with the last (its tiling, memory)
    fused_into: int | None = None  # the step whose tiles compute this one's (runs with it)
    recompute: float = 0.0       # a fused chain's extra pixels computed, as a share of its work
    file_blocks: tuple[int, int] | None = None  # blocks of the files it writes as it computes
    fed_by: int | None = None    # a reduce fed by this map step's tiles (runs with it)
    feeding: str = ""            # a reduce that reads files: fed by a map's tiles, or why not

    @property
    def name(self) -> str:
        return self.step.name

    @property
    def kind(self) -> str:
        return self.step.kind

    def tiling_for(self, params: Mapping[str, Any]) -> TileLayout:
        """The tiling to run with, given the step's resolved params: the planned one, or for a
        margin derived from ``${...}`` params, planned now the same way (:func:`plan_step`)."""
        if self.margin is not None:
            return self.tiling
        margin = runtime_margin(self.step, self.callables, params)
        return plan_step(self.tiling.height, self.tiling.width, margin=margin,
                         tiling=self.requested, workers=self.workers, block_shape=self.block_shape,
                         file_blocks=self.file_blocks)


@dataclass(frozen=True)
class StacInputPlan:
    """What a STAC input reads, for showing (credentials redacted): its Item's id and location,
    and in band order each asset as the input names it, its key and the href read as its band
    file."""

    name: str
    item_id: str
    item: str
    assets: tuple[tuple[str, str, str], ...]
    items: tuple[tuple[str, str | None, tuple[str, ...]], ...] = ()  # a mosaic's, in order
    grid: str | None = None  # the grid it is read on, and why

    def to_dict(self) -> dict[str, Any]:
        found = {"name": self.name, "id": self.item_id, "item": self.item,
                 "assets": [{"name": name, "key": key, "href": href}
                            for name, key, href in self.assets]}
        if self.items:  # a mosaic
            found["items"] = [{"id": id_, "datetime": when, "hrefs": list(hrefs)}
                              for id_, when, hrefs in self.items]
            found["grid"] = self.grid
        return found


@dataclass(frozen=True)
class RunPlan:
    """A whole run, decided: resources, images and steps in order, and the estimated peak."""

    spec: PipelineSpec = field(compare=False, repr=False)
    resources: Resources
    images: Mapping[str, ImagePlan]
    steps: tuple[StepPlan, ...]
    copied: tuple[str, ...]      # inputs that are outputs too: loaded and saved at the start
    stac: Mapping[str, StacSelection] = field(default_factory=FrozenMap, compare=False,
                                              repr=False)  # what each STAC input reads

    @property
    def peak(self) -> Memory:
        moments = ([step.memory for step in self._running]
                   or [Memory(0, 0, self.resources.fixed_bytes)])
        return max(moments, key=lambda memory: memory.total)

    @property
    def peak_step(self) -> str | None:
        if not self.steps:
            return None
        return max(self._running, key=lambda step: step.memory.total).name

    @property
    def _running(self) -> list[StepPlan]:
        """The steps that run tiles: not those fused into a later one (its chain's moment)."""
        return [step for step in self.steps if step.fused_into is None]

    @property
    def fits(self) -> bool:
        """Whether the estimated peak leaves the budget :data:`BUDGET_HEADROOM` of room for the
        estimate's own error (measured: up to about 20 % under tight budgets)."""
        budget = self.resources.memory
        return budget is None or self.peak.held <= budget * (1 - BUDGET_HEADROOM)

    @property
    def input_sources(self) -> dict[str, Source]:
        """Each input's source (its files, as the run reads them), by name."""
        return {name: image.source for name, image in self.images.items()
                if image.made_by is None and image.source is not None}

    @property
    def stac_inputs(self) -> tuple[StacInputPlan, ...]:
        """What each STAC input reads: its Item and its assets' hrefs."""
        return tuple(
            StacInputPlan(name, read.item_id, redact(os.fspath(read.item)),
                          tuple((asset_name, asset.key, redact(os.fspath(asset.href)))
                                for asset_name, asset in read.assets),
                          tuple((id_, when, tuple(redact(os.fspath(href)) for href in hrefs))
                                for id_, when, hrefs in read.items), read.grid)
            for name, read in self.stac.items())

    @property
    def needs_scratch(self) -> bool:
        """Whether the run writes images to scratch files (a step's image, no output, written
        or spilled): then its scratch folder must exist, be writable, and on a cluster be seen
        by every worker."""
        return any(image.file is not None and image.file.scratch for image in self.images.values())

    @property
    def scratch_refusal(self) -> str | None:
        """Why this run cannot write its scratch files where it would (None: it can, or writes
        none): see :func:`~eoscale.pipeline.plan.files.scratch_refusal`."""
        return scratch_refusal(self.spec, self.resources) if self.needs_scratch else None

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready values (``eoscale run --dry-run --json``)."""
        peak = self.peak
        return {
            "pipeline": str(self.spec.source) if self.spec.source else None,
            "resources": {"workers": self.resources.workers, "executor": self.resources.executor,
                          "cluster": self.resources.cluster,
                          "gdal_cache_bytes": self.resources.gdal_cache,
                          "memory_budget": self.resources.memory,
                          "budget_given": self.resources.given,
                          "base_bytes": self.resources.base},
            "images": [_image_dict(image) for image in self.images.values()],
            "steps": [_step_dict(step, self.steps) for step in self.steps],
            "copied": list(self.copied),
            "stac_inputs": [stac.to_dict() for stac in self.stac_inputs],
            "estimate": {"peak_bytes": peak.total, "images_bytes": peak.images,
                         "tiles_bytes": peak.tiles, "fixed_bytes": peak.fixed,
                         "peak_step": self.peak_step, "fits": self.fits},
        }


def _image_dict(image: ImagePlan) -> dict[str, Any]:
    return {"name": image.name, "made_by": image.made_by,
            "path": str(image.path) if image.path else None,
            "shape": [image.count, image.height, image.width], "dtype": image.dtype,
            "known": image.known, "bytes": image.nbytes, "lives": image.lives.value,
            "why": image.why, "arrives_before_step": image.arrives,
            "released_after_step": image.released_after,
            "output": str(image.output) if image.output else None,
            "encoded_by_workers": image.encoded, "not_encoded_why": image.not_encoded,
            "overviews_by_workers": (None if image.overviews_not_encoded is None
                                     else not image.overviews_not_encoded),
            "overviews_not_encoded_why": image.overviews_not_encoded or None}


def _step_dict(step: StepPlan, plan_steps: tuple[StepPlan, ...]) -> dict[str, Any]:
    return {"index": step.index, "name": step.name, "kind": step.kind,
            "callable": step.step.callable, "inputs": list(step.step.inputs),
            "outputs": list(step.step.outputs), "margin": step.margin,
            "margin_from": step.margin_from,
            "tiling": {"mode": step.tiling.mode, "tile_size": step.tiling.tile_size,
                       "tiles": step.tiling.tile_count, "chunks": step.chunks},
            "loads": list(step.loads), "stages": list(step.saves),
            "releases": list(step.releases),
            "fused_into": step.fused_into, "chain": list(step.chain),
            "recompute": round(step.recompute, 4),
            "fed_by": None if step.fed_by is None else plan_steps[step.fed_by].name,
            "feeding": step.feeding or None,
            "memory": {"total_bytes": step.memory.total, "images_bytes": step.memory.images,
                       "tiles_bytes": step.memory.tiles, "fixed_bytes": step.memory.fixed}}
