"""A STAC Item for an output (``stac: true`` / ``stac: {statistics: STEP}``), made by the real
``eoscale`` command on the rasters of ../shared/data and read back with pystac: its bbox against
rasterio's densified transform of the output's bounds, its footprint against the output's
corners reprojected, its proj fields against the output's rasterio profile (``proj:wkt2`` for a
CRS without an EPSG code), its asset href opening the output, its statistics against numpy's on
the output, its datetime from the input Items (or the run's time); nothing left, and an existing
Item untouched, when the run fails; mistakes in ``stac:`` refused at their lines."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform, transform_bounds
from rasterio.windows import Window

from eoscale.errors import EXIT_INVALID_PIPELINE

REPO = Path(__file__).resolve().parents[2]
RED = "ls5_nbar_19920323_B30_red.tif"
NIR = "ls5_nbar_19920323_B40_nir.tif"
OPS = '''
import numpy as np

def tile_sum(arrays, profiles, params):
    return float(np.nansum(arrays[0]))

tile_sum.combine = lambda a, b: a + b

def fails(arrays, profiles, params):
    raise RuntimeError("this step fails on purpose")
'''


def eoscale(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real command, running this worktree's code."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "eoscale", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180, check=False)


def write(folder: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    (folder / "item_ops.py").write_text(OPS, encoding="utf-8")
    return path


def write_item(path: Path, item_id: str, when: dt.datetime, assets: dict[str, Path],
               self_href: str | None = None) -> Path:
    """An input Item with one-band assets (key -> file) and their common names."""
    item = pystac.Item(item_id, {"type": "Point", "coordinates": [149.1, -35.3]},
                       [149.0, -35.4, 149.2, -35.2], when, {})
    for key, file in assets.items():
        item.add_asset(key, pystac.Asset(str(file), media_type=pystac.MediaType.GEOTIFF,
                                         extra_fields={"eo:bands": [{"name": key,
                                                                     "common_name": key}]}))
    if self_href is not None:
        item.set_self_href(self_href)
    path.write_text(json.dumps(item.to_dict(include_self_link=self_href is not None,
                                            transform_hrefs=False)))
    return path


def ndvi_pipeline(folder: Path, stac: str = "{statistics: ndvi_stats}", more: str = "") -> Path:
    """NDVI of the Item's red and NIR, its statistics, and ``more`` steps; the NDVI a COG with
    its Item (``stac``)."""
    return write(folder, f"""
        version: 1
        name: ls5-ndvi
        workers: 2
        tiling: {{tile_size: 128}}
        inputs:
          ls5: {{stac: item.json, assets: [red, nir]}}
        steps:
          - name: ndvi
            map: eoscale.ops.band_math
            inputs: [ls5]
            params: {{expression: "(ls5[2] - ls5[1]) / (ls5[2] + ls5[1])", dtype: float32}}
          - {{name: ndvi_stats, reduce: eoscale.ops.stats, inputs: [ndvi]}}
          {more}
        outputs:
          ndvi: {{path: out/ndvi.tif, format: COG, stac: {stac}}}
        """)


@pytest.fixture
def ls5_item(tmp_path: Path, shared_data: Path) -> Path:
    """The Landsat 5 red and NIR files of ../shared/data as the assets of one Item."""
    return write_item(tmp_path / "item.json", "ls5-19920323",
                      dt.datetime(1992, 3, 23, 23, 30, tzinfo=dt.timezone.utc),
                      {"red": shared_data / RED, "nir": shared_data / NIR})


def check_footprint(item: pystac.Item, image: Path) -> None:
    """bbox: rasterio's transform of the image's bounds to WGS84, densified by 21 points; the
    footprint: the image's edges (21 points between corners) reprojected, its extent the bbox."""
    with rasterio.open(image) as dataset:
        crs, bounds = dataset.crs, dataset.bounds
    expected = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    assert item.bbox == pytest.approx(list(expected), abs=1e-9)
    ring = np.array(item.geometry["coordinates"][0])
    assert item.geometry["type"] == "Polygon" and len(ring) == 4 * 22 + 1
    left, bottom, right, top = bounds
    t = np.linspace(0.0, 1.0, 23)
    xs = np.concatenate([left + (right - left) * t, np.full(23, right),
                         right - (right - left) * t, np.full(23, left)])
    ys = np.concatenate([np.full(23, bottom), bottom + (top - bottom) * t,
                         np.full(23, top), top - (top - bottom) * t])
    lons, lats = transform(crs, "EPSG:4326", xs.tolist(), ys.tolist())
    points = {(round(x, 9), round(y, 9)) for x, y in zip(lons, lats)}
    assert {(round(x, 9), round(y, 9)) for x, y in ring} == points
    assert [ring[:, 0].min(), ring[:, 1].min(), ring[:, 0].max(),
            ring[:, 1].max()] == pytest.approx(item.bbox, abs=1e-9)


