"""Loading valid pipelines: every key, defaults, paths, overrides, and the spec's helpers."""

from __future__ import annotations

import dataclasses
import pickle
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from eoscale.engine.tiling import Tiling
from eoscale.errors import PipelineError
from eoscale.pipeline import FrozenMap, Overrides, PipelineSpec, load_pipeline
from eoscale.pipeline.document import MAX_NODES

WritePipeline = Callable[..., Path]

FULL = """
    version: 1
    name: ndvi-smooth
    workers: 4
    tiling: {mode: strips, tile_size: 256}
    inputs:
      scene: data/scene.tif
    steps:
      - name: ndvi
        description: red and near infrared to NDVI
        map: pipeline_callables.ndvi
        inputs: [scene]
        params: {red: 3, nir: 4, window: [3, 3], options: {fast: true}}
        margin: 0
        profile: pipeline_callables.ndvi_profile
        outputs: [ndvi]
      - name: stats
        reduce: pipeline_callables.tile_stats
        combine: pipeline_callables.merge_stats
        finalize: pipeline_callables.final_stats
        inputs: [ndvi]
        margin: 2
        writable_inputs: false
      - name: smooth
        map: pipeline_callables:Filters.identity
        inputs: [ndvi]
        params: {low: "${stats.min}"}
        writable_inputs: true
      - name: late
        map: pipeline_callables.ndvi
        inputs: [scene]
        params: {bounds: ["${stats.min}", "${stats}"]}
    outputs:
      ndvi: out/ndvi.tif
      smooth: {path: out/smooth.tiff, options: {COMPRESS: deflate, BLOCKXSIZE: 256}}
      stats: out/stats.json
    """

MINIMAL = textwrap.dedent("""
    version: 1
    inputs: {scene: scene.tif}
    steps:
      - {name: ndvi, map: pipeline_callables.ndvi, inputs: [scene]}
    """).lstrip()


def minimal_mapping() -> dict:
    return {"version": 1, "inputs": {"scene": "scene.tif"},
            "steps": [{"name": "ndvi", "map": "pipeline_callables.ndvi", "inputs": ["scene"]}]}


def test_every_key_is_read(write_pipeline: WritePipeline, tmp_path: Path) -> None:
    spec = load_pipeline(write_pipeline(FULL))
    assert (spec.version, spec.name, spec.workers) == (1, "ndvi-smooth", 4)
    assert spec.tiling == Tiling("strips", 256)
    assert spec.inputs["scene"].path == tmp_path / "data" / "scene.tif"
    ndvi, stats, smooth, late = spec.steps
    assert (ndvi.kind, ndvi.callable, ndvi.inputs, ndvi.outputs) == (
        "map", "pipeline_callables.ndvi", ("scene",), ("ndvi",))
    assert ndvi.description == "red and near infrared to NDVI"
    assert ndvi.params == {"red": 3, "nir": 4, "window": (3, 3), "options": {"fast": True}}
    assert (ndvi.margin, ndvi.profile) == (0, "pipeline_callables.ndvi_profile")
    assert (smooth.callable, smooth.outputs, smooth.margin) == (
        "pipeline_callables:Filters.identity", ("smooth",), None)
    assert smooth.params == {"low": "${stats.min}"}
    assert (ndvi.writable_inputs, stats.writable_inputs, smooth.writable_inputs) == (
        None, False, True)
    assert (stats.kind, stats.combine, stats.finalize, stats.margin, stats.outputs) == (
        "reduce", "pipeline_callables.merge_stats", "pipeline_callables.final_stats", 2, ())
    assert late.params == {"bounds": ("${stats.min}", "${stats}")}
    assert spec.outputs["ndvi"].path == tmp_path / "out" / "ndvi.tif"
    assert spec.outputs["ndvi"].options == {}
    assert spec.outputs["smooth"].path == tmp_path / "out" / "smooth.tiff"
    assert spec.outputs["smooth"].options == {"COMPRESS": "deflate", "BLOCKXSIZE": 256}
    assert spec.outputs["stats"].path == tmp_path / "out" / "stats.json"
    assert spec.source == tmp_path / "pipeline.yaml"
    assert spec.base_dir == tmp_path


def test_defaults(write_pipeline: WritePipeline) -> None:
    spec = load_pipeline(write_pipeline(MINIMAL))
    assert (spec.name, spec.workers, spec.tiling, dict(spec.outputs)) == (None, None, Tiling(), {})
    step, = spec.steps
    assert (step.params, step.margin, step.profile, step.outputs) == ({}, None, None, ("ndvi",))
    assert step.writable_inputs is None


