"""Opening a run (:func:`eoscale.pipeline.session.open_run`): a run on this machine opens
nothing; a run on a cluster connects through the one connection, is planned again for the
cluster's workers and closes what it opened; a given executor is used as it is and left open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine

import eoscale
from eoscale.errors import ConfigError
from eoscale.pipeline import session
from eoscale.pipeline.session import open_run, worker_paths


class FakeCluster:
    """An executor whose workers share no memory, as a connected cluster's."""

    shares_memory = False

    def __init__(self, workers: int, description: str):
        self.workers = workers
        self.description = description
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def document(tmp_path: Path) -> dict[str, Any]:
    scene = tmp_path / "scene.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=40, height=30, count=1,
                       dtype="float32", crs="EPSG:32631",
                       transform=Affine(10, 0, 1000, 0, -10, 2000)) as dataset:
        dataset.write(np.ones((1, 30, 40), dtype="float32"))
    return {"version": 1, "inputs": {"scene": str(scene)},
            "steps": [{"name": "smooth", "map": "eoscale.ops.gaussian_filter",
                       "inputs": ["scene"], "params": {"sigma": 1.0}}],
            "outputs": {"smooth": str(tmp_path / "out" / "smooth.tif")}}


def test_a_run_on_this_machine_opens_nothing(document, monkeypatch) -> None:
    monkeypatch.setattr(session, "connect_cluster", lambda *a, **k: pytest.fail("connected"))
    plan = eoscale.plan(document)
    with open_run(plan) as opened:
        assert opened.plan is plan
        assert opened.executor is None
        assert opened.cluster is None


def test_a_run_on_a_cluster_connects_plans_again_and_closes(document, monkeypatch) -> None:
    fake = FakeCluster(3, "tcp://scheduler:8786")
    asked = []
    monkeypatch.setattr(session, "connect_cluster",
                        lambda cluster: asked.append(cluster) or fake)
    plan = eoscale.plan(document, cluster="tcp://scheduler:8786")
    with open_run(plan) as opened:
        assert asked == ["tcp://scheduler:8786"]
        assert opened.executor is fake and not fake.closed
        assert opened.plan is not plan
        assert opened.plan.resources.executor == "cluster"
        assert opened.plan.resources.workers == 3
        assert opened.plan.resources.cluster == "tcp://scheduler:8786"
    assert fake.closed


def test_a_cluster_given_to_a_plan_for_this_machine_is_planned_for(document,
                                                                   monkeypatch) -> None:
    fake = FakeCluster(5, "local:5")
    monkeypatch.setattr(session, "connect_cluster", lambda cluster: fake)
    plan = eoscale.plan(document)
    assert plan.resources.executor != "cluster"
    with open_run(plan, cluster=object()) as opened:
        assert opened.plan.resources.executor == "cluster"
        assert opened.plan.resources.workers == 5
        assert all(image.lives != "shared" for image in opened.plan.images.values())
    assert fake.closed


def test_a_given_executor_runs_the_plan_as_it_is_and_stays_open(document,
                                                                monkeypatch) -> None:
    monkeypatch.setattr(session, "connect_cluster", lambda *a, **k: pytest.fail("connected"))
    given = FakeCluster(2, "given")
    plan = eoscale.plan(document, cluster="local:2")
    with open_run(plan, executor=given) as opened:
        assert opened.plan is plan
        assert opened.executor is given
    assert not given.closed


def test_a_failure_inside_the_run_closes_the_cluster(document, monkeypatch) -> None:
    fake = FakeCluster(2, "local:2")
    monkeypatch.setattr(session, "connect_cluster", lambda cluster: fake)
    plan = eoscale.plan(document, cluster="local:2")
    with pytest.raises(ConfigError, match="boom"), open_run(plan):
        raise ConfigError("boom")
    assert fake.closed


def test_the_workers_must_see_the_inputs_and_the_folders_outputs_are_written_in(document) -> None:
    plan = eoscale.plan(document, cluster="local:2")
    # out/ does not exist yet: its nearest folder that does, where the workers write parts
    output_folder = str(Path(document["outputs"]["smooth"]).parent.parent)
    assert worker_paths(plan) == [document["inputs"]["scene"], output_folder]
