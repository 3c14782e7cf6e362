"""Fixtures of the ops tests: the shared rasters, and running an op the way the engine does.

``run_tiled`` stands in for the engine, in-process: for each tile of ``plan_tiles(h, w, tile_size,
margin, mode)`` it calls the op on read-only views of the inputs over the read window, with
``eoscale.engine.tile_context()`` describing the tile, and keeps the core; for a reduction it folds
the partials with ``combine`` in tile order and finalizes. ``run_whole`` calls the op once on the
whole images, outside any tile. ``test_with_engine.py`` checks the real engine agrees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from eoscale.engine import TileContext, tasks
from eoscale.engine.contract import declared, declared_margin
from eoscale.engine.tasks import window_transform
from eoscale.engine.tiling import TilingMode, plan_tiles

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
NEEDS_DATA = "needs ../shared/data (the project's shared test rasters)"


@contextmanager
def _tile_context(context: TileContext | None) -> Iterator[None]:
    """Make ``eoscale.engine.tile_context()`` return ``context``, as the engine does."""
    with mock.patch.object(tasks, "_current", context):
        yield


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


def _as_bands(result: np.ndarray) -> np.ndarray:
    return result[np.newaxis] if result.ndim == 2 else result


def _reduce_result(op: Callable, partial: Any, params: dict) -> Any:
    finalize = declared(op, "finalize")
    return finalize(partial, params) if finalize else partial


def run_whole(op: Callable, arrays: Sequence[np.ndarray], profiles: Sequence[dict],
              params: dict) -> Any:
    """The op on whole images (no tile context); a map's result as (bands, h, w)."""
    with _tile_context(None):
        result = op([_read_only(a) for a in arrays], profiles, params)
    if declared(op, "combine"):
        return _reduce_result(op, result, params)
    return _as_bands(result)


def run_tiled(op: Callable, arrays: Sequence[np.ndarray], profiles: Sequence[dict], params: dict,
              tile_size: int, mode: TilingMode = "tiles") -> Any:
    """The op tile by tile, as the engine runs it; a map's result as (bands, h, w)."""
    height, width = arrays[0].shape[-2:]
    image_transform = Affine(*profiles[0].get("transform", Affine.identity())[:6])
    combine = declared(op, "combine")
    out: np.ndarray | None = None
    partial: Any = None
    for tile in plan_tiles(height, width, tile_size, declared_margin(op, params) or 0, mode):
        read = tile.read
        rows, cols = read.toslices()
        context = TileContext(tile.index, tile.core, read, window_transform(read, image_transform))
        with _tile_context(context):
            result = op([_read_only(a[:, rows, cols]) for a in arrays], profiles, params)
        if combine:
            partial = result if partial is None else combine(partial, result)
            continue
        result = _as_bands(result)
        assert result.shape[1:] == (read.height, read.width)
        if out is None:
            out = np.empty((result.shape[0], height, width), dtype=result.dtype)
        out[(slice(None), *tile.core.toslices())] = result[(slice(None), *tile.core_in_read)]
    return _reduce_result(op, partial, params) if combine else out


#: A 10 m north-up grid in UTM 31N, the default of test profiles.
UTM_GRID = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)


def make_profile(array: np.ndarray, nodata: float | None = None, crs: str | None = "EPSG:32631",
                 transform: Affine = UTM_GRID) -> dict:
    """A rasterio-style profile for a (bands, h, w) array."""
    return {"driver": "GTiff", "dtype": array.dtype.name, "nodata": nodata,
            "count": array.shape[0], "height": array.shape[1], "width": array.shape[2],
            "crs": CRS.from_user_input(crs) if crs else None, "transform": transform}


@cache
def _read(name: str) -> tuple[np.ndarray, dict]:
    with rasterio.open(DATA / name) as src:
        array = src.read()
        array.flags.writeable = False
        return array, dict(src.profile)


def read_raster(name: str) -> tuple[np.ndarray, dict]:
    """A shared raster as a read-only (bands, h, w) array and its profile; skips when absent."""
    if not (DATA / name).exists():
        pytest.skip(NEEDS_DATA)
    array, profile = _read(name)
    return array, dict(profile)


@pytest.fixture(scope="session")
def tiled() -> Callable[..., Any]:
    return run_tiled


@pytest.fixture(scope="session")
def whole() -> Callable[..., Any]:
    return run_whole


@pytest.fixture(scope="session")
def profile_for() -> Callable[..., dict]:
    return make_profile


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(NEEDS_DATA)
    return DATA


@pytest.fixture(scope="session")
def raster() -> Callable[[str], tuple[np.ndarray, dict]]:
    return read_raster
