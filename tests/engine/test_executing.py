"""One owner of the executor, one decision of a step's margin, and the tile layout's names.

The executor is made by :func:`eoscale.engine.executing.make_executor` (the engine only calls
it); a margin is decided once: a step given its tiles, or a chain's stage given its margin, runs
with them as they are, and only a step given neither has its callable's margin looked up.
"""

from __future__ import annotations

from typing import Any

import callables
import numpy as np
import pytest
import scipy.ndimage as ndi

from eoscale.engine import Engine, Tiling
from eoscale.engine.executing import connect_cluster, make_executor
from eoscale.engine.executors import (
    MAX_CHUNKS,
    MAX_LOCAL_CHUNKS,
    InlineExecutor,
    ProcessExecutor,
    make_chunks,
    max_chunks,
)
from eoscale.engine.fused import ChainStep
from eoscale.engine.tiling import plan_step
from eoscale.errors import ConfigError

RADIUS = 2
PARAMS = {"filter": "uniform", "radius": RADIUS, "mode": "nearest"}


def whole_image_filter(image: np.ndarray) -> np.ndarray:
    """The oracle: the filter over the whole image at once."""
    size = (1, 2 * RADIUS + 1, 2 * RADIUS + 1)
    return ndi.uniform_filter(image, size=size, mode="nearest")


class CountedMargin:
    """A callable declaring its margin by a function that counts its calls (or refuses them)."""

    def __init__(self, refuse: bool = False):
        self.calls = 0
        self.refuse = refuse
        self.__name__ = "counted"

    def margin(self, params: dict) -> int:
        self.calls += 1
        if self.refuse:
            raise AssertionError("the margin was decided again")
        return RADIUS

    def __call__(self, arrays: Any, profiles: Any, params: dict) -> np.ndarray:
        return callables.scipy_filter(arrays, profiles, params)


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(7).random((1, 37, 45)).astype("float32")


# -- the executor ----------------------------------------------------------------------------


def test_one_worker_runs_in_this_process_and_more_on_a_pool() -> None:
    assert isinstance(make_executor(1), InlineExecutor)
    pool = make_executor(2)
    try:
        assert isinstance(pool, ProcessExecutor)
        assert pool.workers == 2
    finally:
        pool.close()


@pytest.mark.parametrize("workers", [0, -1, True, 2.0, "2"])
def test_workers_must_be_a_positive_integer(workers: Any) -> None:
    with pytest.raises(ConfigError, match="workers must be a positive integer"):
        make_executor(workers)


def test_the_engine_runs_on_a_given_executor_and_leaves_it_open(image: np.ndarray) -> None:
    closed = []

    class Given(InlineExecutor):
        def close(self) -> None:
            closed.append(True)

    given = Given()
    with Engine(executor=given, tiling=Tiling("tiles", 8)) as engine:
        assert engine.workers == 1
        [out] = engine.map(callables.scipy_filter, [engine.from_array(image)], params=PARAMS,
                           margin=RADIUS)
        np.testing.assert_allclose(out.array, whole_image_filter(image), rtol=1e-6)
    assert closed == []


class FakeCluster:
    """What :meth:`DaskExecutor.connect` gives, as far as the engine and its factory use it."""

    workers = 3
    shares_memory = False

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.setups: list[Any] = []
        self.closed = False

    def prepare(self, setup: Any) -> None:
        if self.fail:
            raise RuntimeError("no worker answered")
        self.setups.append(setup)

    def close(self) -> None:
        self.closed = True


def test_an_engine_on_a_cluster_connects_through_the_one_connection(monkeypatch) -> None:
    pytest.importorskip("distributed")
    from eoscale.engine.cluster import DaskExecutor
    from eoscale.engine.cluster_worker import WorkerSetup

    fake = FakeCluster()
    asked = []
    monkeypatch.setattr(DaskExecutor, "connect", classmethod(
        lambda cls, cluster: asked.append(cluster) or fake))
    with Engine(cluster="tcp://scheduler:8786", gdal_options={"GDAL_NUM_THREADS": "2"},
                gdal_cache_bytes=2**20) as engine:
        assert engine.workers == 3
        assert asked == ["tcp://scheduler:8786"]
        assert fake.setups == [WorkerSetup((), {"GDAL_NUM_THREADS": "2"}, 2**20)]
        with pytest.raises(ConfigError, match="share no memory"):
            engine.create({"count": 1, "height": 2, "width": 2, "dtype": "uint8"})
    assert fake.closed


def test_a_cluster_whose_set_up_fails_is_closed(monkeypatch) -> None:
    pytest.importorskip("distributed")
    from eoscale.engine.cluster import DaskExecutor
    from eoscale.engine.cluster_worker import WorkerSetup

    fake = FakeCluster(fail=True)
    monkeypatch.setattr(DaskExecutor, "connect", classmethod(lambda cls, cluster: fake))
    with pytest.raises(RuntimeError, match="no worker answered"):
        connect_cluster("local:1", WorkerSetup())
    assert fake.closed


