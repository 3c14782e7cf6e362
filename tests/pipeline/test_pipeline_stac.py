"""A STAC Item as a pipeline input, on the Landsat 5 red and NIR band files of ../shared/data
(one grid): the Item's assets give exactly the image ``{bands: [...]}`` of the same files gives,
named by key or by common name, with hrefs relative to the Item; its ``raster:bands`` nodata,
scale and offset reach the pixels as documented; assets at two resolutions are aligned as
``resampling:`` says; a wrong asset name and a missing Item are clear errors at their lines."""

from __future__ import annotations

import datetime
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.warp import Resampling, reproject

from eoscale.cli.main import cli
from eoscale.cli.render import plan_tables
from eoscale.io.sources import Source
from eoscale.pipeline import checked_plan, load_pipeline
from eoscale.pipeline.inputs import input_source
from eoscale.pipeline.runner import run_pipeline
from eoscale.pipeline.spec import Overrides

Writer = Callable[..., Path]
RED = "ls5_nbar_19920323_B30_red.tif"
NIR = "ls5_nbar_19920323_B40_nir.tif"


def write_item(path: Path, assets: dict[str, dict]) -> Path:
    """An Item JSON written by pystac at ``path``, with ``assets`` (key -> href and fields)."""
    item = pystac.Item("ls5-19920323", {"type": "Point", "coordinates": [149.1, -35.3]},
                       [149.0, -35.4, 149.2, -35.2], datetime.datetime(1992, 3, 23), {})
    for key, fields in assets.items():
        fields = dict(fields)
        item.add_asset(key, pystac.Asset(fields.pop("href"), media_type=pystac.MediaType.GEOTIFF,
                                         extra_fields=fields))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(item.to_dict(include_self_link=False), indent=1))
    return path


def landsat_assets(folder: Path | str, **raster: dict) -> dict[str, dict]:
    """The red and NIR band files as assets B30 and B40, with their common names; ``raster``:
    an asset key's ``raster:bands`` entry."""
    assets = {"B30": {"href": f"{folder}/{RED}", "eo:bands": [{"name": "B30",
                                                              "common_name": "red"}]},
              "B40": {"href": f"{folder}/{NIR}", "eo:bands": [{"name": "B40",
                                                              "common_name": "nir"}]}}
    for key, band in raster.items():
        assets[key]["raster:bands"] = [band]
    return assets


def stack_pipeline(write_pipeline: Writer, input_text: str, name: str = "pipeline.yaml",
                   workers: int = 2, tile_size: int = 100) -> Path:
    return write_pipeline(f"""
        version: 1
        workers: {workers}
        tiling: {{tile_size: {tile_size}}}
        inputs:
          s: {input_text}
        steps:
          - {{name: both, map: eoscale.ops.stack, inputs: [s]}}
        outputs: {{both: out/{Path(name).stem}.tif}}
        """, name)


def run_read(path: Path) -> tuple[np.ndarray, dict]:
    spec = load_pipeline(path)
    run_pipeline(spec)
    with rasterio.open(spec.outputs["both"].path) as dataset:
        return dataset.read(), dict(dataset.profile)


