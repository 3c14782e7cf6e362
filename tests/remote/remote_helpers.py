"""What the remote-input tests serve: copies of the sample rasters (plain GeoTIFF, a COG with
128 px blocks, a zip, a VRT, and a file behind basic authentication), and the running server."""

from __future__ import annotations

import json
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

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
