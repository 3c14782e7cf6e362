"""EOScale 1.0's executors (``eoscale.eo_executors``): N images -> M images and N images -> M
scalars, run on the engine.

A 1.0 filter is called as in 1.0, ``image_filter(input_buffers, input_profiles,
filter_parameters)``, on the tiles :func:`compute_mp_tiles` returns: 1.0's own plan
(:func:`eoscale.compat.tiles.mp_tiles`), so a filter whose result depends on its tile gives
1.0's result. The function is looked up when an executor runs, so patching
``eoscale.eo_executors.compute_mp_tiles`` (the same module) changes the tiles; whatever tiles it
returns are run as given, in its order, as long as they lie in the image and their cores do not
overlap (a ``ValueError`` otherwise); pixels outside every core stay 0.

Each input buffer is the tile's read window (core and margins) as an array of the filter's own:
it may write into it, as 1.0 filters often do (``buffer[mask] = 255``, ``buffer += bonus``), and
its writes reach neither the shared input nor any other tile, where in 1.0 they landed in the
shared input for a neighbour tile's margin to read, or not, as the race went. The arrays are
copy-on-write mappings of the shared input, so a filter that writes nothing copies nothing.

Unlike 1.0, merges happen in tile order whatever the workers (as 1.0 did with one worker), a
reduction without ``output_scalars`` starts from the first tile's scalars (not from 0.0), and a
filter's images are cast to their profile's dtype in the workers.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from eoscale.compat.manager import EOContextManager
from eoscale.compat.tiles import MpTile, mp_tiles, tiles_plan
from eoscale.compat.types import VirtualPath
from eoscale.engine import tile_context

StartMethod = Literal["fork", "spawn", "forkserver"]
_ABSORBED = object()


def compute_mp_tiles(inputs: list, stable_margin: int, nb_workers: int, tile_mode: bool,
                     context_manager: EOContextManager) -> list[MpTile]:
    """1.0's tiles for these inputs: squares if ``tile_mode``, else strips (:func:`mp_tiles`)."""
    shapes = {context_manager.get_array(key=key).shape[-2:] for key in inputs}
    if len(shapes) != 1:
        raise ValueError("ERROR: all input images must have the same width and the same height !")
    [(height, width)] = shapes
    return mp_tiles(height, width, stable_margin, nb_workers, tile_mode,
                    context_manager.tile_max_size)


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
    with manager.step(inputs, multiproc_context) as (engine, rasters):
        layout = tiles_plan(tiles, rasters[0].ref.height, rasters[0].ref.width, filter_desc)
        options = {"params": {_PARAMETERS: params}, "layout": layout, "writable_inputs": True,
                   "name": filter_desc}
        if concatenate_filter is None:
            run = _OnMpTiles(image_filter, in_profiles, tuple(tiles), "images", layouts)
            exact = [_as_given(profile, in_profiles[0]) for profile in profiles]
            outputs = engine.map(run, rasters, profile_fn=lambda _profiles, _params: exact,
                                 **options)
        else:
            outputs = [engine.create(_as_given(profile, in_profiles[0]), name=filter_desc)
                       for profile in profiles]
            fold = _InTileOrder(concatenate_filter, [raster.array for raster in outputs], tiles)
            run = _OnMpTiles(image_filter, in_profiles, tuple(tiles), "chunks")
            try:
                engine.reduce(run, rasters, combine=fold, finalize=fold.finalize, **options)
            except BaseException:
                for raster in outputs:
                    engine.release(raster)
                raise
    return [manager.register(engine, raster) for raster in outputs]


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
    fold = _InTileOrder(concatenate_filter, output_scalars, tiles)
    run = _OnMpTiles(image_filter, tuple(manager.get_profile(key) for key in inputs),
                     tuple(tiles), "scalars")
    with manager.step(inputs, multiproc_context) as (engine, rasters):
        scalars = engine.reduce(run, rasters, combine=fold, finalize=fold.finalize,
                                params={_PARAMETERS: params}, name=filter_desc,
                                writable_inputs=True,
                                layout=tiles_plan(tiles, rasters[0].ref.height,
                                                  rasters[0].ref.width, filter_desc))
    return scalars if scalars is not None else [0.0] * (nb_output_scalars or 0)


#: Keys of an input's profile an output keeps when its profile leaves them out: its grid and
#: the engine's own ``block_shape``.
_KEPT_KEYS = ("height", "width", "block_shape")


