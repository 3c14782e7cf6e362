"""Map outputs encoded by the workers: a written output whose tiles are whole blocks of its file
is encoded tile by tile where the tile was computed, into part files, and assembled when the map
ends. The file must be what rasterio writes for the same whole array (pixels, georeferencing,
nodata, layout and compression), the same as the old path (pixels sent here, written by GDAL)
gives for a tiling that is not aligned, and a failure must leave no part file and no staged file.
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
import yaml
from affine import Affine

import eoscale.engine.assembly as assembly_module
import eoscale.engine.encoded as encoded_module
from eoscale.engine import Engine, Tiling
from eoscale.engine.encoded import (
    PART_MARK,
    EncodedTarget,
    PartWriteError,
    encoded_target,
    part_path,
    writer_name,
)
from eoscale.engine.filed import OutputFile
from eoscale.engine.tiling import plan_step
from eoscale.errors import RasterError, StepError
from eoscale.io.blocks import BlockLayout, PartFile
from eoscale.io.raster import Staging, creation_profile, write_error

from callables import float_result, raises, scipy_filter

PROFILE = {"transform": Affine(10, 0, 1000, 0, -10, 2000), "crs": "EPSG:32631"}
#: name: (creation options, tiling aligned to them, dtype, bands)
CASES = {
    "deflate uint8 1 band": ({"blockxsize": 32, "blockysize": 32}, Tiling("tiles", 64),
                             "uint8", 1),
    "zstd predictor 2 3 bands": ({"blockxsize": 16, "blockysize": 32, "compress": "zstd",
                                  "predictor": 2}, Tiling("tiles", 32), "uint8", 3),
    "none float32": ({"blockxsize": 32, "blockysize": 32, "compress": "none"},
                     Tiling("tiles", 32), "float32", 1),
    "deflate predictor 3 float32 3 bands": ({"blockxsize": 32, "blockysize": 32, "zlevel": 3,
                                             "predictor": 3}, Tiling("tiles", 64), "float32", 3),
    "BigTIFF float64 2 bands": ({"blockxsize": 32, "blockysize": 32, "bigtiff": "yes",
                                 "compress": "zstd"}, Tiling("tiles", 32), "float64", 2),
    "lzw predictor 2 int16 strips": ({"tiled": False, "compress": "lzw", "predictor": 2},
                                     Tiling("strips", 40), "int16", 1),
    "lzw band interleave": ({"blockxsize": 32, "blockysize": 32, "compress": "lzw",
                             "interleave": "band"}, Tiling("tiles", 32), "float32", 3),
    # Strips of GDAL's default rows (8 KiB): 6 rows of 101 x 3 float32, 27 of 101 x 3 uint8.
    "float32 strips": ({"tiled": False, "compress": "zstd"}, Tiling("strips", 18), "float32", 3),
    "uint8 strips": ({"tiled": False}, Tiling("strips", 54), "uint8", 3),
    "zstd strips of 16 rows": ({"tiled": False, "blockysize": 16, "compress": "zstd"},
                               Tiling("strips", 32), "int16", 1),
}


def make_image(dtype: str, bands: int, shape=(83, 101), seed=0) -> np.ndarray:
    """A random image; a float one has NaN pixels (its nodata)."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        image = rng.normal(100, 30, (bands, *shape)).astype(dtype)
        image[rng.random(image.shape) < 0.1] = np.nan
        return image
    return rng.integers(0, 255, (bands, *shape)).astype(dtype)


def profile_for(image: np.ndarray) -> dict:
    nodata = float("nan") if image.dtype.kind == "f" else 7
    return dict(PROFILE, nodata=nodata)


def read(path: Path) -> tuple[np.ndarray, dict, dict, tuple, tuple]:
    with rasterio.open(path) as dataset:
        return (dataset.read(), dict(dataset.profile), dataset.tags(), dataset.colorinterp,
                tuple(dataset.block_shapes))


