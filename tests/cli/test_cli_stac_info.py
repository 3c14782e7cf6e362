"""``eoscale info ITEM.json``: a STAC Item's assets, each with its grid as the raster itself says
(the example Item of pipelines/data, naming the sample band files relative to itself)."""

from __future__ import annotations

import json

from eoscale.cli.main import cli
from eoscale.io.info import raster_info


def test_info_lists_an_items_assets_and_their_grids(runner, examples):
    item = examples / "data" / "item.json"
    result = runner.invoke(cli, ["info", str(item), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert (found["id"], found["datetime"]) == ("sample-s2-like", "2024-06-15T10:30:00+00:00")
    assets = {asset["key"]: asset for asset in found["assets"]}
    assert {key: asset["common_names"] for key, asset in assets.items()} == {
        "B04": ["red"], "B08": ["nir"], "B11": ["swir16"]}
    for key, asset in assets.items():
        band_file = examples / "data" / "bands" / f"{key}.tif"
        assert asset["href"] == str(band_file)
        assert asset["raster"] == json.loads(json.dumps(raster_info(band_file).to_json()))
    assert assets["B11"]["raster"]["resolution"] == [20.0, 20.0]

    result = runner.invoke(cli, ["info", str(item)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "STAC Item sample-s2-like" in result.output
    assert "256 x 256 px of 20 x 20 in EPSG:32631" in result.output


def test_info_on_an_item_names_an_asset_it_cannot_read_and_refuses_raster_options(
        runner, examples):
    item = examples / "data" / "item.json"
    document = json.loads(item.read_text())
    document["assets"]["B11"]["href"] = "bands/missing.tif"
    item.write_text(json.dumps(document))
    result = runner.invoke(cli, ["info", str(item), "--json"])
    assert result.exit_code == 0, result.output
    missing = json.loads(result.output)["assets"][2]
    assert missing["raster"] is None
    assert missing["error"] == f"file not found: {examples / 'data' / 'bands' / 'missing.tif'}"
    for option in ("--stats", "--quicklook=q.png"):
        result = runner.invoke(cli, ["info", str(item), option])
        assert result.exit_code == 2 and "give one of the Item's asset hrefs" in result.output
    result = runner.invoke(cli, ["info", str(examples / "data" / "none.json")])
    assert result.exit_code == 1 and "file not found" in result.output
