"""Outputs written by a Dask cluster's workers: each worker encodes the blocks of the tiles it
computed into a part file of its own (named by host and pid) in the output's staging folder, or
writes them in place (uncompressed), and the client receives only the blocks' places, never
pixels. The files equal what rasterio writes for the whole array; no part file is left, also
after a failing callable; a callable that kills every worker it runs on is retried by Dask and
then reported by eoscale alone, without Dask's log lines."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

import eoscale.engine.assembly as assembly_module
import eoscale.io.assembled as assembled_module
from eoscale.engine import Engine, Tiling
from eoscale.engine.cluster import DaskExecutor
from eoscale.engine.cluster_worker import WorkerSetup
from eoscale.engine.encoded import PART_MARK
from eoscale.engine.filed import OutputFile
from eoscale.errors import StepError
from eoscale.io.blocks import BlockRecord
from eoscale.io.raster import Staging, creation_profile

from cluster_ops import as_dtype, exits_once_at, raises_at

HERE = Path(__file__).resolve().parent
PROFILE = {"transform": Affine(10, 0, 600000, 0, -10, 4800000), "crs": "EPSG:32631"}
SHAPE = (83, 101)

#: name: (creation options, tiling aligned to them, output dtype, bands)
CASES = {
    "deflate uint8 1 band": ({"blockxsize": 32, "blockysize": 32}, Tiling("tiles", 64),
                             "uint8", 1),
    "zstd predictor 2 uint16 3 bands": ({"blockxsize": 16, "blockysize": 32, "compress": "zstd",
                                         "predictor": 2}, Tiling("tiles", 32), "uint16", 3),
    "lzw predictor 3 float32 band interleave": ({"blockxsize": 32, "blockysize": 32,
                                                 "compress": "lzw", "predictor": 3,
                                                 "interleave": "band"},
                                                Tiling("tiles", 32), "float32", 2),
    # Strips of GDAL's default rows (8 KiB): 13 rows of 101 x 3 int16, 10 of 101 float64,
    # 27 of 101 x 3 uint8.
    "deflate predictor 2 int16 strips": ({"tiled": False, "predictor": 2},
                                         Tiling("strips", 26), "int16", 3),
    "zstd float64 strips": ({"tiled": False, "compress": "zstd"}, Tiling("strips", 20),
                            "float64", 1),
    "none float64 (in place)": ({"blockxsize": 32, "blockysize": 32, "compress": "none"},
                                Tiling("tiles", 32), "float64", 2),
    "none uint8 strips (in place)": ({"tiled": False, "compress": "none"},
                                     Tiling("strips", 27), "uint8", 3),
    "deflate BigTIFF forced": ({"blockxsize": 32, "blockysize": 32, "bigtiff": "yes"},
                               Tiling("tiles", 32), "float32", 1),
    "none BigTIFF forced (in place)": ({"blockxsize": 16, "blockysize": 16, "compress": "none",
                                        "bigtiff": "yes"}, Tiling("tiles", 48), "int32", 1),
}


def make_input(folder: Path, dtype: str, bands: int, shape: tuple[int, int] = SHAPE
               ) -> tuple[Path, np.ndarray]:
    """An input file: random values, NaN pixels (its nodata) when float, else nodata 7."""
    rng = np.random.default_rng(5)
    if np.dtype(dtype).kind == "f":
        image = rng.normal(100, 30, (bands, *shape)).astype(dtype)
        image[rng.random(image.shape) < 0.1] = np.nan
        nodata = float("nan")
    else:
        image = rng.integers(0, 200, (bands, *shape)).astype(dtype)
        nodata = 7
    path = folder / "input.tif"
    with rasterio.open(path, "w", driver="GTiff", height=shape[0], width=shape[1], count=bands,
                       dtype=dtype, nodata=nodata, **PROFILE) as dataset:
        dataset.write(image)
    return path, image


@pytest.fixture
def executor(client) -> Iterator[DaskExecutor]:
    """The test cluster, its workers importing cluster_ops from this folder."""
    with DaskExecutor.connect(client) as dask:
        dask.prepare(WorkerSetup((str(HERE),)))
        yield dask


@pytest.fixture
def received(monkeypatch) -> list[list]:
    """What the client received for the written outputs, tile by tile (spied in this process:
    the workers are other processes)."""
    seen: list[list] = []
    write = assembly_module.OutputFiles.write

    def spy(self, window, results):
        seen.append(list(results))
        return write(self, window, results)

    monkeypatch.setattr(assembly_module.OutputFiles, "write", spy)
    return seen


@pytest.fixture
def client_copies(monkeypatch) -> list[int]:
    """The bytes of blocks this process (the client) copied into files: none, the workers
    copy them (spied in this process only)."""
    copied: list[int] = []
    copy_range = assembled_module.copy_range

    def spy(source, target, source_offset, target_offset, length):
        copied.append(length)
        return copy_range(source, target, source_offset, target_offset, length)

    monkeypatch.setattr(assembled_module, "copy_range", spy)
    return copied


def parts_in(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if PART_MARK in path.name]


@pytest.mark.parametrize("case", list(CASES))
def test_an_output_written_by_the_cluster_is_what_rasterio_writes_whole(
        tmp_path, executor, client, received, client_copies, monkeypatch, case):
    options, tiling, dtype, bands = CASES[case]
    source, image = make_input(tmp_path, dtype, bands)
    expected = (image + 1).astype(dtype)
    parts_seen: set[str] = set()
    write_header = assembly_module.write_geotiff_header

    def spy(path, layout, metadata, blocks, **kwargs):
        parts_seen.update(record.part for record in blocks.values())
        return write_header(path, layout, metadata, blocks, **kwargs)

    monkeypatch.setattr(assembly_module, "write_geotiff_header", spy)
    out = tmp_path / "out.tif"
    with Staging() as staging, Engine(executor=executor, tiling=tiling) as engine:
        staged = staging.stage(out)
        # A profile function: every tile runs on the workers, none is probed here.
        engine.map(as_dtype, [engine.open(source)], params={"dtype": dtype, "add": 1},
                   margin=0, profile_fn=lambda profiles, _: [dict(profiles[0], dtype=dtype)],
                   files=[OutputFile(staged, options, "out.tif")])
        staging.commit()

    oracle = tmp_path / "oracle.tif"
    nodata = float("nan") if np.dtype(dtype).kind == "f" else 7
    with rasterio.open(oracle, "w", **creation_profile(
            {**PROFILE, "driver": "GTiff", "height": SHAPE[0], "width": SHAPE[1],
             "count": bands, "dtype": dtype, "nodata": nodata}, options)) as dataset:
        dataset.write(expected)
    with rasterio.open(out) as mine, rasterio.open(oracle) as theirs:
        assert np.array_equal(mine.read(), theirs.read(), equal_nan=True)
        assert mine.block_shapes == theirs.block_shapes
        assert mine.compression == theirs.compression
        assert mine.tags(ns="IMAGE_STRUCTURE") == theirs.tags(ns="IMAGE_STRUCTURE")
        assert (mine.crs, mine.transform, mine.dtypes) == (theirs.crs, theirs.transform,
                                                           theirs.dtypes)
        assert np.isnan(mine.nodata) if np.isnan(nodata) else mine.nodata == nodata
    bigtiff = out.read_bytes()[2:4] == b"\x2b\x00"
    assert bigtiff == (options.get("bigtiff") == "yes")

    # The client received block records only, never an array, for every tile.
    assert received and all(isinstance(result, dict) and result for results in received
                            for result in results)
    assert all(isinstance(record, BlockRecord) for results in received for result in results
               for record in result.values())
    workers = {f"{socket.gethostname()}-{pid}" for pid in client.run(os.getpid).values()}
    if options.get("compress") == "none":  # in place: the records point into the file itself
        assert {record.part for results in received for result in results
                for record in result.values()} == {os.fspath(staged)}
        assert parts_seen == set()
    else:  # appended to the workers' part files, named by host and pid
        assert {Path(part).name.rpartition(PART_MARK)[2] for part in parts_seen} <= workers
        assert parts_seen
    assert client_copies == []  # the workers copied the blocks into the file, not the client
    assert sorted(path.name for path in tmp_path.iterdir()) == ["input.tif", "oracle.tif",
                                                                 "out.tif"]


def test_a_callable_raising_on_the_cluster_leaves_no_part_file(tmp_path, executor):
    source, _ = make_input(tmp_path, "uint8", 1)
    with pytest.raises(StepError, match="no band named"), Staging() as staging, \
            Engine(executor=executor, tiling=Tiling("tiles", 32)) as engine:
        staged = staging.stage(tmp_path / "out" / "boom.tif")
        engine.map(raises_at, [engine.open(source)], params={"tile": 7}, margin=0,
                   profile_fn=lambda profiles, _: [profiles[0]],
                   files=[OutputFile(staged, {"blockxsize": 32, "blockysize": 32},
                                     "boom.tif")])
    assert parts_in(tmp_path) == []
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["input.tif"]


def test_a_worker_dying_mid_chunk_leaves_its_part_unused_and_removed(tmp_path, executor,
                                                                     monkeypatch):
    """The worker running tile 9 appends the blocks of tile 8, the first of its chunk, to its
    part file, then dies: Dask runs the chunk again on another worker, whose records alone come
    back (a result is sent only by a task that returned), so the file equals rasterio's; the
    dead worker's part is removed with the others."""
    # 16 x 17 tiles: more than the engine's 256 chunks, so chunks of 2 tiles ([8, 9] one).
    shape = (256, 272)
    source, image = make_input(tmp_path, "uint8", 1, shape)
    assembled: list[int] = []
    write_header = assembly_module.write_geotiff_header

    def spy(path, layout, metadata, blocks, **kwargs):
        assembled.append(sum(record.length for record in blocks.values()))
        # Every worker's part is still here: the dead one's too, with the blocks it appended.
        assembled.append(sum(part.stat().st_size for part in parts_in(tmp_path)))
        return write_header(path, layout, metadata, blocks, **kwargs)

    monkeypatch.setattr(assembly_module, "write_geotiff_header", spy)
    options = {"blockxsize": 16, "blockysize": 16}
    marker = tmp_path / "died"
    out = tmp_path / "out.tif"
    with Staging() as staging, Engine(executor=executor, tiling=Tiling("tiles", 16)) as engine:
        staged = staging.stage(out)
        engine.map(exits_once_at, [engine.open(source)],
                   params={"tile": 9, "marker": str(marker)}, margin=0,
                   profile_fn=lambda profiles, _: [profiles[0]],
                   files=[OutputFile(staged, options, "out.tif")])
        staging.commit()
    assert marker.exists()  # a worker died
    used, present = assembled
    assert used < present  # the bytes tile 8's first run appended were not read
    with rasterio.open(out) as mine:
        assert np.array_equal(mine.read(), image) and mine.block_shapes == [(16, 16)]
    assert parts_in(tmp_path) == []


