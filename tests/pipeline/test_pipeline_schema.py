"""The JSON Schema of pipelines and the loader cannot drift apart: the same keys at every level,
every example pipeline valid, unknown keys refused by both."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from eoscale.cli.main import cli
from eoscale.errors import PipelineError
from eoscale.pipeline import keys, load_pipeline
from eoscale.pipeline.keys import KEY_TABLES
from eoscale.pipeline.schema import pipeline_schema, schema_text

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "pipelines").glob("*.yaml"))
BROKEN = Path(__file__).parent / "broken"

#: A pipeline that has every mapping the loader checks the keys of, each with its keys.
FULL = {
    "version": 1, "name": "all keys", "workers": 2, "memory": "4GiB", "scratch": "spill",
    "grid": {"like": "a", "resolution": [10, 10]},
    "tiling": {"mode": "strips", "tile_size": 64},
    "inputs": {"a": "a.tif", "b": {"path": "b.tif", "resampling": "bilinear"},
               "c": {"bands": ["c1.tif", "c2.tif"]},
               "d": {"stac": "item.json", "assets": ["red", "B08"], "scale": True}},
    "steps": [
        {"name": "m", "description": "a map", "map": "mod.fn", "inputs": ["a"],
         "params": {"k": 1}, "margin": 1, "writable_inputs": True, "profile": "mod.prof",
         "outputs": ["m1"]},
        {"name": "r", "reduce": "mod:Cls.fn", "combine": "mod.merge", "finalize": "mod.end",
         "inputs": ["m1"]},
    ],
    "outputs": {
        "m1": {"path": "m1.tif", "options": {"compress": "zstd"}, "format": "COG",
               "overviews": [2, 4], "resampling": "average",
               "quicklook": {"path": "m1.png", "colormap": "gray", "bands": [1], "size": 64},
               "stac": {"statistics": "r"}},
        "r": "r.json",
    },
    "gdal": {"GDAL_HTTP_MAX_RETRY": 2},
}


def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(pipeline_schema())


def messages(document: Any) -> list[str]:
    """Every error message, those inside anyOf/oneOf branches too."""
    found = []
    pending = list(validator().iter_errors(document))
    while pending:
        error = pending.pop()
        found.append(error.message)
        pending += error.context
    return found


def leaves(node: Any, schema: dict) -> list[dict]:
    """The schemas a node stands for, through $ref, anyOf, oneOf and allOf."""
    if not isinstance(node, dict):
        return []
    if "$ref" in node:
        return leaves(schema["$defs"][node["$ref"].rsplit("/", 1)[-1]], schema)
    found = [node]
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in node.get(key, []):
            found += leaves(branch, schema)
    return found


def objects_at(place: tuple[str, ...], schema: dict) -> list[dict]:
    """The object schemas (with properties) at a place of KEY_TABLES ("*": any name or index)."""
    nodes = leaves(schema, schema)
    for key in place:
        children = []
        for node in nodes:
            if key == "*":
                children += [node[part] for part in ("items", "additionalProperties")
                             if isinstance(node.get(part), dict)]
            elif key in node.get("properties", {}):
                children.append(node["properties"][key])
        nodes = [leaf for child in children for leaf in leaves(child, schema)]
    return [node for node in nodes if "properties" in node]


def all_objects(node: Any) -> list[dict]:
    """Every schema with properties, anywhere in the document."""
    if isinstance(node, list):
        return [found for item in node for found in all_objects(item)]
    if not isinstance(node, dict):
        return []
    own = [node] if isinstance(node.get("properties"), dict) and "type" in node else []
    return own + [found for value in node.values() for found in all_objects(value)]


def test_the_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(pipeline_schema())


@pytest.mark.parametrize("place", list(KEY_TABLES), ids=lambda place: " -> ".join(place) or "top")
def test_schema_keys_equal_the_loader_keys(place):
    found = objects_at(place, pipeline_schema())
    assert len(found) == 1, f"one object schema expected at {place}, found {len(found)}"
    assert set(found[0]["properties"]) == set(KEY_TABLES[place])
    assert found[0]["additionalProperties"] is False


def test_every_key_table_of_the_loader_has_its_place():
    tables = {name: value for name, value in vars(keys).items() if name.endswith("_KEYS")}
    placed = list(KEY_TABLES.values())
    assert [name for name, value in tables.items() if value not in placed] == []


def test_every_object_of_the_schema_is_a_table_of_the_loader():
    schema = pipeline_schema()
    reached = {id(node) for place in KEY_TABLES for node in objects_at(place, schema)}
    assert {id(node) for node in all_objects(schema)} == reached


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_every_example_pipeline_is_valid(path):
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert messages(document) == []
    load_pipeline(path)


def test_the_full_pipeline_is_valid_for_both(tmp_path):
    assert messages(FULL) == []
    load_pipeline(FULL, base_dir=tmp_path)


def mappings_at(document: Any, place: tuple[str, ...]) -> list[dict]:
    values = [document]
    for key in place:
        if key == "*":
            values = [item for value in values
                      for item in (value.values() if isinstance(value, dict) else value)]
        else:
            values = [value[key] for value in values if isinstance(value, dict) and key in value]
    return [value for value in values if isinstance(value, dict)]


@pytest.mark.parametrize("place", list(KEY_TABLES), ids=lambda place: " -> ".join(place) or "top")
def test_an_unknown_key_is_refused_by_both_at_every_level(place, tmp_path):
    document = copy.deepcopy(FULL)
    found = mappings_at(document, place)
    assert found, f"add a mapping at {place} to FULL, the pipeline with every key"
    found[0]["colour"] = "red"
    assert any("'colour' was unexpected" in message for message in messages(document))
    with pytest.raises(PipelineError, match="unknown key 'colour'"):
        load_pipeline(document, base_dir=tmp_path)


@pytest.mark.parametrize("path", sorted(path for path in BROKEN.glob("*.yaml")
                                        if "unknown key" in path.read_text(encoding="latin-1")),
                         ids=lambda path: path.stem)
def test_broken_pipelines_with_unknown_keys_fail_the_schema(path):
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert any("was unexpected" in message for message in messages(document))


def test_eoscale_schema_prints_it():
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    assert result.output == schema_text()
    assert json.loads(result.output) == pipeline_schema()
