"""The assembly of encoded files done by the workers: when a map ends, the main process writes
each file's header only, and the workers copy the blocks from the part files into place (and
one worker task makes the coarsest overview levels). Oracles: the same array written whole by
rasterio (and GDAL's COG validation) for the files; for who did the work, the bytes this process
copied (spied: the pool's workers are other processes, where the spy's calls do not count here)
against the blocks the files hold, read by tifffile.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import tifffile
from callables import identity
from rio_cogeo.cogeo import cog_validate
from test_encoded_outputs import (
    IN_SMALL_TMPFS,
    assert_same_file,
    make_image,
    profile_for,
    write_input,
    write_pipeline,
    written_by_rasterio,
)

import eoscale.engine.encoded as encoded_module
import eoscale.engine.overviews as overviews_module
import eoscale.io.assembled as assembled_module
from eoscale.engine import Engine, Tiling
from eoscale.engine.assembly import MAX_COPY_TASKS, copy_job
from eoscale.engine.encoded import PART_MARK
from eoscale.engine.filed import OutputFile
from eoscale.engine.overviews import EncodedPyramid
from eoscale.errors import RasterError, WorkerDiedError
from eoscale.io.assembled import BlockCopy
from eoscale.io.blocks import BlockLayout
from eoscale.io.cog import Pyramid
from eoscale.io.raster import Staging

OPTIONS = {"blockxsize": 32, "blockysize": 32, "compress": "deflate", "predictor": 3}


@pytest.fixture
def copied_here(monkeypatch) -> list[int]:
    """The bytes of blocks this process copied into files (its calls of the copy)."""
    copied: list[int] = []
    copy_range = assembled_module.copy_range

    def spy(source, target, source_offset, target_offset, length):
        copied.append(length)
        return copy_range(source, target, source_offset, target_offset, length)

    monkeypatch.setattr(assembled_module, "copy_range", spy)
    return copied


@pytest.fixture
def kept_read_here(monkeypatch) -> list[str]:
    """The outputs whose coarsest overview levels this process made (from the kept pixels):
    one entry per read of them, a strip's or the whole kept level's."""
    made: list[str] = []
    kept_image = overviews_module.kept_image

    def spy(layout, kept, display):
        made.append(display)
        return kept_image(layout, kept, display)

    monkeypatch.setattr(overviews_module, "kept_image", spy)
    return made


def float_twice(arrays, profiles, params):
    """Two outputs: the input plus a half, twice (a GeoTIFF and a COG of it)."""
    return [arrays[0] + 0.5, arrays[0] + 0.5]


def block_bytes(path: Path) -> int:
    """The bytes of every block of every level of a TIFF (its data, not its header)."""
    with tifffile.TiffFile(path) as tiff:
        return sum(sum(page.databytecounts) for page in tiff.pages)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_workers_copy_every_block_and_this_process_none(tmp_path, copied_here,
                                                            kept_read_here, workers):
    """One map writing a GeoTIFF and a COG: both equal rasterio's / GDAL's files; with workers,
    this process copied no block and made no overview level; in-process (one worker) it copied
    each block of the COG exactly once, and none of the GeoTIFF (each tile's blocks written
    at their place in it, the tiles coming in order)."""
    image = make_image("float32", 2, shape=(160, 192))
    geotiff, cog = tmp_path / "out.tif", tmp_path / "cog.tif"
    pyramid = Pyramid(cog, "COG", {"blocksize": 32}, None, None)
    with Engine(workers, tiling=Tiling("tiles", 64), start_method="fork") as engine:
        source = engine.from_array(image, profile_for(image))
        # No profile function: the first tile is probed and stored here (its blocks too).
        engine.map(float_twice, [source], margin=0, files=[
            OutputFile(geotiff, OPTIONS, "out.tif"),
            OutputFile(tmp_path / "unused.tif", {}, "cog.tif", EncodedPyramid(pyramid))])

    oracle = written_by_rasterio(image + 0.5, {**profile_for(image), "count": 2,
                                               "dtype": "float32", "height": 160,
                                               "width": 192}, tmp_path / "oracle.tif", OPTIONS)
    assert_same_file(geotiff, oracle)
    with rasterio.open(cog) as dataset:
        assert np.array_equal(dataset.read(), image + 0.5, equal_nan=True)
        assert dataset.overviews(1) == [2, 4, 8]  # level 1 by the tiles, 2 and 3 kept
    valid, errors, warnings = cog_validate(str(cog))
    assert valid and not errors and not warnings, (errors, warnings)
    if workers == 1:
        assert sum(copied_here) == block_bytes(cog)
        assert kept_read_here and set(kept_read_here) == {"cog.tif"}  # a read per strip
    else:
        assert copied_here == [] and kept_read_here == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cog.tif", "oracle.tif", "out.tif"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_full_disk_while_the_file_is_finished_names_the_output_and_leaves_nothing(
        tmp_path, monkeypatch, workers):
    """The blocks copied into place and the header written when the map ends: a full disk
    there (every block written at its place, only the header left to write, in-process)."""
    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(assembled_module, "copy_range", full)  # the pool's workers fork after
    monkeypatch.setattr(assembled_module, "_write_at", full)
    image = make_image("uint8", 1, shape=(128, 128))
    with pytest.raises(RasterError) as raised, Staging() as staging, \
            Engine(workers, tiling=Tiling("tiles", 32), start_method="fork") as engine:
        staged = staging.stage(tmp_path / "result.tif")
        source = engine.from_array(image, profile_for(image))
        engine.map(identity, [source], margin=0, profile_fn=lambda p, _: [dict(p[0])],
                   files=[OutputFile(staged, {"blockxsize": 32, "blockysize": 32},
                                     "result.tif")])
    assert str(raised.value) == ("result.tif: cannot write: no space left on device (the "
                                 "filesystem holding it is full)")
    assert list(tmp_path.iterdir()) == []


def test_a_worker_dying_while_it_copies_leaves_no_output_and_no_part(tmp_path, monkeypatch):
    parent = os.getpid()
    copy_range = assembled_module.copy_range

    def dies_in_a_worker(*args):
        if os.getpid() != parent:
            os._exit(9)
        return copy_range(*args)

    monkeypatch.setattr(assembled_module, "copy_range", dies_in_a_worker)
    # Every tile's blocks to a part file, as if each came before the one before it: the copies
    # then always happen (written in tile order, the blocks are copied only when out of order).
    monkeypatch.setattr(encoded_module, "tile_place", lambda *args: None)
    image = make_image("uint8", 1, shape=(128, 128))
    with pytest.raises(WorkerDiedError, match="a worker process .* died"), Staging() as staging, \
            Engine(2, tiling=Tiling("tiles", 32), start_method="fork") as engine:
        staged = staging.stage(tmp_path / "result.tif")
        source = engine.from_array(image, profile_for(image))
        engine.map(identity, [source], margin=0, profile_fn=lambda p, _: [dict(p[0])],
                   files=[OutputFile(staged, {"blockxsize": 32, "blockysize": 32})])
    assert list(tmp_path.iterdir()) == []


def test_the_copies_are_cut_in_strips_of_rows_each_block_once():
    """A block goes to the strip holding its first row (a level-k block's row times 2**k); the
    strips are a few per worker, at most MAX_COPY_TASKS."""
    full = BlockLayout.from_profile({"height": 300, "width": 100, "count": 1, "dtype": "uint8"},
                                    {"tiled": True, "blockxsize": 16, "blockysize": 16})
    level2 = BlockLayout.from_profile({"height": 75, "width": 25, "count": 1, "dtype": "uint8"},
                                      {"tiled": True, "blockxsize": 16, "blockysize": 16})

    def copies(layout: BlockLayout, part: str) -> dict[int, BlockCopy]:
        return {index: BlockCopy(part, index * 10, 10, 1000 + index * 10)
                for index in range(layout.block_count)}

    job = copy_job("step", 2, [("a.tif", "a", [(full, 0, copies(full, "p1")),
                                                (level2, 2, copies(level2, "p2"))])])
    assert len(job.copies) == 8 and [tile.core.height for tile in job.tiles][:2] == [38, 38]
    rows = np.concatenate(job.copies)
    assert len(rows) == full.block_count + level2.block_count
    for strip, tile in zip(job.copies, job.tiles):
        for _, part, offset, _, _, _ in strip.tolist():
            layout, level = (full, 0) if job.parts[part] == "p1" else (level2, 2)
            row = (offset // 10) // layout.grid[1]
            first = (row * 16) << level
            assert tile.core.row_off <= first < tile.core.row_off + tile.core.height
    many = copy_job("step", 1000, [("a.tif", "a", [(full, 0, copies(full, "p"))])])
    assert 100 < len(many.copies) <= MAX_COPY_TASKS


def test_a_full_disk_while_the_workers_copy_the_blocks_through_the_command(tmp_path):
    """Through ``eoscale run``, on a real full filesystem (a 128 KiB tmpfs in a user and mount
    namespace) that holds the parts of a COG (about 108 KiB with its overviews: random pixels
    do not compress) but not the file beside them: the copies fail; exit 1, one error line
    naming the output, the previous output intact, no part left. (A plain GeoTIFF's blocks on
    the pool go to their place as computed, mostly: its copies may fit.)"""
    namespace = ["unshare", "--user", "--map-root-user", "--mount"]
    scene = np.random.default_rng(3).integers(0, 65535, size=(2, 144, 144), dtype=np.uint16)
    write_input(tmp_path / "scene.tif", scene)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "result.tif").write_bytes(b"the previous result")
    (tmp_path / "after").mkdir()
    spec = write_pipeline(tmp_path, {"copy": {"path": "out/result.tif", "format": "COG",
                                              "options": {"blocksize": 32}}})
    plan = subprocess.run([sys.executable, "-m", "eoscale", "run", str(spec), "-w", "2",
                           "--dry-run"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)
    assert "encoded by the workers" in plan.stdout, plan.stdout
    try:
        done = subprocess.run([*namespace, "sh", "-c", IN_SMALL_TMPFS, "sh",
                               str(tmp_path / "out"), str(tmp_path / "after"), sys.executable,
                               "-m", "eoscale", "run", str(spec), "--overwrite", "-w", "2"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              check=False)
    except FileNotFoundError:
        pytest.skip("needs unshare (util-linux) to mount a small tmpfs")
    if done.returncode == 97 or "unshare:" in done.stderr:
        pytest.skip(f"this machine does not let a user namespace mount a tmpfs: {done.stderr}")
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert errors == [("error: out/result.tif: cannot write: no space left on device (the "
                       "filesystem holding it is full)")], done.stderr
    left = {p.name: p.read_bytes() for p in (tmp_path / "after").iterdir()}
    assert left == {"result.tif": b"the previous result"}
    assert not [name for name in left if PART_MARK in name]


@pytest.mark.parametrize("cog", [False, True])
def test_blocks_copied_from_parts_in_any_order_give_the_file_written_whole(tmp_path, cog):
    """The header's writer and the copies, split between two "workers" copying in reverse
    order, give byte for byte the file written from blocks in memory (for a COG, each copied
    block framed: its size before it, its last 4 bytes after it)."""
    from eoscale.io.assembled import copy_blocks
    from eoscale.io.blocks import (
        PartFile,
        assemble_geotiff,
        geotiff_metadata,
        write_geotiff_header,
    )
    from eoscale.io.cog import assemble_levels, cog_layout, overview_layout, write_levels_header

    image = np.random.default_rng(1).integers(0, 40, (1, 96, 80), dtype=np.uint8)
    profile = {"height": 96, "width": 80, "count": 1, "dtype": "uint8"}
    if cog:
        layouts = [cog_layout(profile, {"blocksize": 32})]
        layouts.append(overview_layout(layouts[0], 1, floor=True))
        images = [image, image[:, ::2, ::2]]
    else:
        layouts = [BlockLayout.from_profile(profile, {"tiled": True, "blockxsize": 16,
                                                      "blockysize": 32, "compress": "lzw"})]
        images = [image]
    encoded = []
    for layout, pixels in zip(layouts, images):
        blocks: dict[int, bytes] = {}
        for row, col, (top, left, rows, cols) in layout.windows():
            blocks.update(layout.encode(row, col, pixels[:, top:top + rows, left:left + cols]))
        encoded.append(blocks)
    with PartFile(tmp_path / "a.part") as one, PartFile(tmp_path / "b.part") as two:
        records = [{index: (one if index % 2 else two).append(data)
                    for index, data in blocks.items()} for blocks in encoded]
    whole, copied = tmp_path / "whole.tif", tmp_path / "copied.tif"
    metadata = geotiff_metadata({**profile, "crs": "EPSG:32631",
                                 "transform": rasterio.Affine(10, 0, 0, 0, -10, 0)})
    if cog:
        assemble_levels(whole, layouts, metadata, encoded)
        copies = [copy for level in write_levels_header(copied, layouts, metadata, records)
                  for copy in level.values()]
    else:
        assemble_geotiff(whole, layouts[0], metadata, encoded[0])
        copies = list(write_geotiff_header(copied, layouts[0], metadata, records[0]).values())
    assert all(isinstance(copy, BlockCopy) and copy.framed == cog for copy in copies)
    copy_blocks(copied, copies[1::2][::-1])
    copy_blocks(copied, copies[::2][::-1], sync=True)
    assert copied.read_bytes() == whole.read_bytes()
    with rasterio.open(copied) as dataset:
        assert np.array_equal(dataset.read(), image)
