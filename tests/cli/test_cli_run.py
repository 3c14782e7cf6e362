"""``eoscale run``: every example pipeline, checked against numpy on the whole image; every flag."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from eoscale.cli.main import cli


def ops_module(folder):
    spec = importlib.util.spec_from_file_location("example_ops_reference", folder / "example_ops.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(path):
    with rasterio.open(path) as src:
        return src.read(), src.profile


def test_quickstart_outputs_match_numpy(runner, examples):
    result = runner.invoke(cli, ["run", str(examples / "quickstart.yaml"), "--tile-size", "100"])
    assert result.exit_code == 0, result.output
    assert "wrote smooth" in result.output and "wrote stats" in result.output
    ops = ops_module(examples)
    scene, profile = read(examples / "data" / "scene.tif")
    ndvi = ops.ndvi([scene], [profile], {"red": 3, "nir": 4})
    expected = ops.smooth([ndvi[np.newaxis]], [], {"size": 5})
    smooth, out_profile = read(examples / "out" / "ndvi_smooth.tif")
    np.testing.assert_array_equal(smooth[0], expected[0])
    assert out_profile["dtype"] == "float32" and np.isnan(out_profile["nodata"])
    assert out_profile["compress"] == "deflate" and out_profile["blockxsize"] == 512
    stats = json.loads((examples / "out" / "ndvi_stats.json").read_text())
    valid = expected[~np.isnan(expected)].astype(np.float64)
    assert stats["step"] == "stats" and stats["inputs"] == ["smooth"]
    assert stats["result"]["count"] == valid.size
    assert stats["result"]["min"] == pytest.approx(valid.min())
    assert stats["result"]["mean"] == pytest.approx(valid.mean(), rel=1e-9)
    assert stats["result"]["std"] == pytest.approx(valid.std(), rel=1e-6)


def test_eoscale1_chain_matches_numpy(runner, examples):
    result = runner.invoke(cli, ["run", str(examples / "eoscale1_chain.yaml"), "-w", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert result.output == ""
    ops = ops_module(examples)
    dsm, profile = read(examples / "data" / "dsm.tif")
    mask = ops.nodata_mask([dsm], [profile], {})
    filled = ops.fill_holes([dsm, mask], [profile, {}], {"max_distance": 100})
    mean = ops.mean_3x3([filled[np.newaxis]], [], {})
    written, out_profile = read(examples / "out" / "dsm_filled_mean.tif")
    assert out_profile["compress"] == "zstd" and out_profile["blockxsize"] == 512  # over defaults
    # scipy's uniform filter is a running sum: its float rounding depends on where a line starts
    np.testing.assert_allclose(written, mean, rtol=1e-6)
    assert not (written == profile["nodata"]).any()
    minmax = json.loads((examples / "out" / "dsm_minmax.json").read_text())["result"]
    assert minmax["min"] == pytest.approx(float(written.min()))
    assert minmax["max"] == pytest.approx(float(written.max()))


def test_band_split_histogram_and_reference_to_a_reduce_result(runner, examples):
    result = runner.invoke(cli, ["run", str(examples / "band_split.yaml"), "--tiling", "strips"])
    assert result.exit_code == 0, result.output
    scene, profile = read(examples / "data" / "scene.tif")
    red, _ = read(examples / "out" / "red.tif")
    nir, _ = read(examples / "out" / "nir.tif")
    assert np.array_equal(red[0], scene[2]) and np.array_equal(nir[0], scene[3])
    histogram = json.loads((examples / "out" / "nir_histogram.json").read_text())["result"]
    values = scene[3][scene[3] != 0]
    assert histogram["counts"] == np.histogram(values, bins=64, range=(0, 6400))[0].tolist()
    stretched, _ = read(examples / "out" / "red_stretched.tif")
    low, high = float(scene[2].min()), float(scene[2].max())
    expected = np.clip((scene[2].astype(np.float32) - low) / (high - low) * 255.0, 0, 255)
    assert np.array_equal(stretched[0], expected.astype(np.uint8))


def test_flags_override_the_file(runner, examples, tmp_path):
    other = tmp_path / "other.tif"
    scene, profile = read(examples / "data" / "scene.tif")
    with rasterio.open(other, "w", **profile) as dst:
        dst.write(scene[:, :, ::-1].copy())  # a mirrored scene on the same grid
    out = tmp_path / "custom" / "smooth.tif"
    result = runner.invoke(cli, [
        "run", str(examples / "quickstart.yaml"), "--input", f"scene={other}",
        "--output", f"smooth={out}", "--param", "smooth.size=3", "--param", "ndvi.red=2",
        "--workers", "3", "--tile-size", "64", "--tiling", "tiles"])
    assert result.exit_code == 0, result.output
    ops = ops_module(examples)
    ndvi = ops.ndvi([scene[:, :, ::-1]], [profile], {"red": 2, "nir": 4})
    expected = ops.smooth([ndvi[np.newaxis]], [], {"size": 3})
    written, _ = read(out)
    np.testing.assert_array_equal(written, expected)


def test_never_replaces_an_output_without_overwrite(runner, examples):
    args = ["run", str(examples / "quickstart.yaml"), "-q"]
    assert runner.invoke(cli, args).exit_code == 0
    target = examples / "out" / "ndvi_smooth.tif"
    before = target.read_bytes()
    result = runner.invoke(cli, args + ["--param", "smooth.size=9"])
    assert result.exit_code == 1
    assert ("ndvi_smooth.tif: already exists (use --overwrite, or overwrite=True from Python, to "
            "replace it)") in result.output
    assert target.read_bytes() == before
    result = runner.invoke(cli, args + ["--param", "smooth.size=9", "--overwrite"])
    assert result.exit_code == 0 and target.read_bytes() != before
    assert sorted(p.name for p in (examples / "out").iterdir()) == ["ndvi_smooth.tif", "ndvi_stats.json"]


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "Invalid value for '-w' / '--workers': 0 is not in the range x>=1"),
    (["--tile-size", "-5"], "Invalid value for '--tile-size'"),
    (["--tiling", "hexagons"], "Invalid value for '--tiling'"),
    (["--input", "scene"], "expected NAME=PATH, got 'scene'"),
    (["--param", "size=3"], "expected STEP.KEY=VALUE"),
])
def test_usage_errors_exit_2(runner, examples, args, message):
    result = runner.invoke(cli, ["run", str(examples / "quickstart.yaml"), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_unknown_override_names_are_pipeline_errors(runner, examples):
    result = runner.invoke(cli, ["run", str(examples / "quickstart.yaml"),
                                 "--input", "scen=x.tif", "--param", "smooth.size=3"])
    assert result.exit_code == 3
    assert "unknown input 'scen'" in result.output and "did you mean 'scene'" in result.output


def test_callable_error_exits_1_with_step_tile_and_user_frames(runner, examples):
    (examples / "broken_ops.py").write_text(
        "def explode(arrays, profiles, params):\n"
        "    raise RuntimeError('bad pixel')\n")
    (examples / "broken.yaml").write_text(
        "version: 1\ninputs: {scene: data/scene.tif}\n"
        "steps:\n  - {name: boom, map: broken_ops.explode, inputs: [scene]}\n"
        "outputs: {boom: out/boom.tif}\n")
    result = runner.invoke(cli, ["run", str(examples / "broken.yaml"), "-w", "1"])
    assert result.exit_code == 1
    assert "error: step 'boom', tile 0 (rows 0:" in result.output
    assert "RuntimeError: bad pixel" in result.output
    assert 'broken_ops.py", line 2, in explode' in result.output
    assert "eoscale/engine" not in result.output
    assert not (examples / "out" / "boom.tif").exists()
    verbose = runner.invoke(cli, ["run", str(examples / "broken.yaml"), "-w", "1", "-v"])
    assert "eoscale/engine" in verbose.output  # -v shows our frames too


def test_python_api_mirrors_the_cli(examples, tmp_path):
    import eoscale

    result = eoscale.run(examples / "quickstart.yaml", workers=2, tile_size=128,
                         outputs={"smooth": str(tmp_path / "api.tif")}, params={"smooth.size": 3})
    assert result.written["smooth"] == tmp_path / "api.tif"
    assert result.results["stats"]["count"] > 0
    assert eoscale.validate(examples / "quickstart.yaml") == []
    problems = eoscale.validate(examples / "quickstart.yaml", inputs={"nope": "x.tif"})
    assert any("unknown input 'nope'" in str(p) for p in problems)
    spec = eoscale.load(examples / "quickstart.yaml", workers=5)
    assert spec.workers == 5


def test_run_from_a_mapping(tmp_path, examples):
    import eoscale

    document = {
        "version": 1, "inputs": {"scene": str(examples / "data" / "scene.tif")},
        "steps": [{"name": "nir", "map": "example_ops.split_bands", "inputs": ["scene"],
                   "profile": "example_ops.split_profiles", "outputs": ["b1", "b2", "b3", "b4"]}],
        "outputs": {"b4": str(tmp_path / "b4.tif")},
    }
    sys.path.insert(0, str(examples))
    try:
        eoscale.run(document, workers=1)
    finally:
        sys.path.remove(str(examples))
    written, _ = read(tmp_path / "b4.tif")
    scene, _ = read(examples / "data" / "scene.tif")
    assert np.array_equal(written[0], scene[3])


def whole(op, arrays, profiles, params=None):
    """An op run on whole images, as a reference (no tiles)."""
    return op(arrays, profiles, dict(params or {}))


def test_builtin_indices_pipeline_matches_numpy(runner, examples):
    from eoscale import ops

    result = runner.invoke(cli, ["run", str(examples / "builtin_indices.yaml"), "-w", "2",
                                 "--tile-size", "96"])
    assert result.exit_code == 0, result.output
    scene, profile = read(examples / "data" / "scene.tif")
    red, nir = scene[2].astype(np.float64), scene[3].astype(np.float64)
    with np.errstate(all="ignore"):
        ndvi = ((nir - red) / (nir + red)).astype(np.float32)
    ndvi[(scene[2] == 0) | (scene[3] == 0)] = np.nan
    nan_profile = dict(profile, count=1, dtype="float32", nodata=float("nan"))
    smooth = whole(ops.gaussian_filter, [ndvi[np.newaxis]], [nan_profile],
                   {"sigma": 1.0, "truncate": 2.0})
    written, _ = read(examples / "out" / "ndvi_gaussian.tif")
    np.testing.assert_array_equal(written, smooth)
    valid = smooth[~np.isnan(smooth)].astype(np.float64)
    stats = json.loads((examples / "out" / "ndvi_stats_builtin.json").read_text())["result"][0]
    assert stats["count"] == valid.size and stats["min"] == valid.min() and stats["max"] == valid.max()
    assert stats["mean"] == pytest.approx(valid.mean(), rel=1e-9)
    histogram = json.loads((examples / "out" / "ndvi_histogram.json").read_text())["result"][0]
    assert histogram["counts"] == np.histogram(valid, bins=50, range=(valid.min(), valid.max()))[0].tolist()
    percentiles = json.loads((examples / "out" / "ndvi_percentiles.json").read_text())["result"][0]
    bound = (valid.max() - valid.min()) / (2 * 65536)
    assert np.allclose(percentiles, np.percentile(valid, [2, 50, 98]), atol=bound, rtol=0)
    stacked, stacked_profile = read(examples / "out" / "rgb_ndvi.tif")
    assert stacked.shape == (4, 512, 512) and stacked_profile["nodata"] == 0
    assert np.array_equal(stacked[:3], scene[[2, 1, 0]])
    scaled = np.rint(smooth[0].astype(np.float64) * 100 + 100)
    expected_byte = np.where(np.isnan(smooth[0]), 0, np.clip(scaled, 0, 255))
    assert np.array_equal(stacked[3], expected_byte.astype(np.uint8))


def test_builtin_terrain_pipeline_matches_whole_image_ops(runner, examples):
    from eoscale import ops

    result = runner.invoke(cli, ["run", str(examples / "builtin_terrain.yaml"), "-w", "3",
                                 "--tile-size", "80", "--tiling", "strips"])
    assert result.exit_code == 0, result.output
    dsm, profile = read(examples / "data" / "dsm.tif")
    filled = whole(ops.fill_nodata, [dsm], [profile], {"max_distance": 50})
    median = whole(ops.median_filter, [filled], [profile], {"size": 3})
    median_profile = dict(profile, dtype=median.dtype.name)
    smooth = whole(ops.mean_filter, [median], [median_profile], {"size": 5})
    smooth_profile = dict(profile, dtype=smooth.dtype.name)
    for name, op, params in [("slope", ops.slope, {}), ("aspect", ops.aspect, {}),
                             ("hillshade", ops.hillshade, {"azimuth": 315, "altitude": 45})]:
        written, _ = read(examples / "out" / f"{name}.tif")
        np.testing.assert_array_equal(written, whole(op, [smooth], [smooth_profile], params))
    opened = whole(ops.max_filter, [whole(ops.min_filter, [smooth], [smooth_profile], {"size": 7})],
                   [smooth_profile], {"size": 7})
    np.testing.assert_array_equal(read(examples / "out" / "dsm_opened.tif")[0], opened)
    shade, _ = read(examples / "out" / "hillshade.tif")
    classes = (shade[shade != 0] // 32)
    counts = json.loads((examples / "out" / "hillshade_classes.json").read_text())["result"][0]
    values, numbers = np.unique(classes, return_counts=True)
    assert {str(v): int(n) for v, n in zip(values, numbers)} == counts


def test_single_margin_free_reader_streams_its_input(examples):
    import eoscale

    (examples / "ndvi_only.yaml").write_text(
        "version: 1\ninputs: {scene: data/scene.tif}\n"
        "steps:\n  - {name: ndvi, map: example_ops.ndvi, inputs: [scene], "
        "params: {red: 3, nir: 4}, profile: example_ops.ndvi_profile}\n"
        "outputs: {ndvi: out/streamed.tif}\n")
    result = eoscale.run(examples / "ndvi_only.yaml", workers=2)
    kinds = [(r.kind, r.name) for r in result.reports]
    assert ("load", "scene") not in kinds  # ndvi, its only reader, has no margin
    assert kinds[0] == ("map", "ndvi")
    result = eoscale.run(examples / "eoscale1_chain.yaml", workers=2,
                         outputs={"mean": str(examples / "out" / "loaded.tif")})
    assert ("load", "dsm") in [(r.kind, r.name) for r in result.reports]  # two readers


def test_a_result_that_is_not_json_is_a_clear_error(runner, examples):
    (examples / "odd_ops.py").write_text(
        "def tile(arrays, profiles, params):\n    return 1\n\n"
        "def merge(a, b):\n    return a + b\n\n"
        "def finish(total, params):\n    return {1, 2}\n")
    (examples / "odd.yaml").write_text(
        "version: 1\ninputs: {scene: data/scene.tif}\n"
        "steps:\n  - {name: odd, reduce: odd_ops.tile, combine: odd_ops.merge, "
        "finalize: odd_ops.finish, inputs: [scene]}\n"
        "outputs: {odd: out/odd.json}\n")
    result = runner.invoke(cli, ["run", str(examples / "odd.yaml"), "-w", "1"])
    assert result.exit_code == 1
    assert "step 'odd': its result cannot be written as JSON" in result.output
    assert "Traceback" not in result.output and not (examples / "out" / "odd.json").exists()


def _mean_pipeline(folder: Path) -> None:
    """A small raster and a pipeline of one mean filter over it, ``p.yaml``, in ``folder``."""
    with rasterio.open(folder / "in.tif", "w", driver="GTiff", height=8, width=8, count=1,
                       dtype="uint8") as dst:
        dst.write(np.ones((1, 8, 8), dtype=np.uint8))
    (folder / "p.yaml").write_text(
        "version: 1\ninputs: {a: in.tif}\n"
        "steps: [{name: m, map: eoscale.ops.mean_filter, inputs: [a], params: {size: 3}}]\n"
        "outputs: {m: out.tif}\n", encoding="utf-8")


def test_a_missing_scratch_folder_is_refused_before_the_cluster_is_asked(tmp_path):
    """The scratch folder holds the run's journal: refused at once, naming it, not after
    connecting (here to an address where no scheduler listens, which would fail otherwise)."""
    _mean_pipeline(tmp_path)
    done = subprocess.run([sys.executable, "-m", "eoscale", "run", "p.yaml", "--cluster",
                           "tcp://127.0.0.1:1", "--scratch", str(tmp_path / "nosuch")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert f"scratch folder {tmp_path / 'nosuch'} does not exist (--scratch, 'scratch:')" in \
        done.stderr
    assert "scheduler" not in done.stderr and not (tmp_path / "out.tif").exists()


def test_the_summary_s_first_line_is_never_wrapped(tmp_path):
    """In a log 40 columns wide, the line with the run's time and peak stays one line."""
    _mean_pipeline(tmp_path)
    done = subprocess.run([sys.executable, "-m", "eoscale", "run", "p.yaml", "-w", "2"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "40"})
    assert done.returncode == 0, done.stderr
    assert any(re.fullmatch(r"done in [\d.]+ s, peak memory [\d.]+ \w+ \(estimated [\d.]+ \w+\)",
                            line) for line in done.stdout.splitlines()), done.stdout


