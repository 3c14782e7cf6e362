"""The same pipelines on a Dask cluster and on the process pool give the same files, bit for bit,
and a cluster run holds no image in shared memory."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

import eoscale
from eoscale.engine.cluster_worker import worker_gdal_cache
from eoscale.engine.shared import list_segments
from eoscale.errors import ConfigError

NAIP = "naip_m_4709963_se_14_1_20120731.tif"

#: A map, a chain with margins (median then gaussian: margins add up), a multi-output step, two
#: reduces, a ${step} reference in a map's params, and an input that is also an output.
CHAIN = """\
version: 1
tiling: {{tile_size: 128}}
inputs: {{scene: {scene}}}
steps:
  - name: ndvi
    map: eoscale.ops.band_math
    inputs: [scene]
    params: {{expression: "(scene[4] - scene[1]) / (scene[4] + scene[1])", dtype: float32}}
  - name: median
    map: eoscale.ops.median_filter
    inputs: [ndvi]
    params: {{size: 5}}
  - name: smooth
    map: eoscale.ops.gaussian_filter
    inputs: [median]
    params: {{sigma: 1.5, truncate: 2.0}}
  - name: halves
    map: cluster_ops.split_bands
    inputs: [scene]
    outputs: [low, high]
  - name: stats
    reduce: eoscale.ops.stats
    inputs: [smooth]
  - name: histogram
    reduce: eoscale.ops.histogram
    inputs: [smooth]
    params: {{bins: 32, range: "${{stats}}"}}
  - name: standard
    map: cluster_ops.standardise
    inputs: [smooth]
    params: {{stats: "${{stats}}"}}
outputs:
  smooth: out/smooth.tif
  low: out/low.tif
  high: out/high.tif
  standard: out/standard.tif
  stats: out/stats.json
  histogram: out/histogram.json
  scene: out/scene.tif
"""
OUTPUTS = ("smooth.tif", "low.tif", "high.tif", "standard.tif", "stats.json", "histogram.json",
           "scene.tif")


def chain(folder: Path, scene: Path) -> Path:
    path = folder / "chain.yaml"
    path.write_text(CHAIN.format(scene=scene), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pool_result(tmp_path_factory, shared_rasters) -> Path:
    """The chain run on the process pool (2 workers): the oracle."""
    folder = tmp_path_factory.mktemp("pool")
    shutil.copy(Path(__file__).parent / "cluster_ops.py", folder / "cluster_ops.py")
    eoscale.run(chain(folder, shared_rasters / NAIP), workers=2)
    return folder / "out"


def same_file(a: Path, b: Path) -> None:
    if a.suffix == ".json":
        assert a.read_text() == b.read_text(), a.name
        return
    with rasterio.open(a) as one, rasterio.open(b) as two:
        assert repr(one.profile) == repr(two.profile), a.name  # nodata may be NaN
        assert one.read().tobytes() == two.read().tobytes(), a.name  # bit for bit, NaNs too


def descendants(pid: int) -> set[int]:
    """The pids of every process below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


class SegmentWatch:
    """Lists the eoscale_ segments in /dev/shm every few milliseconds while a run goes on: those
    of this process and its descendants (a local cluster's workers), not other programs'."""

    def __init__(self):
        self.before = {name for name, _ in list_segments()}
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _ours(self) -> set[str]:
        ours = descendants(os.getpid()) | {os.getpid()}
        return {name for name, pid in list_segments() if pid in ours}

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.seen.update(self._ours())
            time.sleep(0.01)

    def __enter__(self) -> SegmentWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.seen.update(self._ours())

    @property
    def new(self) -> set[str]:
        return self.seen - self.before


def test_a_chain_on_the_cluster_is_bit_for_bit_the_process_pool_s(client, ops_dir, shared_rasters,
                                                                  pool_result):
    with SegmentWatch() as watch:
        result = eoscale.run(chain(ops_dir, shared_rasters / NAIP), cluster=client,
                             scratch=ops_dir / "scratch")
    assert not watch.new, f"shared-memory segments made during a cluster run: {watch.new}"
    assert result.plan.resources.executor == "cluster"
    assert {image.lives for image in result.plan.images.values()} <= {"file", "written", "spilled",
                                                                      "fused"}
    for name in OUTPUTS:
        same_file(ops_dir / "out" / name, pool_result / name)
    assert list((ops_dir / "scratch").iterdir()) == []
    assert result.results["stats"][0]["count"] > 0


def test_a_local_cluster_started_by_the_run(ops_dir, shared_rasters, pool_result):
    """cluster="local:2": the run starts its own LocalCluster, uses the system's temporary
    folder for scratch, and closes the cluster at the end."""
    with SegmentWatch() as watch:
        result = eoscale.run(chain(ops_dir, shared_rasters / NAIP), cluster="local:2")
    assert not watch.new
    assert result.plan.resources.cluster == "local:2"
    for name in ("smooth.tif", "low.tif", "stats.json"):
        same_file(ops_dir / "out" / name, pool_result / name)


