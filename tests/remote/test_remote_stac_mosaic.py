"""An ItemCollection served over HTTP (the test server on 127.0.0.1), its Items' hrefs relative
to its URL: the mosaic of Items cut from one raster (tests/stac_mosaic_items.py) is that raster,
as from files, and every Item's file is fetched from the server."""

from __future__ import annotations

import numpy as np
import rasterio
from stac_mosaic_items import brighter, cut_items, original, source_path, write_collection

from eoscale.pipeline import checked_plan, load_pipeline
from eoscale.pipeline.runner import run_pipeline


def test_an_item_collection_served_over_http_mosaics_back_to_the_raster(served, tmp_path):
    source_path()
    folder = served.folder / "mosaic"
    folder.mkdir(exist_ok=True)
    write_collection(folder / "search.json", [*cut_items(folder), brighter(folder)])
    url = f"{served.url}/mosaic/search.json"
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(f"""version: 1
workers: 2
tiling: {{tile_size: 64}}
inputs:
  s: {{stac: {url}, assets: [red], order: oldest}}
steps:
  - {{name: both, map: eoscale.ops.stack, inputs: [s]}}
outputs: {{both: out/both.tif}}
""")
    spec = load_pipeline(pipeline)
    plan = checked_plan(spec)
    assert [hrefs for _, _, hrefs in plan.stac_inputs[0].items] == [
        (f"{served.url}/mosaic/{name}.tif",) for name in ("a", "b", "c", "d", "brighter")]
    run_pipeline(plan)
    with rasterio.open(spec.outputs["both"].path) as dataset:
        assert np.array_equal(dataset.read(), original()[0])
    fetched = {entry["path"] for entry in served.log()}
    assert {"/mosaic/search.json", *(f"/mosaic/{name}.tif" for name in "abcd")} <= fetched