def test_warnings_are_one_line_each_naming_the_user_s_code_not_a_library_s(tmp_path):
    """An input without georeferencing: rasterio's warning once per message, without its own
    source line; a user's callable warning: its file and line."""
    with rasterio.open(tmp_path / "in.tif", "w", driver="GTiff", height=60, width=50, count=1,
                       dtype="float32") as dst:
        dst.write(np.arange(3000, dtype=np.float32).reshape(1, 60, 50))
    (tmp_path / "warned.py").write_text(
        "import numpy as np\n\n\ndef logged(arrays, profiles, params):\n"
        "    return np.log(arrays[0] - 10)\n", encoding="utf-8")
    (tmp_path / "p.yaml").write_text(
        "version: 1\ninputs: {a: in.tif}\nsteps:\n  - {name: s, map: warned.logged, inputs: [a]}\n"
        "outputs: {s: out.tif}\n", encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "eoscale", "run", "p.yaml", "-q", "-w", "1"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    said = "warning: NotGeoreferencedWarning: Dataset has no geotransform, gcps, or rpcs."
    assert sum(line.startswith(said) for line in lines) == 1, run.stderr
    assert (f"warning: RuntimeWarning: invalid value encountered in log "
            f"({tmp_path / 'warned.py'}:5)") in lines, run.stderr
    assert all(line.startswith("warning: ") for line in lines), run.stderr