def test_a_callable_killing_every_worker_is_retried_then_reported_without_dask_s_logs(tmp_path):
    """Through the command, on a local cluster it starts: Dask retries the task on new workers
    (allowed-failures, 3 by default), then eoscale names the step and the tile, exit 1; Dask's
    scheduler does not print its own lines first; no output, part or staged file is left."""
    (tmp_path / "cluster_ops.py").write_text((HERE / "cluster_ops.py").read_text())
    make_input(tmp_path, "uint8", 1)
    (tmp_path / "p.yaml").write_text(
        "version: 1\ntiling: {tile_size: 32}\ninputs: {scene: input.tif}\nsteps:\n"
        "  - {name: boom, map: cluster_ops.exits_at, inputs: [scene], params: {tile: 3}}\n"
        "outputs: {boom: out/boom.tif}\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "eoscale", "run", "p.yaml", "--cluster",
                           "local:2"], cwd=tmp_path, text=True, capture_output=True,
                          timeout=180, check=False)
    assert done.returncode == 1, done.stderr
    # eoscale's message alone (no log line of Dask's before it).
    error = done.stderr.splitlines()
    assert len(error) == 1, done.stderr
    assert "distributed." not in done.stderr and "Removing worker" not in done.stderr
    # The tile that killed them, or one the dying workers held with it (the message says so).
    assert error[0].startswith("error: step 'boom', tile ")
    assert ("a Dask worker died while running this chunk, each time Dask retried it"
            in error[0])
    assert "on 4 different workers" in error[0]  # allowed-failures: 3 retries
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    assert parts_in(tmp_path) == []