@pytest.fixture
def assemblies(monkeypatch) -> list[set[str]]:
    """The files holding the blocks of every file whose header this process wrote (one set
    per file: part files, and the file itself for the blocks written at their places)."""
    seen: list[set[str]] = []
    write_header = assembly_module.write_geotiff_header
    finish_in_order = assembly_module.finish_in_order_geotiff

    def spy(path, layout, metadata, blocks, **kwargs):
        seen.append({record.part for record in blocks.values()})
        return write_header(path, layout, metadata, blocks, **kwargs)

    def spy_in_order(path, layout, metadata, blocks, order, **kwargs):
        copies = finish_in_order(path, layout, metadata, blocks, order, **kwargs)
        if copies is not None:  # else the file is written anew: write_geotiff_header's turn
            seen.append({record.part for record in blocks.values()})
        return copies

    monkeypatch.setattr(assembly_module, "write_geotiff_header", spy)
    monkeypatch.setattr(assembly_module, "finish_in_order_geotiff", spy_in_order)
    return seen


def run_map(workers: int, tiling: Tiling, image: np.ndarray, path: Path, options: dict,
            *, fn=scipy_filter, params=None, margin=1) -> None:
    params = params or {"filter": "maximum", "radius": 1, "mode": "nearest"}
    with Engine(workers, tiling=tiling) as engine:
        source = engine.from_array(image, profile_for(image))
        # No profile function: the first tile is probed on a worker, then stored by one.
        engine.map(fn, [source], params=params, margin=margin,
                   files=[OutputFile(path, options)])


def written_by_rasterio(array: np.ndarray, profile: dict, path: Path, options: dict) -> Path:
    with rasterio.open(path, "w", **creation_profile(profile, options)) as dataset:
        dataset.write(array)
    return path


def assert_same_file(path: Path, oracle: Path) -> None:
    pixels, profile, tags, colours, blocks = read(path)
    expected, expected_profile, expected_tags, expected_colours, expected_blocks = read(oracle)
    assert np.array_equal(pixels, expected, equal_nan=True)
    assert profile == {**expected_profile, "nodata": profile["nodata"]}
    assert (np.isnan(profile["nodata"]) if np.isnan(expected_profile["nodata"] or 0)
            else profile["nodata"] == expected_profile["nodata"])
    assert (tags, colours, blocks) == (expected_tags, expected_colours, expected_blocks)
    with rasterio.open(path) as mine, rasterio.open(oracle) as theirs:
        assert mine.compression == theirs.compression
        assert mine.tags(ns="IMAGE_STRUCTURE") == theirs.tags(ns="IMAGE_STRUCTURE")


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("case", list(CASES))
def test_an_encoded_output_is_what_rasterio_writes_for_the_whole_array(
        tmp_path, assemblies, workers, case):
    options, tiling, dtype, bands = CASES[case]
    image = make_image(dtype, bands)
    path = tmp_path / "out.tif"

    if image.dtype.kind == "f":  # NaN pixels: scipy's filters would give tiling-dependent NaN
        run_map(workers, tiling, image, path, options, fn=float_result, params={}, margin=0)
        expected = image + 0.5
    else:
        params = {"filter": "maximum", "radius": 1, "mode": "nearest"}
        run_map(workers, tiling, image, path, options, params=params)
        expected = scipy_filter([image], [], params)
    oracle = written_by_rasterio(expected, {**profile_for(image), "count": bands, "dtype": dtype,
                                            "height": 83, "width": 101},
                                 tmp_path / "oracle.tif", options)
    assert_same_file(path, oracle)
    if "blockysize" in options:  # the rows per strip or per block asked for, not GDAL's
        with rasterio.open(path) as written:
            assert written.block_shapes[0][0] == options["blockysize"]
    if options.get("compress") == "none":  # written in place by the workers: no assembly
        assert assemblies == []
        return  # tests/engine/test_spill_in_place.py checks who wrote the blocks
    [parts] = assemblies  # the encoded path was taken, not GDAL's
    if workers > 1:  # the blocks were encoded by the workers
        assert {Path(part).name for part in parts} - {part_path(path).name}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oracle.tif", "out.tif"]


