"""Inputs read over HTTP (through GDAL's /vsicurl/, from the test server on 127.0.0.1), from zips
and VRTs: the same pipelines give the same outputs as from disk; addresses that do not answer are
clear errors naming them, never showing a password; a pipeline's ``gdal:`` options reach every
worker."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from remote_helpers import SAMPLE

import eoscale
from eoscale.cli.main import cli
from eoscale.engine import auto_tile_size
from eoscale.errors import ConfigError
from eoscale.io.paths import worker_start_method
from eoscale.io.raster import read_profile
from eoscale.pipeline import load_pipeline
from eoscale.pipeline.runner import run_pipeline

PIPELINES = SAMPLE.parent

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
READDIR = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def run_both(pipeline: str, input_name: str, address: str, local: Path, tmp_path: Path,
             **kwargs) -> tuple[dict, dict]:
    """Run a pipeline once on ``address`` and once on ``local``; the written files of each."""
    written = []
    for label, source in (("remote", address), ("local", local)):
        spec = load_pipeline(PIPELINES / pipeline)
        outputs = {name: str(tmp_path / label / output.path.name)
                   for name, output in spec.outputs.items()}
        result = eoscale.run(PIPELINES / pipeline, inputs={input_name: str(source)},
                             outputs=outputs, workers=2, **kwargs)
        written.append(dict(result.written))
    return written[0], written[1]


def assert_same_files(remote: dict, local: dict) -> None:
    assert remote.keys() == local.keys() and remote
    for name, path in remote.items():
        assert path.read_bytes() == local[name].read_bytes(), name


def test_a_pipeline_over_http_writes_the_same_files_as_from_disk(served, tmp_path):
    # quickstart streams its input (one reader, no margin): each worker reads its own windows
    remote, local = run_both("quickstart.yaml", "scene", f"{served.url}/scene.tif",
                             SAMPLE / "scene.tif", tmp_path)
    assert_same_files(remote, local)
    ranged = [entry for entry in served.log() if entry["status"] == 206]
    assert ranged and all(entry["path"] == "/scene.tif" for entry in ranged)


def test_an_input_loaded_whole_over_http_gives_the_same_files(served, tmp_path):
    # EOScale 1.0's chain reads the surface model with a margin: workers load it into memory
    remote, local = run_both("eoscale1_chain.yaml", "dsm", f"{served.url}/dsm.tif",
                             SAMPLE / "dsm.tif", tmp_path)
    assert_same_files(remote, local)


def test_a_remote_cog_is_read_in_windows_aligned_to_its_blocks(served, tmp_path):
    url = f"{served.url}/scene_cog.tif"
    profile = read_profile(url)
    with rasterio.open(served.folder / "scene_cog.tif") as dataset:
        assert profile["block_shape"] == dataset.block_shapes[0] == (128, 128)
    for workers in (1, 2, 4):
        size = auto_tile_size(profile["height"], profile["width"], workers, 0, "tiles",
                              profile["block_shape"])
        assert size % 128 == 0
    remote, local = run_both("builtin_indices.yaml", "scene", url,
                             served.folder / "scene_cog.tif", tmp_path)
    assert_same_files(remote, local)


@pytest.mark.parametrize("address, fetched", [
    ("/vsizip/{folder}/scene.zip/inside/scene.tif", set()),
    ("/vsizip//vsicurl/{url}/scene.zip/inside/scene.tif", {"/scene.zip"}),
    ("{url}/scene.vrt", {"/scene.vrt", "/scene.tif"}),
    ("{folder}/scene.vrt", set()),
])
def test_zips_and_vrts_local_or_remote(served, tmp_path, address, fetched):
    address = address.format(folder=served.folder, url=served.url)
    remote, local = run_both("quickstart.yaml", "scene", address, SAMPLE / "scene.tif", tmp_path)
    assert_same_files(remote, local)
    assert {entry["path"] for entry in served.log() if entry["status"] == 206} == fetched


def test_the_virtual_input_example_over_http_and_from_disk(served, tmp_path):
    # the example's VRT, served beside the scene it names: its source is read over HTTP too
    (served.folder / "red_nir.vrt").write_text((SAMPLE / "red_nir.vrt").read_text())
    remote, local = run_both("virtual_input.yaml", "rednir", f"{served.url}/red_nir.vrt",
                             SAMPLE / "red_nir.vrt", tmp_path)
    assert_same_files(remote, local)
    assert {"/red_nir.vrt", "/scene.tif"} <= {entry["path"] for entry in served.log()
                                               if entry["status"] in (200, 206)}
    with rasterio.open(SAMPLE / "scene.tif") as dataset:
        scene = dataset.read()
    with rasterio.open(local["ndvi"]) as dataset:
        ndvi = dataset.read(1)
    red, nir = scene[2].astype(np.float64), scene[3].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = ((nir - red) / (nir + red)).astype(np.float32)
    expected[(scene[2] == 0) | (scene[3] == 0)] = np.nan
    np.testing.assert_array_equal(ndvi, expected)
    assert local["ndvi"].with_suffix(".png").is_file()


def test_info_and_validate_accept_urls(served, tmp_path):
    url = f"{served.url}/scene_cog.tif"
    result = invoke("info", url, "--json")
    assert result.exit_code == 0, result.output
    meta = json.loads(result.output)
    local = json.loads(invoke("info", served.folder / "scene_cog.tif", "--json").output)
    assert meta == {**local, "path": url}
    assert meta["block_shape"] == [128, 128]
    pipeline = tmp_path / "remote.yaml"
    text = (PIPELINES / "quickstart.yaml").read_text()
    pipeline.write_text(text.replace("data/scene.tif", url))
    (tmp_path / "example_ops.py").write_text((PIPELINES / "example_ops.py").read_text())
    result = invoke("validate", pipeline)
    assert result.exit_code == 0, result.output
    stats = invoke("info", url, "--json", "--stats", "-w", "2")
    local_stats = invoke("info", served.folder / "scene_cog.tif", "--json", "--stats", "-w", "2")
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.output)["stats"] == json.loads(local_stats.output)["stats"]
    result = invoke("info", url, "--quicklook", tmp_path / "scene.png", "--bands", "3,2,1")
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "scene.png") as png:
        assert (png.count, png.height, png.width) == (4, 512, 512)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("path", ["missing.tif", "private/../nothing/here.tif"])
def test_an_address_that_does_not_answer_is_an_error_naming_it(served, tmp_path, path):
    for url in (f"{served.url}/{path}", f"http://127.0.0.1:{closed_port()}/scene.tif"):
        result = invoke("info", url)
        assert result.exit_code == 1
        assert f"cannot open {url}: unreachable, missing or not a raster" in result.output
        assert "Traceback" not in result.output


def test_validate_and_run_name_the_input_and_its_address_before_computing(served, tmp_path):
    url = f"{served.url}/missing.tif"
    pipeline = tmp_path / "remote.yaml"
    pipeline.write_text((PIPELINES / "quickstart.yaml").read_text().replace("data/scene.tif", url))
    (tmp_path / "example_ops.py").write_text((PIPELINES / "example_ops.py").read_text())
    for command in ("validate", "run"):
        result = invoke(command, pipeline)
        assert result.exit_code == 1, result.output   # a failure of the run, not of the file
        assert f"remote.yaml:8:10, inputs -> scene: cannot open {url}" in result.output
        assert "HTTP response code: 404" in result.output
    assert not (tmp_path / "out").exists()


def test_credentials_in_an_address_work_and_never_show(served, tmp_path):
    good = served.url.replace("http://", "http://reader:s3cret@") + "/private/scene.tif"
    remote, local = run_both("quickstart.yaml", "scene", good, SAMPLE / "scene.tif", tmp_path)
    assert_same_files(remote, local)
    result = invoke("info", good, "--json")
    assert result.exit_code == 0 and "s3cret" not in result.output and "reader" not in result.output
    bad = good.replace("s3cret", "guessed")
    result = invoke("info", bad)
    assert result.exit_code == 1
    assert f"cannot open {served.url}/private/scene.tif" in result.output
    assert "401" in result.output and "guessed" not in result.output


def test_s3_addresses_are_not_mangled(monkeypatch):
    monkeypatch.setenv("AWS_NO_SIGN_REQUEST", "NO")
    monkeypatch.setenv("AWS_S3_ENDPOINT", "127.0.0.1:9")      # nothing listens: no other network
    monkeypatch.setenv("AWS_HTTPS", "NO")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    result = invoke("info", "s3://bucket/key/scene.tif")
    assert result.exit_code == 1
    assert "cannot open s3://bucket/key/scene.tif" in result.output


@pytest.mark.parametrize("start_method, workers", [("spawn", 2), (None, 2), (None, 1)])
def test_gdal_options_reach_every_worker(served, tmp_path, start_method, workers):
    agent = f"eoscale-test-{start_method}"
    pipeline = tmp_path / "agent.yaml"
    text = (PIPELINES / "quickstart.yaml").read_text().replace("data/scene.tif",
                                                               f"{served.url}/scene.tif")
    pipeline.write_text(text + f"\ngdal:\n  GDAL_HTTP_USERAGENT: {agent}\n"
                               "  GDAL_DISABLE_READDIR_ON_OPEN: EMPTY_DIR\n")
    (tmp_path / "example_ops.py").write_text((PIPELINES / "example_ops.py").read_text())
    spec = load_pipeline(pipeline, overrides=eoscale.api.overrides(workers=workers,
                                                                   tile_size=128))
    run_pipeline(spec, start_method=start_method)
    requests = served.log()
    pixel_reads = [entry for entry in requests if entry["range"] != "bytes=0-16383"]
    assert len(pixel_reads) >= 2                         # the workers' windows, 16 tiles
    assert {entry["agent"] for entry in requests} == {agent}
    assert all(entry["path"] == "/scene.tif" for entry in requests)   # no folder listing
    (tmp_path / "out").rename(tmp_path / "with_options")
    pipeline.write_text(text)
    run_pipeline(load_pipeline(pipeline, overrides=eoscale.api.overrides(workers=workers)),
                 start_method=start_method)
    assert agent not in {entry["agent"] for entry in served.log()}    # the control


def test_workers_reading_an_address_are_never_forked(served, tmp_path):
    # a forked worker would share the parent's open HTTP connection and read others' answers
    spec = load_pipeline(PIPELINES / "quickstart.yaml", overrides=eoscale.api.overrides(
        inputs={"scene": f"{served.url}/scene.tif"}, outputs={"smooth": str(tmp_path / "s.tif")},
        workers=2))
    with pytest.raises(ConfigError, match=f"workers reading {served.url}/scene.tif cannot be "
                                          "forked: they would share GDAL's open connections"):
        run_pipeline(spec, start_method="fork")
    assert worker_start_method([f"{served.url}/scene.tif"], None) == "forkserver"
    assert worker_start_method([SAMPLE / "scene.tif"], None) is None


def test_an_input_warped_onto_the_working_grid_over_http(served, tmp_path):
    # grid_bands.yaml reads 'before' (Lambert-93, 12 m) through a warped view onto the 10 m UTM
    # grid, window by window in the workers: over HTTP as from disk
    shutil.copy(SAMPLE / "before.tif", served.folder / "before.tif")
    remote, local = run_both("grid_bands.yaml", "before", f"{served.url}/before.tif",
                             SAMPLE / "before.tif", tmp_path)
    assert_same_files(remote, local)
    assert "/before.tif" in {entry["path"] for entry in served.log() if entry["status"] == 206}
