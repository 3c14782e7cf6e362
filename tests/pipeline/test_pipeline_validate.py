"""Validation that imports callables and opens files: grids, margins, profiles, memory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from eoscale.errors import PipelineError, Problem
from eoscale.pipeline import Resources, check, load_pipeline, plan_run, validate
from eoscale.pipeline.spec import PipelineSpec

Writer = Callable[..., Path]

CHAIN = """
    version: 1
    workers: 1
    tiling: {tile_size: 8}
    inputs: {a: a.tif}
    steps:
      - name: ndvi
        map: pipeline_callables.ndvi
        profile: pipeline_callables.ndvi_profile
        inputs: [a]
      - name: stats
        reduce: pipeline_callables.tile_stats
        combine: pipeline_callables.merge_stats
        inputs: [ndvi]
      - name: smooth
        map: pipeline_callables.smooth
        inputs: [ndvi]
        params: {radius: 2}
    outputs:
      smooth: out/deeper/smooth.tif
      stats: out/stats.json
    """


@pytest.fixture
def chain(write_pipeline: Writer, make_raster: Writer) -> PipelineSpec:
    make_raster("a.tif", width=32, height=24, count=4)
    return load_pipeline(write_pipeline(CHAIN))


def problems(write_pipeline: Writer, text: str, **kwargs: bool) -> list[Problem]:
    return validate(load_pipeline(write_pipeline(text)), **kwargs)


def test_a_good_pipeline_has_no_problems(chain: PipelineSpec) -> None:
    assert validate(chain) == []
    check(chain)


def test_check_raises_every_problem(write_pipeline: Writer, make_raster: Writer) -> None:
    make_raster("a.tif")
    text = CHAIN.replace("merge_stats", "merge")
    text = text.replace("radius: 2}", "radius: 2}\n        margin: 1")
    with pytest.raises(PipelineError) as raised:
        check(load_pipeline(write_pipeline(text)))
    assert [(p.step, p.path) for p in raised.value.problems] == [
        ("stats", "steps -> 1 -> combine"), ("smooth", "steps -> 2 -> margin")]


def test_what_is_not_asked_for_is_not_checked(write_pipeline: Writer) -> None:
    text = CHAIN.replace("pipeline_callables.ndvi\n", "not_installed.ndvi\n")
    assert len(problems(write_pipeline, text, check_files=False)) == 1
    assert problems(write_pipeline, text, check_files=False, check_callables=False) == []


def test_a_combine_attribute_is_enough(write_pipeline: Writer, make_raster: Writer) -> None:
    make_raster("a.tif")
    text = CHAIN.replace("tile_stats\n        combine: pipeline_callables.merge_stats", "tile_sum")
    assert problems(write_pipeline, text) == []


@pytest.mark.parametrize("margin, radius, expected", [
    ("", 6, None), ("margin: 6", 6, None), ("margin: 9", 6, None),
    ("margin: 5", 6, "margin 5 is smaller than the 6 that 'pipeline_callables.smooth' needs"),
    ("margin: 0", "'${stats.max}'", None),
])
def test_a_stated_margin_covers_the_declared_one(write_pipeline: Writer, make_raster: Writer,
                                                 margin: str, radius: object,
                                                 expected: str | None) -> None:
    make_raster("a.tif")
    text = CHAIN.replace("radius: 2}", f"radius: {radius}}}\n        {margin}")
    found = problems(write_pipeline, text)
    assert [p.message for p in found] == ([expected] if expected else [])


@pytest.mark.parametrize("profile, outputs, expected", [
    ("band_profiles", "[b1, b2]", "the profile function returned 4 profiles for 2 outputs"),
    ("pixel_profile", "[b1]",
     "the profile function returned a profile with dtype 'pixels', not a numpy dtype"),
    ("band_profiles", "[b1, b2, b3, b4]", None),
])
def test_profile_functions_are_checked(write_pipeline: Writer, make_raster: Writer,
                                       profile: str, outputs: str, expected: str | None) -> None:
    make_raster("a.tif", count=4)
    found = problems(write_pipeline, f"""
        version: 1
        inputs: {{a: a.tif}}
        steps:
          - name: split
            map: pipeline_callables.split_bands
            profile: pipeline_callables.{profile}
            inputs: [a]
            outputs: {outputs}
        """)
    assert [(p.message, p.line, p.step) for p in found] == (
        [(expected, 6, "split")] if expected else [])


def test_inputs_must_be_rasters(write_pipeline: Writer, tmp_path: Path) -> None:
    (tmp_path / "folder.tif").mkdir()
    found = problems(write_pipeline, CHAIN.replace("a.tif", "folder.tif"))
    assert [(p.line, p.path) for p in found] == [(4, "inputs -> a")]
    assert f"cannot open {tmp_path / 'folder.tif'} as a raster" in found[0].message


def test_an_output_that_is_a_folder(chain: PipelineSpec, tmp_path: Path) -> None:
    (tmp_path / "out" / "stats.json").mkdir(parents=True)
    problem, = validate(chain)
    assert problem.message == f"{tmp_path / 'out' / 'stats.json'} is a folder; expected a file path"
    assert problem.line == 20


# -- grids ------------------------------------------------------------------------------------


PAIR = """
    version: 1
    inputs: {first: FIRST, second: SECOND}
    steps:
      - {name: ndvi, map: pipeline_callables.ndvi, inputs: [first, second]}
    """


def pair(write_pipeline: Writer, first: Path, second: Path) -> list[Problem]:
    text = PAIR.replace("FIRST", str(first)).replace("SECOND", str(second))
    return problems(write_pipeline, text)


def test_a_shifted_grid_is_refused(write_pipeline: Writer, make_raster: Writer) -> None:
    shifted = make_raster("b.tif", pixel=10.5, origin=(990, 2000))
    found = pair(write_pipeline, make_raster("a.tif"), shifted)
    assert [p.message for p in found] == [
        "b.tif is not on the grid of input 'first' (a.tif): pixel size (10.5, -10.5), "
        "not (10, -10); origin (990, 2000), not (1000, 2000) (to read it on that grid, set "
        "'grid: {like: first}' at the top of the pipeline)"]


def test_the_naip_pair_is_refused(write_pipeline: Writer, shared_data: Path) -> None:
    found = pair(write_pipeline, shared_data / "naip_m_4709963_se_14_1_20120731.tif",
                 shared_data / "naip_m_4709963_se_14_1_20200831.tif")
    assert [(p.message, p.line) for p in found] == [
        ("naip_m_4709963_se_14_1_20200831.tif is not on the grid of input 'first' "
         "(naip_m_4709963_se_14_1_20120731.tif): origin (485899, 5209246), "
         "not (485900, 5209245) (to read it on that grid, set 'grid: {like: first}' at the top "
         "of the pipeline)", 2)]


@pytest.mark.parametrize("first, second", [
    ("ls5_nbar_19920323_B30_red.tif", "ls5_nbar_19920323_B40_nir.tif"),
    ("dsm.tif", "dtm.tif"),
])
def test_aligned_pairs_are_accepted(write_pipeline: Writer, shared_data: Path,
                                    first: str, second: str) -> None:
    assert pair(write_pipeline, shared_data / first, shared_data / second) == []


def test_a_crs_with_no_epsg_code_is_named(write_pipeline: Writer, shared_data: Path,
                                          make_raster: Writer) -> None:
    found = pair(write_pipeline, make_raster("a.tif", width=1115, height=1450),
                 shared_data / "nz_elev.tif")
    assert "CRS 'PROJCS[" in found[0].message


# -- memory -----------------------------------------------------------------------------------


#: One worker in the calling process, and nothing held before the run: the estimate is then the
#: images and tiles alone, plus the constant part for the processes.
ONE = Resources(workers=1, memory=None, base=0, executor="inline")


def test_the_memory_estimate_by_hand(chain: PipelineSpec) -> None:
    # Images: a, 32 x 24 x 4 uint8 = 3072 bytes, read by one step without margin: read from its
    # file, never held. ndvi (by its profile) and smooth: 32 x 24 float32 = 3072 bytes each; smooth
    # is an output nothing reads: written as computed, never held.
    # At ndvi: ndvi held = 3072; a tile of 8 x 8 pixels: a decoded (4 bytes a pixel), as much
    # again for temporaries, ndvi's result (4) = 64 x 12 = 768, and GDAL's block cache while it
    # reads a: at most all of a's 3072 bytes. At smooth: ndvi held,
    # a tile of 8 + 2 x 2 (smooth's declared margin) = 12 x 12 pixels of float32 in and out =
    # 1152, and the 8 x 8 core of smooth's result on its way to the file, twice: 512. Its 8 px
    # tiles are not whole blocks of its file: the main process writes it, and holds the pixels
    # waiting for their blocks, a block's rows and two tiles' across the image (here all 24
    # rows: 3072), and, its blocks spanning the image's width, GDAL's cache of them (3072).
    plan = plan_run(chain, ONE)
    assert (plan.images["a"].lives, plan.images["smooth"].lives) == ("file", "written")
    assert plan.images["smooth"].encoded is False
    memory = {step.name: (step.memory.images, step.memory.tiles) for step in plan.steps}
    assert memory == {"ndvi": (3072, 768 + 3072), "stats": (3072, 64 * 4),
                      "smooth": (3072, 1152 + 512 + 3072 + 3072)}
    assert (plan.peak.total - plan.peak.fixed, plan.peak_step) == (10880, "smooth")
    assert plan.peak.fixed == ONE.fixed_bytes
    assert plan.fits


def test_the_memory_estimate_follows_the_bands(write_pipeline: Writer,
                                               make_raster: Writer) -> None:
    make_raster("a.tif", width=32, height=24, count=40)
    plan = plan_run(load_pipeline(write_pipeline(CHAIN)), ONE)
    # a: 40 bands, 30720 bytes, decoded tile by tile: 64 x (40 + 40 + 4) + a's bytes cached.
    assert (plan.peak.images, plan.peak.tiles, plan.peak_step) == (3072, 64 * 84 + 30720, "ndvi")


def test_too_little_memory_is_a_problem(chain: PipelineSpec) -> None:
    tight = Resources(workers=1, memory=5000, base=0, executor="inline", given=True)
    # The plan moves every image it can out of memory (ndvi spilled to disk); the tiles are the
    # pipeline's (tile_size: 8), not whole blocks of the files (512 px): the main process writes
    # ndvi's scratch file and smooth's output, holding their pixels until their blocks are whole.
    # The smallest plan needs 11.2 KiB at smooth: refused, saying so.
    problem, = validate(chain, resources=tight)
    assert problem.message == (
        "the run needs about 11.2 KiB (0 bytes of images, 11.2 KiB of tiles for 1 worker; 32.0 "
        "MiB more for the processes) but the memory budget is 4.9 KiB; give it at least 14.0 KiB "
        "('memory:' or --memory; the plan keeps 20% of it for its estimate's error), use fewer "
        "workers or smaller tiles, or free memory. Of the tiles' memory, 6.0 KiB is output "
        "smooth's pixels waiting in the main process for whole 512 x 512 blocks of its file, "
        "which the 8 px tiles are not: tiles of whole blocks would avoid it")
    assert problem.step is not None


def test_planning_names_unreadable_inputs(write_pipeline: Writer) -> None:
    with pytest.raises(PipelineError, match="file not found"):
        plan_run(load_pipeline(write_pipeline(CHAIN)), ONE)


def test_band_math_expression_is_checked_at_validate_time(tmp_path, make_raster):
    from eoscale.pipeline import load_pipeline, validate

    scene = make_raster("scene.tif")
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\n"
        f"inputs: {{scene: {scene}}}\n"
        "steps:\n"
        "  - name: ndvi\n"
        "    map: eoscale.ops.band_math\n"
        "    inputs: [scene]\n"
        "    params: {expression: \"scene[1] + __import__('os').getpid()\"}\n")
    problems = validate(load_pipeline(path))
    assert len(problems) == 1
    problem = problems[0]
    assert (problem.line, problem.step) == (7, "ndvi")
    assert "band_math: expression" in problem.message and "column 12" in problem.message


def test_an_output_waiting_for_its_blocks_in_the_main_process_is_named_with_the_remedy(
        write_pipeline: Writer, make_raster: Writer) -> None:
    """64 px tiles on an output's 512 px blocks: the main process holds a block's rows of the
    image (the whole 200 rows, 2000 wide, float32: 1.5 MiB) until its blocks are whole. A
    budget too small for that is refused, saying so and how to avoid it; on 64 px blocks the
    workers write the output and the same budget fits."""
    make_raster("a.tif", width=2000, height=200, dtype="float32")
    text = """
        version: 1
        workers: 1
        tiling: {tile_size: 64}
        inputs: {a: a.tif}
        steps:
          - {name: smooth, map: pipeline_callables.smooth, inputs: [a], params: {radius: 2}}
        outputs:
          smooth: OUTPUT
        """
    tight = Resources(workers=1, memory=1_500_000, base=0, executor="inline", given=True)
    problem, = validate(load_pipeline(write_pipeline(text.replace("OUTPUT", "out/s.tif"))),
                        resources=tight)
    assert problem.message.endswith(
        "Of the tiles' memory, 1.5 MiB is output smooth's pixels waiting in the main process "
        "for whole 512 x 512 blocks of its file, which the 64 px tiles are not: blocks of 64 px "
        "(its options' blockxsize and blockysize) would avoid it"), problem.message
    on_tiles = text.replace("OUTPUT", "{path: out/s.tif, options: {blockxsize: 64, "
                                      "blockysize: 64}}")
    assert validate(load_pipeline(write_pipeline(on_tiles)), resources=tight) == []
    # A COG's blocks are its option blocksize
    cog = text.replace("OUTPUT", "{path: out/s.tif, format: COG}")
    problem, = validate(load_pipeline(write_pipeline(cog)), resources=tight)
    assert problem.message.endswith("which the 64 px tiles are not: blocks of 64 px (its option "
                                    "blocksize) would avoid it"), problem.message
    cog_on_tiles = text.replace("OUTPUT", "{path: out/s.tif, format: COG, "
                                          "options: {blocksize: 64}}")
    assert validate(load_pipeline(write_pipeline(cog_on_tiles)), resources=tight) == []


def test_a_profile_function_sees_each_input_s_own_nodata(write_pipeline: Writer,
                                                         make_raster: Writer,
                                                         tmp_path: Path) -> None:
    """stack refuses inputs whose nodata differ, before anything is computed: at plan time each
    input is given with its own profile (it was given the first input's nodata for all)."""
    import rasterio

    for name, nodata in (("a.tif", 7), ("b.tif", 9)):
        make_raster(name)
        with rasterio.open(tmp_path / name, "r+") as dataset:
            dataset.nodata = nodata
    text = """
        version: 1
        inputs: {a: a.tif, b: b.tif}
        steps:
          - {name: both, map: eoscale.ops.stack, inputs: [a, b]}
          - {name: again, map: eoscale.ops.stack, inputs: [both, b]}
        """
    found = problems(write_pipeline, text)
    assert [(p.line, p.message) for p in found] == [
        (4, "the profile function raised ConfigError: stack: the inputs' nodata values differ "
            "(7.0, 9.0); set param 'nodata'")], found
    assert found[0].step == "both"
    same = problems(write_pipeline, text.replace("inputs: [a, b]}", "inputs: [a, b], params: "
                                                 "{nodata: 9}}"))
    assert same == []


@pytest.mark.parametrize("dtype, nodata", [("int16", ".nan"), ("uint8", "-1"), ("uint8", "300"),
                                           ("float32", "1e39")])
def test_a_written_nodata_the_dtype_cannot_hold_is_refused_before_the_run(
        write_pipeline: Writer, make_raster: Writer, dtype: str, nodata: str) -> None:
    make_raster("a.tif")
    text = f"""
        version: 1
        inputs: {{a: a.tif}}
        steps:
          - {{name: c, map: pipeline_callables.constant, profile:
              pipeline_callables.constant_profile, inputs: [a],
              params: {{dtype: {dtype}, nodata: {nodata}}}}}
        """
    assert problems(write_pipeline, text) == []  # held only: as 1.0's code may keep it
    found = problems(write_pipeline, text + "outputs: {c: c.tif}\n")  # after its indent
    assert len(found) == 1 and found[0].step == "c", found
    assert ("output 'c' is written to a file, but the profile function returned a profile "
            "whose nodata") in found[0].message
    assert f"cannot be stored in its dtype '{dtype}'" in found[0].message


def test_a_quicklook_of_bands_the_image_lacks_is_refused_before_the_run(
        write_pipeline: Writer, make_raster: Writer) -> None:
    make_raster("a.tif", count=4)
    text = """
        version: 1
        inputs: {a: a.tif}
        steps:
          - {name: c, map: eoscale.ops.select_bands, inputs: [a], params: {bands: [1, 2, 3, 4]}}
        outputs:
          c: {path: c.tif, quicklook: {bands: [5, 1, 2]}}
        """
    found = problems(write_pipeline, text)
    assert [(p.line, p.message) for p in found] == [
        (6, "output 'c' (quicklook): a quicklook cannot show band 5: the raster has 4 bands")]
    assert problems(write_pipeline, text.replace("[5, 1, 2]", "[4, 1, 2]")) == []


@pytest.mark.parametrize("said, expected", [
    (["radius too large", "no colour"], ["radius too large", "no colour"]),
    ("radius too large", ["radius too large"]),  # one message, not one per character
    (None, []),
    (3, ["the check of 'pipeline_callables.smooth' returned int 3, not a list of messages"]),
])
def test_what_a_callable_s_check_returns_is_its_problems(chain: PipelineSpec, said, expected):
    from eoscale.pipeline.plan import params_problems

    def smooth(arrays, profiles, params):
        return arrays[0]

    smooth.check = lambda params, names: said
    step = chain.steps[2]
    found = params_problems(step, smooth)
    assert [(p.message, p.step, p.path) for p in found] == [
        (message, "smooth", "steps -> 2 -> params") for message in expected]
