"""Which file a step's image is written to as its tiles are computed, laid out how, and whether
the run's scratch files are where its workers can read them.

An image ``written`` or ``spilled`` goes to its output's staged file when it is an output (laid
out as the output says: :mod:`eoscale.io.layout`), else to a scratch file for its name
(:class:`~eoscale.engine.scratch.Scratch`): tiled, uncompressed (the fastest to write and to
read back by window), BigTIFF when it may pass 4 GB. Its step's tiles cover the file's blocks
whole: the step is tiled on the output's block grid as GDAL lays it out for its options
(:func:`planned_blocks`), and a scratch file's blocks are its step's tiles when they can be (a
multiple of 16 pixels, at most 4096, which its step's automatic square tiles are), an alignment
planning the step again with that block shape keeps.

Whether the workers encode such a file's blocks or the main process writes it from the tiles'
pixels is decided here too (:func:`encoding_refusal`), by the rules the engine applies when the
step runs (:func:`~eoscale.engine.encoded.encoded_target`): creation options the block encoder
handles, tile cores that are whole blocks, workers that share this machine's filesystem.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eoscale.engine.tiling import TileLayout, cores_are_whole_blocks
from eoscale.io.blocks import BlockEncodingError, BlockLayout
from eoscale.io.layout import tiff_options
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
    """The block shape an output's options name (``blockysize``, ``blockxsize``, else the
    default), or the default for a scratch file: for a file the block encoder cannot lay out."""
    output = spec.outputs.get(name)
    options = {str(key).lower(): value for key, value in (output.options if output else {}).items()}
    default = DEFAULT_GTIFF_OPTIONS["blockysize"]
    return (int(options.get("blockysize", default)), int(options.get("blockxsize", default)))


def written_options(spec: PipelineSpec, name: str) -> Mapping[str, Any] | None:
    """The creation options output ``name``'s plain GeoTIFF is written with as it is computed
    (a COG's are its intermediate file's: :func:`~eoscale.io.layout.tiff_options`)."""
    output = spec.outputs[name]
    return tiff_options(output.layout, output.options)


def file_profile(count: int, height: int, width: int, dtype: str) -> dict[str, Any]:
    """The profile the block layout of an image's file is planned from."""
    return {"count": count, "height": height, "width": width, "dtype": dtype}


def planned_blocks(spec: PipelineSpec, name: str, profile: Mapping[str, Any]) -> tuple[int, int]:
    """The block shape (rows, cols) a step writing image ``name`` (of ``profile``) as it
    computes is tiled for: its output file's, as GDAL lays it out for the options it is written
    with (strips of whole rows when untiled); for a scratch file, whose blocks are its step's
    square tiles when they are a multiple of 16 px (:func:`image_file`), 16 px, else the
    default."""
    if name not in spec.outputs:  # square tiles a multiple of 16 px are its blocks
        return (16, 16) if spec.tiling.mode == "tiles" else planned_block(spec, name)
    try:
        layout = BlockLayout.from_profile(profile, written_options(spec, name))
    except BlockEncodingError:
        return planned_block(spec, name)
    return (layout.block_height, layout.block_width)


def image_file(spec: PipelineSpec, name: str, tiling: TileLayout,
               profile: Mapping[str, Any]) -> ImageFile:
    """The file image ``name`` (of ``profile``) is written to, by a step tiled as ``tiling``."""
    if name in spec.outputs:
        return ImageFile(False, planned_blocks(spec, name, profile))
    size = tiling.tile_size
    whole = size % 16 == 0 and size <= MAX_SCRATCH_BLOCK and tiling.mode == "tiles"
    block = size if whole else DEFAULT_GTIFF_OPTIONS["blockysize"]
    return ImageFile(True, (block, block), FrozenMap({
        "tiled": True, "blockxsize": block, "blockysize": block, "compress": "none",
        "bigtiff": "IF_SAFER"}))


def encoding_refusal(spec: PipelineSpec, name: str, file: ImageFile, profile: Mapping[str, Any],
                     tiling: TileLayout, step: str, forced: str | None = None) -> str | None:
    """Why the workers do not encode image ``name``'s ``file`` (None: they do), written by
    ``step`` tiled as ``tiling`` (``forced``: why its tile size is not the automatic one), as
    the engine decides when the step runs: the file's creation options, then whether the
    tile cores are whole blocks of it (every executor's workers encode: a cluster's write
    into the shared folders the run checks they see)."""
    options = file.options if file.scratch else written_options(spec, name)
    try:
        layout = BlockLayout.from_profile(profile, options)
    except BlockEncodingError as exc:
        return str(exc)
    blocks = (layout.block_height, layout.block_width)
    if not cores_are_whole_blocks(tiling.tile_size, tiling.height, tiling.width, tiling.mode,
                                  blocks):
        unit = "px tiles" if tiling.mode == "tiles" else "row strips"
        why = f" ({forced})" if forced else ""
        kind = "tiled" if layout.tiled else "striped"
        return (f"step '{step}' runs {tiling.tile_size} {unit}{why}, not whole blocks of the "
                f"file's {blocks[0]} x {blocks[1]} blocks ({kind})")
    return None


def overviews_refusal(spec: PipelineSpec, name: str, profile: Mapping[str, Any],
                      tiling: TileLayout | None) -> str | None:
    """Why output ``name``'s overviews (a COG's, or ``overviews:``) are made after its image is
    written, by a second pass over the file, rather than by the workers with its pixels, as
    the engine decides when the step runs (:func:`~eoscale.engine.overviews.pyramid_refusal`;
    ``tiling``: its step's, None when the main process writes the image); None: the workers
    make them."""
    from eoscale.engine.overviews import pyramid_refusal
    from eoscale.io.layout import pyramid_for

    output = spec.outputs[name]
    if tiling is None:
        return "the main process writes the image"
    pyramid = pyramid_for(output.path, output.layout, output.options)
    if pyramid is None:
        return ("its overview factors or options are GDAL's (the workers compute factors 2, 4, "
                "8... with nearest or average)")
    cores = [(int(t.core.row_off), int(t.core.col_off), int(t.core.height), int(t.core.width))
             for t in tiling.tiles()]
    return pyramid_refusal(pyramid, profile, cores)


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