def _as_given(profile: dict, template: dict) -> dict:
    """An output's profile as 1.0 wrote it, exactly what ``generate_output_profiles`` returned
    (one band unless it says): a key of the input's ``template`` it left out (or removed:
    nodata, compress, a CRS) is unset (None), where the engine would take the input's; but
    the grid (:data:`_KEPT_KEYS`)."""
    return {**{key: None for key in template}, "count": 1,
            **{key: template[key] for key in _KEPT_KEYS if key in template}, **profile}


#: The engine's params key under which a step's ``filter_parameters`` travel to its tiles as
#: they are: 1.0 handed them over whatever their type (SLURP gives an ``argparse.Namespace``),
#: where the engine's params are a dict.
_PARAMETERS = "eoscale_1_0_filter_parameters"


def _checked(inputs: list | None, image_filter: Callable | None,
             context_manager: EOContextManager | None,
             filter_parameters: Any) -> tuple[EOContextManager, Any]:
    if not inputs:
        raise ValueError("At least one input image must be given.")
    if image_filter is None:
        raise ValueError("A filter must be set !")
    if context_manager is None:
        raise ValueError("The EOScale Context Manager must be given !")
    return context_manager, filter_parameters if filter_parameters is not None else {}


@dataclass(frozen=True)
class _OnMpTiles:
    """A 1.0 filter, run by the engine on the tiles of an explicit plan made of ``tiles``.

    ``kind`` says what goes back to the engine: ``images``, the filter's images cast to the
    outputs' ``layouts`` (for ``Engine.map``); ``chunks``, the MpTile and its images cut to its
    core; ``scalars``, the MpTile and the filter's scalars (both for ``Engine.reduce``).
    """

    image_filter: Callable
    profiles: tuple[dict, ...]  # the inputs' profiles, as get_profile gives them
    tiles: tuple[MpTile, ...]  # in the plan's order
    kind: Literal["images", "chunks", "scalars"]
    layouts: tuple[tuple[int, str], ...] = ()  # bands and dtype of each output image

    def __call__(self, arrays: Sequence[np.ndarray], _profiles: Sequence[dict],
                 params: dict) -> Any:
        context = tile_context()
        assert context is not None, "a 1.0 filter runs inside the engine"
        tile = self.tiles[context.index]
        # 1.0 pickled the parameters for every tile: what a filter changes in them stays there
        params = pickle.loads(pickle.dumps(params[_PARAMETERS]))
        result = self.image_filter(list(arrays), [dict(p) for p in self.profiles], params)
        if self.kind == "scalars":
            return tile, result if isinstance(result, list) else [result]
        images = _images(result, arrays[0].shape[1:])
        if self.kind == "chunks":
            core_rows = slice(tile.top_margin, tile.top_margin + tile.end_y - tile.start_y + 1)
            core_cols = slice(tile.left_margin, tile.left_margin + tile.end_x - tile.start_x + 1)
            return tile, [image[:, core_rows, core_cols] for image in images]
        if len(images) > len(self.layouts):
            raise ValueError(f"the filter returned {len(images)} image(s) for "
                             f"{len(self.layouts)} output profile(s)")
        # as in 1.0, outputs the filter gives no image for stay zero
        shape = images[0].shape[1:]
        missing = [np.zeros((bands, *shape), dtype) for bands, dtype in self.layouts[len(images):]]
        # as 1.0's assignment into the output did, a one-band image fills every band
        return [np.broadcast_to(image, (bands, *image.shape[1:])).astype(dtype, copy=False)
                if image.shape[0] == 1 and bands > 1 else image.astype(dtype, copy=False)
                for image, (bands, dtype) in zip(images, self.layouts)] + missing


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

    #: The name the engine's messages give a raise in :meth:`combine`.
    eoscale_name = "concatenate_filter"

    def __init__(self, concatenate_filter: Callable, target: list | None,
                 tiles: Sequence[MpTile]):
        self.concatenate_filter = concatenate_filter
        self.target = target
        self._tiles = tuple(tiles)

    def __call__(self, left: Any, right: Any) -> Any:
        return self.combine(left, right)

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
            try:
                self.concatenate_filter(self.target, chunk, tile)
            except BaseException as exc:  # the engine names the tile whose chunk it was merging
                index = self._index(tile)
                if index is not None:
                    with contextlib.suppress(AttributeError, TypeError):
                        exc.eoscale_tile_index = index  # type: ignore[attr-defined]
                raise

    def _index(self, tile: MpTile) -> int | None:
        """``tile``'s position in the plan (a partial that came back from a worker is a copy
        of the plan's tile: found by its place)."""
        return next((position for position, known in enumerate(self._tiles)
                     if (known.start_x, known.start_y) == (tile.start_x, tile.start_y)), None)
