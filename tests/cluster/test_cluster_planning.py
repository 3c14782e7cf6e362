"""A run on a cluster is planned on one of its workers: the command never imports the
pipeline's modules, what it checks is what the workers run, and the plan it gets back holds
each of the user's functions as a :class:`~eoscale.pipeline.remote.RemoteCallable`."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from eoscale.errors import EXIT_INVALID_PIPELINE, EXIT_USAGE
from eoscale.pipeline import load_pipeline
from eoscale.pipeline.fingerprint import fingerprint, plan_callables
from eoscale.pipeline.plan import Resources
from eoscale.pipeline.remote import Reach, RemoteCallable, calls_on, plan_on_cluster

#: A module that leaves a mark, by process id, in its own folder as it is imported.
TRACED_OPS = """\
import os
from pathlib import Path

Path(__file__).with_name(f"imported-{os.getpid()}").touch()


def double(arrays, profiles, params):
    return [arrays[0].astype("float32") * params.get("factor", 2)]


def _profile(profiles, params):
    return {**profiles[0], "dtype": "float32", "nodata": None}


def _check(params, input_names):
    return [] if params.get("factor", 2) > 0 else ["factor must be positive"]


double.profile = _profile
double.check = _check
double.margin = 1
"""


def _pipeline(folder: Path, callable_: str = "traced_ops.double", factor: int = 3) -> Path:
    (folder / "traced_ops.py").write_text(TRACED_OPS, encoding="utf-8")
    with rasterio.open(folder / "in.tif", "w", driver="GTiff", height=90, width=70, count=1,
                       dtype="uint16") as dst:
        dst.write(np.arange(6300, dtype=np.uint16).reshape(1, 90, 70))
    path = folder / "p.yaml"
    path.write_text("version: 1\ninputs: {image: in.tif}\nsteps:\n"
                    f"  - name: double\n    map: {callable_}\n    inputs: [image]\n"
                    f"    params: {{factor: {factor}}}\noutputs: {{double: out.tif}}\n",
                    encoding="utf-8")
    return path


def _command(folder: Path, address: str, *options: str) -> subprocess.CompletedProcess[str]:
    """``eoscale run p.yaml`` on the cluster at ``address`` (with a scratch folder unless
    ``options`` are given); its process id in ``args``."""
    options = options or ("--scratch", str(folder))
    process = subprocess.Popen(
        [sys.executable, "-m", "eoscale", "run", "p.yaml", "--cluster", address, "--overwrite",
         *options], cwd=folder, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess([process.pid], process.returncode, out, err)


def test_the_command_on_a_cluster_never_imports_the_pipeline_s_module(client, tmp_path):
    _pipeline(tmp_path)
    run = _command(tmp_path, client.scheduler.address)
    assert run.returncode == 0, run.stderr
    with rasterio.open(tmp_path / "in.tif") as src, rasterio.open(tmp_path / "out.tif") as out:
        assert out.dtypes == ("float32",)
        np.testing.assert_array_equal(out.read(1), src.read(1).astype(np.float32) * 3)
    marks = {path.name for path in tmp_path.glob("imported-*")}
    assert f"imported-{run.args[0]}" not in marks
    assert marks, "the workers imported the module"


def test_a_check_on_the_workers_names_the_pipeline_s_line(client, tmp_path):
    _pipeline(tmp_path, factor=-1)
    run = _command(tmp_path, client.scheduler.address)
    assert run.returncode == EXIT_INVALID_PIPELINE, run.stderr
    assert "p.yaml:7" in run.stderr and "factor must be positive" in run.stderr, run.stderr
    assert not (tmp_path / "out.tif").exists()
    assert not (tmp_path / f"imported-{run.args[0]}").exists()


def test_a_dotted_path_the_workers_cannot_resolve_names_its_line(client, tmp_path):
    _pipeline(tmp_path, callable_="traced_ops.dubble")
    run = _command(tmp_path, client.scheduler.address)
    assert run.returncode == EXIT_INVALID_PIPELINE, run.stderr
    assert "p.yaml:5" in run.stderr, run.stderr
    assert "module 'traced_ops' has no attribute 'dubble'" in run.stderr, run.stderr
    assert "double" in run.stderr.partition("dubble'")[2], run.stderr  # did you mean


def test_a_run_that_spills_on_a_remote_cluster_without_scratch_is_refused_on_its_plan(
        client, tmp_path):
    """As ``validate`` and ``--dry-run`` refuse it (tests/pipeline/test_pipeline_scratch_rule.py),
    once the plan is made on a worker: nothing is computed or written."""
    _pipeline(tmp_path)
    text = (tmp_path / "p.yaml").read_text(encoding="utf-8")
    (tmp_path / "p.yaml").write_text(text.replace(
        "outputs: {double: out.tif}",
        "  - {name: twice, map: traced_ops.double, inputs: [double]}\n"
        "  - {name: sum, reduce: eoscale.ops.stats, inputs: [double]}\n"
        "outputs: {twice: out.tif, sum: sum.json}"), encoding="utf-8")
    run = _command(tmp_path, client.scheduler.address, "-q")
    assert run.returncode == EXIT_USAGE, run.stderr
    assert "writes images to scratch files" in run.stderr and "same path" in run.stderr
    assert not (tmp_path / "out.tif").exists() and not (tmp_path / "sum.json").exists()


def test_a_plan_made_elsewhere_holds_remote_callables(tmp_path):
    """The worker's side and the client's, in one process (the caller calls in place)."""
    spec = load_pipeline(_pipeline(tmp_path))
    sys.modules.pop("traced_ops", None)
    calls: list[str] = []

    def caller(fn, *args, what=""):
        calls.append(fn.__name__)
        return fn(*args)

    try:
        plan = plan_on_cluster(spec, Resources.for_cluster("test", 2, 2**30), caller)
        found = plan.steps[0].callables
        assert isinstance(found.fn, RemoteCallable) and isinstance(found.profile, RemoteCallable)
        assert found.fn.reach == Reach("traced_ops.double", str(tmp_path))
        assert found.profile.reach == Reach("traced_ops.double", str(tmp_path), ("profile",))
        assert plan.steps[0].margin == 1 and found.fn.margin == 1
        assert found.fn.__name__ == "double"
        assert getattr(found.fn, "combine", None) is None  # absent, not imported to be sure
        assert found.fn.sources == (str(tmp_path / "traced_ops.py"),)
        assert plan.images["double"].dtype == "float32"
        # sent to a worker, it is the function itself
        assert pickle.loads(pickle.dumps(found.fn)) is sys.modules["traced_ops"].double
        # called here while a cluster is open: on a worker, through the caller
        with calls_on(caller):
            made = found.profile([{"dtype": "uint16", "count": 1}], {})
        assert made["dtype"] == "float32" and calls[-1] == "call_reached"
        # a resume's fingerprint sees the code the workers run, as a plan made here does
        remote = fingerprint(spec, version="v", callables=plan_callables(plan))
        assert remote.subjects["step 'double'"]["modules"] == "traced_ops.py"
        assert remote == fingerprint(spec, version="v")
    finally:
        sys.modules.pop("traced_ops", None)


def test_problems_found_on_the_worker_are_raised_as_found(tmp_path):
    from eoscale.errors import PipelineError

    spec = load_pipeline(_pipeline(tmp_path, factor=0))
    try:
        with pytest.raises(PipelineError) as raised:
            plan_on_cluster(spec, Resources.for_cluster("test", 2, 2**30),
                            lambda fn, *args: fn(*args))
    finally:
        sys.modules.pop("traced_ops", None)
    [problem] = raised.value.problems
    assert problem.message == "factor must be positive" and problem.step == "double"
    assert str(raised.value).count("invalid pipeline") == 1


def test_the_workers_are_asked_whether_they_see_the_inputs_before_they_plan(tmp_path):
    """A worker that cannot see an input would plan as if it were missing (a pipeline error
    naming a file the user sees): the cluster's own error comes first."""
    from eoscale.engine.cluster import ClusterError, DaskExecutor
    from eoscale.pipeline.session import plan_for

    class Blind(DaskExecutor):
        """Workers that see nothing; what is asked of them, in order."""

        def __init__(self):
            self.workers, self.description, self.asked = 2, "blind", []

        def prepare(self, setup):
            self.asked.append("prepare")

        def check_visible(self, paths):
            self.asked.append(("check_visible", list(paths)))
            if paths:
                raise ClusterError(f"cannot see {paths[0]}")

        def call(self, fn, *args, what=""):
            self.asked.append(fn.__name__)
            return fn(*args)

    spec = load_pipeline(_pipeline(tmp_path))
    blind = Blind()
    with pytest.raises(ClusterError, match="cannot see .*in.tif"):
        plan_for(spec, blind)
    assert blind.asked == ["prepare", ("check_visible", [str(tmp_path / "in.tif")])]
    assert "traced_ops" not in sys.modules
