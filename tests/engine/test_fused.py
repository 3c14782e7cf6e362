"""Fused map chains against the same maps run step after step: bit for bit, every growth and
edge, tiles and strips, one and two workers, with and without profile functions."""

from __future__ import annotations

import callables
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_map import make_image

from eoscale.engine import Engine, Tiling
from eoscale.engine.fused import (
    ChainStep,
    chain_growths,
    chain_margin,
    held_during,
    recompute_share,
)
from eoscale.errors import ConfigError, StepError


@pytest.fixture(scope="module", params=[1, 2], ids=lambda w: f"workers{w}")
def engine(request):
    with Engine(workers=request.param, tiling=Tiling(tile_size=16)) as running:
        yield running


def _filter(name: str, radius: int, inputs: tuple[str, ...], output: str,
            mode: str = "nearest") -> ChainStep:
    return ChainStep(output, callables.scipy_filter, inputs, (output,), margin=radius,
                 params={"filter": name, "radius": radius, "mode": mode})


def _step_by_step(engine: Engine, stages: list[ChainStep], images: dict, tiling: Tiling):
    held = dict(images)
    for stage in stages:
        made = engine.map(stage.fn, [held[name] for name in stage.inputs], params=stage.params,
                          margin=stage.margin, profile_fn=stage.profile_fn, name=stage.name,
                          tiling=tiling)
        held.update(zip(stage.outputs, made))
    return [held[name].array.copy() for name in stages[-1].outputs]


def _fused(engine: Engine, stages: list[ChainStep], images: dict, tiling: Tiling):
    made = engine.map_fused(stages, images, tiling=tiling)
    arrays = [raster.array.copy() for raster in made]
    for raster in made:
        engine.release(raster)
    return arrays


CHAINS = {
    "margins 1 1": [_filter("median", 1, ("a",), "m"), _filter("gaussian", 1, ("m",), "g")],
    "margins 0 10": [ChainStep("ratio", callables.sum_diff_max, ("a", "b"), ("s", "d", "x"),
                           margin=0, profile_fn=callables.sum_diff_max_profiles),
                     _filter("box", 10, ("d",), "box")],
    "margin 100": [_filter("maximum", 3, ("a",), "mx"), _filter("uniform", 100, ("mx",), "u")],
    "diamond": [_filter("median", 2, ("a",), "m"), _filter("maximum", 1, ("m",), "mx"),
                ChainStep("sum", callables.sum_diff_max, ("m", "mx"), ("s", "d", "x"), margin=0)],
}


@pytest.mark.parametrize("mode", ["tiles", "strips"])
@pytest.mark.parametrize("chain", list(CHAINS))
def test_fused_chains_equal_their_steps_run_one_after_the_other(engine, chain, mode):
    stages = CHAINS[chain]
    a = engine.from_array(make_image("float32", (2, 61, 47), seed=1), name="a")
    b = engine.from_array(make_image("float32", (2, 61, 47), seed=2), name="b")
    tiling = Tiling(mode, 16 if mode == "tiles" else 7)
    try:
        expected = _step_by_step(engine, stages, {"a": a, "b": b}, tiling)
        found = _fused(engine, stages, {"a": a, "b": b}, tiling)
    finally:
        engine.release(a)
        engine.release(b)
    assert len(found) == len(expected)
    for got, want in zip(found, expected):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(radii=st.lists(st.integers(0, 6), min_size=1, max_size=4),
       tile_size=st.integers(1, 40), height=st.integers(1, 30), width=st.integers(1, 30))
def test_any_chain_of_filters_any_tile_size(radii, tile_size, height, width):
    stages = [_filter("median" if i % 2 else "maximum", radius, (f"i{i}",), f"i{i + 1}")
              for i, radius in enumerate(radii)]
    with Engine(workers=1) as engine:
        image = engine.from_array(make_image("int16", (1, height, width), seed=3), name="i0")
        tiling = Tiling("tiles", tile_size)
        expected = _step_by_step(engine, stages, {"i0": image}, tiling)
        found = _fused(engine, stages, {"i0": image}, tiling)
    np.testing.assert_array_equal(found[0], expected[0])


def test_growths_add_up_along_the_longest_path():
    stages = CHAINS["diamond"]  # median (2) -> maximum (1) -> sum (0); median -> sum directly
    assert chain_growths(stages) == (1, 0, 0)
    assert chain_margin(stages) == 3
    with pytest.raises(ConfigError, match="nothing that step 'mx' makes is read by a later"):
        chain_growths([_filter("median", 1, ("a",), "m"), _filter("maximum", 1, ("a",), "mx"),
                       _filter("median", 1, ("m",), "out")])


def test_a_worker_holds_a_stage_s_images_until_their_last_reader_has_run():
    assert held_during(CHAINS["margins 1 1"]) == ((), ("m",))
    assert held_during(CHAINS["margins 0 10"]) == ((), ("d",))  # s and x: read by no stage
    # median -> maximum -> sum of both: the median's image is held until the sum has run.
    assert held_during(CHAINS["diamond"]) == ((), ("m",), ("m", "mx"))


def test_recompute_share_counts_the_rings_computed_twice():
    stages = [_filter("median", 1, ("a",), "m"), _filter("gaussian", 1, ("m",), "g")]
    # 100 x 100 in 10 x 10 tiles: the median computes 12 x 12 windows (clipped at the edges)
    # instead of 10 x 10... its windows grow by 2, the gaussian's by 1 in both cases.
    rows = sum(min(100, r + 12) - max(0, r - 2) for r in range(0, 100, 10))
    alone = sum(min(100, r + 11) - max(0, r - 1) for r in range(0, 100, 10))
    expected = (rows * rows + alone * alone) / (2 * alone * alone) - 1
    assert recompute_share(100, 100, 10, "tiles", stages) == pytest.approx(expected)
    assert recompute_share(100, 100, 10, "strips", stages) < expected
    assert recompute_share(100, 100, 100, "tiles", stages) == 0


def test_a_stage_without_profile_learns_from_the_first_tile(engine):
    stages = [ChainStep("to_float", callables.identity, ("a",), ("f",), margin=0),
              ChainStep("sum", callables.sum_diff_max, ("f", "a"), ("s", "d", "x"), margin=0)]
    a = engine.from_array(make_image("uint8", (1, 20, 20), seed=4), name="a")
    try:
        made = engine.map_fused(stages, {"a": a})
        assert [raster.ref.dtype for raster in made] == ["float64", "float64", "uint8"]
        np.testing.assert_array_equal(made[0].array, 2 * a.array.astype(np.float64))
        for raster in made:
            engine.release(raster)
    finally:
        engine.release(a)


def test_a_failing_stage_is_named_with_its_tile(engine):
    stages = [_filter("median", 1, ("a",), "m"), _filter("nonsense", 1, ("m",), "g")]
    a = engine.from_array(make_image("float32", (1, 40, 40), seed=5), name="a")
    try:
        with pytest.raises(StepError) as caught:
            engine.map_fused(stages, {"a": a}, tiling=Tiling("tiles", 16))
    finally:
        engine.release(a)
    assert caught.value.step == "g"
    assert "ValueError: nonsense" in str(caught.value)
    assert "tile 0 (rows 0:16, cols 0:16)" in str(caught.value)
