"""Reduce (N -> scalars): results equal numpy on the whole image, whatever the workers and tiles."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from eoscale.engine import Engine, Tiling
from eoscale.errors import ConfigError

from callables import add, finish_moments, histogram, merge_moments, moments, tile_order

IMAGES = {
    "all-positive": lambda rng: rng.uniform(5.0, 900.0, (2, 61, 47)),
    "all-negative": lambda rng: rng.uniform(-900.0, -5.0, (2, 61, 47)),
    "mixed-int16": lambda rng: rng.integers(-3000, 3000, (1, 61, 47)).astype(np.int16),
    "uint8": lambda rng: rng.integers(1, 255, (3, 61, 47)).astype(np.uint8),
}


@pytest.mark.parametrize("kind", list(IMAGES))
@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("tiling", [Tiling("tiles", 1), Tiling("tiles", 7), Tiling("strips", 5),
                                    Tiling("tiles", 1000), Tiling()], ids=str)
def test_statistics_equal_numpy(kind, workers, tiling):
    image = IMAGES[kind](np.random.default_rng(len(kind)))
    with Engine(workers, tiling=tiling) as engine:
        stats = engine.reduce(moments, [engine.from_array(image)], combine=merge_moments,
                              finalize=finish_moments)
    for band, result in zip(image.astype(np.float64), stats):
        assert result["count"] == band.size
        assert result["min"] == band.min() and result["max"] == band.max()
        assert result["sum"] == pytest.approx(band.sum(), rel=1e-12)
        assert result["mean"] == pytest.approx(band.mean(), rel=1e-12)
        assert result["std"] == pytest.approx(band.std(), rel=1e-9)


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("tile_size", [3, 16, 64])
def test_histogram_equals_numpy(workers, tile_size):
    image = np.random.default_rng(1).normal(0, 1, (1, 90, 70))
    params = {"bins": 32, "range": (-3.0, 3.0)}
    with Engine(workers, tiling=Tiling("tiles", tile_size)) as engine:
        counts = engine.reduce(histogram, [engine.from_array(image)], combine=add, params=params)
    assert np.array_equal(counts, np.histogram(image, bins=32, range=(-3.0, 3.0))[0])


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_merge_follows_tile_order_not_completion_order(workers):
    image = np.zeros((1, 40, 40), dtype=np.uint8)
    with Engine(workers, tiling=Tiling("tiles", 10)) as engine:
        order = engine.reduce(tile_order, [engine.from_array(image)], combine=add)
    assert order == list(range(16))


def test_floating_result_is_identical_for_any_worker_count():
    image = np.random.default_rng(2).normal(1e6, 1.0, (1, 200, 150))
    results = set()
    for workers in (1, 2, 3):
        with Engine(workers, tiling=Tiling("tiles", 13)) as engine:
            stats = engine.reduce(moments, [engine.from_array(image)], combine=merge_moments)
        results.add(repr(stats))
    assert len(results) == 1


def test_reduce_on_real_raster_with_nan(shared_data):
    with rasterio.open(shared_data / "nz_elev.tif") as src:
        whole = src.read(1).astype(np.float64)
    valid = whole[~np.isnan(whole)]
    with Engine(2) as engine:
        [stats] = engine.reduce(moments, [engine.load(shared_data / "nz_elev.tif")],
                                combine=merge_moments, finalize=finish_moments)
    assert stats["count"] == valid.size
    assert (stats["min"], stats["max"]) == (valid.min(), valid.max())
    assert stats["mean"] == pytest.approx(valid.mean(), rel=1e-12)


def test_reduce_needs_a_combine():
    with Engine(1) as engine:
        with pytest.raises(ConfigError, match="a reduce needs a combine function"):
            engine.reduce(moments, [engine.from_array(np.zeros((1, 2, 2)))])


def test_callable_may_carry_combine_and_finalize():
    def count(arrays, profiles, params):
        return arrays[0].size

    count.combine = add
    count.finalize = lambda total, params: {"pixels": total}
    with Engine(1, tiling=Tiling("tiles", 3)) as engine:
        assert engine.reduce(count, [engine.from_array(np.zeros((1, 10, 10)))]) == {"pixels": 100}


@pytest.mark.parametrize("workers", [1, 3])
def test_reduce_straight_from_the_file(shared_data, workers):
    path = shared_data / "ls5_nbar_19920323_B40_nir.tif"
    with rasterio.open(path) as src:
        whole = src.read().astype(np.float64)
    with Engine(workers, tiling=Tiling("strips", 37)) as engine:
        [stats] = engine.reduce(moments, [engine.open(path)], combine=merge_moments,
                                finalize=finish_moments)
    assert (stats["count"], stats["min"], stats["max"]) == (whole.size, whole.min(), whole.max())
    assert stats["mean"] == pytest.approx(whole.mean(), rel=1e-12)


def _combine_raises(a, b):
    raise KeyError("combine boom")


def _finalize_raises(value, params):
    raise KeyError("finalize boom")


@pytest.mark.parametrize("which", ["combine", "finalize"])
def test_a_raising_combine_or_finalize_names_the_step_and_shows_its_frames(which):
    """combine and finalize are the user's code too: their failure names the step (and the tile
    for combine) and shows the user's own frames, not the engine's."""
    from eoscale.errors import StepError

    image = np.arange(64 * 64, dtype="float32").reshape(1, 64, 64)
    with Engine(2, tiling=Tiling("tiles", 32)) as engine:
        source = engine.from_array(image, {})
        with pytest.raises(StepError) as raised:
            engine.reduce(moments, [source], name="r",
                          combine=_combine_raises if which == "combine" else merge_moments,
                          finalize=_finalize_raises)
    error = raised.value
    if which == "combine":
        assert str(error) == ("step 'r', tile 1 (rows 0:32, cols 32:64): combine raised "
                              "KeyError: 'combine boom'")
        assert 'in _combine_raises\n    raise KeyError("combine boom")' in error.details
    else:
        assert str(error) == "step 'r': finalize raised KeyError: 'finalize boom'"
        assert 'in _finalize_raises\n    raise KeyError("finalize boom")' in error.details
    assert "eoscale/engine" not in error.details
