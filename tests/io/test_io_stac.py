"""STAC Items read as inputs (eoscale.io.stac), without pixels: hrefs resolved against the Item's
location, assets named by key or common name, band metadata of STAC 1.0 and 1.1, and the clear
errors of a wrong name or a document that is no Item."""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

import pystac
import pytest

from eoscale.errors import RasterError
from eoscale.io.sources import DeclaredValues, Source
from eoscale.io.stac import (
    StacAsset,
    StacBand,
    StacError,
    assets_source,
    item_of,
    read_item,
    resolve_href,
)


def item_dict(assets: dict[str, dict]) -> dict:
    """An Item's JSON as pystac writes it, with ``assets`` (key -> href and extra fields)."""
    item = pystac.Item("scene-1", {"type": "Point", "coordinates": [2.0, 48.0]},
                       [2.0, 48.0, 2.0, 48.0], datetime.datetime(2024, 6, 1), {})
    for key, fields in assets.items():
        fields = dict(fields)
        item.add_asset(key, pystac.Asset(fields.pop("href"), extra_fields=fields))
    return item.to_dict(include_self_link=False)


S2_LIKE = {
    "B04": {"href": "B04.tif", "eo:bands": [{"name": "B04", "common_name": "red"}],
            "raster:bands": [{"nodata": 0, "data_type": "uint16", "scale": 0.0001,
                              "offset": -0.1}]},
    "B08": {"href": "sub/B08.tif", "eo:bands": [{"name": "B08", "common_name": "nir"}]},
    "visual": {"href": "TCI.tif", "eo:bands": [{"common_name": "red"}, {"common_name": "green"},
                                                {"common_name": "blue"}]},
    "thumbnail": {"href": "https://cdn.example.com/thumb.png"},
}


@pytest.mark.parametrize("href, base, expected", [
    ("B04.tif", Path("/data/items/item.json"), Path("/data/items/B04.tif")),
    ("../bands/B04.tif", Path("/data/items/item.json"), Path("/data/bands/B04.tif")),
    ("B04.tif", "https://host/cat/item.json", "https://host/cat/B04.tif"),
    ("../B04.tif?x=1", "https://u:p@host/cat/sub/item.json", "https://u:p@host/cat/B04.tif?x=1"),
    ("/abs/B04.tif", "https://host/cat/item.json", "https://host/abs/B04.tif"),
    ("https://other/B04.tif", Path("/data/item.json"), "https://other/B04.tif"),
    ("B04.tif", "/vsizip/cat.zip/items/item.json", "/vsizip/cat.zip/items/B04.tif"),
])
def test_an_href_resolves_against_the_items_location(href, base, expected):
    assert resolve_href(href, base) == expected


def test_assets_are_named_by_key_or_by_a_one_band_assets_common_name():
    item = item_of(item_dict(S2_LIKE), Path("/data/item.json"))
    assert item.id == "scene-1" and item.datetime.startswith("2024-06-01")
    picked = item.select(["nir", "B04", "red", "visual"])
    assert [asset.key for asset in picked] == ["B08", "B04", "B04", "visual"]
    assert picked[0].href == Path("/data/sub/B08.tif")
    assert item.assets["thumbnail"].href == "https://cdn.example.com/thumb.png"


def test_a_wrong_asset_name_says_its_place_and_lists_the_items_assets():
    item = item_of(item_dict(S2_LIKE), Path("/data/item.json"))
    with pytest.raises(StacError) as caught:
        item.select(["B04", "B8"])
    assert caught.value.index == 1
    assert str(caught.value) == (
        "STAC Item 'scene-1' has no asset 'B8' (did you mean 'B08'?); its assets are: "
        "B04 (red), B08 (nir), visual (red, green, blue), thumbnail")
    with pytest.raises(StacError, match="'green' is one band of asset 'visual' \\(3 bands\\)"):
        item.select(["green"])


def test_a_common_name_two_one_band_assets_share_is_refused():
    assets = {"a": {"href": "a.tif", "eo:bands": [{"common_name": "red"}]},
              "b": {"href": "b.tif", "eo:bands": [{"common_name": "red"}]}}
    item = item_of(item_dict(assets), Path("/data/item.json"))
    with pytest.raises(StacError, match="common name of assets 'a', 'b'.*name one by its key"):
        item.select(["red"])


def test_band_metadata_of_stac_1_0_extensions_and_of_stac_1_1():
    assets = {"old": {"href": "old.tif", "eo:bands": [{"name": "B1", "common_name": "red"}],
                      "raster:bands": [{"nodata": "nan", "data_type": "float32", "scale": 2,
                                        "offset": 1}]},
              "new": {"href": "new.tif", "bands": [{"name": "B2", "eo:common_name": "nir",
                                                    "nodata": 0, "data_type": "uint16"}]},
              "bare": {"href": "bare.tif"}}
    item = item_of(item_dict(assets), Path("/data/item.json"))
    old, new, bare = (item.assets[key] for key in ("old", "new", "bare"))
    assert old.bands[0].common_name == "red" and math.isnan(old.bands[0].nodata)
    assert (old.bands[0].scale, old.bands[0].offset, old.bands[0].data_type) == (2, 1, "float32")
    assert new.bands == (StacBand("B2", "nir", 0.0, "uint16"),)
    assert item.select(["nir"]) == (new,)
    assert bare.bands == () and bare.declared(scale=True) == DeclaredValues(None, (1.0,), (0.0,))


def test_an_items_assets_make_the_source_their_band_files_make():
    item = item_of(item_dict(S2_LIKE), Path("/data/item.json"))
    plain = assets_source(item.select(["B08"]), "bilinear")
    assert plain == Source(("/data/sub/B08.tif",), None, "bilinear")
    declared = assets_source(item.select(["B04", "B08"]))
    assert declared.declared == (DeclaredValues(0.0), DeclaredValues())
    scaled = assets_source(item.select(["B04", "B08"]), scale=True)
    assert scaled.declared == (DeclaredValues(0.0, (0.0001,), (-0.1,)),
                               DeclaredValues(None, (1.0,), (0.0,)))
    assert scaled.scaled and not declared.scaled


def test_a_missing_item_is_a_raster_error_and_a_document_not_an_item_a_stac_error(tmp_path):
    with pytest.raises(RasterError, match=f"file not found: {tmp_path / 'item.json'}"):
        read_item(tmp_path / "item.json")
    (tmp_path / "text.json").write_text("not json")
    with pytest.raises(StacError, match="text.json is not a STAC Item: not JSON"):
        read_item(tmp_path / "text.json")
    (tmp_path / "collection.json").write_text(json.dumps(
        {"type": "FeatureCollection", "features": [item_dict(S2_LIKE)]}))
    with pytest.raises(StacError, match="is a STAC ItemCollection: an input reads one Item"):
        read_item(tmp_path / "collection.json")
    (tmp_path / "broken.json").write_text(json.dumps({"type": "Feature", "id": "x"}))
    with pytest.raises(StacError, match="broken.json is not a readable STAC Item"):
        read_item(tmp_path / "broken.json")


def test_items_are_read_from_files_and_http_only():
    with pytest.raises(StacError, match="eoscale reads Items from local files and http"):
        read_item("s3://bucket/item.json")


def test_an_asset_without_bands_has_no_common_names():
    assert StacAsset("a", Path("/a.tif")).common_names == ()
