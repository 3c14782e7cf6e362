"""Image outputs as their long form says: COG (checked by rio-cogeo's validator), overviews on
plain GeoTIFFs, quicklooks (size, alpha against the nodata pixels, colours); ``info --quicklook``."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from rio_cogeo.cogeo import cog_validate

from eoscale import ops
from eoscale.cli.main import cli
from eoscale.io.quicklook import QUICKLOOK_SIZE, colormap_table

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def invoke(runner, *args):
    return runner.invoke(cli, [str(arg) for arg in args])


def read(path):
    with rasterio.open(path) as dataset:
        return dataset.read(), dataset.profile


def scene_ndvi(examples):
    scene, profile = read(examples / "data" / "scene.tif")
    params = {"expression": "(scene[4] - scene[3]) / (scene[4] + scene[3])", "dtype": "float32",
              "_inputs": ["scene"]}
    return scene, profile, ops.band_math([scene], [profile], params)


def test_cog_example_writes_a_valid_cog_with_overviews_and_quicklooks(runner, examples):
    result = invoke(runner, "run", str(examples / "cog_quicklook.yaml"), "-w", "2", "-q")
    assert result.exit_code == 0, result.output
    out = examples / "out"
    cog = out / "ndvi_cog.tif"
    valid, errors, warnings = cog_validate(str(cog))
    assert valid and not errors and not warnings, (errors, warnings)
    scene, _, expected = scene_ndvi(examples)
    with rasterio.open(cog) as dataset:
        assert dataset.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert dataset.overviews(1) == [2]             # 512 px in blocks of 256
        assert dataset.block_shapes[0] == (256, 256)
        np.testing.assert_array_equal(dataset.read(1), np.asarray(expected).reshape(512, 512))
    copy, _ = read(out / "scene_overviews.tif")
    np.testing.assert_array_equal(copy, scene)
    with rasterio.open(out / "scene_overviews.tif") as dataset:
        assert dataset.overviews(1) == [2, 4, 8]
        assert dataset.tags(ns="rio_overview")["resampling"] == "average"
    # the quicklooks: the NDVI's beside it (default name), the scene's where it is asked for
    ndvi_png, _ = read(out / "ndvi_cog.png")
    assert ndvi_png.shape == (4, 512, 512)
    np.testing.assert_array_equal(ndvi_png[3] == 255, np.isfinite(expected).reshape(512, 512))
    scene_png, _ = read(out / "scene_rgb.png")
    assert scene_png.shape == (4, 400, 400)
    assert sorted(path.name for path in out.iterdir()) == [
        "ndvi_cog.png", "ndvi_cog.tif", "scene_overviews.tif", "scene_rgb.png"]


def test_one_band_quicklook_is_the_colormap_stretched_between_2nd_and_98th_percentiles(
        runner, examples):
    result = invoke(runner, "run", str(examples / "cog_quicklook.yaml"), "-w", "1", "-q")
    assert result.exit_code == 0, result.output
    _, _, ndvi = scene_ndvi(examples)
    values = np.asarray(ndvi).reshape(512, 512)
    png, _ = read(examples / "out" / "ndvi_cog.png")
    low, high = np.percentile(values[np.isfinite(values)], [2, 98])
    table = colormap_table("viridis")
    for where, colour in ((values >= high, table[255]), (values <= low, table[0])):
        assert where.any()
        np.testing.assert_array_equal(png[:3, where].T, np.broadcast_to(colour, (where.sum(), 3)))
    assert (png[:, ~np.isfinite(values)] == 0).all()    # transparent and black


def test_overviews_resample_integers_with_nearest_and_floats_with_average(runner, tmp_path):
    rng = np.random.default_rng(5)
    classes = rng.choice(np.array([1, 7, 200], np.uint8), size=(1, 64, 64))
    field = rng.random((1, 64, 64)).astype(np.float32)
    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 1, "crs": "EPSG:32631",
               "transform": Affine(10, 0, 0, 0, -10, 640)}
    for name, array in (("classes", classes), ("field", field)):
        with rasterio.open(tmp_path / f"{name}.tif", "w", dtype=array.dtype, **profile) as out:
            out.write(array)
    pipeline = {
        "version": 1, "inputs": {"classes": "classes.tif", "field": "field.tif"},
        "steps": [{"name": "same", "map": "eoscale.ops.select_bands", "inputs": ["classes"],
                   "params": {"bands": [1]}}],
        "outputs": {"classes": {"path": "out/classes.tif", "overviews": [2, 4]},
                    "field": {"path": "out/field.tif", "overviews": [2]}}}
    (tmp_path / "overviews.yaml").write_text(yaml.safe_dump(pipeline))
    result = invoke(runner, "run", str(tmp_path / "overviews.yaml"), "-q")
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "out" / "classes.tif") as dataset:
        assert dataset.overviews(1) == [2, 4]
        assert set(np.unique(dataset.read(1, out_shape=(16, 16)))) <= {1, 7, 200}
    with rasterio.open(tmp_path / "out" / "field.tif") as dataset:
        mean = field[0].reshape(32, 2, 32, 2).mean(axis=(1, 3), dtype=np.float64)
        np.testing.assert_allclose(dataset.read(1, out_shape=(32, 32)), mean, rtol=1e-6)


def test_a_cog_uses_the_overviews_asked_for(runner, examples):
    pipeline = {"version": 1, "inputs": {"dsm": "data/dsm.tif"},
                "steps": [{"name": "copy", "map": "eoscale.ops.select_bands", "inputs": ["dsm"],
                           "params": {"bands": [1]}}],
                "outputs": {"copy": {"path": "out/dsm_cog.tif", "format": "COG",
                                     "overviews": [2, 4], "resampling": "nearest",
                                     "options": {"compress": "lzw"}}}}
    (examples / "cog.yaml").write_text(yaml.safe_dump(pipeline))
    result = invoke(runner, "run", examples / "cog.yaml", "-q")
    assert result.exit_code == 0, result.output
    cog = examples / "out" / "dsm_cog.tif"
    assert cog_validate(str(cog))[0]
    dsm, _ = read(examples / "data" / "dsm.tif")
    with rasterio.open(cog) as dataset:
        assert dataset.overviews(1) == [2, 4] and dataset.compression.value == "LZW"
        np.testing.assert_array_equal(dataset.read(), dsm)
        overview = dataset.read(1, out_shape=(128, 128))
    blocks = dsm[0].reshape(128, 4, 128, 4)          # nearest: each value is one of its block's
    assert (blocks == overview[:, None, :, None]).any(axis=(1, 3)).all()
    assert sorted(path.name for path in (examples / "out").iterdir()) == ["dsm_cog.tif"]


def test_a_quicklook_of_a_band_the_output_lacks_is_an_error_naming_it(runner, examples):
    """Refused before anything is computed (exit 3, the output's line), as the plan knows the
    output's band count."""
    text = (examples / "cog_quicklook.yaml").read_text()
    (examples / "bands.yaml").write_text(text.replace("quicklook: true", "quicklook: {bands: [2]}"))
    result = invoke(runner, "run", examples / "bands.yaml", "-w", "1")
    assert result.exit_code == 3
    assert ("output 'ndvi' (quicklook): a quicklook cannot show band 2: the raster has 1 band"
            in result.output), result.output
    assert "bands.yaml:" in result.output
    assert not (examples / "out").exists()


def test_an_existing_quicklook_is_refused_before_computing(runner, examples):
    (examples / "out").mkdir()
    (examples / "out" / "ndvi_cog.png").write_bytes(b"mine")
    result = invoke(runner, "run", str(examples / "cog_quicklook.yaml"), "-w", "1")
    assert result.exit_code == 1
    assert "ndvi_cog.png: already exists (use --overwrite" in result.output
    assert sorted(path.name for path in (examples / "out").iterdir()) == ["ndvi_cog.png"]


def test_a_failed_run_leaves_no_cog_quicklook_or_temporary(runner, examples):
    text = (examples / "cog_quicklook.yaml").read_text()
    failing = text.replace("outputs:\n", "  - name: broken\n    map: example_ops.ndvi\n"
                                         "    inputs: [ndvi]\n    params: {red: 7, nir: 9}\n\n"
                                         "outputs:\n", 1)
    (examples / "failing.yaml").write_text(failing)
    result = invoke(runner, "run", str(examples / "failing.yaml"), "-w", "1")
    assert result.exit_code == 1, result.output
    assert "step 'broken'" in result.output
    assert not (examples / "out").exists()


@pytest.mark.usefixtures("shared_data")
def test_info_quicklook_of_a_large_raster_with_nan_nodata(runner, shared_data, tmp_path):
    source = shared_data / "nz_elev.tif"            # 1115 x 1450, NaN sea (83.4 %)
    target = tmp_path / "nz.png"
    result = invoke(runner, "info", str(source), "--quicklook", str(target), "--colormap",
                    "magma")
    assert result.exit_code == 0, result.output
    png, _ = read(target)
    with rasterio.open(source) as dataset:
        width, height = dataset.width, dataset.height
        nan_share = np.isnan(dataset.read(1)).mean()
    assert png.shape[1] == QUICKLOOK_SIZE                   # the longest side, rows here
    assert png.shape[2] == round(width * QUICKLOOK_SIZE / height)
    assert abs((png[3] == 0).mean() - nan_share) < 0.01
    assert set(np.unique(png[3])) == {0, 255}
    assert [path.name for path in tmp_path.iterdir()] == ["nz.png"]   # no .aux.xml, no temporary
    again = invoke(runner, "info", str(source), "--quicklook", str(target))
    assert again.exit_code == 1 and "already exists" in again.output
    assert invoke(runner, "info", str(source), "--quicklook", str(target),
                  "--overwrite").exit_code == 0


@pytest.mark.usefixtures("shared_data")
def test_info_quicklook_rgb_collar_is_transparent(runner, shared_data, tmp_path):
    source = shared_data / "RGB.byte.tif"           # 791 x 718, nodata 0 collar
    result = invoke(runner, "info", str(source), "--quicklook", str(tmp_path / "rgb.png"))
    assert result.exit_code == 0, result.output
    png, _ = read(tmp_path / "rgb.png")
    with rasterio.open(source) as dataset:
        valid = (dataset.read_masks() > 0).all(axis=0)   # a pixel nodata in any band shown
    assert png.shape == (4, 718, 791)                # smaller than 1024: not decimated
    np.testing.assert_array_equal(png[3] == 255, valid)


@pytest.mark.parametrize("args, code, message", [
    (["--quicklook", "out.jpg"], 2, "a quicklook is a PNG"),
    (["--quicklook", "out.png", "--bands", "1,2"], 2, "expected one band or three"),
    (["--quicklook", "out.png", "--bands", "4"], 1, "cannot show band 4: the raster has 1 band"),
    (["--quicklook", "out.png", "--colormap", "jet"], 2, "'jet' is not one of"),
])
def test_info_quicklook_bad_options(runner, examples, tmp_path, args, code, message):
    result = invoke(runner, "info", str(examples / "data" / "dsm.tif"),
                    *[str(tmp_path / arg) if arg.startswith("out") else arg for arg in args])
    assert result.exit_code == code
    assert message in result.output
    assert not list(tmp_path.glob("*.png"))
