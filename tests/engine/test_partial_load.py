"""Inputs loaded in part (what a resume loads: the windows its remaining tiles read): the blocks
that meet the windows are loaded, the others when a step needs them, so every result equals the
one on the input loaded whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from eoscale.engine import Engine, Tiling
from eoscale.engine.loading import meets
from eoscale.ops import gaussian_filter, stats


@pytest.fixture
def dem(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 200 x 150 float32 surface in 32 x 32 blocks."""
    rows, cols = np.mgrid[0:200, 0:150]
    surface = (50 + 20 * np.sin(rows / 11.0) + cols * 0.2).astype("float32")[np.newaxis]
    path = tmp_path / "dem.tif"
    with rasterio.open(path, "w", driver="GTiff", width=150, height=200, count=1,
                       dtype="float32", crs="EPSG:32631", tiled=True, blockxsize=32,
                       blockysize=32, transform=Affine(2, 0, 0, 0, -2, 0)) as out:
        out.write(surface)
    return path, surface


def test_meets_is_a_shared_pixel() -> None:
    window = Window(10, 20, 5, 5)  # cols 10-14, rows 20-24
    assert meets(window, [Window(14, 24, 1, 1)])
    assert not meets(window, [Window(15, 20, 3, 3)]) and not meets(window, [Window(10, 25, 5, 5)])
    assert not meets(window, [])


@pytest.mark.parametrize("workers", [1, 2])
def test_only_the_blocks_meeting_the_windows_are_loaded_then_the_rest_when_needed(
        dem: tuple[Path, np.ndarray], workers: int) -> None:
    path, surface = dem
    with Engine(workers, tiling=Tiling("tiles", 64)) as engine:
        raster = engine.load(path, windows=[Window(0, 0, 40, 40)])  # rows and cols 0-39
        loaded = raster.array.copy()
        assert np.array_equal(loaded[:, :40, :40], surface[:, :40, :40])
        assert not loaded[:, 100:, :].any() and not loaded[:, :, 100:].any()  # not loaded yet
        [smooth] = engine.map(gaussian_filter, [raster], params={"sigma": 1.0})
        assert np.array_equal(raster.array, surface)  # the map needed all of it
        found = smooth.array.copy()
        again = engine.load(path, windows=[Window(0, 0, 1, 1)])
        total = engine.reduce(stats, [again])  # a reduce completes the load first
    with Engine(1, tiling=Tiling("tiles", 64)) as engine:
        whole = engine.load(path)
        [expected] = engine.map(gaussian_filter, [whole], params={"sigma": 1.0})
        assert np.array_equal(found, expected.array)
        assert total == engine.reduce(stats, [whole])


def test_a_map_loads_only_what_its_tiles_read_when_it_runs_some(
        dem: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    """A resumed map runs some tiles: only the blocks their read windows meet are loaded, and
    its results on them are the whole input's."""
    from eoscale.engine import core

    path, surface = dem
    taken = set(range(6))  # as if a journal held tiles 0-5: the first two rows of tiles

    def resumed(units, step, tiles, encoded, remaining, collect):
        return [i for i in remaining if i not in taken], collect

    monkeypatch.setattr(core, "resumed_map", resumed)
    with Engine(1, tiling=Tiling("tiles", 64)) as engine:
        raster = engine.load(path, windows=[])
        assert not raster.array.any()
        [smooth] = engine.map(gaussian_filter, [raster], params={"sigma": 1.0}, margin=4)
        loads = [r.tiles for r in engine.reports if r.kind == "load"]
        assert [r.tiles for r in engine.reports if r.kind == "map"] == [12]  # 6 taken back
        loaded = raster.array.copy()
        computed = smooth.array.copy()
    with Engine(1, tiling=Tiling("tiles", 64)) as engine:
        whole = engine.load(path)
        everything = [r.tiles for r in engine.reports if r.kind == "load"]
        [expected] = engine.map(gaussian_filter, [whole], params={"sigma": 1.0}, margin=4)
        expected_pixels = expected.array.copy()
    assert sum(loads) < sum(everything)  # not every block
    # Rows 128-199 remain, read from row 124: the load-tiles meeting them, and only those.
    assert np.array_equal(loaded[:, 124:, :], surface[:, 124:, :])
    assert not loaded[:, :64, :].any()
    assert np.array_equal(computed[:, 128:, :], expected_pixels[:, 128:, :])
