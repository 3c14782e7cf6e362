"""The built-in ops through the real engine (workers, shared memory) equal the whole-image call."""

from __future__ import annotations

import numpy as np
import pytest

import eoscale.ops as ops
from eoscale.engine import Engine, Tiling

MAPS = [
    ("band_math", ["ls5_nbar_19920323_B40_nir.tif", "ls5_nbar_19920323_B30_red.tif"],
     {"expression": "(nir - red) / (nir + red)", "_inputs": ["nir", "red"]}),
    ("slope", ["srtm_zion.tif"], {}),
    ("hillshade", ["nz_elev.tif"], {"z_factor": 2}),
    ("median_filter", ["dtm.tif"], {"size": 5}),
    ("fill_nodata", ["eoscale_dsm.tif"], {"max_distance": 20}),
]
REDUCTIONS = [
    ("stats", "nz_elev.tif", {}),
    ("percentiles", "srtm_zion.tif", {"q": [1, 50, 99]}),
    ("unique_counts", "RGB.byte.tif", {}),
]


@pytest.fixture(scope="module")
def engine():
    with Engine(2, tiling=Tiling("tiles", 64)) as engine:
        yield engine


@pytest.mark.parametrize("name, files, params", MAPS, ids=[case[0] for case in MAPS])
def test_maps(engine, data_dir, whole, name, files, params) -> None:
    op = getattr(ops, name)
    sources = [engine.load(data_dir / file) for file in files]
    [result] = engine.map(op, sources, params=params)
    expected = whole(op, [s.array for s in sources], [s.profile for s in sources], params)
    np.testing.assert_array_equal(result.array, expected)
    assert result.profile["dtype"] == expected.dtype.name
    for raster in (result, *sources):
        engine.release(raster)


@pytest.mark.parametrize("name, file, params", REDUCTIONS, ids=[case[0] for case in REDUCTIONS])
def test_reductions(engine, data_dir, whole, name, file, params) -> None:
    op = getattr(ops, name)
    source = engine.load(data_dir / file)
    result = engine.reduce(op, [source], params=params)
    expected = whole(op, [source.array], [source.profile], params)
    engine.release(source)
    if name == "stats":
        for got, want in zip(result, expected):
            assert got == pytest.approx(want, rel=1e-12)
    else:
        assert result == expected
