"""How much memory each moment of a run is estimated to hold: a step's (or a fused chain's)
images, tile buffers and caches (:func:`step_memory`), from the values the plan decided."""

from __future__ import annotations

from collections.abc import Mapping

from eoscale.engine.contract import declared_memory_factor
from eoscale.engine.fused import held_during
from eoscale.engine.tiling import TileLayout
from eoscale.errors import USER_ERRORS
from eoscale.io.sources import WARP_STRIP_ROWS
from eoscale.pipeline.plan.resources import Memory, Resources
from eoscale.pipeline.plan.values import ImagePlan, RunPlan, StepPlan
from eoscale.pipeline.resolve import StepCallables, callable_params
from eoscale.pipeline.spec import StepSpec

#: A step's part in a moment's estimate: the step, its largest window (rows, cols) and its
#: callable's declared memory factor (None: none, or not known before the run).
Part = tuple[StepSpec, tuple[int, int], float | None]


def step_memory(index: int, parts: list[Part], tiling: TileLayout,
                images: Mapping[str, ImagePlan], resources: Resources) -> Memory:
    """Memory while a step (or a fused chain: ``parts``, each step with its largest window and
    declared memory factor, in the chain's order) loads its inputs and computes: the shared
    images alive then (its outputs included), and each worker's tile: a decoded window of each
    input read from its file, the callable's temporaries and results (its declared
    ``memory_factor`` times its inputs' bytes, else as much again as its inputs plus its
    results), and GDAL's block cache (capped in each worker) while it decodes files. Only as
    many workers as there are tiles hold one (a small image on its file's blocks may have fewer
    tiles than workers). The main process adds what the outputs it writes from the tiles'
    pixels hold until their blocks are complete (:func:`written_here`).

    A worker runs a chain's steps one after the other on each tile, and lets a step's results go
    once the last step reading them has run (:func:`~eoscale.engine.fused.held_during`): its
    tile holds, at the worst step, that step's decoded windows, temporaries and results, beside
    the whole results of the earlier steps still to be read (a kept image is a view of its
    step's results over that step's window), never every step's temporaries at once (counting
    them so, the estimate of the 65,536 x 65,536 chain of the benchmarks was 1.44 x its
    measured peak)."""
    held = sum(image.nbytes for image in images.values()
               if image.lives.held_whole and image.arrives <= index <= image.released_after)
    made = [images[name] for name in parts[-1][0].outputs]
    # A written output's tile cores are cast and encoded (or pickled and sent) while the last
    # step's results are alive.
    core_pixels = tiling.tile_size * (tiling.tile_size if tiling.mode == "tiles" else tiling.width)
    written = 2 * core_pixels * sum(image.pixel_bytes for image in made
                                    if image.lives.written_as_computed)
    windows = {name: rows * columns for step, (rows, columns), _ in parts for name in step.outputs}
    kept = held_during([step for step, _, _ in parts])
    from_files: dict[str, ImagePlan] = {}
    at_each_step = []
    for position, (step, (rows, columns), factor) in enumerate(parts):
        read = [images[name] for name in dict.fromkeys(step.inputs)]
        files = [image for image in read if image.lives.read_by_window]
        from_files.update((image.name, image) for image in files)
        inputs = sum(image.pixel_bytes for image in read)
        computed = (inputs * factor if factor is not None  # temporaries and results, declared
                    else inputs + sum(images[name].pixel_bytes for name in step.outputs))
        at_each_step.append(rows * columns * (computed + sum(image.pixel_bytes for image in files))
                            + sum(windows[name] * images[name].pixel_bytes
                                  for name in kept[position]))
    at_each_step[-1] += written
    per_worker = max(at_each_step)
    busy = min(resources.workers, tiling.tile_count)  # fewer tiles than workers: some idle
    here = sum(written_here(images[name], tiling, resources)
               for step, _, _ in parts for name in step.outputs)
    if resources.executor == "cluster":  # this process: the tiles it receives and writes
        return Memory(held, here + busy * 2 * core_pixels
                      * sum(image.pixel_bytes for image in made), resources.fixed_bytes)
    # GDAL's block cache, while a worker decodes a file by window as it computes; an input
    # loaded into shared memory before the step was decoded by datasets closed since, which
    # freed their cached blocks (counted, W3's fused chain at 2048 was estimated 1.26 x its peak)
    decoded = from_files
    if decoded:
        per_worker += min(sum(image.nbytes for image in decoded.values()),
                          resources.gdal_cache)
    rows = max(window[0] for _, window, _ in parts)
    for image in decoded.values():  # a warped view keeps the whole-width strips of its window
        if image.source is not None and image.source.warped():
            per_worker += min(image.height, rows + 2 * WARP_STRIP_ROWS) * image.width \
                * image.pixel_bytes
    return Memory(held, here + busy * per_worker, resources.fixed_bytes)


def written_here(image: ImagePlan, tiling: TileLayout, resources: Resources) -> int:
    """What an image written as computed by the main process (its tiles are not whole blocks
    of its file) holds there: the pixels waiting for their blocks in its
    :class:`~eoscale.io.raster.TileWriter`, whole image rows from the top of the first block
    not yet written down to the lowest tile in, about a block's rows and two tiles' (a tile of
    the next row may come before the last of its own); and a striped file's strips, which GDAL
    keeps in its block cache until the cache is full (a tiled file's whole blocks it writes at
    once). 0 for any other image."""
    if image.encoded is not False or not image.lives.written_as_computed or image.file is None:
        return 0
    block_rows, block_cols = image.file.block_shape
    rows = min(image.height, block_rows + 2 * tiling.tile_size)
    buffered = rows * image.width * image.pixel_bytes
    if block_cols >= image.width:  # strips
        buffered += min(image.nbytes, resources.gdal_cache)
    return buffered


def waiting_here(plan: RunPlan, step: StepPlan) -> list[tuple[str, int]]:
    """The images that ``step`` (with its chain) writes from the main process, each with the
    bytes of it that wait there for whole blocks (:func:`written_here`), where there are any."""
    found = []
    for index in step.chain or (step.index,):
        for name in plan.spec.steps[index].outputs:
            here = written_here(plan.images[name], step.tiling, plan.resources)
            if here:
                found.append((name, here))
    return found


def grown_window(tiling: TileLayout, reach: int) -> tuple[int, int]:
    """The largest window a step of a fused chain computes on: a tile grown by ``reach``."""
    columns = tiling.tile_size if tiling.mode == "tiles" else tiling.width
    return (min(tiling.height, tiling.tile_size + 2 * reach),
            min(tiling.width, columns + 2 * reach))


def memory_factor(step: StepSpec, found: StepCallables) -> float | None:
    """The callable's declared memory factor for the step's params (None: none, or unknown
    before the run because the params hold ``${...}`` and it is a function of them)."""
    declared_factor = getattr(found.fn, "memory_factor", None)
    if declared_factor is None or (callable(declared_factor) and any(step.references())):
        return None
    try:
        return declared_memory_factor(found.fn, {} if any(step.references())
                                      else callable_params(step, found.fn, {}))
    except USER_ERRORS:  # the user's function: the estimate falls back, says nothing
        return None