def check_proj(item: pystac.Item, image: Path) -> None:
    """proj:code (or wkt2), shape, transform and bbox against the image's rasterio profile."""
    with rasterio.open(image) as dataset:
        profile, bounds = dataset.profile, dataset.bounds
    properties = item.properties
    epsg = profile["crs"].to_epsg()
    if epsg is not None:
        assert properties["proj:code"] == f"EPSG:{epsg}"
        assert "proj:wkt2" not in properties
    else:
        assert properties.get("proj:code") is None
        assert CRS.from_wkt(properties["proj:wkt2"]) == profile["crs"]
    assert properties["proj:shape"] == [profile["height"], profile["width"]]
    assert properties["proj:transform"] == list(profile["transform"])[:6]
    assert properties["proj:bbox"] == list(bounds)


def check_asset(item_file: Path, image: Path, media_type: str) -> pystac.Asset:
    """The asset's href is relative to the Item and opens the image itself."""
    item = pystac.Item.from_file(str(item_file))
    asset = item.assets["data"]
    assert asset.href == image.name and asset.media_type == media_type
    assert asset.roles == ["data"]
    assert Path(asset.get_absolute_href()) == image
    with rasterio.open(asset.get_absolute_href()) as linked, rasterio.open(image) as direct:
        assert np.array_equal(linked.read(), direct.read(), equal_nan=True)
    return asset