# -- the margin, decided once ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["layout", "plan"])
def test_a_step_given_its_tiles_runs_them_without_deciding_its_margin(image, name) -> None:
    fn = CountedMargin(refuse=True)
    layout = plan_step(37, 45, margin=RADIUS, tiling=Tiling("tiles", 8), workers=1)
    with Engine(1) as engine:
        [out] = engine.map(fn, [engine.from_array(image)], params=PARAMS, **{name: layout})
        np.testing.assert_allclose(out.array, whole_image_filter(image), rtol=1e-6)
    assert fn.calls == 0


def test_a_step_given_no_tiles_decides_its_margin_once(image) -> None:
    fn = CountedMargin()
    with Engine(1, tiling=Tiling("tiles", 8)) as engine:
        [out] = engine.map(fn, [engine.from_array(image)], params=PARAMS)
        np.testing.assert_allclose(out.array, whole_image_filter(image), rtol=1e-6)
    assert fn.calls == 1


def test_a_chain_runs_the_margins_its_stages_were_given(image) -> None:
    refusing = CountedMargin(refuse=True)
    stages = [ChainStep("a", refusing, ("in",), ("a",), margin=RADIUS, params=PARAMS),
              ChainStep("b", refusing, ("a",), ("b",), margin=RADIUS, params=PARAMS)]
    with Engine(1, tiling=Tiling("tiles", 8)) as engine:
        [out] = engine.map_fused(stages, {"in": engine.from_array(image)})
        np.testing.assert_allclose(out.array, whole_image_filter(whole_image_filter(image)),
                                   rtol=1e-6)
    assert refusing.calls == 0


def test_a_chain_stage_without_a_margin_has_its_callable_s_decided_once(image) -> None:
    counted = CountedMargin()
    stages = [ChainStep("a", counted, ("in",), ("a",), params=PARAMS),
              ChainStep("b", callables.scipy_filter, ("a",), ("b",), margin=RADIUS,
                        params=PARAMS)]
    with Engine(1, tiling=Tiling("tiles", 8)) as engine:
        [out] = engine.map_fused(stages, {"in": engine.from_array(image)})
        np.testing.assert_allclose(out.array, whole_image_filter(whole_image_filter(image)),
                                   rtol=1e-6)
    assert counted.calls == 1


def test_a_chain_stage_given_a_margin_that_is_no_margin_is_refused(image) -> None:
    stages = [ChainStep("a", callables.scipy_filter, ("in",), ("a",), margin=-1, params=PARAMS)]
    with Engine(1) as engine, pytest.raises(ConfigError, match="fused chain 'a': margin must"):
        engine.map_fused(stages, {"in": engine.from_array(image)})


@pytest.mark.parametrize("method", ["map", "reduce", "map_fused"])
def test_the_tiles_are_given_by_one_name_not_both(image, method) -> None:
    layout = plan_step(37, 45, margin=RADIUS, tiling=Tiling("tiles", 8), workers=1)
    with Engine(1) as engine:
        raster = engine.from_array(image)
        call = {
            "map": lambda: engine.map(callables.scipy_filter, [raster], params=PARAMS,
                                      layout=layout, plan=layout),
            "reduce": lambda: engine.reduce(callables.scipy_filter, [raster], params=PARAMS,
                                            combine=lambda a, b: a, layout=layout, plan=layout),
            "map_fused": lambda: engine.map_fused(
                [ChainStep("a", callables.scipy_filter, ("in",), ("a",), RADIUS, PARAMS)],
                {"in": raster}, layout=layout, plan=layout),
        }[method]
        with pytest.raises(ConfigError, match="layout= or plan= .the former name., not both"):
            call()


def test_chunks_are_single_tiles_on_this_machine_and_fewer_on_a_cluster():
    """On the pool (workers sharing this machine's memory) a chunk is one tile up to
    MAX_LOCAL_CHUNKS tiles, so that a file written in tile order gets its tiles' blocks at
    their places; a cluster's tasks stay at most MAX_CHUNKS (a few per worker beyond)."""
    local, cluster = max_chunks(True), max_chunks(False)
    assert (local, cluster) == (MAX_LOCAL_CHUNKS, MAX_CHUNKS) == (4096, 256)
    for count, limit, sizes in [(4096, local, {1}), (4096, cluster, {16}), (64, cluster, {1}),
                                (10_000, local, {3, 1}), (300, local, {1})]:
        chunks = make_chunks(range(count), 2, limit)
        assert [i for chunk in chunks for i in chunk] == list(range(count))  # in order, once
        assert {len(chunk) for chunk in chunks} == sizes
    assert len(make_chunks(range(4096), 128, cluster)) == 1024  # 8 per worker beyond 32
