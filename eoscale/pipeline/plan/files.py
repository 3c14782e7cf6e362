"""Which file a step's image is written to as its tiles are computed, laid out how, and whether
the run's scratch files are where its workers can read them.

An image ``written`` or ``spilled`` goes to its output's staged file when it is an output (laid
out as the output says: :mod:`eoscale.io.layout`), else to a scratch file for its name
(:class:`~eoscale.engine.scratch.Scratch`): tiled, uncompressed (the fastest to write and to
read back by window), BigTIFF when it may pass 4 GB. Its step's tiles cover the file's blocks
whole: the step is tiled for the output's blocks (512 pixels for a scratch file), and a scratch
file's blocks are its step's tiles when they can be (a multiple of 16 pixels, at most 4096), an
alignment planning the step again with that block shape keeps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eoscale.engine.tiling import TileLayout
from eoscale.io.raster import DEFAULT_GTIFF_OPTIONS
from eoscale.pipeline.plan.resources import Resources
from eoscale.pipeline.spec import FrozenMap, PipelineSpec

#: The largest block a scratch file takes from its step's tiles.
MAX_SCRATCH_BLOCK = 4096


@dataclass(frozen=True)
class ImageFile:
    """The file a step's image is written to as it is computed: its output's staged file, or
    (``scratch``) a scratch file for its name; the block shape (rows, cols) its step's tiles
    are aligned to; a scratch file's creation options (an output's are its spec's)."""

    scratch: bool
    block_shape: tuple[int, int]
    options: Mapping[str, Any] | None = None


def planned_block(spec: PipelineSpec, name: str) -> tuple[int, int]:
    """The block shape a step writing image ``name`` as it computes is tiled for: its output's
    (``blockysize``, ``blockxsize``, else the default), the default for a scratch file."""
    output = spec.outputs.get(name)
    options = {str(key).lower(): value for key, value in (output.options if output else {}).items()}
    default = DEFAULT_GTIFF_OPTIONS["blockysize"]
    return (int(options.get("blockysize", default)), int(options.get("blockxsize", default)))


def image_file(spec: PipelineSpec, name: str, tiling: TileLayout) -> ImageFile:
    """The file image ``name`` is written to, by a step tiled as ``tiling``."""
    if name in spec.outputs:
        return ImageFile(False, planned_block(spec, name))
    size = tiling.tile_size
    whole = size % 16 == 0 and size <= MAX_SCRATCH_BLOCK and tiling.mode == "tiles"
    block = size if whole else DEFAULT_GTIFF_OPTIONS["blockysize"]
    return ImageFile(True, (block, block), FrozenMap({
        "tiled": True, "blockxsize": block, "blockysize": block, "compress": "none",
        "bigtiff": "IF_SAFER"}))


def scratch_refusal(spec: PipelineSpec, resources: Resources) -> str | None:
    """Why a run that writes scratch files cannot (None: it can): on a remote cluster, they
    must be in a folder every worker reads at the same path; the system's temporary folder is
    no such folder, so one must be named."""
    if resources.executor != "cluster" or spec.scratch is not None:
        return None
    from eoscale.engine.cluster import parse_cluster

    address = spec.cluster or resources.cluster or ""
    with contextlib.suppress(ValueError):
        if parse_cluster(address).local:
            return None
    return (f"this run on the cluster {address} writes images to scratch files that its workers "
            "read back: give a scratch folder (--scratch DIR, 'scratch:') on a filesystem every "
            "worker mounts at the same path")