def test_a_local_cluster_s_workers_are_forked_only_from_one_thread_without_sockets():
    """Forked from a process holding a socket (GDAL's HTTP connections) or running threads, a
    worker could share the connection, or inherit a lock held by another thread."""
    check = ("import socket, threading, time\n"
             "from eoscale.engine.cluster import local_start_method\n"
             "print(local_start_method())\n"
             "with socket.socket():\n"
             "    print(local_start_method())\n"
             "threading.Thread(target=time.sleep, args=(1,)).start()\n"
             "print(local_start_method())\n")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                          check=True)
    expected = "fork" if sys.platform == "linux" else "None"
    assert done.stdout.split() == [expected, "None", "None"]


def test_a_cluster_worker_s_gdal_cache_is_raised_within_its_memory():
    mib = 2**20
    assert worker_gdal_cache(16 * mib, None) == 128 * mib
    assert worker_gdal_cache(16 * mib, 1024 * mib) == 64 * mib
    assert worker_gdal_cache(16 * mib, 128 * mib) == 16 * mib  # never below the plan's
    assert worker_gdal_cache(512 * mib, 64 * 1024 * mib) == 512 * mib


def test_a_remote_cluster_needs_an_explicit_scratch_folder(client, ops_dir, shared_rasters):
    path = chain(ops_dir, shared_rasters / NAIP)  # a reduce reads median: spilled to scratch
    path.write_text(path.read_text().replace(
        "  - name: stats\n", "  - {name: peek, reduce: eoscale.ops.stats, inputs: [median]}\n"
        "  - name: stats\n"), encoding="utf-8")
    with pytest.raises(ConfigError, match="same path"):
        eoscale.run(path, cluster=client)
    assert not (ops_dir / "out").exists()


def test_the_plan_on_a_cluster_holds_nothing_in_shared_memory(ops_dir, shared_rasters):
    plan = eoscale.plan(chain(ops_dir, shared_rasters / NAIP), cluster="local:2")
    lives = {name: image.lives for name, image in plan.images.items()}
    # ndvi > median > smooth is one fused chain: nothing between them goes to the filesystem.
    assert lives == {"scene": "file", "ndvi": "fused", "median": "fused", "smooth": "spilled",
                     "low": "written", "high": "written", "standard": "written"}
    assert [plan.steps[i].name for i in plan.steps[2].chain] == ["ndvi", "median", "smooth"]
    assert "share no memory" in plan.images["scene"].why
    assert plan.peak.images == 0
    assert plan.resources.workers == 2
    assert all(step.chunks <= 256 for step in plan.steps)


def test_the_engine_on_a_cluster_reads_files_and_writes_outputs_as_computed(client, tmp_path,
                                                                            shared_rasters):
    """The library: Engine(cluster=...) with inputs opened from files and map outputs given
    files; holding an image in shared memory is refused, naming why."""
    from eoscale.engine import Engine
    from eoscale.engine.filed import OutputFile
    from eoscale.ops import mean_filter, stats

    source = shared_rasters / "srtm_zion.tif"
    results = {}
    for label, options in (("cluster", {"cluster": client}), ("pool", {"workers": 2})):
        with Engine(tiling=eoscale.Tiling("tiles", 128), **options) as engine:
            dem = engine.open(source)
            engine.map(mean_filter, [dem], params={"size": 5},
                       files=[OutputFile(tmp_path / f"{label}.tif")])
            results[label] = engine.reduce(stats, [dem])
            if label == "cluster":
                with pytest.raises(ConfigError, match="share no memory"):
                    engine.load(source)
    assert results["cluster"] == results["pool"]
    same_file(tmp_path / "cluster.tif", tmp_path / "pool.tif")


def test_the_pipeline_s_gdal_options_reach_every_worker(client, ops_dir, shared_rasters):
    path = ops_dir / "gdal.yaml"
    path.write_text(f"version: 1\ntiling: {{tile_size: 128}}\n"
                    f"inputs: {{dem: {shared_rasters / 'srtm_zion.tif'}}}\n"
                    "steps: [{name: option, map: cluster_ops.gdal_option, inputs: [dem]}]\n"
                    "outputs: {option: out/option.tif}\n"
                    "gdal: {EOSCALE_TEST_VALUE: '7'}\n", encoding="utf-8")
    eoscale.run(path, cluster=client, scratch=ops_dir / "scratch")
    with rasterio.open(ops_dir / "out" / "option.tif") as result:
        assert set(result.read().ravel().tolist()) == {7}
    assert set(client.run(lambda: __import__("sys").path[0]).values()) == {str(ops_dir)}


