"""A run on a cluster is planned on one of its workers: the command never imports the
pipeline's modules, what it checks is what the workers run, and the plan it gets back holds
each of the user's functions as a :class:`~eoscale.pipeline.remote.RemoteCallable`."""

from __future__ import annotations

import json
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


def _command(folder: Path, address: str, *options: str,
             pipeline: str = "p.yaml") -> subprocess.CompletedProcess[str]:
    """``eoscale run`` of ``folder``'s ``pipeline`` on the cluster at ``address`` (with a
    scratch folder unless ``options`` are given), started from another folder (so that the
    pipeline's folder is not on its ``sys.path``); its process id in ``args``."""
    options = options or ("--scratch", str(folder))
    elsewhere = folder / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "eoscale", "run", str(folder / pipeline), "--cluster", address,
         "--overwrite", *options], cwd=elsewhere, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
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


#: Callables of other kinds than functions, and a reduce whose combine is a partial.
KINDS_OPS = """\
import functools
import os
from pathlib import Path

import numpy as np

Path(__file__).with_name(f"kinds-{os.getpid()}").touch()


class Adder:
    def __init__(self, n):
        self.n = n

    def __call__(self, arrays, profiles, params):
        return [arrays[0].astype("float32") + self.n]


def _scaled(arrays, profiles, params, factor):
    return [arrays[0].astype("float32") * factor]


class Halves:
    @classmethod
    def halved(cls, arrays, profiles, params):
        return [arrays[0].astype("float32") / 2]


def total(arrays, profiles, params):
    return int(arrays[0].astype(np.int64).sum())


adder = Adder(7)
tripled = functools.partial(_scaled, factor=3)
"""
#: A reduce's combine, which the client calls: it imports this module, not the other.
KINDS_COMBINE = "import functools\nimport operator\n\nadded = functools.partial(operator.add)\n"


def test_callables_of_every_kind_run_on_a_cluster_and_stay_out_of_the_client(client, tmp_path):
    """An instance with ``__call__``, a partial, a class's method and a reduce's partial
    combine: run from a folder where the client could not import their module by chance."""
    _pipeline(tmp_path)
    (tmp_path / "kinds_ops.py").write_text(KINDS_OPS, encoding="utf-8")
    (tmp_path / "kinds_combine.py").write_text(KINDS_COMBINE, encoding="utf-8")
    (tmp_path / "kinds.yaml").write_text(
        "version: 1\ninputs: {image: in.tif}\nsteps:\n"
        "  - {name: plus, map: kinds_ops.adder, inputs: [image]}\n"
        "  - {name: times, map: kinds_ops.tripled, inputs: [image]}\n"
        "  - {name: half, map: 'kinds_ops:Halves.halved', inputs: [image]}\n"
        "  - {name: sum, reduce: kinds_ops.total, combine: kinds_combine.added, inputs: [image]}\n"
        "outputs: {plus: plus.tif, times: times.tif, half: half.tif, sum: sum.json}\n",
        encoding="utf-8")
    run = _command(tmp_path, client.scheduler.address, pipeline="kinds.yaml")
    assert run.returncode == 0, run.stderr
    with rasterio.open(tmp_path / "in.tif") as src:
        image = src.read(1).astype(np.float32)
    for name, expected in (("plus", image + 7), ("times", image * 3), ("half", image / 2)):
        with rasterio.open(tmp_path / f"{name}.tif") as out:
            np.testing.assert_array_equal(out.read(1), expected, err_msg=name)
    assert json.loads((tmp_path / "sum.json").read_text())["result"] == int(image.sum())
    marks = {path.name for path in tmp_path.glob("kinds-*")}
    assert marks and f"kinds-{run.args[0]}" not in marks


def test_a_client_that_is_not_dask_s_default_runs_a_pipeline(client, tmp_path):
    """``distributed.Client(..., set_as_default=False)``: the results are taken on its own
    loop (Dask's as_completed otherwise looks for a default client, and found none)."""
    path = _pipeline(tmp_path)
    script = (
        "import sys, distributed, eoscale\n"
        f"client = distributed.Client({client.scheduler.address!r}, set_as_default=False)\n"
        f"eoscale.run({str(path)!r}, cluster=client, scratch={str(tmp_path)!r})\n"
        "client.close()\n")
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path / ".", text=True,
                         capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    with rasterio.open(tmp_path / "in.tif") as src, rasterio.open(tmp_path / "out.tif") as out:
        np.testing.assert_array_equal(out.read(1), src.read(1).astype(np.float32) * 3)


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


def test_another_error_found_on_the_worker_is_raised_as_it_was(tmp_path, monkeypatch):
    """Not a pipeline's problems (an error of eoscale's planning): its class, message and
    attributes, as the worker raised it."""
    from eoscale.errors import StepError

    spec = load_pipeline(_pipeline(tmp_path))
    raised_there = StepError("the profile function raised ValueError: boom", step="double")

    def failing(spec, resources):
        raise raised_there

    monkeypatch.setattr(sys.modules["eoscale.pipeline.validate"], "checked_plan", failing)
    with pytest.raises(StepError) as raised:
        plan_on_cluster(spec, Resources.for_cluster("test", 2, 2**30),
                        lambda fn, *args: fn(*args))
    assert str(raised.value) == str(raised_there) and raised.value.step == "double"
    assert raised.value.exit_code == raised_there.exit_code


WARNING_OPS = """\
import warnings

warnings.warn("made at import")


class OddWarning(UserWarning):
    pass


def double(arrays, profiles, params):
    return [arrays[0] * 2]


def _check(params, input_names):
    warnings.warn("checked", OddWarning)
    return []


double.check = _check
"""


def test_what_the_planning_worker_warns_the_command_says(client, tmp_path):
    """As when the command planned itself: a remote worker's warnings reach only its log."""
    _pipeline(tmp_path, callable_="warning_ops.double")
    (tmp_path / "warning_ops.py").write_text(WARNING_OPS, encoding="utf-8")
    run = _command(tmp_path, client.scheduler.address)
    assert run.returncode == 0, run.stderr
    module = tmp_path / "warning_ops.py"
    lines = run.stderr.splitlines()
    assert f"warning: UserWarning: made at import ({module}:3)" in lines, run.stderr
    assert f"warning: OddWarning: checked ({module}:15)" in lines, run.stderr
