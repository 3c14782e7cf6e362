"""Command-line values go into the document before it is read: each is checked by the reader of
the key it replaces, with the same message as that key's in a file, placed at its flag."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from eoscale.errors import PipelineError, Problem
from eoscale.pipeline import Overrides, load_pipeline

MAPPING: dict[str, Any] = {
    "version": 1,
    "tiling": {"mode": "strips"},
    "inputs": {"scene": "scene.tif",
               "stack": {"bands": ["b1.tif", "b2.tif"], "resampling": "bilinear"}},
    "steps": [{"name": "ndvi", "map": "pipeline_callables.ndvi", "inputs": ["scene", "stack"],
               "params": {"red": 3, "window": [3, 3]}}],
    "outputs": {"ndvi": {"path": "out/ndvi.tif", "options": {"COMPRESS": "zstd"},
                         "format": "COG", "quicklook": True}},
}


def problems_of(document: dict[str, Any], overrides: Overrides | None = None) -> list[Problem]:
    try:
        load_pipeline(document, overrides=overrides, base_dir="/data")
    except PipelineError as error:
        return error.problems
    return []


#: (Overrides field, the document's key for it, a bad value both are given).
BAD_VALUES = [
    ("workers", ("workers",), 0),
    ("workers", ("workers",), "four"),
    ("tile_size", ("tiling", "tile_size"), True),
    ("tile_size", ("tiling", "tile_size"), -3),
    ("memory", ("memory",), "plenty"),
    ("memory", ("memory",), 0),
    ("cluster", ("cluster",), "tcp://nowhere"),
]
FLAGS = {"workers": "--workers", "tile_size": "--tile-size", "memory": "--memory",
         "cluster": "--cluster"}


@pytest.mark.parametrize("field, key, value", BAD_VALUES)
def test_a_flag_is_checked_as_its_key_is(field: str, key: tuple[str, ...], value: Any) -> None:
    in_file = copy.deepcopy(MAPPING)
    parent = in_file
    for part in key[:-1]:
        parent = parent[part]
    parent[key[-1]] = value
    from_file, = problems_of(in_file)
    from_flag, = problems_of(MAPPING, Overrides(**{field: value}))
    assert from_flag.message == from_file.message
    assert (from_file.path, from_flag.path) == (" -> ".join(key), FLAGS[field])
    assert from_flag.line is None


def test_a_good_flag_replaces_a_bad_value_of_the_file() -> None:
    document = copy.deepcopy(MAPPING)
    document["workers"] = 0
    assert problems_of(document) != []
    assert problems_of(document, Overrides(workers=2)) == []


def test_the_source_mapping_is_left_as_it_was() -> None:
    document = copy.deepcopy(MAPPING)
    load_pipeline(document, base_dir="/data", overrides=Overrides(
        workers=2, tile_size=64, inputs={"stack": "s.tif"}, outputs={"ndvi": "n.tif"},
        params={("ndvi", "red"): 1}))
    assert document == MAPPING


def test_a_replaced_input_keeps_its_resampling_and_drops_its_bands(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load_pipeline(MAPPING, base_dir="/data", overrides=Overrides(
        inputs={"stack": "one.tif"}))
    stack = spec.inputs["stack"]
    assert (stack.path, stack.bands, stack.resampling) == (tmp_path / "one.tif", (), "bilinear")
    assert stack.where.path == "--input stack"


def test_a_replaced_output_keeps_the_rest_of_its_mapping(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load_pipeline(MAPPING, base_dir="/data", overrides=Overrides(
        outputs={"ndvi": "n.tif"}))
    ndvi = spec.outputs["ndvi"]
    assert (ndvi.path, dict(ndvi.options), ndvi.layout.format) == (
        tmp_path / "n.tif", {"COMPRESS": "zstd"}, "COG")
    assert ndvi.quicklook_path() == tmp_path / "n.png"
    assert ndvi.where.path == "--output ndvi"


def test_problems_inside_a_replaced_output_keep_their_own_place() -> None:
    document = copy.deepcopy(MAPPING)
    document["outputs"]["ndvi"]["options"] = ["COMPRESS=zstd"]
    problem, = problems_of(document, Overrides(outputs={"ndvi": "n.tif"}))
    assert problem.path == "outputs -> ndvi -> options"


def test_flags_on_sections_the_file_leaves_out() -> None:
    document = copy.deepcopy(MAPPING)
    del document["tiling"], document["outputs"]
    del document["steps"][0]["params"]
    spec = load_pipeline(document, base_dir="/data", overrides=Overrides(
        tile_size=16, tiling_mode="strips", outputs={"ndvi": "/out/n.tif"},
        params={("ndvi", "red"): 2}))
    assert (spec.tiling.mode, spec.tiling.tile_size) == ("strips", 16)
    assert spec.outputs["ndvi"].path == Path("/out/n.tif")
    assert dict(spec.steps[0].params) == {"red": 2}


def test_a_flag_name_the_file_refuses_is_refused_by_the_same_reader() -> None:
    problem, = problems_of(MAPPING, Overrides(outputs={"a.b": "x.tif"}))
    assert (problem.path, problem.message) == (
        "--output a.b", "name 'a.b' may not contain . (reserved: . = $ { })")


def test_the_tiling_flag_is_shown_as_typed_and_the_file_value_described() -> None:
    in_file = copy.deepcopy(MAPPING)
    in_file["tiling"]["mode"] = "strip"
    from_file, = problems_of(in_file)
    from_flag, = problems_of(MAPPING, Overrides(tiling_mode="strip"))
    assert from_file.message.endswith("found the text 'strip' (did you mean 'strips'?)")
    assert from_flag.message.endswith("found 'strip' (did you mean 'strips'?)")


@pytest.mark.parametrize("text", ["[1, 2]", "~", "text"])
def test_flags_on_a_document_that_is_no_mapping(text: str, tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(PipelineError) as raised:
        load_pipeline(path, overrides=Overrides(
            workers=2, tile_size=8, inputs={"a": "a.tif"}, outputs={"b": "b.tif"},
            params={("s", "k"): 1}))
    problem, = raised.value.problems
    assert problem.message.startswith("expected a mapping with keys version, inputs, steps")
