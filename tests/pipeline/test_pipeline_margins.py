"""A step's margin is resolved once: when the run is planned, or, when it derives from
``${...}`` params, when the step runs; never again by the engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import margin_callables

import eoscale
from eoscale.pipeline import load_pipeline
from eoscale.pipeline.plan import Resources, fit, plan_shape
from eoscale.pipeline.runner import RunResult

Writer = Callable[..., Path]

PIPELINE = """
    version: 1
    workers: 1
    tiling: {tile_size: 64}
    inputs: {a: a.tif}
    steps:
      - {name: plain, map: margin_callables.counted, inputs: [a], params: {radius: 1, tag: plain}}
      - {name: size, reduce: margin_callables.radius, inputs: [plain]}
      - name: deferred
        map: margin_callables.counted
        inputs: [plain]
        params: {radius: "${size.radius}", tag: deferred}
      - {name: first, map: margin_callables.counted, inputs: [deferred],
         params: {radius: 1, tag: first}}
      - {name: second, map: margin_callables.counted, inputs: [first],
         params: {radius: 1, tag: second}}
    outputs: {second: out/second.tif}
    """


def _run_fused(write_pipeline: Writer, make_raster: Writer) -> RunResult:
    """A run in this process under a budget that fuses first > second, margins counted."""
    make_raster("a.tif", width=300, height=260, dtype="float32")
    path = write_pipeline(PIPELINE)
    shape = plan_shape(load_pipeline(path))
    memory = next(memory for memory in range(4 << 20, 0, -(1 << 16))
                  if fit(shape, Resources(1, memory, base=0, executor="inline", given=True))
                  .images["first"].lives == "fused")
    margin_callables.CALLS.clear()
    result = eoscale.run(path, workers=1, memory=memory, overwrite=True)
    assert [result.plan.steps[i].name for i in result.plan.steps[-1].chain] == ["first", "second"]
    return result


def test_a_margin_is_resolved_once_when_planned_or_when_its_params_are_known(
        write_pipeline: Writer, make_raster: Writer) -> None:
    """A plain step's when the run is planned; a step with ``${...}`` params, when it runs."""
    _run_fused(write_pipeline, make_raster)
    assert margin_callables.CALLS["plain"] == 1
    assert margin_callables.CALLS["deferred"] == 1


def test_a_fused_chain_s_margins_are_resolved_once(write_pipeline: Writer,
                                                   make_raster: Writer) -> None:
    """When the run is planned, not again when the chain runs."""
    _run_fused(write_pipeline, make_raster)
    assert margin_callables.CALLS["first"] == 1
    assert margin_callables.CALLS["second"] == 1


def test_a_declared_margin_that_is_no_integer_is_said_so() -> None:
    """A constant that is not a whole number is no margin (it was reported as if a margin
    function had raised); a whole float is taken, as before."""
    import pytest

    from eoscale.engine.contract import step_margin
    from eoscale.errors import ConfigError

    def fn(arrays, profiles, params):
        return arrays[0]

    for wrong in ("abc", 1.5, [2]):
        fn.margin = wrong
        with pytest.raises(ConfigError) as raised:
            step_margin(fn, {}, None, label="ops.fn")
        assert str(raised.value) == (f"ops.fn declares margin {wrong!r}; a margin is an integer "
                                     ">= 0, or a function of the params that returns one")
    fn.margin = 3.0
    assert step_margin(fn, {}, None) == 3
    fn.margin = lambda params: "abc"  # a function's result: what it raised, as before
    with pytest.raises(ConfigError, match="the margin of fn raised ValueError"):
        step_margin(fn, {}, None)
