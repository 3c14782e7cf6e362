"""A STAC Item and its assets served over HTTP (the test server on 127.0.0.1): the same image as
the band files on disk, hrefs relative to the Item's URL (credentials in it reach its assets and
never show), workers that read assets over HTTP never forked, and an Item that does not answer
a failure of the run naming the input's line."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from click.testing import CliRunner

from eoscale.cli.main import cli
from eoscale.io.paths import worker_start_method
from eoscale.pipeline import checked_plan, load_pipeline
from eoscale.pipeline.inputs import read_locations
from eoscale.pipeline.runner import run_pipeline

SHARED_DATA = Path(__file__).parents[2] / ".." / "shared" / "data"
RED = "ls5_nbar_19920323_B30_red.tif"
NIR = "ls5_nbar_19920323_B40_nir.tif"


@pytest.fixture
def landsat(served) -> Path:
    """The red and NIR band files in the served folder's ``stac/``, beside ``private/stac/``."""
    if not SHARED_DATA.is_dir():
        pytest.skip("needs ../shared/data (the project's shared test rasters)")
    for folder in (served.folder / "stac", served.folder / "private" / "stac"):
        folder.mkdir(parents=True, exist_ok=True)
        for name in (RED, NIR):
            shutil.copy(SHARED_DATA / name, folder / name)
    return served.folder / "stac"


def write_item(path: Path, red: str, nir: str) -> Path:
    item = pystac.Item("ls5-19920323", {"type": "Point", "coordinates": [149.1, -35.3]},
                       [149.0, -35.4, 149.2, -35.2], datetime.datetime(1992, 3, 23), {})
    for key, href, common in (("B30", red, "red"), ("B40", nir, "nir")):
        item.add_asset(key, pystac.Asset(href, extra_fields={
            "eo:bands": [{"name": key, "common_name": common}]}))
    path.write_text(json.dumps(item.to_dict(include_self_link=False)))
    return path


def write_pipeline(folder: Path, input_text: str) -> Path:
    path = folder / "pipeline.yaml"
    path.write_text(f"""version: 1
workers: 2
tiling: {{tile_size: 64}}
inputs:
  s: {input_text}
steps:
  - {{name: both, map: eoscale.ops.stack, inputs: [s]}}
outputs: {{both: out/both.tif}}
""")
    return path


def expected() -> np.ndarray:
    with rasterio.open(SHARED_DATA / RED) as red, rasterio.open(SHARED_DATA / NIR) as nir:
        return np.stack([red.read(1), nir.read(1)])


def read_output(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read()


def test_an_item_served_over_http_with_relative_hrefs_gives_the_band_files_image(
        served, landsat, tmp_path):
    write_item(landsat / "item.json", RED, NIR)
    url = f"{served.url}/stac/item.json"
    spec = load_pipeline(write_pipeline(tmp_path, f"{{stac: {url}, assets: [red, nir]}}"))
    plan = checked_plan(spec)
    assert [href for _, _, href in plan.stac_inputs[0].assets] == [f"{served.url}/stac/{RED}",
                                                                  f"{served.url}/stac/{NIR}"]
    run_pipeline(plan)
    assert np.array_equal(read_output(spec.outputs["both"].path), expected())
    fetched = {entry["path"] for entry in served.log()}
    assert {"/stac/item.json", f"/stac/{RED}", f"/stac/{NIR}"} <= fetched


def test_a_local_item_naming_assets_over_http_never_forks_its_workers(served, landsat, tmp_path):
    item = write_item(tmp_path / "item.json", f"{served.url}/stac/{RED}",
                      f"{served.url}/stac/{NIR}")
    spec = load_pipeline(write_pipeline(tmp_path, f"{{stac: {item}, assets: [B30, B40]}}"))
    plan = checked_plan(spec)
    assert worker_start_method(read_locations(spec, plan.input_sources), None) == "forkserver"
    run_pipeline(plan)
    assert np.array_equal(read_output(spec.outputs["both"].path), expected())


def test_credentials_in_the_items_address_reach_its_assets_and_never_show(served, landsat,
                                                                           tmp_path):
    write_item(served.folder / "private" / "stac" / "item.json", RED, NIR)
    good = served.url.replace("http://", "http://reader:s3cret@") + "/private/stac/item.json"
    path = write_pipeline(tmp_path, f"{{stac: '{good}', assets: [red, nir]}}")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert f"band 1 red (B30): {served.url}/private/stac/{RED}" in result.output
    assert "s3cret" not in result.output and "reader" not in result.output
    run_pipeline(load_pipeline(path))
    assert np.array_equal(read_output(tmp_path / "out" / "both.tif"), expected())
    path.write_text(path.read_text().replace("s3cret", "guessed"))
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    assert (f"pipeline.yaml:5:6, inputs -> s: cannot open {served.url}/private/stac/item.json: "
            "unreachable, missing or not a STAC Item (HTTP response code: 401)") in result.output
    assert "guessed" not in result.output


def test_an_item_that_does_not_answer_is_a_failure_naming_the_inputs_line(served, tmp_path):
    url = f"{served.url}/stac/missing.json"
    path = write_pipeline(tmp_path, f"{{stac: {url}, assets: [red]}}")
    for command in ("validate", "run"):
        result = CliRunner().invoke(cli, [command, str(path)])
        assert result.exit_code == 1, result.output   # a failure of the run, not of the file
        assert (f"pipeline.yaml:5:6, inputs -> s: cannot open {url}: unreachable, missing or "
                "not a STAC Item (HTTP response code: 404)") in result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_info_on_an_item_over_http_reads_each_assets_grid(served, landsat):
    write_item(served.folder / "private" / "stac" / "item.json", RED, NIR)
    url = served.url.replace("http://", "http://reader:s3cret@") + "/private/stac/item.json"
    result = CliRunner().invoke(cli, ["info", url, "--json"])
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output and "reader" not in result.output
    found = json.loads(result.output)
    assert [asset["href"] for asset in found["assets"]] == [
        f"{served.url}/private/stac/{RED}", f"{served.url}/private/stac/{NIR}"]
    with rasterio.open(SHARED_DATA / RED) as red:
        assert found["assets"][0]["raster"]["transform"] == list(red.transform)[:6]
        assert found["assets"][0]["raster"]["width"] == red.width
