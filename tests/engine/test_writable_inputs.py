"""Writable private inputs (``writable_inputs``) and plans given tile by tile (``ExplicitLayout``).

A callable with writable inputs may write into the arrays it gets; each tile sees the original
pixels of its whole read window, never another tile's writes, and the shared input is unchanged.
The oracle is the callable on the whole image: a write over the margin that leaked into a
neighbour tile's margin would change that tile's result.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.windows import Window

from eoscale.engine import Engine, ExplicitLayout, Tiling
from eoscale.errors import ConfigError, StepError

from callables import (add, bonus_then_box, bonus_then_box_declared, clipped_total, identity,
                       read_shapes, writes_input)


def image(shape=(2, 41, 29), seed=3) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 10, shape)


@pytest.fixture(scope="module", params=[1, 2, 3], ids=lambda w: f"workers{w}")
def engine(request):
    with Engine(request.param) as engine:
        yield engine


@pytest.mark.parametrize("tiling", [Tiling("tiles", 5), Tiling("tiles", 16), Tiling("strips", 3),
                                    Tiling("strips", 11)], ids=str)
def test_writes_reach_neither_the_input_nor_another_tile(engine, tiling):
    data = image()
    source = engine.from_array(data)
    params = {"bonus": 100.0}
    [result] = engine.map(bonus_then_box, [source], params=params, margin=1, tiling=tiling,
                          writable_inputs=True)
    np.testing.assert_array_equal(result.array, bonus_then_box([data.copy()], [{}], params))
    assert source.array.tobytes() == data.tobytes()
    [declared] = engine.map(bonus_then_box_declared, [source], params=params, tiling=tiling)
    np.testing.assert_array_equal(declared.array, result.array)
    assert source.array.tobytes() == data.tobytes()


def test_a_reduce_may_write_too(engine):
    data = image()
    source = engine.from_array(data)
    total = engine.reduce(clipped_total, [source], combine=add, tiling=Tiling("tiles", 7),
                          writable_inputs=True)
    assert total == pytest.approx(np.clip(data, 0, None).sum())
    assert source.array.tobytes() == data.tobytes()


def test_without_the_option_inputs_are_read_only_and_the_error_names_it(engine):
    source = engine.from_array(image())
    with pytest.raises(StepError, match="writable_inputs"):
        engine.map(writes_input, [source], name="clobber")
    with pytest.raises(StepError, match="writable_inputs"):
        engine.map(bonus_then_box_declared, [source], params={"bonus": 1.0},
                   writable_inputs=False)
    with pytest.raises(ConfigError, match="writable_inputs must be true or false"):
        engine.map(writes_input, [source], writable_inputs="yes")


def test_a_file_input_is_writable_on_request(engine, tmp_path):
    data = image((1, 33, 20)).astype(np.float32)
    path = tmp_path / "in.tif"
    with rasterio.open(path, "w", driver="GTiff", count=1, height=33, width=20, dtype="float32",
                       crs="EPSG:32631", transform=Affine(10, 0, 500000, 0, -10, 4800000)
                       ) as dataset:
        dataset.write(data)
    source = engine.open(path)
    [zeros] = engine.map(writes_input, [source], tiling=Tiling("tiles", 8), writable_inputs=True)
    assert not zeros.array.any()
    with pytest.raises(StepError, match="writable_inputs"):
        engine.map(writes_input, [source])
    with rasterio.open(path) as dataset:
        np.testing.assert_array_equal(dataset.read(), data)


def windows(*tiles):
    return tuple((Window(*core), Window(*read)) for core, read in tiles)


def test_a_given_plan_runs_exactly_its_tiles_in_its_order(engine):
    data = image((1, 10, 12))
    source = engine.from_array(data)
    plan = ExplicitLayout(10, 12, windows(((6, 0, 6, 10), (5, 0, 7, 10)),
                                        ((0, 2, 6, 8), (0, 1, 7, 9))))
    [result] = engine.map(bonus_then_box, [source], params={"bonus": 1.0}, plan=plan,
                          writable_inputs=True)
    expected = np.zeros_like(data)
    for core, read in plan.windows:
        rows, cols = read.toslices()
        smoothed = bonus_then_box([data[:, rows, cols].copy()], [{}], {"bonus": 1.0})
        top, left = core.row_off - read.row_off, core.col_off - read.col_off
        expected[:, core.row_off:core.row_off + core.height,
                 core.col_off:core.col_off + core.width] = smoothed[
                     :, top:top + core.height, left:left + core.width]
    np.testing.assert_array_equal(result.array, expected)
    assert engine.reduce(read_shapes, [source], combine=add, plan=plan) == [(10, 7), (9, 7)]
    assert (plan.tile_count, plan.read_shape) == (2, (10, 7))
    with pytest.raises(ConfigError, match="plan is for a 10 x 13 image, the inputs are 10 x 12"):
        engine.map(identity, [source], plan=ExplicitLayout(10, 13, plan.windows))


@pytest.mark.parametrize("tiles, message", [
    ((((0, 0, 5, 5), (0, 0, 5, 5)), ((4, 4, 3, 3), (4, 4, 3, 3))), "overlap"),
    ((((0, 0, 5, 5), (0, 0, 5, 11)),), "inside the 10 x 12 image"),
    ((((3, 3, 5, 5), (4, 3, 4, 5)),), "inside a read window"),
    ((((3, 3, 0, 5), (3, 3, 0, 5)),), "at least one pixel"),
])
def test_a_plan_with_tiles_outside_the_image_or_overlapping_is_refused(tiles, message):
    with pytest.raises(ConfigError, match=message):
        ExplicitLayout(10, 12, windows(*tiles))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 11), st.integers(0, 9), st.integers(1, 4),
                          st.integers(1, 4)), max_size=8))
def test_a_plan_is_refused_exactly_when_two_cores_share_a_pixel(cores):
    cores = [(col, row, min(width, 12 - col), min(height, 10 - row))
             for col, row, width, height in cores]
    covered = np.zeros((10, 12), int)
    for col, row, width, height in cores:
        covered[row:row + height, col:col + width] += 1
    plan = windows(*((core, core) for core in cores))
    if (covered > 1).any():
        with pytest.raises(ConfigError, match="overlap"):
            ExplicitLayout(10, 12, plan)
    else:
        assert ExplicitLayout(10, 12, plan).tile_count == len(cores)
