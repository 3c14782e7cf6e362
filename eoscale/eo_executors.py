"""EOScale 1.0 API: the N images -> M images and N images -> M scalars executors, on the engine.

A 1.0 filter is called as in 1.0, ``image_filter(input_buffers, input_profiles, filter_parameters)``
with views (bands, rows, cols) of each input over an :class:`~eoscale.utils.MpTile` and its margins
(read-only: a filter that needs to modify its input works on a copy). The tiles come from
:func:`compute_mp_tiles`, looked up when an executor runs (tests patch it), which returns the
engine's own plan; a patched one may drop tiles (they are not computed) or shrink margins, as long
as its tiles lie on a regular grid of square tiles or strips, which is all the engine runs.

Unlike 1.0, merges happen in tile order whatever the workers, a reduction without ``output_scalars``
starts from the first tile's scalars (not from 0.0), and a filter's images are cast to their
profile's dtype in the workers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from rasterio.windows import Window

from eoscale.data_types import VirtualPath
from eoscale.engine import (
    Engine,
    SharedRaster,
    Tile,
    Tiling,
    auto_tile_size,
    plan_tiles,
    tile_context,
)
from eoscale.manager import EOContextManager
from eoscale.utils import MpTile, read_window

StartMethod = Literal["fork", "spawn", "forkserver"]
_CoreKey = tuple[int, int, int, int]
_ABSORBED = object()


def compute_mp_tiles(inputs: list, stable_margin: int, nb_workers: int, tile_mode: bool,
                     context_manager: EOContextManager) -> list[MpTile]:
    """The tiles the engine runs for these inputs: square tiles if ``tile_mode``, else strips."""
    shapes = {context_manager.get_array(key=key).shape[-2:] for key in inputs}
    if len(shapes) != 1:
        raise ValueError("ERROR: all input images must have the same width and the same height !")
    [(height, width)] = shapes
    mode = "tiles" if tile_mode else "strips"
    size = context_manager.tile_max_size or auto_tile_size(height, width, nb_workers,
                                                           stable_margin, mode)
    return [_mp_tile(tile) for tile in plan_tiles(height, width, size, stable_margin, mode)]


def n_images_to_m_images_filter(inputs: list | None = None, image_filter: Callable | None = None,
                                filter_parameters: dict | None = None,
                                generate_output_profiles: Callable | None = None,
                                concatenate_filter: Callable | None = None,
                                stable_margin: int = 0,
                                context_manager: EOContextManager | None = None,
                                multiproc_context: StartMethod = "fork",
                                filter_desc: str = "N Images to M images MultiProcessing...",
                                ) -> list[VirtualPath]:
    """Run ``image_filter`` on every tile of the inputs; returns the keys of its M output images.

    The outputs have the profiles ``generate_output_profiles(input_profiles, filter_parameters)``
    returns (one profile or a list), by default copies of the inputs'. Each tile's results are cut
    to the tile's core and written in place; with ``concatenate_filter(outputs, chunk_outputs,
    tile)`` the cut results are handed to it instead, in tile order.
    """
    manager, params = _checked(inputs, image_filter, context_manager, filter_parameters)
    tiles = compute_mp_tiles(inputs=inputs, stable_margin=stable_margin,
                             nb_workers=manager.nb_workers, tile_mode=manager.tile_mode,
                             context_manager=manager)
    in_profiles = tuple(manager.get_profile(key) for key in inputs)
    profiles = [dict(profile) for profile in in_profiles]
    if generate_output_profiles is not None:
        made = generate_output_profiles(profiles, params)
        profiles = made if isinstance(made, list) else [made]
    layouts = tuple((int(p.get("count", 1)), np.dtype(p["dtype"]).name) for p in profiles)
    with _step(manager, inputs, tiles, multiproc_context) as (engine, rasters, tiling, margin):
        if concatenate_filter is None:
            run = _OnMpTiles(image_filter, in_profiles, _by_core(tiles), "images", layouts)
            outputs = engine.map(run, rasters, params=params, margin=margin, tiling=tiling,
                                 name=filter_desc,
                                 profile_fn=lambda _profiles, _params: profiles)
        else:
            outputs = [engine.create(profile, name=filter_desc) for profile in profiles]
            fold = _InTileOrder(concatenate_filter, [raster.array for raster in outputs])
            run = _OnMpTiles(image_filter, in_profiles, _by_core(tiles), "chunks")
            try:
                engine.reduce(run, rasters,
                              combine=fold.combine, finalize=fold.finalize, params=params,
                              margin=margin, tiling=tiling, name=filter_desc)
            except BaseException:
                for raster in outputs:
                    engine.release(raster)
                raise
    return [manager._add(engine, raster) for raster in outputs]


def n_images_to_m_scalars(inputs: list, image_filter: Callable, concatenate_filter: Callable,
                          context_manager: EOContextManager, filter_parameters: dict | None = None,
                          nb_output_scalars: int | None = None, output_scalars: list | None = None,
                          multiproc_context: StartMethod = "fork",
                          filter_desc: str = "N Images to M Scalars MultiProcessing...") -> list:
    """Run ``image_filter`` on every tile and merge its scalars with ``concatenate_filter``.

    ``concatenate_filter(output_scalars, chunk_output_scalars, tile)`` updates ``output_scalars`` in
    place; it is called in tile order. Without ``output_scalars``, the first tile's scalars start
    the merge; with them, every tile's scalars are merged into that list, which is returned.
    """
    manager, params = _checked(inputs, image_filter, context_manager, filter_parameters)
    if concatenate_filter is None:
        raise ValueError("A concatenate filter must be set !")
    if nb_output_scalars is None and output_scalars is None:
        raise ValueError("The number of output scalars must be set (integer value expected) !")
    tiles = compute_mp_tiles(inputs=inputs, stable_margin=0, nb_workers=manager.nb_workers,
                             tile_mode=manager.tile_mode, context_manager=manager)
    fold = _InTileOrder(concatenate_filter, output_scalars)
    run = _OnMpTiles(image_filter, tuple(manager.get_profile(key) for key in inputs),
                     _by_core(tiles), "scalars")
    with _step(manager, inputs, tiles, multiproc_context) as (engine, rasters, tiling, margin):
        scalars = engine.reduce(run, rasters,
                                combine=fold.combine, finalize=fold.finalize, params=params,
                                margin=margin, tiling=tiling, name=filter_desc)
    return scalars if scalars is not None else [0.0] * (nb_output_scalars or 0)


def _checked(inputs: list | None, image_filter: Callable | None,
             context_manager: EOContextManager | None,
             filter_parameters: dict | None) -> tuple[EOContextManager, dict]:
    if not inputs:
        raise ValueError("At least one input image must be given.")
    if image_filter is None:
        raise ValueError("A filter must be set !")
    if context_manager is None:
        raise ValueError("The EOScale Context Manager must be given !")
    return context_manager, filter_parameters if filter_parameters is not None else {}


@contextlib.contextmanager
def _step(manager: EOContextManager, inputs: Sequence[str], tiles: Sequence[MpTile],
          start_method: str) -> Iterator[tuple[Engine, list[SharedRaster], Tiling, int]]:
    """The engine, input rasters, tiling and margin of a step that runs exactly ``tiles``."""
    engine = manager._engine(start_method)
    with manager._step_inputs(inputs, engine) as rasters:
        tiling, margin = _grid_of(tiles, rasters[0].ref.height, rasters[0].ref.width, engine.tiling)
        yield engine, rasters, tiling, margin


def _grid_of(tiles: Sequence[MpTile], height: int, width: int,
             default: Tiling) -> tuple[Tiling, int]:
    """The engine tiling and margin whose tiles hold each of ``tiles`` (their core and margins)."""
    if not tiles:
        return default, 0
    if all(t.start_x == 0 and t.end_x == width - 1 for t in tiles):
        tiling = Tiling("strips", max(t.end_y - t.start_y + 1 for t in tiles))
    else:
        tiling = Tiling("tiles", max(max(t.end_x - t.start_x, t.end_y - t.start_y) + 1
                                     for t in tiles))
    margin = max(max(t.top_margin, t.right_margin, t.left_margin, t.bottom_margin) for t in tiles)
    engine_tiles = {_core_key(t.core): t for t in plan_tiles(height, width, tiling.tile_size,
                                                             margin, tiling.mode)}
    for tile in tiles:
        engine_tile = engine_tiles.get(_mp_core_key(tile))
        if engine_tile is None or not _inside(read_window(tile), engine_tile.read):
            raise ValueError(f"compute_mp_tiles gave {tile}, which is not a tile of a regular grid "
                             f"of {tiling.mode} of {tiling.tile_size} with a margin of {margin} on "
                             f"a {height} x {width} image: the engine runs regular grids only")
    return tiling, margin


def _mp_tile(tile: Tile) -> MpTile:
    core, read = tile.core, tile.read
    return MpTile(start_x=core.col_off, start_y=core.row_off,
                  end_x=core.col_off + core.width - 1, end_y=core.row_off + core.height - 1,
                  top_margin=core.row_off - read.row_off,
                  right_margin=read.col_off + read.width - core.col_off - core.width,
                  left_margin=core.col_off - read.col_off,
                  bottom_margin=read.row_off + read.height - core.row_off - core.height)


def _core_key(core: Window) -> _CoreKey:
    return (core.col_off, core.row_off, core.col_off + core.width - 1,
            core.row_off + core.height - 1)


def _mp_core_key(tile: MpTile) -> _CoreKey:
    return (tile.start_x, tile.start_y, tile.end_x, tile.end_y)


def _by_core(tiles: Sequence[MpTile]) -> dict[_CoreKey, MpTile]:
    return {_mp_core_key(tile): tile for tile in tiles}


def _inside(inner: Window, outer: Window) -> bool:
    return (outer.col_off <= inner.col_off and outer.row_off <= inner.row_off
            and inner.col_off + inner.width <= outer.col_off + outer.width
            and inner.row_off + inner.height <= outer.row_off + outer.height)


@dataclass(frozen=True)
class _OnMpTiles:
    """A 1.0 filter, run by the engine on each of its tiles that is one of the MpTiles given.

    ``kind`` says what goes back to the engine: ``images``, the filter's images over the engine's
    read window (for ``Engine.map``; zeros for a tile not given); ``chunks``, the MpTile and its
    images cut to its core; ``scalars``, the MpTile and the filter's scalars (both for
    ``Engine.reduce``; None for a tile not given).
    """

    image_filter: Callable
    profiles: tuple[dict, ...]  # the inputs' profiles, as get_profile gives them
    tiles: Mapping[_CoreKey, MpTile]
    kind: Literal["images", "chunks", "scalars"]
    layouts: tuple[tuple[int, str], ...] = ()  # bands and dtype of each output image

    def __call__(self, arrays: Sequence[np.ndarray], _profiles: Sequence[dict],
                 params: dict) -> Any:
        context = tile_context()
        assert context is not None, "a 1.0 filter runs inside the engine"
        read = context.read
        tile = self.tiles.get(_core_key(context.core))
        if tile is None:
            return ([np.zeros((bands, read.height, read.width), dtype)
                     for bands, dtype in self.layouts] if self.kind == "images" else None)
        window = read_window(tile)
        rows, cols = Window(window.col_off - read.col_off, window.row_off - read.row_off,
                            window.width, window.height).toslices()
        buffers = [array[:, rows, cols] for array in arrays]
        result = self.image_filter(buffers, [dict(p) for p in self.profiles], params)
        if self.kind == "scalars":
            return tile, result if isinstance(result, list) else [result]
        images = _images(result, buffers[0].shape[1:])
        if self.kind == "chunks":
            core_rows = slice(tile.top_margin, tile.top_margin + tile.end_y - tile.start_y + 1)
            core_cols = slice(tile.left_margin, tile.left_margin + tile.end_x - tile.start_x + 1)
            return tile, [image[:, core_rows, core_cols] for image in images]
        if len(images) != len(self.layouts):
            raise ValueError(f"the filter returned {len(images)} image(s) for "
                             f"{len(self.layouts)} output profile(s)")
        images = [image.astype(dtype, copy=False)
                  for image, (_bands, dtype) in zip(images, self.layouts)]
        if (window.width, window.height) == (read.width, read.height):
            return images
        padded = [np.zeros((image.shape[0], read.height, read.width), image.dtype)
                  for image in images]
        for whole, image in zip(padded, images):
            whole[:, rows, cols] = image
        return padded


def _images(result: Any, shape: tuple[int, ...]) -> list[np.ndarray]:
    """A filter's images as (bands, rows, cols), checked to cover the tile it read."""
    if isinstance(result, np.ndarray):
        result = [result]
    if not isinstance(result, (list, tuple)) or not all(isinstance(r, np.ndarray) for r in result):
        raise ValueError("Output of the image filter must be either a Python list or a numpy array")
    images = [image[np.newaxis] if image.ndim == 2 else image for image in result]
    if any(image.shape[1:] != shape for image in images):
        raise ValueError("ERROR: Output images must have the same height and width of input "
                         "images for this filter !")
    return images


class _InTileOrder:
    """Hands per-tile partials ``(tile, chunk)`` to a 1.0 ``concatenate_filter``, in tile order.

    ``Engine.reduce`` folds left in tile order from the first tile's partial; ``combine`` and
    ``finalize`` absorb each partial into ``target`` as they see it, with
    ``concatenate_filter(target, chunk, tile)``, so a merge in place keeps its 1.0 meaning. Without
    a target, the first chunk given (as a new list) starts it. Tiles that were not run give None.
    """

    def __init__(self, concatenate_filter: Callable, target: list | None):
        self.concatenate_filter = concatenate_filter
        self.target = target

    def combine(self, left: Any, right: Any) -> Any:
        self._absorb(left)
        self._absorb(right)
        return _ABSORBED

    def finalize(self, result: Any, _params: dict) -> list | None:
        self._absorb(result)
        return self.target

    def _absorb(self, partial: Any) -> None:
        if partial is _ABSORBED or partial is None:
            return
        tile, chunk = partial
        if self.target is None:
            self.target = list(chunk)
        else:
            self.concatenate_filter(self.target, chunk, tile)
