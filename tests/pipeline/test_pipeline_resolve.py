"""Dotted paths to callables, and ``${...}`` params to reduce results."""

from __future__ import annotations

import os.path
import sys
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import pytest

import pipeline_callables
from eoscale.errors import PipelineError
from eoscale.pipeline import ResolveError, resolve_callable, resolve_params
from eoscale.pipeline.spec import FrozenMap, freeze


@pytest.fixture
def isolated_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``sys.path`` and the modules imported are put back after the test."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


@pytest.mark.parametrize("dotted, expected", [
    ("os.path.join", os.path.join),
    ("os.path:join", os.path.join),
    ("collections:OrderedDict.fromkeys", OrderedDict.fromkeys),
    ("pipeline_callables.ndvi", pipeline_callables.ndvi),
    ("pipeline_callables:Filters.identity", pipeline_callables.Filters.identity),
])
def test_the_three_forms(dotted: str, expected: object) -> None:
    assert resolve_callable(dotted) == expected


def test_a_module_next_to_the_pipeline(tmp_path: Path, isolated_imports: None) -> None:
    (tmp_path / "pipeline_resolve_next.py").write_text("def double(x):\n    return 2 * x\n")
    assert resolve_callable("pipeline_resolve_next.double", tmp_path)(4) == 8
    assert resolve_callable("pipeline_resolve_next:double", tmp_path)(5) == 10
    assert sys.path[0] == str(tmp_path)
    assert sys.path.count(str(tmp_path)) == 1


@pytest.mark.parametrize("source, failure", [
    ("import no_such_dependency\n",
     "failed: ModuleNotFoundError: No module named 'no_such_dependency'"),
    ("def f(:\n", "raised SyntaxError: "),
    ("raise SystemExit(3)\n", "raised SystemExit: 3"),
])
def test_an_import_that_fails(tmp_path: Path, isolated_imports: None, source: str,
                              failure: str) -> None:
    module = "pipeline_resolve_broken"  # a name no other test's module has: Python caches by name
    (tmp_path / f"{module}.py").write_text(source)
    with pytest.raises(ResolveError) as raised:
        resolve_callable(f"{module}.f", tmp_path)
    assert str(raised.value).startswith(f"'{module}.f': importing module '{module}' {failure}")
    assert "Traceback" not in str(raised.value)


@pytest.mark.parametrize("dotted, message", [
    ("no_such_module.f", "'no_such_module.f': module 'no_such_module' not found"),
    ("pipeline_callables.sub.f",
     "'pipeline_callables.sub.f': module 'pipeline_callables.sub' not found"),
    ("pipeline_callables.ndvii",
     "'pipeline_callables.ndvii': module 'pipeline_callables' has no attribute 'ndvii' "
     "(did you mean 'ndvi'?)"),
    ("pipeline_callables.zzz", "module 'pipeline_callables' has no attribute 'zzz'"),
    ("pipeline_callables:Filters.identiti",
     "'Filters' has no attribute 'identiti' (did you mean 'identity'?)"),
    ("pipeline_callables.THRESHOLD", "'pipeline_callables.THRESHOLD' is float 0.5, not a callable"),
    ("pipeline_import_fails.f",
     "importing module 'pipeline_import_fails' raised RuntimeError: no licence for the "
     "frobnicator"),
    ("ndvi", "'ndvi' is not a dotted path like 'module.function'"),
    ("a.b:c:d", "'a.b:c:d' is not a dotted path"),
    ("a b.c", "'a b.c' is not a dotted path"),
])
def test_what_is_wrong_is_said(dotted: str, message: str) -> None:
    with pytest.raises(ResolveError) as raised:
        resolve_callable(dotted)
    assert message in str(raised.value)
    assert raised.value.exit_code == 3


def test_a_missing_attribute_suggests_public_callables_only() -> None:
    with pytest.raises(ResolveError) as raised:
        resolve_callable("pipeline_callables.THRESHOLDS")
    assert "did you mean" not in str(raised.value)


