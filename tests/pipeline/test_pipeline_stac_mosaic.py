"""An ItemCollection or a static Collection as a pipeline input, mosaicked onto the working grid:
Items cut from the Landsat 5 red band of ../shared/data (tests/stac_mosaic_items.py), overlapping
and with nodata holes, give the raster back exactly; ``order:`` decides exactly the pixels where
a brighter Item overlaps; ``bbox:`` and ``datetime:`` select the Items they should; validate and
--dry-run list the Items, their hrefs and the grid and why; an empty selection is an error at
the input's line naming the bbox and the interval (exit 3); the mosaic keys are checked when
loaded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.warp import transform_bounds
from stac_mosaic_items import (
    BRIGHTER,
    NODATA,
    brighter,
    cut_items,
    original,
    source_path,
    write_collection,
)

from eoscale.cli.main import cli
from eoscale.cli.render import plan_tables
from eoscale.pipeline import checked_plan, load_pipeline
from eoscale.pipeline.runner import run_pipeline


def mosaic_pipeline(write_pipeline, input_text: str, name: str = "pipeline.yaml",
                    grid: str = "") -> Path:
    return write_pipeline(f"""
        version: 1
        workers: 2
        tiling: {{tile_size: 100}}
        inputs:
          s: {input_text}
        steps:
          - {{name: both, map: eoscale.ops.stack, inputs: [s]}}
        outputs: {{both: out/{Path(name).stem}.tif}}
        {grid}
        """, name)


def run_read(path: Path) -> tuple[np.ndarray, dict]:
    spec = load_pipeline(path)
    run_pipeline(spec)
    with rasterio.open(spec.outputs["both"].path) as dataset:
        return dataset.read(), dict(dataset.profile)


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


@pytest.fixture
def search(tmp_path) -> Path:
    """The four cut Items and the brighter one, as a saved search beside their files."""
    source_path()
    return write_collection(tmp_path / "items" / "search.json",
                            [*cut_items(tmp_path / "items"), brighter(tmp_path / "items")])


def selected(path: Path) -> list[str]:
    return [id_ for id_, _, _ in checked_plan(load_pipeline(path)).stac["s"].items]


def test_an_item_collection_mosaics_back_to_the_raster_and_its_order_decides_the_overlaps(
        write_pipeline, search):
    expected, profile = original()
    oldest, written = run_read(mosaic_pipeline(
        write_pipeline, f"{{stac: {search}, assets: [red], order: oldest}}", "oldest.yaml"))
    assert np.array_equal(oldest, expected)
    assert written["transform"].almost_equals(profile["transform"])
    assert (written["crs"], written["width"], written["height"], written["nodata"]) == (
        profile["crs"], profile["width"], profile["height"], NODATA)
    newest, _ = run_read(mosaic_pipeline(write_pipeline, f"{{stac: {search}, assets: [B30]}}",
                                         "newest.yaml"))
    col, row, width, height = BRIGHTER
    differs = np.zeros(expected.shape, bool)
    differs[:, row:row + height, col:col + width] = expected[:, row:row + height,
                                                             col:col + width] != NODATA
    assert np.array_equal(newest[differs], expected[differs] + 1)
    assert np.array_equal(newest[~differs], expected[~differs])


def test_bbox_and_datetime_select_the_items_they_should(write_pipeline, search):
    _, profile = original()
    bounds = profile["transform"] * (30, 30) + profile["transform"] * (60, 10)  # inside a only
    inside_a = list(transform_bounds(profile["crs"], "EPSG:4326", bounds[0], bounds[1],
                                     bounds[2], bounds[3]))
    cases = {
        "": ["brighter", "d", "c", "b", "a"],
        "order: oldest": ["a", "b", "c", "d", "brighter"],
        "datetime: '2024-06-01/2024-06-15'": ["c", "b", "a"],
        "datetime: '../2024-06-12'": ["b", "a"],
        "datetime: 2024-06-20": ["d"],
        "datetime: '2024-06-16T00:00:00Z/..'": ["brighter", "d"],
        f"bbox: {inside_a}": ["a"],
        f"bbox: {inside_a}, datetime: '2024-06-04/2024-06-06'": ["a"],
    }
    for number, (keys, ids) in enumerate(cases.items()):
        text = f"{{stac: {search}, assets: [red]{', ' if keys else ''}{keys}}}"
        assert selected(mosaic_pipeline(write_pipeline, text, f"p{number}.yaml")) == ids, keys


def test_validate_and_dry_run_list_the_items_their_hrefs_and_the_grid(write_pipeline, search):
    path = mosaic_pipeline(write_pipeline, f"{{stac: {search}, assets: [red], "
                                           f"datetime: '2024-06-01/2024-06-12'}}")
    folder = search.parent
    lines = [f"input s: mosaic of 2 STAC Item(s) of {search}, bands red (B30)",
             f"  item 1 b (2024-06-10T10:00:00+00:00): {folder / 'b.tif'}",
             f"  item 2 a (2024-06-05T10:00:00+00:00): {folder / 'a.tif'}",
             ("  grid 456 x 230 pixels of 25 x 25 in EPSG:28355: no 'grid:', so the union of "
              "the 2 selected Items' footprints, in EPSG:28355 (the CRS of 2 of the 2 asset "
              "files), at their finest resolution 25 x 25, edges snapped to multiples of it; "
              "Items fill pixels newest first")]
    for args in (("validate", path), ("run", path, "--dry-run")):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        assert "\n".join(lines) in result.output
    tables = plan_tables(checked_plan(load_pipeline(path)))  # on a terminal: an Item a row
    assert tables[-1].title == "STAC inputs" and tables[-1].row_count == 2
    assert tables[-1].caption == "s: " + lines[-1].removeprefix("  ")
    result = invoke("run", path, "--dry-run", "--json")
    [found] = json.loads(result.output)["stac_inputs"]
    assert found["items"] == [
        {"id": "b", "datetime": "2024-06-10T10:00:00+00:00", "hrefs": [str(folder / "b.tif")]},
        {"id": "a", "datetime": "2024-06-05T10:00:00+00:00", "hrefs": [str(folder / "a.tif")]}]
    assert found["grid"] == lines[-1].removeprefix("  grid ")
    assert not (path.parent / "out").exists()


def test_a_grid_given_replaces_the_chosen_one(write_pipeline, search):
    expected, profile = original()
    left, top = profile["transform"] * (40, 50)
    right, bottom = profile["transform"] * (340, 250)
    grid = (f"grid: {{crs: 'EPSG:28355', resolution: 25, bounds: [{left}, {bottom}, {right}, "
            f"{top}]}}")
    path = mosaic_pipeline(write_pipeline, f"{{stac: {search}, assets: [red], order: oldest}}",
                           grid=grid)
    assert checked_plan(load_pipeline(path)).stac["s"].grid == (
        "300 x 200 pixels of 25 x 25 in EPSG:28355: the pipeline's 'grid:'")
    mosaic, _ = run_read(path)
    assert np.array_equal(mosaic, expected[:, 50:250, 40:340])


def test_an_empty_selection_is_an_error_at_the_inputs_line_naming_bbox_and_interval(
        write_pipeline, search):
    path = mosaic_pipeline(write_pipeline, f"{{stac: {search}, assets: [red], bbox: [2, 48, 3, "
                                           f"49], datetime: '2023-01-01/2023-12-31'}}")
    for command in ("validate", "run"):
        result = invoke(command, path)
        assert result.exit_code == 3, result.output
        assert (f"pipeline.yaml:5:6, inputs -> s: input 's': no Item of the STAC ItemCollection "
                f"{search} (5 Items) intersects bbox [2.0, 48.0, 3.0, 49.0] and falls within "
                f"datetime '2023-01-01/2023-12-31'") in result.output
        assert "Traceback" not in result.output
    assert not (path.parent / "out").exists()


def test_an_asset_an_item_lacks_is_an_error_at_its_line_naming_the_item(write_pipeline, search):
    path = mosaic_pipeline(write_pipeline, f"{{stac: {search}, assets: [red, nir]}}")
    result = invoke("validate", path)
    assert result.exit_code == 3, result.output
    column = path.read_text().splitlines()[4].index("nir") + 1
    assert (f"pipeline.yaml:5:{column}, inputs -> s -> assets -> 1: STAC Item 'brighter' has no "
            f"asset 'nir'; its assets are: B30 (red)") in result.output


def test_a_static_collection_mosaics_its_items(write_pipeline, tmp_path):
    expected, _ = original()
    collection = pystac.Collection("cuts", "windows of one raster", pystac.Extent(
        pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]), pystac.TemporalExtent([[None,
                                                                                      None]])))
    for item in [*cut_items(tmp_path / "files", relative=False), brighter(tmp_path / "files")]:
        item.assets["B30"].href = str(tmp_path / "files" / Path(item.assets["B30"].href).name)
        collection.add_item(item)
    collection.normalize_hrefs(str(tmp_path / "catalog"))
    collection.save(pystac.CatalogType.SELF_CONTAINED)
    mosaic, _ = run_read(mosaic_pipeline(
        write_pipeline, f"{{stac: {tmp_path / 'catalog' / 'collection.json'}, assets: [red], "
                        f"datetime: '../2024-06-21'}}"))
    assert np.array_equal(mosaic, expected)


def test_the_mosaic_keys_are_checked_when_loaded(write_pipeline):
    cases = {
        "{stac: s.json, assets: [red], bbox: [1, 2, 3]}": "expected 4 numbers [west, south, "
                                                          "east, north] (WGS84 degrees)",
        "{stac: s.json, assets: [red], bbox: [3, 40, 1, 41]}": "needs -180 <= west < east",
        "{stac: s.json, assets: [red], datetime: June}": "'June' is not a date",
        "{stac: s.json, assets: [red], datetime: '2024-06-30/2024-06-01'}": "ends before it "
                                                                           "starts",
        "{stac: s.json, assets: [red], order: newer}": "unknown order 'newer' (did you mean "
                                                       "'newest'?); expected newest or oldest",
        "{path: a.tif, bbox: [1, 2, 3, 4]}": "'bbox' goes with 'stac'",
        "{bands: [a.tif], datetime: '2024'}": "'datetime' goes with 'stac'",
    }
    for number, (text, message) in enumerate(cases.items()):
        result = invoke("validate", mosaic_pipeline(write_pipeline, text, f"p{number}.yaml"))
        assert result.exit_code == 3 and message in result.output, (text, result.output)


@pytest.mark.parametrize("kind", ["ItemCollection", "Collection"])
def test_an_output_item_cites_only_the_items_its_mosaic_kept(write_pipeline, tmp_path, kind):
    """``datetime`` keeps a, b and c (5, 10 and 15 June) of the five: the output's Item cites
    those three, by id, and spans their datetimes."""
    if kind == "Collection":
        collection = pystac.Collection("cuts", "windows", pystac.Extent(
            pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
            pystac.TemporalExtent([[None, None]])))
        for item in [*cut_items(tmp_path / "files", relative=False), brighter(tmp_path / "files")]:
            item.assets["B30"].href = str(tmp_path / "files" / Path(item.assets["B30"].href).name)
            collection.add_item(item)
        collection.normalize_hrefs(str(tmp_path / "catalog"))
        collection.save(pystac.CatalogType.SELF_CONTAINED)
        document = tmp_path / "catalog" / "collection.json"
    else:
        source_path()
        document = write_collection(tmp_path / "items" / "search.json",
                                    [*cut_items(tmp_path / "items"), brighter(tmp_path / "items")])
    path = write_pipeline(f"""
        version: 1
        inputs:
          s: {{stac: {document}, assets: [red], datetime: '../2024-06-16'}}
        steps:
          - {{name: both, map: eoscale.ops.stack, inputs: [s]}}
        outputs: {{both: {{path: out/both.tif, stac: true}}}}
        """)
    run_pipeline(load_pipeline(path))
    item = pystac.Item.from_file(str(tmp_path / "out" / "both.json"))
    cited = [link.href for link in item.get_links("derived_from")]
    assert len(cited) == 3
    assert item.common_metadata.start_datetime.day == 5
    assert item.common_metadata.end_datetime.day == 15