def test_item_of_an_output_made_from_a_stac_item(tmp_path: Path, ls5_item: Path) -> None:
    pipeline = ndvi_pipeline(tmp_path)
    done = eoscale("run", str(pipeline), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    image, item_file = tmp_path / "out" / "ndvi.tif", tmp_path / "out" / "ndvi.json"
    item = pystac.Item.from_file(str(item_file))
    assert item.id == "ndvi"
    check_footprint(item, image)
    check_proj(item, image)
    asset = check_asset(item_file, image, pystac.MediaType.COG)
    assert item.datetime == dt.datetime(1992, 3, 23, 23, 30, tzinfo=dt.timezone.utc)
    assert "start_datetime" not in item.properties
    [link] = item.get_links("derived_from")
    assert Path(link.get_absolute_href()) == ls5_item and link.title == "ls5-19920323"
    assert item.properties["processing:software"] == {
        "eoscale": importlib.metadata.version("eoscale")}
    assert "ls5-ndvi" in item.properties["processing:lineage"]
    with rasterio.open(image) as dataset:
        pixels = dataset.read(1).astype(np.float64)
    [band] = asset.extra_fields["raster:bands"]
    assert band["data_type"] == "float32" and band["nodata"] == "nan"
    assert band["spatial_resolution"] == 25.0
    valid = pixels[~np.isnan(pixels)]
    assert band["statistics"] == pytest.approx({
        "minimum": valid.min(), "maximum": valid.max(), "mean": valid.mean(),
        "stddev": valid.std(), "valid_percent": 100.0 * valid.size / pixels.size}, rel=1e-9)


def test_item_of_an_output_made_from_a_plain_file(tmp_path: Path, shared_data: Path) -> None:
    pipeline = write(tmp_path, f"""
        version: 1
        inputs: {{dsm: {shared_data / "dsm.tif"}}}
        steps:
          - {{name: lower, map: eoscale.ops.cast, inputs: [dsm], params: {{dtype: int16,
             nodata: -9999}}}}
        outputs:
          lower: {{path: out/dsm_int.tif, stac: true}}
        """)
    before = dt.datetime.now(dt.timezone.utc)
    done = eoscale("run", str(pipeline), cwd=tmp_path)
    after = dt.datetime.now(dt.timezone.utc)
    assert done.returncode == 0, done.stderr
    image, item_file = tmp_path / "out" / "dsm_int.tif", tmp_path / "out" / "dsm_int.json"
    item = pystac.Item.from_file(str(item_file))
    assert item.datetime is not None and before <= item.datetime <= after
    assert item.get_links("derived_from") == []
    check_footprint(item, image)
    check_proj(item, image)
    asset = check_asset(item_file, image, pystac.MediaType.GEOTIFF)
    [band] = asset.extra_fields["raster:bands"]
    with rasterio.open(image) as dataset:
        resolution = dataset.res[0]
    assert band == {"nodata": -9999, "data_type": "int16", "spatial_resolution": resolution}


def test_crs_without_epsg_code_gives_wkt2(tmp_path: Path, shared_data: Path) -> None:
    """A window of nz_elev.tif (NZTM parameters in a custom WKT) copied as an output."""
    with rasterio.open(shared_data / "nz_elev.tif") as source:
        window = Window(500, 600, 120, 90)
        profile = {**source.profile, "width": 120, "height": 90, "blockysize": 1,
                   "transform": source.transform @ Affine.translation(500, 600)}
        with rasterio.open(tmp_path / "nz.tif", "w", **profile) as target:
            target.write(source.read(window=window))
    with rasterio.open(tmp_path / "nz.tif") as check:
        assert check.crs.to_epsg() is None  # the case under test
    pipeline = write(tmp_path, """
        version: 1
        inputs: {elev: nz.tif}
        steps:
          - {name: stats, reduce: eoscale.ops.stats, inputs: [elev]}
        outputs:
          elev: {path: out/elev.tif, stac: {statistics: stats}}
        """)
    done = eoscale("run", str(pipeline), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    image = tmp_path / "out" / "elev.tif"
    item = pystac.Item.from_file(str(tmp_path / "out" / "elev.json"))
    check_proj(item, image)
    check_footprint(item, image)
    with rasterio.open(image) as dataset:
        pixels = dataset.read(1).astype(np.float64)
    valid = pixels[~np.isnan(pixels)]
    stats = item.assets["data"].extra_fields["raster:bands"][0]["statistics"]
    assert stats["minimum"] == valid.min() and stats["maximum"] == valid.max()
    assert stats["valid_percent"] == pytest.approx(100.0 * valid.size / pixels.size)


def test_items_of_several_dates_give_a_range(tmp_path: Path, shared_data: Path) -> None:
    """Two input Items of different dates: a null datetime and start/end spanning them; the
    Item with a self link is cited by it."""
    write_item(tmp_path / "red.json", "red-day", dt.datetime(1992, 3, 23, tzinfo=dt.timezone.utc),
               {"red": shared_data / RED})
    write_item(tmp_path / "nir.json", "nir-day", dt.datetime(1992, 4, 8, tzinfo=dt.timezone.utc),
               {"nir": shared_data / NIR}, self_href="https://example.com/items/nir-day.json")
    pipeline = write(tmp_path, """
        version: 1
        inputs:
          r: {stac: red.json, assets: [red]}
          n: {stac: nir.json, assets: [nir]}
        steps:
          - {name: ndvi, map: eoscale.ops.band_math, inputs: [r, n],
             params: {expression: "(n - r) / (n + r)", dtype: float32}}
        outputs:
          ndvi: {path: out/ndvi.tif, stac: true}
        """)
    done = eoscale("run", str(pipeline), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    item = pystac.Item.from_file(str(tmp_path / "out" / "ndvi.json"))
    assert item.datetime is None
    assert item.common_metadata.start_datetime == dt.datetime(1992, 3, 23,
                                                              tzinfo=dt.timezone.utc)
    assert item.common_metadata.end_datetime == dt.datetime(1992, 4, 8, tzinfo=dt.timezone.utc)
    hrefs = sorted(link.href for link in item.get_links("derived_from"))
    assert hrefs == sorted([str(tmp_path / "red.json"),
                            "https://example.com/items/nir-day.json"])


@pytest.mark.parametrize("failure", ["step fails", "statistics not statistics-like"])
def test_failed_run_leaves_no_item_and_keeps_the_old_one(tmp_path: Path, ls5_item: Path,
                                                         failure: str) -> None:
    if failure == "step fails":
        pipeline = ndvi_pipeline(tmp_path, more="- {name: broken, map: item_ops.fails, "
                                                "inputs: [ndvi]}")
    else:
        pipeline = ndvi_pipeline(tmp_path, stac="{statistics: total}",
                                 more="- {name: total, reduce: item_ops.tile_sum, inputs: [ndvi]}")
    out = tmp_path / "out"
    out.mkdir()
    (out / "ndvi.tif").write_bytes(b"an older image")
    (out / "ndvi.json").write_bytes(b'{"an": "older Item"}\n')
    done = eoscale("run", str(pipeline), "--overwrite", cwd=tmp_path)
    if failure == "step fails":
        assert done.returncode != 0 and "this step fails on purpose" in done.stderr
    else:
        assert done.returncode == EXIT_INVALID_PIPELINE, done.stderr
        assert "pipeline.yaml:15:" in done.stderr  # the line of the statistics key
        assert ("the result of reduce step 'total' gives no statistics for the STAC Item of "
                "'ndvi': expected a list with one mapping of statistics per band") in done.stderr
        assert "Traceback" not in done.stderr
    assert (out / "ndvi.tif").read_bytes() == b"an older image"
    assert (out / "ndvi.json").read_bytes() == b'{"an": "older Item"}\n'
    assert sorted(path.name for path in out.iterdir()) == ["ndvi.json", "ndvi.tif"]


def test_existing_item_is_refused_without_overwrite(tmp_path: Path, ls5_item: Path) -> None:
    pipeline = ndvi_pipeline(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "ndvi.json").write_text("{}")
    done = eoscale("run", str(pipeline), cwd=tmp_path)
    assert done.returncode != 0 and "ndvi.json: already exists" in done.stderr
    assert not (tmp_path / "out" / "ndvi.tif").exists()


@pytest.mark.parametrize("outputs, line, message", [
    ("ndvi: {path: out/ndvi.tif, stac: {statistics: ndvi_stat}}", 11,
     ("the statistics of 'ndvi' come from a reduce step's result, and 'ndvi_stat' is no step "
      "(did you mean 'ndvi_stats'?); reduce steps: ndvi_stats, hist")),
    ("ndvi: {path: out/ndvi.tif, stac: {statistics: ndvi}}", 11,
     "the statistics of 'ndvi' come from a reduce step's result, and 'ndvi' is a map step"),
    ("ndvi: {path: out/ndvi.tif, stac: {statistics: hist}}", 11,
     ("reduce step 'hist' (eoscale.ops.histogram) gives no statistics of 'ndvi' (min, max, "
      "mean, std per band): eoscale.ops.stats does")),
    ("scene: {path: out/scene.tif, stac: {statistics: ndvi_stats}}", 11,
     ("the statistics of 'scene' must be computed on 'scene' alone: reduce step 'ndvi_stats' "
      "reads ndvi")),
    ("ndvi: {path: out/ndvi.tif, stac: true}\nndvi_stats: out/ndvi.json", 11,
     "the STAC Item TMP/out/ndvi.json is also the path of output 'ndvi_stats'"),
    ("ndvi_stats: {path: out/stats.json, stac: true}", 11,
     "'ndvi_stats' is a reduce result, written as JSON: 'stac' is for images only"),
    ("ndvi: {path: out/ndvi.tif, stac: {statistic: ndvi_stats}}", 11,
     "unknown key 'statistic' (did you mean 'statistics'?)"),
])
def test_stac_mistakes_are_refused_at_their_line(tmp_path: Path, outputs: str, line: int,
                                                 message: str) -> None:
    with rasterio.open(tmp_path / "scene.tif", "w", driver="GTiff", width=20, height=10, count=2,
                       dtype="uint16", crs="EPSG:32631",
                       transform=rasterio.Affine(10, 0, 600000, 0, -10, 4800000)) as scene:
        scene.write(np.arange(1, 401, dtype=np.uint16).reshape(2, 10, 20))
    pipeline = write(tmp_path, """
        version: 1
        inputs: {scene: scene.tif}
        steps:
          - {name: ndvi, map: eoscale.ops.band_math, inputs: [scene],
             params: {expression: "(scene[2] - scene[1]) / (scene[2] + scene[1])",
                      dtype: float32}}
          - {name: ndvi_stats, reduce: eoscale.ops.stats, inputs: [ndvi]}
          - {name: hist, reduce: eoscale.ops.histogram, inputs: [ndvi],
             params: {range: [-1, 1]}}
        outputs:
          OUTPUTS
        """.replace("OUTPUTS", outputs.replace("\n", "\n          ")))
    done = eoscale("validate", str(pipeline), cwd=tmp_path)
    assert done.returncode == EXIT_INVALID_PIPELINE, done.stderr
    assert f"pipeline.yaml:{line}:" in done.stderr, done.stderr
    assert message.replace("TMP", str(tmp_path)) in done.stderr
    assert "Traceback" not in done.stderr


def test_example_pipeline_writes_its_ndvi_cog_with_its_item(tmp_path: Path) -> None:
    """pipelines/stac_ndvi.yaml: the sample Item in, an NDVI COG and its Item out."""
    import shutil

    examples = tmp_path / "pipelines"
    shutil.copytree(REPO / "pipelines", examples,
                    ignore=shutil.ignore_patterns("out", "__pycache__"))
    done = eoscale("run", str(examples / "stac_ndvi.yaml"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    image, item_file = examples / "out" / "stac_ndvi.tif", examples / "out" / "stac_ndvi.json"
    item = pystac.Item.from_file(str(item_file))
    source = pystac.Item.from_file(str(examples / "data" / "item.json"))
    assert item.datetime == source.datetime
    check_footprint(item, image)
    check_proj(item, image)
    asset = check_asset(item_file, image, pystac.MediaType.COG)
    with rasterio.open(image) as dataset:
        pixels = dataset.read(1).astype(np.float64)
    valid = pixels[~np.isnan(pixels)]
    stats = asset.extra_fields["raster:bands"][0]["statistics"]
    assert stats["mean"] == pytest.approx(valid.mean(), rel=1e-9)
    assert [link.title for link in item.get_links("derived_from")] == [source.id]
