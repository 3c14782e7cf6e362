"""Errors inside steps name the step and the tile, and leave no shared memory behind."""

from __future__ import annotations

import os

import numpy as np
import pytest

from eoscale.engine import Engine, Tiling
from eoscale.engine.shared import list_segments
from eoscale.errors import ConfigError, RasterError, ResultError, StepError, WorkerDiedError

from callables import (dies, float_result, identity, raises, to_uint8_profile, writes_input,
                       wrong_count, wrong_shape)


def my_segments() -> list[str]:
    return [name for name, pid in list_segments() if pid == os.getpid()]


@pytest.fixture(params=[1, 2], ids=lambda w: f"workers{w}")
def engine(request):
    with Engine(request.param, tiling=Tiling("tiles", 8)) as engine:
        yield engine
    assert my_segments() == []


def image(dtype="uint8"):
    return np.arange(20 * 30, dtype=dtype).reshape(1, 20, 30) % 200


@pytest.mark.parametrize("bad_tile", [0, 3])
def test_callable_error_names_step_tile_and_user_frames(engine, bad_tile):
    source = engine.from_array(image())
    with pytest.raises(StepError) as caught:
        engine.map(raises, [source], params={"bad_tile": bad_tile}, name="divide")
    message = str(caught.value)
    assert message.startswith(f"step 'divide', tile {bad_tile} (rows ")
    assert "ZeroDivisionError: user code divided by zero" in message
    assert 'callables.py", line' in caught.value.details and "in raises" in caught.value.details
    assert "tasks.py" not in caught.value.details
    # the engine is still usable after a failure
    [again] = engine.map(identity, [source])
    assert np.array_equal(again.array, source.array)


def test_inputs_are_read_only(engine):
    source = engine.from_array(image())
    with pytest.raises(StepError, match="wrote into one of its input arrays; inputs are read-only"):
        engine.map(writes_input, [source], name="clobber")
    assert np.array_equal(source.array, image())


def test_wrong_number_of_results(engine):
    with pytest.raises(ResultError, match=r"step 'two', tile \d+ .*returned 2 image\(s\), expected 1"):
        engine.map(wrong_count, [engine.from_array(image())], name="two",
                   profile_fn=to_uint8_profile)


def test_wrong_shape_names_the_shapes(engine):
    with pytest.raises(ResultError,
                       match=r"tile 0 .*shape \(1, 11, 12\), expected \(1, 12, 12\)"):
        engine.map(wrong_shape, [engine.from_array(image())], margin=4)


def test_uncastable_dtype(engine):
    with pytest.raises(ResultError, match="dtype float64 cannot be cast safely to the output dtype uint8"):
        engine.map(float_result, [engine.from_array(image())], profile_fn=to_uint8_profile)


def test_integer_results_that_overflow_the_output_dtype(engine):
    big = engine.from_array(image("int64") * 10)
    with pytest.raises(ResultError, match=r"tile \d+ .*values \d+..\d+ of dtype int64 do not fit the output dtype uint8 \(0..255\)"):
        engine.map(identity, [big], profile_fn=to_uint8_profile)
    small = engine.from_array(image("int64"))
    [fits] = engine.map(identity, [small], profile_fn=to_uint8_profile)
    assert fits.array.dtype == np.uint8 and np.array_equal(fits.array, image("int64"))


def test_dead_worker_is_an_error_not_a_hang():
    with Engine(2, tiling=Tiling("tiles", 5)) as engine:
        with pytest.raises(WorkerDiedError, match=r"step 'dies', tile .*died \(exited with code 7\)"):
            engine.map(dies, [engine.from_array(image())], profile_fn=to_uint8_profile)
        [again] = engine.map(identity, [engine.from_array(image())])  # a new pool is started
        assert np.array_equal(again.array, image())
    assert my_segments() == []


def test_unpicklable_callable_is_explained():
    with Engine(2) as engine:
        with pytest.raises(StepError, match="must be picklable"):
            engine.map(lambda a, p, q: a[0], [engine.from_array(image())],
                       profile_fn=to_uint8_profile, name="lambda")


def test_inputs_on_different_grids_are_refused(engine):
    a = engine.from_array(image(), {"transform": (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)}, name="a")
    b = engine.from_array(image(), {"transform": (1.0, 0.0, 1.0, 0.0, -1.0, 0.0)}, name="b")
    with pytest.raises(ConfigError, match=r"not on one grid: 'b' has origin \(1, 0\), not \(0, 0\)"):
        engine.map(identity, [a, b])
    c = engine.from_array(np.zeros((1, 5, 5)))
    with pytest.raises(ConfigError, match="is 5 x 5"):
        engine.map(identity, [a, c])


def test_margin_smaller_than_declared_is_refused(engine):
    def needs_three(arrays, profiles, params):
        return arrays[0]

    needs_three.margin = lambda params: 3
    with pytest.raises(ConfigError, match="margin 1 is smaller than the 3 that needs_three needs"):
        engine.map(needs_three, [engine.from_array(image())], margin=1)


def test_missing_and_corrupt_files(tmp_path):
    with Engine(2) as engine:
        with pytest.raises(RasterError, match="file not found"):
            engine.load(tmp_path / "missing.tif")
        text = tmp_path / "text.tif"
        text.write_text("not a raster")
        with pytest.raises(RasterError, match="as a raster"):
            engine.load(text)
    assert my_segments() == []


def test_truncated_geotiff_fails_while_reading(tmp_path):
    import rasterio

    path = tmp_path / "full.tif"
    data = np.random.default_rng(0).integers(0, 255, (1, 256, 256), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=256, height=256, count=1, dtype="uint8",
                       tiled=True, blockxsize=64, blockysize=64, compress="deflate") as dst:
        dst.write(data)
    raw = path.read_bytes()
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(raw[: len(raw) * 2 // 3])
    for workers in (1, 2):
        with Engine(workers) as engine:
            with pytest.raises(RasterError, match=r"truncated.tif: cannot read"):
                engine.load(truncated)
    assert my_segments() == []


def test_released_raster_cannot_be_used(engine):
    source = engine.from_array(image())
    engine.release(source)
    with pytest.raises(ConfigError, match="was released"):
        engine.map(identity, [source])