def test_a_cog_written_by_the_cluster_has_gdal_s_levels_and_is_valid(tmp_path, executor,
                                                                    received, client_copies,
                                                                    monkeypatch):
    """A COG whose full resolution and overview levels the cluster's workers encode (the
    coarsest levels made by one worker task from the pixels the tiles kept) and copy into
    place: every level equal to GDAL's COG driver's of the same image (average, float32:
    within float32 rounding), valid for rio-cogeo; the client received records only, and read
    no block: neither the kept pixels nor a block's bytes."""
    import eoscale.engine.overviews as overviews_module
    import rasterio.shutil
    from rio_cogeo.cogeo import cog_validate

    from eoscale.engine.overviews import EncodedPyramid
    from eoscale.io.cog import Pyramid

    shape = (256, 320)
    source, image = make_input(tmp_path, "float32", 1, shape)
    expected = (image + 1).astype("float32")
    out = tmp_path / "out.tif"
    pyramid = Pyramid(out, "COG", {"blocksize": 32}, None, None)
    kept_read: list[int] = []
    kept_image = overviews_module.kept_image
    monkeypatch.setattr(overviews_module, "kept_image",
                        lambda *args: (kept_read.append(1), kept_image(*args))[1])
    with Engine(executor=executor, tiling=Tiling("tiles", 64)) as engine:
        engine.map(as_dtype, [engine.open(source)], params={"dtype": "float32", "add": 1},
                   margin=0, profile_fn=lambda profiles, _: [dict(profiles[0], dtype="float32")],
                   files=[OutputFile(tmp_path / "plain.tif", {}, "out.tif",
                                     EncodedPyramid(pyramid))])
    assert kept_read == [] and client_copies == []  # both done on the workers
    assert not (tmp_path / "plain.tif").exists()  # the workers made the COG itself

    plain, gdal = tmp_path / "gdal_plain.tif", tmp_path / "gdal.tif"
    with rasterio.open(plain, "w", driver="GTiff", height=shape[0], width=shape[1], count=1,
                       dtype="float32", nodata=float("nan"), **PROFILE) as dataset:
        dataset.write(expected)
    rasterio.shutil.copy(plain, gdal, driver="COG", resampling="average", blocksize=32)
    with rasterio.open(gdal) as theirs, rasterio.open(out) as mine:
        levels = len(theirs.overviews(1))
        assert levels >= 2 and len(mine.overviews(1)) == levels
    for level in range(levels + 1):
        options = {} if level == 0 else {"OVERVIEW_LEVEL": level - 1}
        with rasterio.open(out, **options) as mine, rasterio.open(gdal, **options) as theirs:
            np.testing.assert_allclose(mine.read(), theirs.read(), rtol=1e-6, atol=0,
                                       equal_nan=True, err_msg=f"level {level}")
    valid, errors, warnings = cog_validate(str(out))
    assert valid and not errors and not warnings, (errors, warnings)
    assert received and all(isinstance(result, dict) for results in received
                            for result in results)
    assert parts_in(tmp_path) == []


