"""The loader's keys come from the JSON Schema, and the graph of names is checked once per load."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from eoscale.cli.main import cli
from eoscale.errors import PipelineError
from eoscale.pipeline import checked_plan, keys, load_pipeline, validate
from eoscale.pipeline.keys import KeyTable, table_at
from eoscale.pipeline.schema import pipeline_schema

REPO = Path(__file__).resolve().parents[2]

MINIMAL: dict[str, Any] = {
    "version": 1, "inputs": {"scene": "scene.tif"},
    "steps": [{"name": "ndvi", "map": "pipeline_callables.ndvi", "inputs": ["scene"]}],
}


def test_the_tables_are_the_schemas_objects() -> None:
    schema = pipeline_schema()
    step = schema["$defs"]["step"]
    assert keys.STEP == KeyTable(tuple(step["properties"]), tuple(step["required"]))
    assert keys.TOP.required == ("version", "inputs", "steps")
    assert keys.INPUT.required == ()  # path or bands, which the schema says with oneOf


def test_a_key_written_in_the_schema_is_a_key_the_loader_knows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    document = copy.deepcopy(MINIMAL)
    document["steps"][0]["colour"] = "red"
    with pytest.raises(PipelineError, match="unknown key 'colour'"):
        load_pipeline(document, base_dir="/data")
    schema = pipeline_schema()
    schema["$defs"]["step"]["properties"]["colour"] = {"type": "string"}
    monkeypatch.setattr(keys, "STEP", table_at(("steps", "*"), schema))
    assert load_pipeline(document, base_dir="/data").steps[0].name == "ndvi"


def test_a_required_key_of_the_schema_is_required_by_the_loader(
        monkeypatch: pytest.MonkeyPatch) -> None:
    schema = pipeline_schema()
    schema["required"].append("name")
    monkeypatch.setattr(keys, "TOP", table_at((), schema))
    with pytest.raises(PipelineError, match="missing key 'name'"):
        load_pipeline(copy.deepcopy(MINIMAL), base_dir="/data")


def test_a_place_with_no_single_mapping_is_an_error() -> None:
    with pytest.raises(LookupError, match="0 mappings"):
        table_at(("nowhere",), pipeline_schema())


@pytest.fixture
def graph_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the calls of check_graph, wherever they are made from."""
    calls: list[int] = []
    # eoscale.pipeline's own 'validate' is the function: the modules are taken by their names.
    loader_module = importlib.import_module("eoscale.pipeline.loader")
    validate_module = importlib.import_module("eoscale.pipeline.validate")
    real = validate_module.check_graph

    def counted(spec: Any) -> Any:
        calls.append(1)
        return real(spec)

    monkeypatch.setattr(validate_module, "check_graph", counted)
    monkeypatch.setattr(loader_module, "check_graph", counted)
    return calls


def test_eoscale_validate_and_a_dry_run_check_the_graph_once(
        graph_checks: list[int], tmp_path: Path) -> None:
    examples = tmp_path / "pipelines"
    shutil.copytree(REPO / "pipelines", examples, ignore=shutil.ignore_patterns("out"))
    runner = CliRunner()
    for args in (["validate"], ["run", "--dry-run"]):
        graph_checks.clear()
        result = runner.invoke(cli, [*args, str(examples / "quickstart.yaml")])
        assert result.exit_code == 0, result.output
        assert len(graph_checks) == 1


def test_a_loaded_spec_says_its_graph_was_checked(graph_checks: list[int]) -> None:
    spec = load_pipeline(copy.deepcopy(MINIMAL), base_dir="/data")
    assert spec.graph_checked and len(graph_checks) == 1
    assert validate(spec, check_files=False, check_callables=False) == []
    assert len(graph_checks) == 1


def test_a_spec_changed_after_loading_is_checked_again(graph_checks: list[int]) -> None:
    spec = load_pipeline(copy.deepcopy(MINIMAL), base_dir="/data")
    step = dataclasses.replace(spec.steps[0], inputs=("scen",))
    changed = dataclasses.replace(spec, steps=(step,))
    assert not changed.graph_checked
    problem, = validate(changed, check_files=False, check_callables=False)
    assert "unknown image 'scen' (did you mean 'scene'?)" in problem.message
    with pytest.raises(PipelineError, match="unknown image 'scen'"):
        checked_plan(changed)