@pytest.mark.parametrize("workers", [1, 2])
def test_an_encoded_output_equals_the_old_path_s_output(tmp_path, assemblies, workers):
    image = make_image("float32", 3)
    options = {"blockxsize": 32, "blockysize": 32, "predictor": 3}
    run_map(workers, Tiling("tiles", 32), image, tmp_path / "encoded.tif", options,
            fn=float_result, params={}, margin=0)
    run_map(workers, Tiling("tiles", 24), image, tmp_path / "old.tif", options,
            fn=float_result, params={}, margin=0)
    assert len(assemblies) == 1  # 24-pixel tiles are not whole 32-pixel blocks: the old path
    assert_same_file(tmp_path / "encoded.tif", tmp_path / "old.tif")
    assert np.array_equal(read(tmp_path / "encoded.tif")[0], image + 0.5, equal_nan=True)


@pytest.mark.parametrize("options", [{"blockxsize": 32, "blockysize": 32, "predictor": 3},
                                     {"tiled": False, "blockysize": 16}])
def test_the_old_path_s_file_is_the_same_every_time_and_holds_each_block_once(
        tmp_path, assemblies, options):
    """Tiles not whole blocks, written here by a TileWriter under a small GDAL cache (as a
    memory budget caps it), from two workers whose tiles come in varying orders: the same
    bytes every run, the size of the blocks plus the header (no block appended twice)."""
    import tifffile

    image = make_image("float32", 3, shape=(160, 192))
    files = []
    for run in range(3):
        path = tmp_path / f"run{run}.tif"
        with rasterio.Env(GDAL_CACHEMAX=120_000):
            run_map(2, Tiling("tiles", 24), image, path, options, fn=float_result, params={},
                    margin=0)
        assert np.array_equal(read(path)[0], image + 0.5, equal_nan=True)
        with tifffile.TiffFile(path) as tiff:
            counts = tiff.pages[0].databytecounts
        assert path.stat().st_size <= sum(counts) + 1024 + 8 * len(counts)
        files.append(path.read_bytes())
    assert assemblies == []  # 24-pixel tiles are not whole blocks: written here
    assert files[0] == files[1] == files[2]


def test_only_aligned_tilings_and_handled_options_are_encoded(tmp_path):
    profile = {**PROFILE, "count": 1, "dtype": "uint8", "height": 83, "width": 101}
    target = OutputFile(tmp_path / "out.tif", {"blockxsize": 32, "blockysize": 32})

    def tiles(size: int, mode: str = "tiles"):
        return plan_step(83, 101, margin=0, tiling=Tiling(mode, size), workers=2).tiles()

    assert encoded_target(profile, target, tiles(64)) is not None
    assert encoded_target(profile, target, tiles(48)) is None  # 48 is not whole 32-pixel blocks
    assert encoded_target(profile, target, tiles(32, "strips")) is not None  # the edge's blocks
    assert encoded_target(profile, target, tiles(48, "strips")) is None
    jpeg = OutputFile(tmp_path / "out.tif", {"blockxsize": 32, "blockysize": 32,
                                             "compress": "jpeg"})
    assert encoded_target(profile, jpeg, tiles(64)) is None


@pytest.mark.parametrize("workers", [1, 2])
def test_a_callable_raising_mid_map_leaves_no_part_file_and_no_staged_file(
        tmp_path, assemblies, workers):
    image = make_image("uint8", 1, shape=(256, 256))
    out = tmp_path / "out"
    with pytest.raises(StepError, match="user code divided by zero"), \
            Staging() as staging, Engine(workers, tiling=Tiling("tiles", 32)) as engine:
        staged = staging.stage(out / "result.tif")
        source = engine.from_array(image, profile_for(image))
        engine.map(raises, [source], params={"bad_tile": 40}, margin=0,
                   files=[OutputFile(staged, {"blockxsize": 32, "blockysize": 32})])
    assert assemblies == []
    assert not out.exists()  # no part file, no staged file, not even the folder made for them


