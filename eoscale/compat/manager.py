"""EOScale 1.0's ``EOContextManager`` (``eoscale.manager``): images shared under keys for the
1.0 executors.

Code written for EOScale 1.0 runs unchanged. The manager owns an :class:`~eoscale.engine.Engine`
of ``nb_workers`` workers, created when first needed and closed, with every shared image, when the
``with`` block ends. A step asking for another start method (``multiproc_context``) runs on a
second engine kept for it until then. ``tile_mode`` and ``tile_max_size`` shape the tiles of the
executors, as in 1.0 (:func:`eoscale.compat.tiles.mp_tiles`).

Differences from 1.0: profiles keep their CRS as it is (1.0 kept only EPSG codes, and failed on
others), a memory view is copied into shared memory only while a step reads it, ``update_profile``
copies the pixels once, and ``open_point_cloud`` is not supported.
"""

from __future__ import annotations

import contextlib
import copy
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from eoscale.compat.tiles import MpTile, read_window
from eoscale.compat.types import VirtualPath
from eoscale.engine import Engine, SharedRaster
from eoscale.engine.executors import default_start_method
from eoscale.io.raster import GRID_KEYS


class EOContextManager:
    """Images shared under :data:`~eoscale.data_types.VirtualPath` keys until ``with`` ends."""

    def __init__(self, nb_workers: int, tile_mode: bool = False,
                 tile_max_size: int | None = 0):
        self.nb_workers = nb_workers
        self.tile_mode = tile_mode
        # None, as an argparse option with no default gives it (SLURP's): no bound, as 0
        self.tile_max_size = tile_max_size or 0
        self._engines: dict[str | None, Engine] = {}
        self._rasters: dict[VirtualPath, tuple[Engine, SharedRaster]] = {}
        # key -> (key it was made from, the array, its profile), as 1.0 keeps them
        self._memviews: dict[VirtualPath, tuple[str, np.ndarray, dict]] = {}

    def __enter__(self) -> EOContextManager:
        self._release_all()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._release_all()

    def open_raster(self, raster_path: str) -> VirtualPath:
        """Read a raster file into shared memory (every worker decodes a part); returns its key."""
        engine = self._engine()
        return self.register(engine, engine.load(raster_path))

    def open_point_cloud(self, point_cloud_path: str) -> VirtualPath:
        """Not supported: eoscale 2 shares rasters only."""
        raise NotImplementedError(
            f"{point_cloud_path}: point clouds are not supported; EOScale 1.0's experimental "
            "point cloud support was not carried over (rasterize the cloud first, e.g. with PDAL)")

    def create_image(self, profile: Mapping[str, Any]) -> VirtualPath:
        """A zero-filled image for ``profile`` (count, height, width, dtype); returns its key."""
        engine = self._engine()
        return self.register(engine, engine.create(profile))

    def create_memview(self, key: str, arr_subset: np.ndarray,
                       arr_subset_profile: dict) -> VirtualPath:
        """Register an array (bands, rows, cols) as an image; releasing ``key`` forgets it."""
        memview_key = str(uuid.uuid4())
        self._memviews[memview_key] = (key, arr_subset, arr_subset_profile)
        return memview_key

    def get_array(self, key: str, tile: MpTile | None = None) -> np.ndarray:
        """A view (bands, rows, cols) of an image, or of a tile and its margins."""
        if not isinstance(key, str):
            raise TypeError(f"key parameters must be type 'str' not '{type(key).__name__}'")
        array = self._memviews[key][1] if key in self._memviews else self._raster(key).array
        if tile is None:
            return array
        rows, cols = read_window(tile).toslices()
        return array[:, rows, cols]

    def get_profile(self, key: str) -> dict:
        """A copy of an image's profile."""
        if key in self._memviews:
            return copy.deepcopy(self._memviews[key][2])
        return self._raster(key).profile

    def release(self, key: str) -> None:
        """Free an image now, and forget the memory views made from its key."""
        for view_key in [k for k, view in self._memviews.items() if view[0] == key]:
            del self._memviews[view_key]
        if key in self._memviews:
            del self._memviews[key]
            return
        engine, raster = self._rasters.pop(key)
        engine.release(raster)

    def write(self, key: str, img_path: str) -> None:
        """Write an image to ``img_path`` with the layout its profile asks (GeoTIFF by default)."""
        if key not in self._rasters:
            warnings.warn(f"WARNING: the key {key} to write is not known by the context manager",
                          stacklevel=2)
            return
        engine, raster = self._rasters[key]
        layout = {name: value for name, value in raster.ref.profile.items()
                  if name not in GRID_KEYS and name != "block_shape" and value is not None}
        # 1.0 wrote exactly what the profile says: no compression and strips unless it asks
        layout.setdefault("compress", "none")
        layout.setdefault("tiled", False)
        engine.write(raster, img_path, options=layout, overwrite=True)

    def update_profile(self, key: str, profile: Mapping[str, Any]) -> VirtualPath:
        """Give an image a new profile; returns its new key (the old one is released).

        As in 1.0 the pixels are kept as they lie in memory, so the new count, height, width and
        dtype must cover the same number of bytes.
        """
        engine, raster = self._rasters[key]
        shape = (int(profile["count"]), int(profile["height"]), int(profile["width"]))
        array = raster.array.reshape(-1).view(np.dtype(profile["dtype"])).reshape(shape)
        new_key = self.register(engine, engine.from_array(array, profile, name=raster.name))
        self.release(key)
        return new_key

    # -- for the executors (not 1.0 API) -----------------------------------------------------------

    @contextlib.contextmanager
    def step(self, keys: Sequence[str],
             start_method: str | None = None) -> Iterator[tuple[Engine, list[SharedRaster]]]:
        """The engine a step runs on (the manager's own one unless another start method is
        asked) and the shared rasters of ``keys``, its inputs, until the block ends."""
        engine = self._engine(start_method)
        with self._step_inputs(keys, engine) as rasters:
            yield engine, rasters

    def register(self, engine: Engine, raster: SharedRaster) -> VirtualPath:
        """Share a raster made by one of the manager's engines under a new key; returns the key."""
        key = f"eoscale/{uuid.uuid4()}"
        self._rasters[key] = (engine, raster)
        return key

    def _engine(self, start_method: str | None = None) -> Engine:
        if self.nb_workers == 1 or start_method == default_start_method():
            start_method = None
        engine = self._engines.get(start_method)
        if engine is None:
            engine = self._engines[start_method] = Engine(self.nb_workers,
                                                          start_method=start_method)
        return engine

    def _raster(self, key: str) -> SharedRaster:
        return self._rasters[key][1]

    @contextlib.contextmanager
    def _step_inputs(self, keys: Sequence[str], engine: Engine) -> Iterator[list[SharedRaster]]:
        """The shared rasters of ``keys``, as the engine's inputs of one step.

        A memory view is copied into shared memory meanwhile. An image whose transform or CRS
        differs from the first's is seen without them, since 1.0 did not compare them (the engine
        refuses inputs that are not on one grid).
        """
        copies: list[SharedRaster] = []
        aliases: list[SharedRaster] = []
        try:
            rasters: list[SharedRaster] = []
            for key in keys:
                if key in self._memviews:
                    _, array, profile = self._memviews[key]
                    copies.append(engine.from_array(np.asarray(array), profile, name=key))
                    raster = copies[-1]
                else:
                    raster = self._raster(key)
                if rasters and _off_grid(rasters[0].ref.profile, raster.ref.profile):
                    profile = dict(raster.ref.profile, transform=None, crs=None)
                    aliases.append(SharedRaster.attach(replace(raster.ref, profile=profile)))
                    raster = aliases[-1]
                rasters.append(raster)
            yield rasters
        finally:
            for raster in aliases:
                raster.release()
            for raster in copies:
                engine.release(raster)

    def _release_all(self) -> None:
        engines, self._engines = self._engines, {}
        self._rasters.clear()
        self._memviews.clear()
        with contextlib.ExitStack() as stack:
            for engine in engines.values():
                stack.callback(engine.close)


def _off_grid(first: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """Whether two profiles both have a transform, or a CRS, and they differ."""
    return any(first.get(key) is not None and other.get(key) is not None
               and first[key] != other[key] for key in ("transform", "crs"))