def band(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read(1)


@pytest.mark.parametrize("workers, tile_size", [(1, 512), (2, 64)])
def test_an_items_assets_give_the_image_their_band_files_give(write_pipeline, shared_data,
                                                               tmp_path, workers, tile_size):
    item = write_item(tmp_path / "item.json", landsat_assets(shared_data))
    from_item, item_profile = run_read(stack_pipeline(
        write_pipeline, f"{{stac: {item}, assets: [B40, B30]}}", "item.yaml", workers, tile_size))
    from_bands, bands_profile = run_read(stack_pipeline(
        write_pipeline, f"{{bands: [{shared_data / NIR}, {shared_data / RED}]}}", "bands.yaml",
        workers, tile_size))
    assert np.array_equal(from_item, from_bands)
    assert np.array_equal(from_item, np.stack([band(shared_data / NIR), band(shared_data / RED)]))
    assert item_profile == bands_profile and item_profile["nodata"] == -999


def test_on_a_working_grid_an_item_gives_the_image_its_band_files_give(write_pipeline,
                                                                       shared_data, tmp_path):
    item = write_item(tmp_path / "item.json", landsat_assets(shared_data))
    images = []
    for name, text in (("item.yaml", f"{{stac: {item}, assets: [red, nir]}}"),
                       ("bands.yaml", f"{{bands: [{shared_data / RED}, {shared_data / NIR}]}}")):
        path = stack_pipeline(write_pipeline, text[:-1] + ", resampling: average}", name)
        path.write_text("grid: {like: s, resolution: 60}\n" + path.read_text())
        images.append(run_read(path))
    (from_item, item_profile), (from_bands, bands_profile) = images
    assert from_item.shape == (2, 169, 191) and item_profile["transform"].a == 60
    assert np.array_equal(from_item, from_bands) and item_profile == bands_profile


def test_assets_by_common_name_with_hrefs_relative_to_the_item(write_pipeline, shared_data,
                                                              tmp_path):
    for name in (RED, NIR):
        shutil.copy(shared_data / name, tmp_path / name)
    # the Item one folder down: its hrefs go up to the band files
    item = write_item(tmp_path / "catalog" / "item.json", landsat_assets(".."))
    spec = load_pipeline(stack_pipeline(write_pipeline,
                                        "{stac: catalog/item.json, assets: [red, nir]}"))
    assert input_source(spec, "s") == Source((str(tmp_path / RED), str(tmp_path / NIR)))
    got, _ = run_read(spec.source)
    assert np.array_equal(got, np.stack([band(tmp_path / RED), band(tmp_path / NIR)]))
    assert item.exists()


def test_declared_nodata_replaces_the_files_and_scale_applies_only_when_asked(
        write_pipeline, shared_data, tmp_path):
    # B30 declares 218 (its smallest valid value) its nodata, in place of the file's -999, and a
    # scale and offset; B40 says nothing.
    declared = {"nodata": 218, "data_type": "int16", "scale": 0.0001, "offset": -0.01}
    item = write_item(tmp_path / "item.json", landsat_assets(shared_data, B30=declared))
    red, nir = band(shared_data / RED), band(shared_data / NIR)

    raw, profile = run_read(stack_pipeline(write_pipeline,
                                           f"{{stac: {item}, assets: [red, nir]}}", "raw.yaml"))
    assert profile["dtype"] == "int16" and profile["nodata"] == 218
    assert np.array_equal(raw, np.stack([red, np.where(nir == -999, 218, nir)]))

    scaled, profile = run_read(stack_pipeline(
        write_pipeline, f"{{stac: {item}, assets: [red, nir], scale: true}}", "scaled.yaml"))
    assert profile["dtype"] == "float32" and np.isnan(profile["nodata"])
    red_values = red.astype("float32") * np.float32(0.0001) + np.float32(-0.01)
    expected = np.stack([np.where(red == 218, np.nan, red_values),
                         np.where(nir == -999, np.nan, nir.astype("float32"))])
    assert np.array_equal(scaled, expected, equal_nan=True)
    assert np.isnan(scaled[0][red == 218]).all() and not np.isnan(scaled[0][red == -999]).any()


def coarse_copy(source: Path, target: Path) -> Path:
    """``source`` at twice its pixel size (every other pixel), same origin and CRS."""
    with rasterio.open(source) as dataset:
        data, profile = dataset.read()[:, ::2, ::2], dict(dataset.profile)
    transform = profile["transform"]
    profile.update(width=data.shape[2], height=data.shape[1], blockysize=8,
                   transform=Affine(transform.a * 2, 0, transform.c, 0, transform.e * 2,
                                    transform.f))
    with rasterio.open(target, "w", **profile) as dataset:
        dataset.write(data)
    return target


@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
def test_assets_at_two_resolutions_are_aligned_as_resampling_says(write_pipeline, shared_data,
                                                                  tmp_path, resampling):
    coarse = coarse_copy(shared_data / NIR, tmp_path / "nir_50m.tif")
    assets = landsat_assets(shared_data)
    assets["B40"]["href"] = str(coarse)
    item = write_item(tmp_path / "item.json", assets)
    got, profile = run_read(stack_pipeline(
        write_pipeline, f"{{stac: {item}, assets: [red, nir], resampling: {resampling}}}"))
    with rasterio.open(shared_data / RED) as red, rasterio.open(coarse) as nir:
        assert profile["transform"] == red.transform and profile["crs"] == red.crs
        expected = np.zeros((red.height, red.width), "int16")
        reproject(rasterio.band(nir, 1), expected, dst_transform=red.transform, dst_crs=red.crs,
                  dst_nodata=-999, resampling=Resampling[resampling])
        assert np.array_equal(got[0], red.read(1))
    assert np.array_equal(got[1], expected)


@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
def test_a_warped_asset_keeps_its_declared_nodata_and_scale(write_pipeline, shared_data,
                                                            tmp_path, resampling):
    # the 50 m NIR declares its most frequent value its nodata (in place of the file's -999) and
    # a scale: warped onto the 25 m grid, those pixels are nodata (NaN), the others scaled after
    # the warp, -999 among them
    coarse = coarse_copy(shared_data / NIR, tmp_path / "nir_50m.tif")
    values, counts = np.unique(band(coarse), return_counts=True)
    declared = int(values[values != -999][counts[values != -999].argmax()])
    assets = landsat_assets(shared_data, B40={"nodata": declared, "scale": 0.0001,
                                              "offset": 0.5})
    assets["B40"]["href"] = str(coarse)
    item = write_item(tmp_path / "item.json", assets)
    got, profile = run_read(stack_pipeline(
        write_pipeline, f"{{stac: {item}, assets: [red, nir], resampling: {resampling}, "
                        "scale: true}"))
    assert profile["dtype"] == "float32" and np.isnan(profile["nodata"])
    with rasterio.open(shared_data / RED) as red, rasterio.open(coarse) as nir:
        warped = np.zeros((red.height, red.width), "float32")
        reproject(rasterio.band(nir, 1), warped, src_nodata=declared,
                  dst_transform=red.transform, dst_crs=red.crs, dst_nodata=np.nan,
                  resampling=Resampling[resampling])
    expected = warped * np.float32(0.0001) + np.float32(0.5)
    assert np.isnan(got[1]).any() and (got[1] == np.float32(-999 * 0.0001 + 0.5)).any()
    assert np.array_equal(got[1], expected, equal_nan=True)


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def test_a_wrong_asset_name_is_an_error_at_its_line_listing_the_items_assets(
        write_pipeline, shared_data, tmp_path):
    item = write_item(tmp_path / "item.json", landsat_assets(shared_data))
    path = write_pipeline(f"""
        version: 1
        inputs:
          s:
            stac: {item}
            assets: [red, nri]
        steps:
          - {{name: both, map: eoscale.ops.stack, inputs: [s]}}
        outputs: {{both: out/both.tif}}
        """)
    for command in ("validate", "run"):
        result = invoke(command, path)
        assert result.exit_code == 3, result.output
        assert ("pipeline.yaml:5:19, inputs -> s -> assets -> 1: STAC Item 'ls5-19920323' has "
                "no asset 'nri' (did you mean 'nir'?); its assets are: B30 (red), B40 (nir)"
                ) in result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_a_missing_item_is_an_error_at_the_inputs_line_as_for_a_raster(write_pipeline, tmp_path):
    path = stack_pipeline(write_pipeline, "{stac: items/item.json, assets: [red]}")
    raster = stack_pipeline(write_pipeline, "{path: items/red.tif}", "raster.yaml")
    for pipeline, missing in ((path, "items/item.json"), (raster, "items/red.tif")):
        for command in ("validate", "run"):
            result = invoke(command, pipeline)
            assert result.exit_code == 3, result.output
            assert (f"{pipeline.name}:5:6, inputs -> s: file not found: {tmp_path / missing}"
                    in result.output)


def test_the_stac_long_form_is_checked_when_loaded(write_pipeline, tmp_path):
    cases = {
        "{stac: item.json}": "missing key 'assets'",
        "{stac: item.json, assets: []}": "expected a non-empty list of asset names",
        "{stac: item.json, assets: [red], scale: 1}": "expected true or false, found the number 1",
        "{path: a.tif, assets: [red]}": "'assets' goes with 'stac'",
        "{path: a.tif, stac: item.json, assets: [red]}": "found 'path' and 'stac'",
        "{stac: item.json, asets: [red]}": "unknown key 'asets' (did you mean 'assets'?)",
    }
    for number, (text, message) in enumerate(cases.items()):
        result = invoke("validate", stack_pipeline(write_pipeline, text, f"p{number}.yaml"))
        assert result.exit_code == 3 and message in result.output, (text, result.output)
        assert result.output.count(f"p{number}.yaml:") == 1, result.output


def test_validate_and_dry_run_report_each_assets_href(write_pipeline, shared_data, tmp_path):
    shared_data = shared_data.resolve()  # as the hrefs are shown: normalised
    item = write_item(tmp_path / "item.json", landsat_assets(shared_data))
    path = stack_pipeline(write_pipeline, f"{{stac: {item}, assets: [nir, B30]}}")
    lines = [f"input s: STAC Item ls5-19920323 ({item})",
             f"  band 1 nir (B40): {shared_data / NIR}", f"  band 2 B30: {shared_data / RED}"]
    for args in (("validate", path), ("run", path, "--dry-run")):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        assert "\n".join(lines) in result.output
    tables = plan_tables(checked_plan(load_pipeline(path)))   # on a terminal
    assert tables[-1].title == "STAC inputs" and tables[-1].row_count == 2
    result = invoke("run", path, "--dry-run", "--json")
    assert json.loads(result.output)["stac_inputs"] == [
        {"name": "s", "id": "ls5-19920323", "item": str(item), "assets": [
            {"name": "nir", "key": "B40", "href": str(shared_data / NIR)},
            {"name": "B30", "key": "B30", "href": str(shared_data / RED)}]}]
    assert not (tmp_path / "out").exists()


def test_an_input_flag_replaces_a_stac_input_by_a_file(write_pipeline, shared_data, tmp_path):
    path = stack_pipeline(write_pipeline, "{stac: missing.json, assets: [red], "
                                          "resampling: bilinear}")
    spec = load_pipeline(path, overrides=Overrides(inputs={"s": str(shared_data / RED)}))
    assert (spec.inputs["s"].stac, spec.inputs["s"].resampling) == (None, "bilinear")
    assert checked_plan(spec).stac_inputs == ()
    result = invoke("run", path, "--input", f"s={shared_data / RED}", "-q")
    assert result.exit_code == 0, result.output
    assert np.array_equal(band(tmp_path / "out" / "pipeline.tif")[None],
                          band(shared_data / RED)[None])


@pytest.mark.parametrize("entry, valid", [
    ({"stac": "item.json", "assets": ["red"], "scale": True, "resampling": "cubic"}, True),
    ({"stac": "item.json"}, False),
    ({"path": "a.tif", "assets": ["red"]}, False),
    ({"bands": ["a.tif"], "scale": True}, False),
    ({"stac": "item.json", "path": "a.tif", "assets": ["red"]}, False),
    ({"stac": "item.json", "assets": []}, False),
])
def test_the_schema_and_the_loader_agree_on_the_stac_form(entry, valid, tmp_path):
    import jsonschema

    from eoscale.errors import PipelineError
    from eoscale.pipeline.schema import pipeline_schema

    document = {"version": 1, "inputs": {"s": entry},
                "steps": [{"name": "m", "map": "mod.fn", "inputs": ["s"]}]}
    schema_errors = list(jsonschema.Draft202012Validator(pipeline_schema()).iter_errors(document))
    assert (schema_errors == []) is valid
    if valid:
        assert load_pipeline(document, base_dir=tmp_path).inputs["s"].stac.assets == ("red",)
    else:
        with pytest.raises(PipelineError):
            load_pipeline(document, base_dir=tmp_path)