@pytest.mark.parametrize("workers", [1, 2])
def test_a_full_disk_while_parts_are_written_names_the_output(tmp_path, monkeypatch, workers):
    appended = PartFile.append

    def full_after_some(self, data):
        if os.path.getsize(self.path) > 2000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return appended(self, data)

    written_at = EncodedTarget._write

    def full_at_some(self, offsets, encoded):
        if min(offsets.values()) > 2000:
            raise PartWriteError(str(write_error(self.path, self.display, "cannot write", [],
                                                 OSError(errno.ENOSPC, "full"))))
        return written_at(self, offsets, encoded)

    monkeypatch.setattr(PartFile, "append", full_after_some)  # the pool's workers fork after
    monkeypatch.setattr(EncodedTarget, "_write", full_at_some)  # at their places
    image = make_image("uint8", 1, shape=(256, 256))
    with pytest.raises(RasterError) as raised, Staging() as staging, \
            Engine(workers, tiling=Tiling("tiles", 32), start_method="fork") as engine:
        staged = staging.stage(tmp_path / "result.tif")
        source = engine.from_array(image, profile_for(image))
        engine.map(float_result, [source], margin=0, profile_fn=lambda p, _: [dict(p[0], dtype="float32")],
                   files=[OutputFile(staged, {"blockxsize": 32, "blockysize": 32,
                                              "compress": "deflate"}, "result.tif")])
    assert str(raised.value) == ("result.tif: cannot write: no space left on device (the "
                                 "filesystem holding it is full)")
    assert list(tmp_path.iterdir()) == []


def test_a_failure_to_assemble_removes_the_parts(tmp_path, monkeypatch):
    def no_room(path, layout, metadata, blocks, **kwargs):
        raise RasterError(f"{path}: cannot write: no space left on device")

    monkeypatch.setattr(assembly_module, "write_geotiff_header", no_room)
    monkeypatch.setattr(assembly_module, "finish_in_order_geotiff",
                        lambda path, layout, metadata, blocks, order, **kwargs: no_room(
                            path, layout, metadata, blocks))
    image = make_image("uint8", 1, shape=(64, 64))
    with pytest.raises(RasterError, match="no space left"), Staging() as staging:
        staged = staging.stage(tmp_path / "result.tif")
        run_map(1, Tiling("tiles", 32), image, staged, {"blockxsize": 32, "blockysize": 32})
    assert list(tmp_path.iterdir()) == []


def test_part_files_are_named_after_their_staged_file_and_pid(tmp_path):
    staged = tmp_path / ".result.tif.eoscale-tmp-12-ab"
    assert part_path(staged, 345) == tmp_path / f".result.tif.eoscale-tmp-12-ab{PART_MARK}345"
    (tmp_path / f"{staged.name}{PART_MARK}345").write_bytes(b"x")
    (tmp_path / f"{staged.name}{PART_MARK}678").write_bytes(b"y")
    (tmp_path / "other.tif.part-1").write_bytes(b"z")
    encoded_module.remove_parts(staged)
    assert [p.name for p in tmp_path.iterdir()] == ["other.tif.part-1"]


def write_input(path: Path, array: np.ndarray) -> Path:
    count, height, width = array.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count,
                       dtype=array.dtype, crs="EPSG:32631", nodata=0,
                       transform=Affine(10, 0, 600000, 0, -10, 4800000)) as dataset:
        dataset.write(array)
    return path


def write_pipeline(folder: Path, outputs: dict, tiling: dict | None = None) -> Path:
    pipeline = {"version": 1, "inputs": {"scene": "scene.tif"},
                "steps": [{"name": "copy", "map": "eoscale.ops.select_bands",
                           "inputs": ["scene"], "params": {"bands": [1, 2]}}],
                "outputs": outputs}
    if tiling:
        pipeline["tiling"] = tiling
    path = folder / f"p{len(list(folder.glob('p*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    return path