def test_a_worker_on_another_machine_flushes_its_parts_before_returning_their_records(
        tmp_path, monkeypatch):
    """The client flushes the part files before its journal records their blocks, but that
    reaches only its own machine's cache: a worker elsewhere flushes them itself, before it
    returns the records; a worker on the client's machine leaves it to the client."""
    import eoscale.engine.cluster_worker as worker_module
    from eoscale.engine import encoded

    flushed: list[str] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (
        flushed.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd))[1])
    monkeypatch.setattr(worker_module, "cap_gdal_cache", lambda size: None)  # not this process's
    monkeypatch.setattr(worker_module, "keep_freed_memory", lambda: None)  # nor its heap
    target = str(tmp_path / "out.tif")
    part = str(encoded.part_path(target))
    try:
        worker_module.SetupPlugin(WorkerSetup(client_host=f"not-{socket.gethostname()}")).setup()
        records = encoded.append_to_part(target, "out.tif", {0: b"block zero", 1: b"one"})
        assert flushed == [part]
        assert [(r.offset, r.length) for r in records.values()] == [(0, 10), (10, 3)]
        worker_module.SetupPlugin(WorkerSetup(client_host=socket.gethostname())).setup()
        encoded.append_to_part(target, "out.tif", {2: b"two"})
        assert flushed == [part]  # not again: the client's flush reaches this machine's cache
        assert Path(part).read_bytes() == b"block zeroonetwo"
    finally:
        encoded.sync_appends(False)


def _client_hosts(dask_worker) -> list[str]:
    return [plugin.setup_values.client_host for plugin in dask_worker.plugins.values()
            if hasattr(plugin, "setup_values")]


def test_the_cluster_s_workers_are_told_the_client_s_machine(executor):
    """What the workers compare with their own machine to know whether to flush their parts."""
    hosts = executor.client.run(_client_hosts)
    assert hosts and all(found and set(found) == {socket.gethostname()}
                         for found in hosts.values())


def test_a_cluster_says_whether_a_worker_writes_on_another_machine(client, monkeypatch):
    """The journal counts on this machine's boot only when every worker shares its cache:
    a worker on another host (or one that cannot be asked) makes the run flush before each
    record (eoscale.pipeline.resume)."""
    from eoscale.engine.executors import InlineExecutor

    with DaskExecutor.connect(client) as dask:
        assert dask.writes_elsewhere() is False  # a LocalCluster: this host
        monkeypatch.setattr(client, "run", lambda function: {"tcp://10.0.0.9:1": "node-9",
                                                             "tcp://127.0.0.1:2": function()})
        assert dask.writes_elsewhere() is True
        monkeypatch.setattr(client, "run", lambda function: (_ for _ in ()).throw(OSError()))
        assert dask.writes_elsewhere() is True
    assert InlineExecutor().writes_elsewhere() is False
