"""ItemCollections and Collections read, selected and mosaicked (eoscale.io.stac, eoscale.io.mosaic),
without a pipeline: Items cut from one real raster (tests/stac_mosaic_items.py) mosaic back to it
exactly, whole and window by window; the order decides exactly the pixels where overlapping Items
differ; a file in another CRS is warped as a ``WarpedVRT`` of it warps it; the chosen grid
is the most common CRS at the finest resolution over the bbox, snapped; bbox and datetime
filters select what they should."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from stac_mosaic_items import (
    BRIGHTER,
    NODATA,
    brighter,
    cut_items,
    original,
    write_collection,
)

from eoscale.engine import Engine, Tiling
from eoscale.io.mosaic import MosaicSource, mosaic_grid
from eoscale.io.sources import Grid
from eoscale.io.stac import (
    StacError,
    StacItem,
    assets_source,
    parse_interval,
    read_stac,
    select_items,
)

UTC = dt.timezone.utc


def mosaic_of(location: Path, order: str = "newest", bbox=None, interval=None,
              resampling: str = "nearest") -> tuple[MosaicSource, str]:
    """The mosaic a pipeline input makes of the document at ``location`` (asset ``red``)."""
    items = select_items(read_stac(location).items, bbox, interval, order)
    layers = [assets_source(item.select(["red"]), resampling) for item in items]
    grid, why = mosaic_grid(layers, bbox)
    return MosaicSource.of_layers(layers, grid, resampling, [item.id for item in items]), why


def read_whole(source: MosaicSource) -> np.ndarray:
    profile = source.profile()
    with source.open(profile) as reader:
        return reader.read(Window(0, 0, profile["width"], profile["height"]))


def read_by_windows(source: MosaicSource, size: int = 96) -> np.ndarray:
    """The mosaic read window by window, each window by a reader of its own and a shared one."""
    profile = source.profile()
    out = np.zeros((profile["count"], profile["height"], profile["width"]), profile["dtype"])
    with source.open(profile) as shared:
        for row in range(0, profile["height"], size):
            for col in range(0, profile["width"], size):
                window = Window(col, row, min(size, profile["width"] - col),
                                min(size, profile["height"] - row))
                with source.open(profile) as own:
                    part = own.read(window)
                assert np.array_equal(part, shared.read(window))
                out[:, row:row + window.height, col:col + window.width] = part
    return out


def at(day: int, hour: int = 10) -> dt.datetime:
    return dt.datetime(2024, 6, day, hour, tzinfo=UTC)


def test_intervals_are_parsed_with_open_ends_and_whole_days():
    assert parse_interval("2024-06-01/2024-06-30") == (
        dt.datetime(2024, 6, 1, tzinfo=UTC), dt.datetime(2024, 6, 30, 23, 59, 59, 999999,
                                                         tzinfo=UTC))
    assert parse_interval("../2024-06-30T12:00:00Z") == (None, dt.datetime(2024, 6, 30, 12,
                                                                           tzinfo=UTC))
    assert parse_interval("2024-06-10T00:00:00+02:00/") == (dt.datetime(2024, 6, 9, 22,
                                                                        tzinfo=UTC), None)
    assert parse_interval("2024-06-10") == (at(10, 0), at(10, 0) + dt.timedelta(
        days=1, microseconds=-1))
    for text, message in (("../..", "expected a datetime or an interval"),
                          ("2024-06-31", "'2024-06-31' is not a date"),
                          ("2024-06-30/2024-06-01", "ends before it starts"),
                          ("a/b/c", "expected a datetime or an interval")):
        with pytest.raises(ValueError, match=message):
            parse_interval(text)


def test_items_are_selected_by_bbox_and_time_and_ordered():
    def item(id_, bbox, start, end=None):
        return StacItem(Path("x.json"), id_, {}, None, bbox, start, end or start)

    items = [item("west", (0.0, 0.0, 1.0, 1.0), at(5)),
             item("east", (2.0, 0.0, 3.0, 1.0), at(20)),
             item("range", (0.5, 0.0, 2.5, 1.0), at(1), at(12)),
             item("late", (0.0, 0.0, 3.0, 1.0), dt.datetime(2024, 7, 2, tzinfo=UTC))]

    def ids(found):
        return [each.id for each in found]

    june = parse_interval("2024-06-01/2024-06-30")
    assert ids(select_items(items, None, None)) == ["late", "east", "range", "west"]
    assert ids(select_items(items, None, None, "oldest")) == ["range", "west", "east", "late"]
    assert ids(select_items(items, None, june)) == ["east", "range", "west"]
    assert ids(select_items(items, (0.1, 0.1, 0.4, 0.9), june)) == ["west"]
    assert ids(select_items(items, (1.0, 0.0, 2.0, 1.0), None)) == ["late", "east", "range",
                                                                     "west"]  # edges touch
    assert ids(select_items(items, (1.2, 0.0, 1.8, 1.0), None)) == ["late", "range"]
    assert ids(select_items(items, None, parse_interval("2024-06-12"))) == ["range"]
    assert ids(select_items(items, None, parse_interval("2024-06-13/.."))) == ["late", "east"]
    assert select_items(items, (10.0, 10.0, 11.0, 11.0), None) == ()


def test_an_item_collection_and_a_static_collection_are_read_with_their_hrefs(tmp_path):
    items = cut_items(tmp_path / "files")
    found = read_stac(write_collection(tmp_path / "files" / "search.json", items))
    assert found.kind == "ItemCollection"
    assert [item.id for item in found.items] == ["a", "b", "c", "d"]
    assert found.items[1].assets["B30"].href == tmp_path / "files" / "b.tif"
    assert found.items[1].datetime == "2024-06-10T10:00:00+00:00"
    assert found.items[1].start == found.items[1].end == at(10)

    collection = pystac.Collection("cuts", "four windows", pystac.Extent(
        pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
        pystac.TemporalExtent([[at(1), at(30)]])))
    for item in cut_items(tmp_path / "files", relative=False):
        collection.add_item(item)
    collection.normalize_hrefs(str(tmp_path / "catalog"))
    collection.save(pystac.CatalogType.SELF_CONTAINED)
    found = read_stac(tmp_path / "catalog" / "collection.json")
    assert found.kind == "Collection"
    assert sorted(item.id for item in found.items) == ["a", "b", "c", "d"]
    assert {item.assets["B30"].href for item in found.items} == {
        tmp_path / "files" / f"{name}.tif" for name in "abcd"}

    (tmp_path / "catalog.json").write_text(json.dumps({"type": "Catalog"}))
    with pytest.raises(StacError, match="is not a STAC Item, ItemCollection or Collection: "
                                        "its type is 'Catalog'"):
        read_stac(tmp_path / "catalog.json")


def test_items_cut_from_a_raster_mosaic_back_to_it_whole_and_by_windows(tmp_path):
    expected, profile = original()
    search = write_collection(tmp_path / "search.json", cut_items(tmp_path))
    for order in ("newest", "oldest"):
        source, why = mosaic_of(search, order)
        assert source.grid is not None and not source.grid.differences(profile)
        assert "union of the 4 selected Items' footprints, in EPSG:28355 (the CRS of 4 of " \
               "the 4 asset files), at their finest resolution 25 x 25" in why
        assert source.profile()["nodata"] == NODATA and source.profile()["dtype"] == "int16"
        assert np.array_equal(read_whole(source), expected)
        assert np.array_equal(read_by_windows(source), expected)


def identity(arrays, profiles, params):
    return arrays[0]


def test_workers_load_and_open_a_mosaic_exactly(tmp_path):
    expected, _ = original()
    source, _ = mosaic_of(write_collection(tmp_path / "search.json", cut_items(tmp_path)))
    with Engine(2, tiling=Tiling("tiles", 70)) as engine:
        loaded = engine.load(source, name="mosaic")
        np.testing.assert_array_equal(loaded.array, expected)
        [copy] = engine.map(identity, [engine.open(source)])
        np.testing.assert_array_equal(copy.array, expected)


def test_newest_first_and_oldest_first_differ_exactly_where_overlapping_items_differ(tmp_path):
    expected, _ = original()
    items = [*cut_items(tmp_path), brighter(tmp_path)]
    search = write_collection(tmp_path / "search.json", items)
    newest = read_by_windows(mosaic_of(search, "newest")[0])
    oldest = read_whole(mosaic_of(search, "oldest")[0])
    assert np.array_equal(oldest, expected)
    col, row, width, height = BRIGHTER
    inside = np.zeros(expected.shape, bool)
    inside[:, row:row + height, col:col + width] = True
    differs = inside & (expected != NODATA)
    assert differs.sum() > 30000
    assert np.array_equal(newest[differs], expected[differs] + 1)
    assert np.array_equal(newest[~differs], expected[~differs])


def test_an_item_in_another_crs_is_warped_as_a_warped_vrt_warps_it(tmp_path):
    items = cut_items(tmp_path, crs={"b": "EPSG:4326"})
    source, why = mosaic_of(write_collection(tmp_path / "search.json", items))
    assert "in EPSG:28355 (the CRS of 3 of the 4 asset files)" in why
    assert sorted(source.warped()) == [str(tmp_path / f"{name}.tif") for name in "abcd"]
    grid = source.grid
    assert grid is not None
    layers = []  # the oracle: each file read whole through a WarpedVRT, filled newest first
    for name in "dcba":
        with rasterio.open(tmp_path / f"{name}.tif") as dataset, WarpedVRT(
                dataset, crs=grid.crs, transform=grid.transform, width=grid.width,
                height=grid.height, nodata=NODATA, resampling=Resampling.nearest) as view:
            layers.append(view.read())
    expected = layers[0].copy()
    for layer in layers[1:]:
        expected = np.where(expected == NODATA, layer, expected)
    mosaic = read_by_windows(source, 80)
    assert np.array_equal(mosaic, expected)
    b_only = (layers[0] == NODATA) & (layers[2] != NODATA)  # b fills where d, c leave nodata...
    b_only &= layers[1] == NODATA
    assert b_only.sum() > 10000 and np.array_equal(mosaic[b_only], layers[2][b_only])


def test_the_grid_of_a_bbox_is_snapped_to_the_resolution_and_keeps_the_items_it_meets(tmp_path):
    expected, profile = original()
    search = write_collection(tmp_path / "search.json", cut_items(tmp_path))
    inner = Grid.from_bounds(profile["crs"], 25, (689000 + 25 * 30.4, 6096000 - 25 * 100.2,
                                                  689000 + 25 * 120.7, 6096000 - 25 * 40.5))
    from rasterio.warp import transform_bounds

    bbox = transform_bounds(profile["crs"], "EPSG:4326", *inner.bounds)
    source, why = mosaic_of(search, bbox=bbox)
    assert source.labels == ("a",)  # the bbox lies inside a's window only
    grid = source.grid
    assert grid is not None and grid.resolution == (25, 25) and grid.crs == profile["crs"]
    left, bottom, right, top = grid.bounds
    assert all(value % 25 == 0 for value in grid.bounds)
    assert left <= inner.bounds[0] and bottom <= inner.bounds[1]
    assert right >= inner.bounds[2] and top >= inner.bounds[3]
    assert f"the bbox {list(bbox)}" in why
    col, row = round((left - 689000) / 25), round((6096000 - top) / 25)
    assert np.array_equal(read_whole(source),
                          expected[:, row:row + grid.height, col:col + grid.width])


def test_a_mosaic_of_items_with_different_band_counts_is_refused(tmp_path):
    items = cut_items(tmp_path)
    source, _ = mosaic_of(write_collection(tmp_path / "search.json", items))
    with rasterio.open(tmp_path / "a.tif") as dataset:
        data, profile = dataset.read(), dict(dataset.profile, count=2)
    with rasterio.open(tmp_path / "a.tif", "w", **profile) as dataset:
        dataset.write(np.concatenate([data, data]))
    with pytest.raises(Exception, match="the Items of a mosaic must have the same bands; their "
                                        "band counts are d: 1, c: 1, b: 1, a: 2"):
        source.profile()
