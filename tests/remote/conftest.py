"""A local HTTP server with byte ranges, in its own process, serving copies of the sample rasters
(plain GeoTIFF, a COG with 128 px blocks, a zip, a VRT, and a file behind basic authentication)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import rasterio.shutil

HERE = Path(__file__).parent
REPO = HERE.parents[1]
SAMPLE = REPO / "pipelines" / "data"


@dataclass(frozen=True)
class Served:
    """The running server: its folder and base URL; ``log()`` returns and forgets its requests."""

    folder: Path
    url: str

    def log(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.url}/__log__", timeout=10) as answer:
            return json.load(answer)


def make_files(folder: Path) -> None:
    for name in ("scene.tif", "dsm.tif"):
        shutil.copy(SAMPLE / name, folder / name)
    rasterio.shutil.copy(SAMPLE / "scene.tif", folder / "scene_cog.tif", driver="COG",
                         blocksize=128, compress="deflate")
    with zipfile.ZipFile(folder / "scene.zip", "w") as archive:
        archive.write(SAMPLE / "scene.tif", "inside/scene.tif")
    rasterio.shutil.copy(folder / "scene.tif", folder / "scene.vrt", driver="VRT")
    text = (folder / "scene.vrt").read_text()     # the VRT names scene.tif beside it
    (folder / "scene.vrt").write_text(text.replace(str(folder / "scene.tif"), "scene.tif")
                                      .replace('relativeToVRT="0"', 'relativeToVRT="1"'))
    (folder / "private").mkdir()
    shutil.copy(SAMPLE / "scene.tif", folder / "private" / "scene.tif")


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("served")
    make_files(folder)
    process = subprocess.Popen([sys.executable, str(HERE / "range_server.py"), str(folder)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline())
        yield Served(folder, f"http://127.0.0.1:{port}")
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


@pytest.fixture(autouse=True)
def no_curl_cache(served: Served, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """GDAL keeps what /vsicurl/ read for later opens in the same process, which would let a
    test pass on what an earlier one fetched: nothing from the test server is cached."""
    monkeypatch.setenv("CPL_VSIL_CURL_NON_CACHED", f"/vsicurl/{served.url}/")
    served.log()
    yield