RESULTS = {"stats": {"min": 1.5, "max": 9.0}, "total": 42.0,
           "bands": [{"min": 1, "max": 7, "edges": [0, 4, 8]}, {"min": 2, "max": 5}],
           "dotted": {"a.b": 1, "a": {"b": 2}}}


def test_references_are_replaced() -> None:
    params = freeze({"low": "${stats.min}", "all": "${stats}", "n": 3,
                     "nested": {"bounds": ["${stats.min}", "${stats.max}"], "sum": "${total}"},
                     "text": "costs ${total}"})
    assert resolve_params(params, RESULTS) == {
        "low": 1.5, "all": RESULTS["stats"], "n": 3,
        "nested": {"bounds": [1.5, 9.0], "sum": 42.0}, "text": "costs ${total}"}


def test_params_come_back_plain() -> None:
    resolved = resolve_params(freeze({"a": {"b": [1, {"c": 2}]}}), {})
    assert type(resolved) is dict and type(resolved["a"]["b"]) is list
    assert type(resolved["a"]["b"][1]) is dict
    assert not isinstance(resolved["a"], FrozenMap)


@pytest.mark.parametrize("value, message", [
    ("${stats.mean}", "step 'smooth': '${stats.mean}': the result of 'stats' has no key 'mean' "
                      "(keys: min, max)"),
    ("${stats.mni}", "has no key 'mni' (did you mean 'min'?)"),
    ("${total.key}", "'${total.key}': the result of 'total' is float, not a mapping nor a list"),
    ("${bands.max}", "'${bands.max}': the result of 'bands' is a list of 2, indexed by position "
                     "(0 to 1), not by 'max' (a reduce of several bands gives one result per "
                     "band: '${bands.0.max}' is the first band's)"),
    ("${bands.2.max}", "the result of 'bands' is a list of 2, indexed by position (0 to 1), not "
                       "by '2'"),
    ("${bands.1.edges}", "the result of 'bands' at '1' has no key 'edges' (keys: min, max)"),
    ("${bands.0.edges.x}", "the result of 'bands' at '0' at 'edges' is a list of 3, indexed by "
                           "position (0 to 2), not by 'x'"),
    ("${other}", "'${other}': reduce step 'other' has no result (yet)"),
])
def test_a_missing_result_names_the_step(value: str, message: str) -> None:
    with pytest.raises(PipelineError) as raised:
        resolve_params(FrozenMap({"p": value}), RESULTS, step="smooth")
    assert message in str(raised.value)
    assert raised.value.problems[0].step == "smooth"


def test_a_reference_walks_lists_by_position_and_mappings_by_name() -> None:
    params = freeze({"high": "${bands.1.max}", "edge": "${bands.0.edges.2}",
                     "whole": "${dotted.a.b}", "inner": "${dotted.a}"})
    # a key that holds a dot is taken whole first: results made before paths keep their meaning
    assert resolve_params(params, RESULTS) == {"high": 5, "edge": 8, "whole": 1,
                                               "inner": {"b": 2}}


def test_a_missing_result_in_a_pipeline_names_its_line(tmp_path) -> None:
    from eoscale.pipeline import load_pipeline

    (tmp_path / "p.yaml").write_text(
        "version: 1\ninputs: {a: a.tif}\nsteps:\n"
        "  - {name: s, reduce: eoscale.ops.stats, inputs: [a]}\n"
        "  - name: m\n    map: eoscale.ops.band_math\n    inputs: [a]\n"
        "    params:\n      expression: a\n      bound: ${s.max}\n"
        "outputs: {m: m.tif}\n", encoding="utf-8")
    step = load_pipeline(tmp_path / "p.yaml").steps[1]
    with pytest.raises(PipelineError) as raised:
        resolve_params(step.params, {"s": [{"max": 1}]}, step=step.name, locate=step.locate)
    problem = raised.value.problems[0]
    assert (problem.file, problem.line, problem.step) == (str(tmp_path / "p.yaml"), 10, "m")
    assert problem.path == "steps -> 1 -> params -> bound"