def test_the_segment_watch_sees_the_segments_of_this_process():
    """The control of the no-segment checks: an image held in shared memory is seen."""
    import numpy as np

    from eoscale.engine import Engine

    with SegmentWatch() as watch, Engine(2) as engine:
        engine.from_array(np.zeros((1, 64, 64), np.uint8))
        time.sleep(0.05)
    assert len(watch.new) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_workers_keep_a_tile_s_freed_memory_while_a_run_uses_them_then_give_it_back(client):
    from heap_probe import tile_faults

    from eoscale.engine.cluster_worker import SetupPlugin, WorkerSetup

    name = "eoscale-test-heap"
    client.register_plugin(SetupPlugin(WorkerSetup()), name=name)
    try:
        kept = client.run(tile_faults)
    finally:
        client.unregister_worker_plugin(name)
    restored = client.run(tile_faults)
    # while a run's plugin is there, no tile faults its memory in again; once it is gone, the
    # nanny's trim threshold (64 KiB) gives every tile's memory back, and the next faults it in
    assert all(faults < 100 for faults in kept.values()), kept
    assert all(faults > 4 * 1000 for faults in restored.values()), restored


RESTARTED_WORKER_LOGGING = """
import logging, os, time
import distributed
from eoscale.engine.cluster import DaskExecutor

if __name__ == "__main__":
    executor = DaskExecutor._start_local(distributed, 2)
    try:
        client = executor.client
        first = sorted(client.scheduler_info()["workers"])[0]
        client.submit(os._exit, 1, workers=[first], pure=False, allow_other_workers=False)
        deadline = time.time() + 60
        while time.time() < deadline:
            workers = sorted(client.scheduler_info()["workers"])
            if first not in workers and len(workers) == 2:
                break
            time.sleep(0.1)
        levels = client.run(lambda: logging.getLogger("distributed.worker").getEffectiveLevel())
        print(sorted(levels.values())[-1])
    finally:
        executor.close()
"""


def test_a_worker_dask_restarts_in_a_local_cluster_logs_nothing_but_critical(tmp_path):
    """A worker the nanny starts again after a death is spawned: it configures its logging as
    it imports distributed, and logged its start ("Registered to") and, closing with the
    cluster, "ConnectionPool is closed" to the user's terminal. Its level is critical."""
    (tmp_path / "restart.py").write_text(RESTARTED_WORKER_LOGGING)
    done = subprocess.run([sys.executable, "restart.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(logging.CRITICAL)], done.stdout + done.stderr


def test_a_run_on_a_scheduler_s_address_reports_this_process_s_peak_without_sampling(
        client, tmp_path, monkeypatch):
    """Workers that run apart are not this process's tree: no sampling thread, and the peak
    said is this process's own high-water mark; a client made from a cluster object here
    (its workers may be children) still samples the tree."""
    from eoscale.engine.memory import TreeSampler, own_peak_rss

    with rasterio.open(tmp_path / "in.tif", "w", driver="GTiff", height=300, width=200, count=1,
                       dtype="float32") as dst:
        dst.write(np.arange(60000, dtype=np.float32).reshape(1, 300, 200))
    (tmp_path / "p.yaml").write_text(
        "version: 1\ninputs: {image: in.tif}\n"
        "steps:\n  - {name: mean, map: eoscale.ops.mean_filter, inputs: [image], "
        "params: {size: 3}}\noutputs: {mean: out.tif}\n", encoding="utf-8")
    started: list[TreeSampler] = []
    start = TreeSampler.start
    monkeypatch.setattr(TreeSampler, "start", lambda self: (started.append(self), start(self)))
    result = eoscale.run(tmp_path / "p.yaml", cluster=client.scheduler.address,
                         scratch=tmp_path)
    assert started == []
    assert 10 * 2**20 < result.peak_bytes <= own_peak_rss()
    result = eoscale.run(tmp_path / "p.yaml", cluster=client, scratch=tmp_path, overwrite=True)
    assert len(started) == 1 and result.peak_bytes == started[0].peak



def test_pipelines_in_other_folders_with_a_module_of_the_same_name_each_run_their_own(
        client, tmp_path):
    """Long-lived workers: a run from folder A, then one from folder B, each with its own
    ``same_ops.py``, then A again: each run's pixels are its own module's (the workers kept A's
    module and ran it for B, and one run behind after that)."""
    with rasterio.open(tmp_path / "in.tif", "w", driver="GTiff", height=40, width=30, count=1,
                       dtype="uint8") as dst:
        dst.write(np.ones((1, 40, 30), dtype=np.uint8))
    for name, value in (("a", 11), ("b", 22)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "same_ops.py").write_text(
            "import numpy as np\n"
            f"def constant(arrays, profiles, params):\n    return [np.full_like(arrays[0], {value})]\n",
            encoding="utf-8")
        (folder / "p.yaml").write_text(
            f"version: 1\ninputs: {{image: {tmp_path / 'in.tif'}}}\n"
            "steps:\n  - {name: c, map: same_ops.constant, inputs: [image]}\n"
            "outputs: {c: out.tif}\n", encoding="utf-8")
    for name, value in (("a", 11), ("b", 22), ("a", 11), ("b", 22)):
        eoscale.run(tmp_path / name / "p.yaml", cluster=client.scheduler.address,
                    scratch=tmp_path, overwrite=True)
        with rasterio.open(tmp_path / name / "out.tif") as src:
            assert set(np.unique(src.read())) == {value}, f"run from folder {name}"
