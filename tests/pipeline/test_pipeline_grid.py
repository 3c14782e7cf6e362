"""The working grid and the inputs' long forms in the pipeline format: what the loader reads,
every problem with its line, and the sources, grids and grid problems planning gets from them."""

from __future__ import annotations

import pickle
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import rasterio
from rasterio.crs import CRS

from eoscale.errors import PipelineError
from eoscale.io.sources import Grid, Source
from eoscale.pipeline import Overrides, load_pipeline
from eoscale.pipeline.inputs import (
    grid_problems,
    input_source,
    input_sources,
    own_profiles,
    working_grid,
)
from eoscale.pipeline.spec import GridSpec

WritePipeline = Callable[..., Path]

STEPS = """
steps:
  - {name: copy, map: pipeline_callables.ndvi, inputs: [a]}
"""


def with_steps(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n") + STEPS


def problems(write_pipeline: WritePipeline, text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(PipelineError) as raised:
        load_pipeline(write_pipeline(with_steps(text)))
    return [(problem.line, problem.message) for problem in raised.value.problems]


def test_long_forms_and_a_grid_like_an_input(write_pipeline: WritePipeline,
                                             tmp_path: Path) -> None:
    spec = load_pipeline(write_pipeline(with_steps("""
        version: 1
        grid: {like: a}
        inputs:
          a: a.tif
          b: {path: data/b.tif, resampling: bilinear}
          s2: {bands: [B04.jp2, B08.jp2, sub/B11.jp2], resampling: average}
          c: {path: c.tif}
        """)))
    a, b, s2, c = (spec.inputs[name] for name in ("a", "b", "s2", "c"))
    assert (a.path, a.bands, a.resampling, a.paths) == (tmp_path / "a.tif", (), "nearest",
                                                        (tmp_path / "a.tif",))
    assert (b.path, b.resampling) == (tmp_path / "data" / "b.tif", "bilinear")
    assert s2.bands == (tmp_path / "B04.jp2", tmp_path / "B08.jp2", tmp_path / "sub" / "B11.jp2")
    assert (s2.path, s2.paths, s2.resampling) == (tmp_path / "B04.jp2", s2.bands, "average")
    assert (c.path, c.resampling) == (tmp_path / "c.tif", "nearest")
    assert spec.grid == GridSpec(like="a") and spec.grid.where.line == 2
    assert input_source(spec, "s2") == Source(tuple(str(p) for p in s2.bands), None, "average")
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_a_grid_by_crs_resolution_and_bounds(write_pipeline: WritePipeline) -> None:
    spec = load_pipeline(write_pipeline(with_steps("""
        version: 1
        grid: {crs: "EPSG:32631", resolution: [20, 10], bounds: [600000, 4790000, 601000, 4800000]}
        inputs: {a: a.tif}
        """)))
    assert spec.grid == GridSpec(None, "EPSG:32631", (20.0, 10.0),
                                 (600000.0, 4790000.0, 601000.0, 4800000.0))
    grid = working_grid(spec, {})
    assert grid == Grid.from_bounds("EPSG:32631", (20, 10), (600000, 4790000, 601000, 4800000))
    assert (grid.width, grid.height, grid.crs) == (50, 1000, CRS.from_epsg(32631))
    spec = load_pipeline(write_pipeline(with_steps("""
        version: 1
        grid: {crs: 2154, resolution: 5, bounds: [0, 0, 10, 10]}
        inputs: {a: a.tif}
        """)))
    assert spec.grid.crs == "EPSG:2154" and spec.grid.resolution == (5.0, 5.0)


@pytest.mark.parametrize("text, expected", [
    ("grid: {like: scene}\ninputs: {a: a.tif}",
     [(1, "unknown input 'scene'")]),
    ("grid: {like: b}\ninputs: {a: a.tif, bb: b.tif}",
     [(1, "unknown input 'b' (did you mean 'bb'?)")]),
    ("grid: {crs: EPSG:99999999, resolution: 10, bounds: [0, 0, 1, 1]}\ninputs: {a: a.tif}",
     [(1, "not a CRS: 'EPSG:99999999'")]),
    ("grid: {crs: nowhere, resolution: 10, bounds: [0, 0, 1, 1]}\ninputs: {a: a.tif}",
     [(1, "not a CRS: 'nowhere'")]),
    ("grid:\n  crs: EPSG:32631\n  resolution: 0\n  bounds: [0, 0, 1, 1]\ninputs: {a: a.tif}",
     [(3, "a pixel size must be positive, found 0")]),
    (("grid:\n  crs: EPSG:32631\n  resolution: [10, -10]\n  bounds: [0, 0, 1, 1]\n"
     "inputs: {a: a.tif}"),
     [(3, "a pixel size must be positive, found [10, -10]")]),
    ("grid:\n  crs: EPSG:32631\n  resolution: ten\n  bounds: [0, 0, 1, 1]\ninputs: {a: a.tif}",
     [(3, "expected a pixel size: a number, or [x, y], found the text 'ten'")]),
    ("grid:\n  crs: EPSG:32631\n  resolution: 10\n  bounds: [0, 0, 1]\ninputs: {a: a.tif}",
     [(4, "expected 4 numbers [left, bottom, right, top], found a list")]),
    ("grid:\n  crs: EPSG:32631\n  resolution: 10\n  bounds: [0, 0, x, 1]\ninputs: {a: a.tif}",
     [(4, "expected 4 numbers [left, bottom, right, top], found a list")]),
    ("grid:\n  crs: EPSG:32631\n  resolution: 10\n  bounds: [10, 0, 0, 1]\ninputs: {a: a.tif}",
     [(4, ("bounds [left, bottom, right, top] are empty: expected left < right and bottom < "
          "top, found [10, 0, 0, 1]"))]),
    ("grid: {crs: EPSG:32631, resolution: 10}\ninputs: {a: a.tif}",
     [(1, "missing key 'bounds' (a grid without 'like' needs crs, resolution and bounds)")]),
    ("grid: {}\ninputs: {a: a.tif}",
     [(1, "missing key 'like' (or 'crs', 'resolution' and 'bounds')")]),
    ("grid: {like: a, crs: EPSG:32631}\ninputs: {a: a.tif}",
     [(1, "'like' takes the CRS and bounds of its input: remove 'crs' (or 'like')")]),
    ("grid: {lik: a}\ninputs: {a: a.tif}",
     [(1, "unknown key 'lik' (did you mean 'like'?)")]),
    ("grid: a\ninputs: {a: a.tif}",
     [(1, ("expected a mapping like {like: NAME} or {crs: ..., resolution: ..., bounds: "
          "[left, bottom, right, top]}, found the text 'a'"))]),
    ("inputs:\n  a: {path: a.tif, resampling: bilinar}",
     [(2, ("unknown resampling 'bilinar' (did you mean 'bilinear'?); expected one of "
          "nearest, bilinear, cubic, cubic_spline, lanczos, average, mode, max, min, med, q1, "
          "q3, sum, rms"))]),
    ("inputs:\n  a: {path: a.tif, resampling: 3}",
     [(2, "unknown resampling the number 3; expected one of nearest")]),
    ("inputs:\n  a: {path: a.tif, bands: [b.tif]}",
     [(2, ("an input has exactly one of 'path' (a file) or 'bands' (a list of files), found "
          "'path' and 'bands'"))]),
    ("inputs:\n  a: {resampling: cubic}",
     [(2, ("an input has exactly one of 'path' (a file) or 'bands' (a list of files), found "
          "neither"))]),
    ("inputs:\n  a:\n    bands: []",
     [(3, "expected a non-empty list of files, one per band, found an empty list")]),
    ("inputs:\n  a:\n    bands: [a.tif, 3]",
     [(3, "expected a file path, found the number 3")]),
    ("inputs:\n  a: {pth: a.tif}",
     [(2, "unknown key 'pth' (did you mean 'path'?)")]),
])
def test_each_problem_is_reported_at_its_line(write_pipeline: WritePipeline, text: str,
                                              expected: list[tuple[int, str]]) -> None:
    found = problems(write_pipeline, "version: 1\n" + text + "\n")
    assert len(found) == len(expected), found
    for (line, message), (got_line, got) in zip(expected, found):
        assert (got_line, got[:len(message)]) == (line + 1, message)


def test_an_override_keeps_the_resampling(write_pipeline: WritePipeline, tmp_path: Path) -> None:
    path = write_pipeline("version: 1\ninputs:\n  a: {path: a.tif, resampling: cubic}\n" + STEPS)
    spec = load_pipeline(path, overrides=Overrides(inputs={"a": "other.tif"}))
    assert (spec.inputs["a"].path.name, spec.inputs["a"].resampling) == ("other.tif", "cubic")


# -- planning's part: sources, the working grid, grid problems ----------------------------------

def shifted_pair(make_raster) -> tuple[Path, Path]:
    return (make_raster("a.tif", width=40, height=30),
            make_raster("b.tif", width=40, height=30, origin=(1003.0, 1998.0), dtype="int16"))


def test_without_a_grid_inputs_on_other_grids_are_problems_suggesting_one(
        write_pipeline: WritePipeline, make_raster) -> None:
    shifted_pair(make_raster)
    spec = load_pipeline(write_pipeline("version: 1\ninputs:\n  a: a.tif\n  b: b.tif\n" + STEPS))
    found: list = []
    profiles = own_profiles(spec, found)
    assert found == [] and working_grid(spec, profiles) is None
    [problem] = grid_problems(spec, profiles)
    assert problem.line == 4
    assert problem.message == (
        "b.tif is not on the grid of input 'a' (a.tif): origin (1003, 1998), not (1000, 2000) "
        "(to read it on that grid, set 'grid: {like: a}' at the top of the pipeline)")


def test_with_a_grid_every_input_is_read_on_it(write_pipeline: WritePipeline, make_raster,
                                               tmp_path: Path) -> None:
    first, shifted = shifted_pair(make_raster)
    spec = load_pipeline(write_pipeline(
        "version: 1\ngrid: {like: a}\ninputs:\n  a: a.tif\n  b: {path: b.tif, resampling: bilinear}\n"
        + STEPS))
    profiles = own_profiles(spec, [])
    grid = working_grid(spec, profiles)
    with rasterio.open(first) as dataset:
        assert grid == Grid.of(dataset.profile)
    assert grid_problems(spec, profiles) == []
    a, b = (input_source(spec, name, grid) for name in ("a", "b"))
    assert a.warped() == [] and b.warped() == [str(shifted)]
    assert b == Source((str(shifted),), grid, "bilinear")
    assert Grid.of(b.profile()) == grid and b.profile()["dtype"] == "int16"


def test_a_grid_like_an_input_at_another_resolution(write_pipeline: WritePipeline,
                                                    make_raster) -> None:
    first, _ = shifted_pair(make_raster)
    spec = load_pipeline(write_pipeline(
        "version: 1\ngrid: {like: a, resolution: 20}\ninputs:\n  a: a.tif\n  b: b.tif\n" + STEPS))
    grid = working_grid(spec, own_profiles(spec, []))
    with rasterio.open(first) as dataset:
        assert grid == Grid.from_bounds(dataset.crs, 20, dataset.bounds)
    assert (grid.width, grid.height) == (20, 15)
    assert input_source(spec, "a", grid).warped() == [str(first)]


def test_an_unreadable_input_is_a_problem_at_its_line(write_pipeline: WritePipeline) -> None:
    spec = load_pipeline(write_pipeline("version: 1\ninputs:\n  a:\n    bands: [x.tif]\n" + STEPS))
    found: list = []
    assert own_profiles(spec, found) == {}
    [problem] = found
    assert problem.line == 4 and "file not found" in problem.message and "x.tif" in problem.message


def test_input_sources_does_it_all(write_pipeline: WritePipeline, make_raster) -> None:
    first, shifted = shifted_pair(make_raster)
    spec = load_pipeline(write_pipeline(
        "version: 1\ngrid: {like: a}\ninputs:\n  a: a.tif\n  b: b.tif\n  c: c.tif\n" + STEPS))
    found: list = []
    grid, sources = input_sources(spec, found)
    [problem] = found
    assert problem.line == 6 and "file not found" in problem.message
    assert sources == {"a": Source((str(first),), grid), "b": Source((str(shifted),), grid)}
    with rasterio.open(first) as dataset:
        assert grid == Grid.of(dataset.profile)
    spec = load_pipeline(write_pipeline(
        "version: 1\ngrid: {like: c}\ninputs:\n  a: a.tif\n  c: c.tif\n" + STEPS))
    found = []
    assert input_sources(spec, found) == (None, {"a": Source((str(first),))}) and len(found) == 1
    spec = load_pipeline(write_pipeline("version: 1\ninputs:\n  a: a.tif\n  b: b.tif\n" + STEPS))
    found = []
    grid, sources = input_sources(spec, found)
    assert grid is None and list(sources) == ["a", "b"]
    assert [problem.message for problem in found] == [problem.message for problem in
                                                     grid_problems(spec, own_profiles(spec, []))]
