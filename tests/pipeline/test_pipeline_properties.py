"""Properties: whatever the document, loading gives a spec or raises PipelineError, nothing else."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from eoscale.errors import PipelineError
from eoscale.pipeline import load_pipeline, validate
from eoscale.pipeline.keys import STEP_KEYS, TOP_KEYS

SETTINGS = settings(max_examples=150, deadline=None)

scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
           | st.sampled_from(["a", "scene", "ndvi", "stats", "${stats}", "${stats.min}", "x.tif",
                              "out.json", "pipeline_callables.ndvi", "tiles", "strips", 1, 0, -1]))
keys = st.text(max_size=8) | st.sampled_from(TOP_KEYS + STEP_KEYS + ("path", "options", "mode"))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(keys, inner, max_size=5), max_leaves=25)
documents = st.dictionaries(st.sampled_from(TOP_KEYS) | keys, values, max_size=8) | values

VALID: dict[str, Any] = {
    "version": 1, "name": "n", "workers": 2, "tiling": {"mode": "tiles", "tile_size": 64},
    "inputs": {"scene": "scene.tif", "other": "other.tif"},
    "steps": [
        {"name": "ndvi", "map": "pipeline_callables.ndvi", "inputs": ["scene", "other"],
         "params": {"red": 3, "nir": [4, {"k": "v"}]}, "margin": 1,
         "profile": "pipeline_callables.ndvi_profile", "outputs": ["ndvi"]},
        {"name": "stats", "reduce": "pipeline_callables.tile_stats", "inputs": ["ndvi"],
         "combine": "pipeline_callables.merge_stats", "finalize": "pipeline_callables.final_stats"},
        {"name": "smooth", "map": "pipeline_callables:Filters.identity", "inputs": ["ndvi"],
         "params": {"low": "${stats.min}", "all": ["${stats}"]}},
    ],
    "outputs": {"ndvi": "out/ndvi.tif", "smooth": {"path": "s.tif", "options": {"COMPRESS": "lzw"}},
                "stats": "stats.json"},
}


def containers(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The paths of every mapping and list inside ``value``, itself included."""
    found = [path] if isinstance(value, (dict, list)) else []
    items = (value.items() if isinstance(value, dict)
             else enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        found += containers(item, (*path, key))
    return found


@st.composite
def mutants(draw: st.DrawFn) -> dict[str, Any]:
    """The valid pipeline after one to three mutations: a key dropped, renamed or added, a value
    replaced, an item inserted."""
    document = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(containers(document)))
        target: Any = document
        for key in path:
            target = target[key]
        if not target:
            continue
        key = draw(st.sampled_from(sorted(target, key=str) if isinstance(target, dict)
                                   else range(len(target))))
        operation = draw(st.sampled_from(["drop", "replace", "rename", "insert"]))
        if operation == "drop":
            del target[key]
        elif operation == "replace":
            target[key] = draw(values)
        elif operation == "rename" and isinstance(target, dict):
            target[draw(keys)] = target.pop(key)
        elif isinstance(target, dict):
            target[draw(keys)] = draw(values)
        else:
            target.insert(key, draw(values))
    return document


def load_both_ways(document: Any, folder: Path) -> None:
    """Load a document as a mapping and as YAML text: each gives a spec or a PipelineError."""
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    sources: list[Any] = [path] + ([document] if isinstance(document, dict) else [])
    for source in sources:
        try:
            spec = load_pipeline(source, base_dir=folder)
        except PipelineError as error:
            event("refused")
            assert error.problems
            assert all(problem.message for problem in error.problems)
        else:
            event("loaded")
            assert isinstance(validate(spec, check_files=False, check_callables=False), list)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("properties")


def test_the_valid_document_loads(folder: Path) -> None:
    spec = load_pipeline(copy.deepcopy(VALID), base_dir=folder)
    assert spec.steps[2].params["all"] == ("${stats}",)


@SETTINGS
@given(documents)
def test_random_documents(folder: Path, document: Any) -> None:
    load_both_ways(document, folder)


@SETTINGS
@given(mutants())
def test_mutations_of_a_valid_pipeline(folder: Path, document: dict[str, Any]) -> None:
    load_both_ways(document, folder)


@SETTINGS
@given(st.text(max_size=200))
def test_random_text(folder: Path, text: str) -> None:
    path = folder / "text.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_pipeline(path)
    except PipelineError as error:
        assert error.problems


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes(folder: Path, data: bytes) -> None:
    path = folder / "bytes.yaml"
    path.write_bytes(data)
    try:
        load_pipeline(path)
    except PipelineError as error:
        assert error.problems
