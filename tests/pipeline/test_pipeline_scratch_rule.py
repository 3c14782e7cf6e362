"""The plan decides which file each image written as computed goes to, laid out how, and whether
a run's scratch files are where its workers read them: a remote cluster needs a named scratch
folder, which ``validate``, ``run --dry-run`` and the run (once it reaches the cluster's workers,
which plan it) report alike (exit 2)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from eoscale.cli.main import cli
from eoscale.engine.tiling import Tiling, plan_step
from eoscale.errors import EXIT_USAGE, ConfigError
from eoscale.pipeline import load_pipeline, plan_run, validate
from eoscale.pipeline.plan import Residence, Resources
from eoscale.pipeline.validate import checked_plan

Writer = Callable[..., Path]

# smooth is read by a later reduce, and is no output: on a cluster, spilled to a scratch file.
PIPELINE = """
    version: 1
    workers: 2
    CLUSTER
    tiling: {mode: MODE}
    inputs: {a: a.tif}
    steps:
      - {name: smooth, map: pipeline_callables.smooth, inputs: [a], params: {radius: 2}}
      - {name: count, reduce: pipeline_callables.one_per_tile, inputs: [smooth]}
      - {name: edge, map: pipeline_callables.smooth, inputs: [smooth]}
    outputs: {edge: out/edge.tif, count: out/count.json}
    """

REFUSAL = "give a scratch folder (--scratch DIR, 'scratch:') on a filesystem every worker mounts"


@pytest.fixture
def pipeline(write_pipeline: Writer, make_raster: Writer) -> Callable[..., Path]:
    make_raster("a.tif", width=320, height=200)

    def write(cluster: str = "", mode: str = "tiles") -> Path:
        return write_pipeline(PIPELINE.replace("CLUSTER", cluster).replace("MODE", mode))

    return write


def test_a_remote_cluster_without_scratch_is_a_validation_problem(pipeline) -> None:
    spec = load_pipeline(pipeline("cluster: tcp://127.0.0.1:1"))
    problems = validate(spec)
    assert [problem.path for problem in problems] == ["scratch"]
    assert "this run on the cluster tcp://127.0.0.1:1 writes images to scratch files" \
        in problems[0].message and REFUSAL in problems[0].message
    with pytest.raises(ConfigError, match="same path") as raised:
        checked_plan(spec)
    assert raised.value.exit_code == EXIT_USAGE


def test_the_plan_says_so(pipeline, tmp_path: Path) -> None:
    remote = plan_run(load_pipeline(pipeline("cluster: tcp://127.0.0.1:1")))
    assert remote.needs_scratch and REFUSAL in (remote.scratch_refusal or "")
    assert remote.images["smooth"].file is not None and remote.images["smooth"].file.scratch
    local = plan_run(load_pipeline(pipeline("cluster: local:2")))
    assert local.needs_scratch and local.scratch_refusal is None
    here = plan_run(load_pipeline(pipeline()))  # the images stay in shared memory
    assert not here.needs_scratch and here.scratch_refusal is None
    named = load_pipeline(pipeline(f"cluster: tcp://127.0.0.1:1\n    scratch: {tmp_path}"))
    assert validate(named) == []


def test_validate_and_dry_run_refuse_alike_without_reaching_the_cluster(pipeline) -> None:
    """(A run plans on the cluster's workers: it refuses alike once it reaches them, tested in
    tests/cluster/test_cluster_planning.py; here the scheduler does not answer.)"""
    path = str(pipeline("cluster: tcp://127.0.0.1:1"))
    runner = CliRunner()
    for args in (["validate", path], ["run", "--dry-run", path]):
        result = runner.invoke(cli, args)
        assert result.exit_code == EXIT_USAGE, (args, result.output)
        assert "same path" in result.output
    result = runner.invoke(cli, ["run", path])
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in result.output


@pytest.mark.parametrize("mode, tile_size, block", [("tiles", 64, 64), ("tiles", 100, 512),
                                                   ("strips", 32, 512)])
def test_a_scratch_file_s_blocks_are_its_step_s_tiles_when_they_can_be(
        pipeline, mode: str, tile_size: int, block: int) -> None:
    spec = replace(load_pipeline(pipeline()), tiling=Tiling(mode, tile_size))
    plan = plan_run(spec, Resources(2, None, base=0, executor="cluster", cluster="local:2"))
    image = plan.images["smooth"]
    assert image.lives is Residence.SPILLED and image.file is not None
    assert image.file.block_shape == (block, block)
    assert dict(image.file.options or {}) == {"tiled": True, "blockxsize": block,
                                              "blockysize": block, "compress": "none",
                                              "bigtiff": "IF_SAFER"}
    edge = plan.images["edge"]
    assert edge.lives is Residence.WRITTEN and edge.file is not None and not edge.file.scratch
    # Its step's tiles cover the file's blocks whole, as planned for them.
    first = plan.steps[0]
    assert first.block_shape == (block, block)
    assert plan_step(200, 320, margin=2, tiling=spec.tiling, workers=2,
                     block_shape=first.block_shape) == first.tiling