@pytest.mark.parametrize("outputs", ["outputs:", "outputs: {}", "outputs: null"])
def test_outputs_may_be_empty(write_pipeline: WritePipeline, outputs: str) -> None:
    assert dict(load_pipeline(write_pipeline(MINIMAL + outputs + "\n")).outputs) == {}


def test_null_optional_keys_count_as_absent(write_pipeline: WritePipeline) -> None:
    text = MINIMAL.replace("version: 1", "version: 1\nname:\nworkers: ~\ntiling:")
    spec = load_pipeline(write_pipeline(text))
    assert (spec.name, spec.workers, spec.tiling) == (None, None, Tiling())


def test_relative_paths_resolve_against_the_pipeline_folder(
        write_pipeline: WritePipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_pipeline(MINIMAL.replace("scene.tif", "../data/scene.tif"), "sub/pipeline.yaml")
    monkeypatch.chdir("/")
    assert load_pipeline(path).inputs["scene"].path == tmp_path / "data" / "scene.tif"
    assert load_pipeline(path, base_dir=tmp_path / "elsewhere").inputs["scene"].path == \
        tmp_path / "data" / "scene.tif"


def test_absolute_and_home_paths(write_pipeline: WritePipeline, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    text = MINIMAL.replace("scene.tif", "~/scene.tif") + "outputs: {ndvi: /srv/out/ndvi.tif}\n"
    spec = load_pipeline(write_pipeline(text))
    assert spec.inputs["scene"].path == tmp_path / "home" / "scene.tif"
    assert spec.outputs["ndvi"].path == Path("/srv/out/ndvi.tif")


def test_unicode_and_spaces_in_names_and_paths(write_pipeline: WritePipeline,
                                               tmp_path: Path) -> None:
    spec = load_pipeline(write_pipeline("""
        version: 1
        inputs: {scène à Zürich: données brutes/scène 1.tif}
        steps:
          - {name: indice végétal, map: pipeline_callables.ndvi, inputs: [scène à Zürich]}
        outputs: {indice végétal: sorties/indice végétal.tif}
        """, "mes pipelines/chaîne.yaml"))
    folder = tmp_path / "mes pipelines"
    assert spec.inputs["scène à Zürich"].path == folder / "données brutes" / "scène 1.tif"
    assert spec.steps[0].outputs == ("indice végétal",)
    assert spec.outputs["indice végétal"].path.name == "indice végétal.tif"


def test_a_mapping_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load_pipeline(minimal_mapping())
    assert (spec.source, spec.base_dir) == (None, tmp_path)
    assert spec.inputs["scene"].path == tmp_path / "scene.tif"
    elsewhere = load_pipeline(minimal_mapping(), base_dir="/data")
    assert elsewhere.inputs["scene"].path == Path("/data/scene.tif")


def test_a_mapping_and_its_yaml_give_equal_specs(write_pipeline: WritePipeline,
                                                 tmp_path: Path) -> None:
    from_yaml = load_pipeline(write_pipeline(MINIMAL))
    from_mapping = load_pipeline(minimal_mapping(), base_dir=tmp_path)
    assert dataclasses.replace(from_mapping, source=from_yaml.source) == from_yaml
    assert from_yaml.steps[0].where.line == 4 and from_mapping.steps[0].where.line is None


def test_a_mapping_source_has_paths_but_no_lines() -> None:
    document = minimal_mapping()
    document["steps"][0]["inputs"] = ["scen"]
    with pytest.raises(PipelineError) as raised:
        load_pipeline(document)
    problem, = raised.value.problems
    assert (problem.file, problem.line, problem.step) == (None, None, "ndvi")
    assert problem.path == "steps -> 0 -> inputs -> 0"
    assert "unknown image 'scen' (did you mean 'scene'?)" in problem.message


def test_anchors_aliases_and_merge_keys(write_pipeline: WritePipeline) -> None:
    spec = load_pipeline(write_pipeline("""
        version: 1
        inputs: {scene: scene.tif}
        steps:
          - name: a
            map: pipeline_callables.ndvi
            inputs: &scene [scene]
            params: &common {red: 3, nir: 4}
          - name: b
            map: pipeline_callables.ndvi
            inputs: *scene
            params:
              <<: *common
              nir: 5
        """))
    assert spec.steps[1].inputs == ("scene",)
    assert spec.steps[1].params == {"red": 3, "nir": 5}
    assert spec.steps[1].locate("params", "red").line == 7


def test_all_problems_come_together_in_line_order(write_pipeline: WritePipeline) -> None:
    with pytest.raises(PipelineError) as raised:
        load_pipeline(write_pipeline("""
            version: 1
            workers: 0
            inputs: {scene: scene.tif}
            steps:
              - {name: a, map: pipeline_callables.ndvi, inputs: [scen], margin: -1}
              - {name: a, reduce: pipeline_callables.tile_stats, inputs: [a], colour: red}
            outputs: {b: b.tif}
            """))
    lines = [problem.line for problem in raised.value.problems]
    assert lines == [2, 5, 5, 6, 6, 7]
    assert "invalid pipeline (6 problems)" in str(raised.value)


@pytest.mark.parametrize("version", ["1.0", "'1'", "true"])
def test_version_is_the_integer_one(write_pipeline: WritePipeline, version: str) -> None:
    with pytest.raises(PipelineError, match="unsupported version"):
        load_pipeline(write_pipeline(MINIMAL.replace("version: 1", f"version: {version}")))


def test_a_boolean_where_text_is_expected_is_explained(write_pipeline: WritePipeline) -> None:
    with pytest.raises(PipelineError, match=r"found a boolean \(false; put it in quotes"):
        load_pipeline(write_pipeline(MINIMAL.replace("scene.tif", "no")))


@pytest.mark.parametrize("value", ["1", "yes please", "[true]"])
def test_writable_inputs_is_true_or_false(write_pipeline: WritePipeline, value: str) -> None:
    text = MINIMAL.replace("inputs: [scene]}", f"inputs: [scene], writable_inputs: {value}}}")
    with pytest.raises(PipelineError, match="expected true or false") as raised:
        load_pipeline(write_pipeline(text))
    problem, = raised.value.problems
    assert (problem.path, problem.line) == ("steps -> 0 -> writable_inputs", 4)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="pipeline file not found") as raised:
        load_pipeline(tmp_path / "nothere.yaml")
    assert raised.value.exit_code == 3


def test_a_folder_is_no_pipeline(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="this is a folder, not a pipeline file"):
        load_pipeline(tmp_path)


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(PipelineError, match="cannot read the pipeline file: Not a directory"):
        load_pipeline(tmp_path / "file" / "pipeline.yaml")


def test_a_byte_order_mark_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_pipeline(path).steps[0].name == "ndvi"


def test_control_characters_are_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "nul.yaml"
    path.write_text("version: 1\nname: a\x00b\n")
    with pytest.raises(PipelineError, match="character #x0000 is not allowed") as raised:
        load_pipeline(path)
    assert raised.value.problems[0].line == 2


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    depth = sys.getrecursionlimit()
    path.write_text("version: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(PipelineError, match="nested too deeply"):
        load_pipeline(path)


def test_a_large_table_used_through_aliases_is_fine(write_pipeline: WritePipeline) -> None:
    size, uses = 5000, MAX_NODES // 5000 - 2
    table = ", ".join(map(str, range(size)))
    text = MINIMAL.replace("inputs: [scene]}",
                           f"inputs: [scene], params: {{lut: &lut [{table}]}}}}")
    text += "".join(f"  - {{name: s{n}, map: pipeline_callables.ndvi, inputs: [scene], "
                    "params: {lut: *lut}}\n" for n in range(uses))
    spec = load_pipeline(write_pipeline(text))
    assert spec.steps[-1].params["lut"] == tuple(range(size))


# -- overrides --------------------------------------------------------------------------------


def test_overrides_replace_values(write_pipeline: WritePipeline, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_pipeline(FULL)
    monkeypatch.chdir(tmp_path / "..")
    spec = load_pipeline(path, overrides=Overrides(
        workers=2, tile_size=64, tiling_mode="tiles",
        inputs={"scene": "other.tif"},
        outputs={"smooth": "new/smooth.tif", "late": "late.tif"},
        params={("ndvi", "red"): 1, ("ndvi", "extra"): {"k": [1, 2]}}))
    assert (spec.workers, spec.tiling) == (2, Tiling("tiles", 64))
    assert spec.inputs["scene"].path == tmp_path.parent / "other.tif"
    assert spec.inputs["scene"].where.path == "--input scene"
    assert spec.outputs["smooth"].path == tmp_path.parent / "new" / "smooth.tif"
    assert spec.outputs["smooth"].options == {"COMPRESS": "deflate", "BLOCKXSIZE": 256}
    assert spec.outputs["late"].path == tmp_path.parent / "late.tif"
    assert spec.outputs["ndvi"].path == tmp_path / "out" / "ndvi.tif"
    ndvi = spec.steps[0]
    assert ndvi.params == {"red": 1, "nir": 4, "window": (3, 3), "options": {"fast": True},
                           "extra": {"k": (1, 2)}}
    assert ndvi.locate("params", "red").path == "--param ndvi.red"
    assert ndvi.locate("params", "extra", "k", 0).path == "--param ndvi.extra -> k -> 0"
    assert ndvi.locate("params", "nir").line == 12


def test_bad_overrides_name_their_option(write_pipeline: WritePipeline) -> None:
    with pytest.raises(PipelineError) as raised:
        load_pipeline(write_pipeline(FULL), overrides=Overrides(
            workers=0, tile_size=True, tiling_mode="strip",
            inputs={"scen": "x.tif"}, outputs={"nvdi": "x.tif"}, params={("nvdi", "red"): 1}))
    shown = sorted(map(str, raised.value.problems))
    assert shown == [
        "--input scen: unknown input 'scen' (did you mean 'scene'?)",
        "--output nvdi: unknown result 'nvdi' (did you mean 'ndvi'?)",
        "--param nvdi.red: unknown step 'nvdi' (did you mean 'ndvi'?)",
        "--tile-size: expected a whole number >= 1, found a boolean (true)",
        "--tiling: expected one of tiles, strips, found 'strip' (did you mean 'strips'?)",
        "--workers: must be >= 1, found 0",
    ]


def test_an_override_can_break_a_reference(write_pipeline: WritePipeline) -> None:
    with pytest.raises(PipelineError) as raised:
        load_pipeline(write_pipeline(FULL),
                      overrides=Overrides(params={("ndvi", "red"): "${smooth}"}))
    problem, = raised.value.problems
    assert str(problem) == ("step 'ndvi', --param ndvi.red: '${smooth}': 'smooth' is an image of "
                            "step 'smooth', not a reduce step; images are read through 'inputs'")


# -- the spec ---------------------------------------------------------------------------------


@pytest.fixture
def full(write_pipeline: WritePipeline) -> PipelineSpec:
    return load_pipeline(write_pipeline(FULL))


def test_producer(full: PipelineSpec) -> None:
    assert full.producer("scene") is None
    assert full.producer("ndvi") is full.steps[0]
    assert full.producer("stats") is full.steps[1]
    with pytest.raises(KeyError):
        full.producer("nothing")


def test_the_spec_is_frozen(full: PipelineSpec) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        full.workers = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        full.steps[0].params["red"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        full.inputs["other"] = full.inputs["scene"]  # type: ignore[index]
    assert isinstance(full.steps[0].params["options"], FrozenMap)


def test_the_spec_pickles(full: PipelineSpec) -> None:
    copy = pickle.loads(pickle.dumps(full))
    assert copy == full
    assert copy.steps[0].locate("map") == full.steps[0].locate("map")


def test_locate_falls_back_to_the_closest_parent(full: PipelineSpec) -> None:
    ndvi = full.steps[0]
    assert (ndvi.locate("map").line, ndvi.locate("map").path) == (10, "steps -> 0 -> map")
    assert ndvi.locate("params", "window", 1).column == 42
    missing = ndvi.locate("combine")
    assert (missing.line, missing.path) == (ndvi.where.line, "steps -> 0 -> combine")


def test_an_output_may_copy_an_input(write_pipeline: WritePipeline, tmp_path: Path) -> None:
    spec = load_pipeline(write_pipeline(MINIMAL + "outputs: {scene: {path: copy.tif, "
                                                  "options: {COMPRESS: zstd}}}\n"))
    assert spec.outputs["scene"].path == tmp_path / "copy.tif"


def test_numbers_in_exponent_form_are_numbers(write_pipeline: WritePipeline) -> None:
    """``1e-4`` without a dot: text in YAML 1.1 (PyYAML), a number in YAML 1.2, JSON and the
    schema an editor checks against; read as a float, as the user wrote it."""
    text = MINIMAL.replace("version: 1", "version: 1\nmemory: 1e9").replace(
        "inputs: [scene]}", "inputs: [scene], params: {scale: 1e-4, sigma: 2E0, big: -3e+2, "
        "name: e5, code: 1e, count: 10}}")
    spec = load_pipeline(write_pipeline(text))
    assert spec.steps[0].params == {"scale": 1e-4, "sigma": 2.0, "big": -300.0, "name": "e5",
                                    "code": "1e", "count": 10}
    assert isinstance(spec.steps[0].params["count"], int)
    assert spec.memory == 10**9