def test_overviews_cogs_and_quicklooks_are_made_from_an_encoded_output(tmp_path, assemblies,
                                                                        monkeypatch):
    """Through ``eoscale run``: the outputs the workers encoded (the plan aligns their tiles)
    get the same overviews, COG and quicklook as the same outputs written the old way (a forced
    tile size that is not whole blocks)."""
    from click.testing import CliRunner
    from rio_cogeo.cogeo import cog_validate

    from eoscale.cli.main import cli

    scene = np.random.default_rng(4).integers(1, 4000, size=(2, 700, 650), dtype=np.uint16)
    write_input(tmp_path / "scene.tif", scene)
    monkeypatch.chdir(tmp_path)
    import eoscale.engine.overviews as overviews_module  # with overviews: assembled there
    write_levels_header = overviews_module.write_levels_header
    monkeypatch.setattr(overviews_module, "write_levels_header",
                        lambda *args, **kwargs: (assemblies.append(set()),
                                                 write_levels_header(*args, **kwargs))[1])
    runs = {}
    # 512: whole blocks of the GeoTIFF's 128 and of the COG's intermediate GeoTIFF's 512.
    for name, tiling in (("encoded", {"tile_size": 512}), ("old", {"tile_size": 200})):
        outputs = {"copy": {"path": f"{name}/copy.tif", "overviews": [2, 4],
                            "quicklook": True, "options": {"blockxsize": 128,
                                                           "blockysize": 128}}}
        cog = {"copy": {"path": f"{name}/cog.tif", "format": "COG"}}
        for spec in (outputs, cog):
            before = len(assemblies)
            done = CliRunner().invoke(cli, ["run", str(write_pipeline(tmp_path, spec, tiling)),
                                             "-w", "2", "-q"], catch_exceptions=False)
            assert done.exit_code == 0, done.output
            runs[name, spec["copy"].get("format", "GTiff")] = len(assemblies) - before
    assert runs == {("encoded", "GTiff"): 1, ("encoded", "COG"): 1, ("old", "GTiff"): 0,
                    ("old", "COG"): 0}
    for file in ("copy.tif", "cog.tif"):
        with rasterio.open(tmp_path / "encoded" / file) as mine, \
                rasterio.open(tmp_path / "old" / file) as theirs:
            assert np.array_equal(mine.read(), scene) and np.array_equal(theirs.read(), scene)
            assert mine.profile == theirs.profile and mine.tags() == theirs.tags()
            assert mine.overviews(1) == theirs.overviews(1) != []
            for level in range(len(mine.overviews(1))):
                with rasterio.open(tmp_path / "encoded" / file, overview_level=level) as a, \
                        rasterio.open(tmp_path / "old" / file, overview_level=level) as b:
                    assert np.array_equal(a.read(), b.read())
    assert cog_validate(str(tmp_path / "encoded" / "cog.tif"))[0]
    assert (tmp_path / "encoded" / "copy.png").read_bytes() == (
        tmp_path / "old" / "copy.png").read_bytes()
    assert sorted(p.name for p in (tmp_path / "encoded").iterdir()) == [
        "cog.tif", "copy.png", "copy.tif"]


#: Runs ``eoscale`` with a 128 KiB tmpfs over the folder $1 (holding what it held); copies what
#: the tmpfs holds afterwards to $2; exits with eoscale's code, 97 if the tmpfs cannot be mounted.
IN_SMALL_TMPFS = r"""
folder=$1 after=$2; shift 2
cp -a "$folder/." "$after/" && mount -t tmpfs -o size=128k tmpfs "$folder" &&
  cp -a "$after/." "$folder/" && rm -rf "$after"/* || exit 97
"$@"
code=$?
cp -a "$folder/." "$after/"
exit "$code"
"""


