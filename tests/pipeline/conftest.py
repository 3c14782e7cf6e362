"""Fixtures of the pipeline tests: small GeoTIFFs from rasterio, pipeline files, shared data."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

HERE = Path(__file__).parent
#: The project's shared test rasters, beside the repository (see its SOURCES.md).
SHARED_DATA = Path(__file__).parents[2] / ".." / "shared" / "data"

RasterWriter = Callable[..., Path]

# The callables modules of these tests (``pipeline_callables``...) import from any folder.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def write_raster(path: Path, *, width: int = 32, height: int = 24, count: int = 1,
                 dtype: str = "uint8", origin: tuple[float, float] = (1000.0, 2000.0),
                 pixel: float = 10.0, crs: str = "EPSG:32631") -> Path:
    """A small GeoTIFF of ramp values."""
    data = np.arange(count * height * width).reshape(count, height, width).astype(dtype)
    transform = Affine(pixel, 0, origin[0], 0, -pixel, origin[1])
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count,
                       dtype=dtype, crs=crs, transform=transform) as dataset:
        dataset.write(data)
    return path


@pytest.fixture
def make_raster(tmp_path: Path) -> RasterWriter:
    """``make_raster("a.tif", width=..., ...)`` writes a small GeoTIFF in the test's folder."""
    return lambda name, **kwargs: write_raster(tmp_path / name, **kwargs)


@pytest.fixture
def write_pipeline(tmp_path: Path) -> Callable[[str, str], Path]:
    """``write_pipeline(text, name="pipeline.yaml")`` writes dedented YAML in the test's folder."""

    def write(text: str, name: str = "pipeline.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def corpus_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the broken pipelines name: rasters on one grid, off it, and things not rasters."""
    folder = tmp_path_factory.mktemp("corpus-data")
    write_raster(folder / "a.tif", count=4)
    write_raster(folder / "b.tif", count=4)
    write_raster(folder / "shifted.tif", origin=(1001.0, 2001.0))
    write_raster(folder / "other_crs.tif", crs="EPSG:32632")
    write_raster(folder / "bigger.tif", width=40)
    (folder / "not_raster.tif").write_text("not a raster\n")
    (folder / "blocker").write_text("a file where a folder would be\n")
    return folder


@pytest.fixture
def shared_data() -> Path:
    """The shared rasters' folder; the test is skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("needs ../shared/data (the project's shared test rasters)")
    return SHARED_DATA
