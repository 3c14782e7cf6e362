"""An output's STAC Item made from an input Item served over HTTP (the test server on
127.0.0.1) with credentials in its address: the Item cites the input Item by its address with
the credentials removed, and takes its datetime."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import pystac
import pytest

from eoscale.pipeline import load_pipeline
from eoscale.pipeline.runner import run_pipeline

SHARED_DATA = Path(__file__).parents[2] / ".." / "shared" / "data"
RED = "ls5_nbar_19920323_B30_red.tif"
NIR = "ls5_nbar_19920323_B40_nir.tif"


def test_output_item_cites_an_item_served_over_http_without_its_credentials(served, tmp_path):
    if not SHARED_DATA.is_dir():
        pytest.skip("needs ../shared/data (the project's shared test rasters)")
    folder = served.folder / "private" / "stac-out"
    folder.mkdir(parents=True, exist_ok=True)
    for name in (RED, NIR):
        shutil.copy(SHARED_DATA / name, folder / name)
    when = datetime.datetime(1992, 3, 23, 23, 30, tzinfo=datetime.timezone.utc)
    item = pystac.Item("ls5-19920323", {"type": "Point", "coordinates": [149.1, -35.3]},
                       [149.0, -35.4, 149.2, -35.2], when, {})
    for key, href, common in (("B30", RED, "red"), ("B40", NIR, "nir")):
        item.add_asset(key, pystac.Asset(href, extra_fields={
            "eo:bands": [{"name": key, "common_name": common}]}))
    (folder / "item.json").write_text(json.dumps(item.to_dict(include_self_link=False)))
    url = served.url.replace("http://", "http://reader:s3cret@") + "/private/stac-out/item.json"
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(f"""version: 1
workers: 2
inputs:
  s: {{stac: '{url}', assets: [red, nir]}}
steps:
  - {{name: both, map: eoscale.ops.stack, inputs: [s]}}
outputs: {{both: {{path: out/both.tif, stac: true}}}}
""")
    run_pipeline(load_pipeline(pipeline))
    text = (tmp_path / "out" / "both.json").read_text()
    assert "s3cret" not in text and "reader" not in text
    written = pystac.Item.from_file(str(tmp_path / "out" / "both.json"))
    assert written.datetime == when
    assert [link.href for link in written.get_links("derived_from")] == [
        f"{served.url}/private/stac-out/item.json"]