def test_a_full_disk_while_the_workers_write_parts_fails_the_run_and_leaves_nothing(tmp_path):
    """Through ``eoscale run``, on a real full filesystem (a 128 KiB tmpfs in a user and mount
    namespace): exit 1, one error line naming the output, the previous output intact."""
    namespace = ["unshare", "--user", "--map-root-user", "--mount"]
    scene = np.random.default_rng(3).integers(1, 1000, size=(2, 400, 400), dtype=np.uint16)
    write_input(tmp_path / "scene.tif", scene)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "result.tif").write_bytes(b"the previous result")
    (tmp_path / "after").mkdir()
    spec = write_pipeline(tmp_path, {"copy": {"path": "out/result.tif", "options": {
        "blockxsize": 64, "blockysize": 64}}})
    plan = subprocess.run([sys.executable, "-m", "eoscale", "run", str(spec), "-w", "2",
                           "--dry-run"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "tiles of 128 px" in plan.stdout, plan.stdout  # whole blocks: encoded by the workers
    try:
        done = subprocess.run([*namespace, "sh", "-c", IN_SMALL_TMPFS, "sh",
                               str(tmp_path / "out"), str(tmp_path / "after"), sys.executable,
                               "-m", "eoscale", "run", str(spec), "--overwrite", "-w", "2"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        pytest.skip("needs unshare (util-linux) to mount a small tmpfs")
    if done.returncode == 97 or "unshare:" in done.stderr:
        pytest.skip(f"this machine does not let a user namespace mount a tmpfs: {done.stderr}")
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert errors == [("error: out/result.tif: cannot write: no space left on device (the "
                       "filesystem holding it is full)")], done.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "after").iterdir()} == {
        "result.tif": b"the previous result"}


def test_an_explicit_layout_that_leaves_blocks_out_is_written_the_old_way(tmp_path, assemblies):
    from rasterio.windows import Window

    from eoscale.engine.tiling import ExplicitLayout

    image = make_image("uint8", 1, shape=(64, 64))
    first, second = Window(0, 0, 32, 32), Window(32, 32, 32, 32)  # two of four blocks
    with Engine(1) as engine:
        source = engine.from_array(image, profile_for(image))
        engine.map(float_result, [source], margin=0,
                   profile_fn=lambda p, _: [dict(p[0], dtype="float32")],
                   layout=ExplicitLayout(64, 64, ((first, first), (second, second))),
                   files=[OutputFile(tmp_path / "out.tif", {"blockxsize": 32,
                                                            "blockysize": 32})])
    assert assemblies == []
    pixels = read(tmp_path / "out.tif")[0]
    assert np.array_equal(pixels[:, :32, :32], image[:, :32, :32] + 0.5)
    assert np.array_equal(pixels[:, 32:, 32:], image[:, 32:, 32:] + 0.5)


def test_a_worker_dying_mid_map_leaves_no_part_file_and_no_staged_file(tmp_path):
    from callables import dies

    from eoscale.errors import WorkerDiedError

    image = make_image("uint8", 1, shape=(128, 128))
    with pytest.raises(WorkerDiedError), Staging() as staging, \
            Engine(2, tiling=Tiling("tiles", 32)) as engine:
        staged = staging.stage(tmp_path / "result.tif")
        source = engine.from_array(image, profile_for(image))
        engine.map(dies, [source], margin=0, profile_fn=lambda p, _: [dict(p[0])],
                   files=[OutputFile(staged, {"blockxsize": 32, "blockysize": 32})])
    assert list(tmp_path.iterdir()) == []


def test_the_part_files_of_a_killed_run_s_scratch_file_are_removed_by_a_cleanup(tmp_path):
    from eoscale.engine.scratch import cleanup_stale_scratch, list_scratch

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = part_path(tmp_path / f"eoscale_{dead_pid}_0a1b2c3d_copy.tif", writer_name(4242))
    live = part_path(tmp_path / f"eoscale_{os.getpid()}_0a1b2c3d_copy.tif", writer_name(4242))
    for part in (stale, live):
        part.write_bytes(b"blocks")
    assert list_scratch(tmp_path) == sorted([(stale, dead_pid), (live, os.getpid())])
    assert cleanup_stale_scratch(tmp_path) == [stale]
    assert list(tmp_path.iterdir()) == [live]


@pytest.fixture
def written_here(monkeypatch) -> list[int]:
    """The offsets this process wrote tiles' blocks at, in the file (the pool's workers fork
    after: their writes are not counted here)."""
    offsets: list[int] = []
    write = EncodedTarget._write

    def spy(self, places, encoded):
        offsets.append(min(places.values()))
        return write(self, places, encoded)

    monkeypatch.setattr(EncodedTarget, "_write", spy)
    return offsets


@pytest.mark.parametrize("workers", [1, 2])
def test_the_blocks_are_written_in_tile_order_and_the_file_is_the_same_every_time(
        tmp_path, assemblies, written_here, workers):
    """Each tile's blocks go at their place in the staged file (after the head and the earlier
    tiles' blocks: none copied in-process, where the tiles come in order); with workers, this
    process writes none, not even the first tile's (computed on a worker to learn the profile,
    then stored by the worker that gets it); and whoever wrote what, where, the file's bytes
    are the same on every run."""
    image = make_image("float32", 2, shape=(160, 192))
    options = {"blockxsize": 32, "blockysize": 32, "predictor": 3}
    files = []
    for run in range(3):
        path = tmp_path / f"run{run}.tif"
        run_map(workers, Tiling("tiles", 32), image, path, options, fn=float_result, params={},
                margin=0)
        files.append(path.read_bytes())
        oracle = written_by_rasterio(image + 0.5, {**profile_for(image), "count": 2,
                                                   "dtype": "float32", "height": 160,
                                                   "width": 192}, tmp_path / "oracle.tif",
                                     options)
        assert_same_file(path, oracle)
    assert files[0] == files[1] == files[2]
    assert len(assemblies) == 3  # the encoded path, every time
    if workers == 1:
        assert len(written_here) == 3 * 30 and assemblies[0] == {str(tmp_path / "run0.tif")}
    else:
        assert written_here == []


@pytest.fixture
def encoded_here(monkeypatch) -> list[int]:
    """The blocks this process encoded (the pool's workers fork after: theirs are not
    counted)."""
    calls: list[int] = []
    encode = BlockLayout.encode

    def spy(self, *args, **kwargs):
        calls.append(1)
        return encode(self, *args, **kwargs)

    monkeypatch.setattr(BlockLayout, "encode", spy)
    return calls


@pytest.mark.parametrize("tile_size", [32, 256])  # 20 tiles; one tile
def test_with_workers_this_process_encodes_no_block_of_a_step_without_profile(
        tmp_path, encoded_here, tile_size):
    """A step without a profile function has its first tile computed on a worker to learn the
    outputs' dtypes; that tile is then stored and encoded by a worker like the others (its
    results go with the map's job), not here, even when the image is that one tile."""
    image = make_image("uint16", 2, shape=(160, 128))
    options = {"blockxsize": 32, "blockysize": 32, "compress": "zstd"}
    path = tmp_path / "out.tif"
    with Engine(2, tiling=Tiling("tiles", tile_size)) as engine:
        source = engine.from_array(image, profile_for(image))
        engine.map(float_result, [source], margin=0, files=[OutputFile(path, options)])
    assert encoded_here == []
    with rasterio.open(path) as dataset:
        assert dataset.dtypes[0] == "float64"
        assert np.array_equal(dataset.read(), image + 0.5)


def test_a_cog_of_a_step_without_profile_is_encoded_by_the_workers_overviews_too(
        tmp_path, encoded_here):
    """The same through a pipeline, a COG whose dtype the first tile tells: the plan says the
    workers encode it, overviews too, and this process encodes no block of it."""
    from eoscale.cli.render import plan_text
    from eoscale.pipeline import load_pipeline, plan_run
    from eoscale.pipeline.plan import Resources
    from eoscale.pipeline.runner import run_pipeline

    image = make_image("uint8", 1, shape=(300, 280))
    profile = {**profile_for(image), "count": 1, "dtype": "uint8", "height": 300, "width": 280}
    with rasterio.open(tmp_path / "in.tif", "w", **creation_profile(profile, {})) as dataset:
        dataset.write(image)
    document = {"version": 1, "inputs": {"src": str(tmp_path / "in.tif")},
                "steps": [{"name": "half", "map": "callables.float_result", "inputs": ["src"]}],
                "outputs": {"half": {"path": str(tmp_path / "out.tif"), "format": "COG",
                                     "options": {"blocksize": 64}}}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(document))
    plan = plan_run(load_pipeline(tmp_path / "p.yaml"), Resources(2, None, base=0,
                                                                  executor="processes"))
    assert "half: " in plan_text(plan)
    assert "encoded by the workers, overviews too" in plan_text(plan)
    run_pipeline(plan)
    assert encoded_here == []
    with rasterio.open(tmp_path / "out.tif") as dataset:
        assert dataset.dtypes[0] == "float64" and dataset.overviews(1) == [2, 4, 8]
        assert np.array_equal(dataset.read(), image + 0.5)


def test_a_tile_encoded_twice_to_another_size_has_the_file_written_anew(
        tmp_path, assemblies, monkeypatch):
    """A tile encoded twice, the first time to another size (a task run again): its size on
    the board is not changed, so it goes to a part file and the later tiles' places (after the
    first size) are not where the final sizes put them; the staged file becomes a part, and the
    file is written anew from it, every block intact."""
    tile_place = encoded_module.tile_place
    earlier: list[int] = []

    def twice(sizes, index, size):
        if index == 5 and not earlier:  # an earlier attempt, 3 bytes longer, published first
            earlier.append(tile_place(sizes, index, size + 3))
        return tile_place(sizes, index, size)

    monkeypatch.setattr(encoded_module, "tile_place", twice)
    image = make_image("uint16", 1, shape=(96, 128))
    path = tmp_path / "out.tif"
    run_map(1, Tiling("tiles", 32), image, path, {"blockxsize": 32, "blockysize": 32,
                                                   "compress": "zstd"})
    oracle = written_by_rasterio(scipy_filter([image], [], {"filter": "maximum", "radius": 1,
                                                            "mode": "nearest"}),
                                 {**profile_for(image), "count": 1, "dtype": "uint16",
                                  "height": 96, "width": 128}, tmp_path / "oracle.tif",
                                 {"blockxsize": 32, "blockysize": 32, "compress": "zstd"})
    assert_same_file(path, oracle)
    assert earlier and earlier[0] is not None
    [parts] = assemblies  # written anew: from the staged file, become a part
    assert {Path(part).name for part in parts} == {f"out.tif{PART_MARK}all",
                                                   part_path(path).name}  # tile 5's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oracle.tif", "out.tif"]


def test_a_tile_s_blocks_are_written_whole_in_batches_and_short_writes(tmp_path, monkeypatch):
    """write_all_at: every byte of every block, in order, from the offset, however few
    buffers a call takes and however few bytes each call writes."""
    chunks = [os.urandom(size) for size in (0, 5, 17, 1, 0, 4096, 3, 9, 70000)]
    pwritev = os.pwritev

    def short(descriptor, buffers, offset):  # at most 1000 bytes a call
        first = bytes(buffers[0])[:1000]
        return pwritev(descriptor, [first], offset)

    monkeypatch.setattr(encoded_module, "_IOV_MAX", 2)
    for name, patch in (("batches", None), ("short", short)):
        if patch is not None:
            monkeypatch.setattr(encoded_module.os, "pwritev", patch)
        path = tmp_path / name
        path.write_bytes(b"")
        with open(path, "r+b") as out:
            encoded_module.write_all_at(out.fileno(), chunks, 7)
        assert path.read_bytes() == bytes(7) + b"".join(chunks)
