"""Scaling on a Dask cluster simulated on loopback: 1, 2 and 4 worker processes of one thread.

    python benchmarks/cluster_scaling.py [--size 8192] [--workers 1,2,4] [--repeat 3]
                                         [--workloads w1,w3] [--no-pool] [--direct]
                                         [--fit-runs 4096,8192:512]
                                         [--eoscale-ref REF] [--out benchmarks/results/cluster_scaling.json]
                                         [--machines 1,2,4,8,16] [--cores 8] [--estimate-size N]
                                         [--fs-bandwidth 1GB] [--net-bandwidth 1.25GB]
    python benchmarks/cluster_scaling.py --estimate-from benchmarks/results/cluster_scaling.json
                                         [--machines ...] [--cores ...] [...]

For each worker count N it first runs each workload ``--repeat`` times on the process pool
(``eoscale run --workers N``; 1: everything in the main process), for reference, while no cluster
is up (an idle Dask worker still takes CPU). Then it starts a scheduler (``dask scheduler``) and
N workers (``dask worker --nworkers N --nthreads 1``, each behind its nanny) as processes on
127.0.0.1, measures their idle CPU for a few seconds, runs each workload once on a tiny scene
(the workers import eoscale, rasterio and scipy, as the long-lived workers of a real cluster
have) and once more, timed (a run's fixed cost: start, plan, connect, one task per step, close),
then ``--repeat`` times with ``eoscale run --cluster tcp://127.0.0.1:PORT``: the cluster is running
before the command starts, so its start is not in the wall time.

Each cluster run records, beside wall and CPU of the ``eoscale`` process (the client: planning,
receiving the blocks' records, writing the outputs' headers; the workers encode the blocks and
copy them into the files) and the output file's bytes and its header's: from the scheduler's task stream, the tasks, the seconds
they computed (a task's compute: decoding its windows, the callable, cutting the cores) and the
bytes of their results (what crossed loopback to the client); from timers put into the workers
(worker_timers.py), the seconds spent decoding windows; the CPU time the scheduler and the workers
(with their nannies) took during the run, also beyond their idle CPU, and the bytes the workers
read; each worker's gaps between a task's end and the next one's start (the scheduler's and the
client's latency, or the client holding tasks back while it writes). The load is recorded with
every run: the 1-minute load average before it, and the cores other work took during it (all the
machine's busy time less that of the client, the scheduler and the workers).

On a machine with C cores, N > C workers (with the client and the scheduler) share C cores: such
runs measure the overhead of more processes and more, smaller tasks, not a speedup.

With the fewest workers it also runs each workload once at the sizes of ``--fit-runs`` (SIZE
or SIZE:TILE, a tile size given to ``eoscale run``: as many pixels in more, smaller tasks), so
that the client's, the scheduler's and the workers' costs per task can be told apart from their
fixed costs and from what grows with the pixels. From these runs it estimates the wall time on N
machines, for the measured image or a larger one (``--estimate-size``), with the tasks eoscale
plans at that size (:mod:`scaling_model`, benchmarks/README.md), and the bytes the client reads
and writes per output byte. Writes the JSON report and the Markdown tables beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import datagen
import worker_timers
from measure import Measured, cpu_busy_seconds, run_measured, wait_for_quiet
from run import (
    HERE,
    REPO,
    WORKLOADS,
    Workload,
    child_env,
    eoscale_command,
    export_source,
    machine,
    outputs_equal,
    phases_of,
)
from scaling_model import add_estimate_options, estimate_all, estimate_markdown

MiB = 2 ** 20
#: The scene of the runs that warm the workers up (they import what a run needs) and measure a
#: run's fixed cost (start, plan, connect, one task per step, close).
TINY_SIZE = 512
SCRATCH = HERE / "results" / "scratch"
#: Seconds the cluster is watched idle after it starts, to know its idle CPU.
IDLE_SECONDS = 3.0


def tree_usage(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) and bytes read (``read_bytes``, all ``read()`` calls) of
    ``pid`` and its live descendants."""
    import psutil  # a dependency of distributed

    cpu, read = 0.0, 0
    root = psutil.Process(pid)
    for member in [root, *root.children(recursive=True)]:
        try:
            times, io = member.cpu_times(), member.io_counters()
        except psutil.NoSuchProcess:
            continue
        cpu += times.user + times.system
        read += io.read_chars
    return {"cpu_s": cpu, "read_bytes": read}


class LoopbackCluster:
    """A scheduler and N one-thread workers as processes on 127.0.0.1, and a client to watch
    them (its task stream); stopped (the processes this object started, by their ids) on exit."""

    def __init__(self, workers: int, env: dict[str, str]):
        import distributed

        self.folder = Path(tempfile.mkdtemp(prefix="eoscale-scaling-"))
        scheduler_file = self.folder / "scheduler.json"
        dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
        self.scheduler = subprocess.Popen(
            dask + ["--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
                    str(scheduler_file)], env=env, stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "scheduler.log", "wb"))
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.address = json.loads(scheduler_file.read_text())["address"]
        self.workers = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--nworkers",
             str(workers), "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
             "--local-directory", str(self.folder)], env=env, stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "workers.log", "wb"))
        self.client = distributed.Client(self.address, timeout=60)
        self.client.wait_for_workers(workers, timeout=120)
        self.client.get_task_stream()  # starts recording the task stream on the scheduler
        self.count = workers
        self.eoscale = sorted(set(self.client.run(_eoscale_file).values()))
        self.client.run(worker_timers.install)
        before, started = self.usage(), time.perf_counter()
        time.sleep(IDLE_SECONDS)
        after, seconds = self.usage(), time.perf_counter() - started
        #: Cores the scheduler and the workers take when idle (heartbeats, monitors).
        self.idle_cores = {key: (after[key] - before[key]) / seconds
                           for key in ("scheduler", "workers_cpu_s")}

    def usage(self) -> dict[str, float]:
        """So far: CPU seconds of the scheduler, and of the workers with their nannies; bytes the
        workers read (``read()`` calls: their files; their messages are a few kilobytes)."""
        return {"scheduler": tree_usage(self.scheduler.pid)["cpu_s"],
                **{f"workers_{k}": v for k, v in tree_usage(self.workers.pid).items()}}

    def tasks(self, start: float, stop: float) -> list[dict]:
        return self.client.get_task_stream(start=start, stop=stop)

    def timers(self) -> dict[str, float]:
        """The workers' :mod:`worker_timers`, summed over the workers."""
        summed: dict[str, float] = {}
        for found in self.client.run(worker_timers.totals).values():
            for key, value in found.items():
                summed[key] = summed.get(key, 0.0) + value
        return summed

    def close(self) -> None:
        """Stop the processes, then remove their folder (logs, the workers' scratch space)."""
        self.client.close()
        for process in (self.workers, self.scheduler):
            process.terminate()
        for process in (self.workers, self.scheduler):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _eoscale_file() -> str:
    import eoscale

    return eoscale.__file__


def task_summary(stream: list[dict], workers: int) -> dict:
    """What the task stream says about a run: tasks, compute seconds (also by the executor's run
    they belong to: the number ending their key's token, see eoscale/engine/cluster.py), result
    bytes, and per worker the gaps between one task's end and the next one's start."""
    computes, gaps, per_worker, by_run = [], [], {}, {}
    nbytes = 0
    for task in stream:
        compute = [s for s in task["startstops"] if s["action"] == "compute"]
        key = str(task.get("key", ""))
        number = key.rsplit("-", 1 if key.startswith("eoscale-job-") else 2)[1]
        for part in compute:
            computes.append(part["stop"] - part["start"])
            per_worker.setdefault(task["worker"], []).append((part["start"], part["stop"]))
            by_run[number] = by_run.get(number, 0.0) + part["stop"] - part["start"]
        nbytes += int(task.get("nbytes") or 0)
    span = 0.0
    if per_worker:
        span = (max(stop for spans in per_worker.values() for _, stop in spans)
                - min(start for spans in per_worker.values() for start, _ in spans))
    for spans in per_worker.values():
        spans.sort()
        gaps += [b[0] - a[1] for a, b in zip(spans, spans[1:])]
    return {
        "tasks": len(computes), "compute_s": sum(computes),
        "compute_median_s": statistics.median(computes) if computes else 0.0,
        "result_bytes": nbytes, "span_s": span,
        "busy": sum(computes) / (span * workers) if span else 0.0,
        "gap_median_s": statistics.median(gaps) if gaps else 0.0,
        "gap_total_s": sum(gaps), "workers_used": len(per_worker), "compute_by_run": by_run,
    }


def run_command(workload: Workload, scene: Path, out: Path, cluster: str | None,
                workers: int, threads: bool = False, tile_size: int | None = None) -> list[str]:
    """``eoscale run`` of a workload on ``cluster``, else on a pool of ``workers``; a cluster's
    scratch files (W3's ratio) go to results/scratch, which its workers see at the same path.
    ``threads``: through client_threads.py, which records where the client's CPU went."""
    launcher = [sys.executable, str(HERE / "client_threads.py")] if threads else eoscale_command()
    command = launcher + ["run", str(HERE / workload.pipeline), "--input", f"scene={scene}",
                          "--output", f"{workload.result}={out}", "--overwrite"]
    if tile_size:
        command += ["--tile-size", str(tile_size)]
    if cluster is None:
        return command + ["--workers", str(workers)]
    SCRATCH.mkdir(parents=True, exist_ok=True)
    return command + ["--cluster", cluster, "--scratch", str(SCRATCH)]


def measured_run(command: list[str], env: dict[str, str], quiet_below: float,
                 out: Path | None = None) -> Measured:
    if quiet_below > 0:
        wait_for_quiet(quiet_below, 60)
    if out is not None:
        out.unlink(missing_ok=True)
    run = run_measured(command, interval=None, cwd=str(HERE), env=env)
    if run.returncode != 0:
        raise SystemExit(f"failed ({run.returncode}): {' '.join(command)}\n{run.stdout}\n{run.stderr}")
    return run


def output_sizes(path: Path) -> dict[str, int]:
    """The bytes of a run's output file, of its header (what precedes its first block: what
    the client writes of it; a JSON output is the client's whole), and its blocks."""
    size = path.stat().st_size
    if path.suffix != ".tif":
        return {"output_bytes": size, "header_bytes": size, "blocks": 0}
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        offsets = [offset for page in tiff.pages for offset in page.dataoffsets if offset]
    return {"output_bytes": size, "header_bytes": min(offsets, default=size),
            "blocks": len(offsets)}


def cluster_run(cluster: LoopbackCluster, command: list[str], env: dict[str, str],
                quiet_below: float, out: Path) -> dict:
    if quiet_below > 0:
        wait_for_quiet(quiet_below, 60)
    threads = cluster.folder / "client_threads.json"
    threads.unlink(missing_ok=True)
    out.unlink(missing_ok=True)  # as run.py does: replacing it would add its unlink to the client
    before, timers_before = cluster.usage(), cluster.timers()
    busy_before, started = cpu_busy_seconds(), time.time()
    run = run_measured(command, interval=None, cwd=str(HERE),
                       env=dict(env, EOSCALE_BENCH_THREADS=str(threads)))
    stopped, busy = time.time(), cpu_busy_seconds() - busy_before
    after, timers_after = cluster.usage(), cluster.timers()
    if run.returncode != 0:
        raise SystemExit(f"failed ({run.returncode}): {' '.join(command)}\n{run.stdout}\n{run.stderr}")
    # Where the client's CPU went (client_threads.py): by thread, inside and outside its runs.
    client = json.loads(threads.read_text())
    used = {key: after[key] - before[key] for key in after}
    tasks = task_summary(cluster.tasks(started, stopped), cluster.count)
    tasks.update({f"workers_{key}": timers_after[key] - timers_before.get(key, 0.0)
                  for key in timers_after})
    # The machine's busy time less the client's, the scheduler's and the workers': other work.
    cluster_cpu = used["scheduler"] + used["workers_cpu_s"]
    foreign = max(0.0, (busy - run.cpu_s - cluster_cpu) / run.wall_s)
    return {**_basic(run), "foreign_cores": foreign, "scheduler_cpu_s": used["scheduler"],
            "scheduler_beyond_idle_s":
                used["scheduler"] - cluster.idle_cores["scheduler"] * run.wall_s,
            "workers_cpu_s": used["workers_cpu_s"],
            "workers_beyond_idle_s":
                used["workers_cpu_s"] - cluster.idle_cores["workers_cpu_s"] * run.wall_s,
            "workers_read_bytes": used["workers_read_bytes"],
            "client_native_cpu_s": client["exit"]["native"], "client": client,
            "tasks": tasks, **output_sizes(out)}


def _basic(run: Measured) -> dict:
    return {"wall_s": run.wall_s, "cpu_s": run.cpu_s, "load_before": run.load_before,
            "foreign_cores": run.foreign_cores, "phases_s": phases_of(run, "eoscale")}


def medians(runs: list[dict]) -> dict:
    """The median of every number in the runs (nested one level for ``tasks`` and phases)."""
    found: dict = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            found[key] = {k: statistics.median(r[key].get(k, 0.0) for r in runs)
                          for k in value if isinstance(value[k], (int, float))}
        elif isinstance(value, (int, float)):
            found[key] = statistics.median(r[key] for r in runs)
    return found


def efficiencies(report: dict) -> None:
    """Speed-up and efficiency against the same side's 1-worker run: T1 / (N * TN)."""
    for workload in report["workloads"]:
        for side in ("cluster", "pool"):
            rows = workload.get(side)
            if not rows or "1" not in rows:
                continue
            base = rows["1"]["median"]["wall_s"]
            for count, row in rows.items():
                row["speedup"] = base / row["median"]["wall_s"]
                row["efficiency"] = row["speedup"] / int(count)


def markdown(report: dict) -> str:
    s, m = report["settings"], report["machine"]
    lines = [
        f"Run of {report['date']} on {m['cpu']}, {m['cores']} cores; eoscale {m['commit']}, "
        f"size {s['size']} x {s['size']}, medians of {s['repeat']}; the cluster is a scheduler "
        f"and N one-thread workers on 127.0.0.1, started before the runs (not in the wall time); "
        f"results fetched {'directly from the workers' if s['direct'] else 'through the scheduler (Dask default)'}.",
        "",
        "| workload | N | cluster wall | speed-up | efficiency | tasks | in tasks (decode) "
        "| workers busy | gap/task | results | scheduler CPU (beyond idle) | workers CPU "
        "| client CPU | pool wall | pool efficiency | load before | foreign cores |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for workload in report["workloads"]:
        for count, row in workload["cluster"].items():
            c = row["median"]
            t = c["tasks"]
            pool = workload.get("pool", {}).get(count)
            pool_text = (f"{pool['median']['wall_s']:.1f} s | {pool.get('efficiency', 0):.2f}"
                         if pool else "- | -")
            lines.append(
                f"| {workload['title']} | {count} | {c['wall_s']:.1f} s "
                f"| {row.get('speedup', 0):.2f} | {row.get('efficiency', 0):.2f} "
                f"| {t['tasks']:.0f} | {t['compute_s']:.1f} s ({t.get('workers_read_s', 0):.1f} s) "
                f"| {t['busy']:.0%} | {t['gap_median_s'] * 1000:.0f} ms "
                f"| {t['result_bytes'] / MiB:.0f} MiB "
                f"| {c['scheduler_cpu_s']:.2f} s ({c['scheduler_beyond_idle_s']:.2f} s) "
                f"| {c['workers_cpu_s']:.1f} s | {c['cpu_s']:.1f} s | {pool_text} "
                f"| {c['load_before']:.1f} | {c['foreign_cores']:.2f} |")
    verdicts = {True: "yes", False: "NO", None: "not compared (no pool runs)"}
    lines += ["", "Outputs of the cluster and the pool bit-identical: "
              + ", ".join(f"{w['key']} {verdicts[w['equal']]}" for w in report["workloads"])]
    return "\n".join(lines) + "\n"


def save_report(report: dict, out: Path, render: Callable[[dict], str]) -> None:
    """The JSON report at ``out`` with the load at the end, and its Markdown (``render``) beside
    it and printed."""
    report["load"]["end"] = os.getloadavg()[0]
    text = render(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(text)
    print(text)
    print(f"saved {out} and {out.with_suffix('.md')}")


def run_side(label: str, count: int, workload: Workload, runs: int, run_once) -> list[dict]:
    """``runs`` runs of one side, each printed as it ends."""
    found = []
    for repeat in range(runs):
        done = run_once()
        found.append(done)
        extra = ""
        if "tasks" in done:
            t = done["tasks"]
            extra = (f" tasks {t['tasks']} in tasks {t['compute_s']:.1f} s (decode "
                     f"{t.get('workers_read_s', 0.0):.1f} s) busy {t['busy']:.0%} gap "
                     f"{t['gap_median_s'] * 1000:.0f} ms results {t['result_bytes'] / MiB:.0f} MiB"
                     f" read {done['workers_read_bytes'] / MiB:.0f} MiB scheduler "
                     f"{done['scheduler_cpu_s']:.2f} s workers {done['workers_cpu_s']:.1f} s")
        print(f"  {workload.key} N={count} {label:7} #{repeat + 1}: wall {done['wall_s']:6.2f} s "
              f"cpu {done['cpu_s']:6.2f} s load {done['load_before']:.1f} foreign "
              f"{done['foreign_cores']:.2f}{extra}", flush=True)
    return found


def fit_side(cluster: LoopbackCluster, workload: Workload, sizes: list[tuple[int, int | None]],
             out_dir: Path, env: dict[str, str], quiet_below: float) -> list[dict]:
    """One cluster run of ``workload`` at each of ``sizes`` (size, tile size or None), for the
    model's fits (:mod:`scaling_model`)."""
    found = []
    for size, tile_size in sizes:
        out = out_dir / f"scaling_fit_{workload.key}{workload.suffix}"
        command = run_command(workload, datagen.ensure_scene(size), out, cluster.address,
                              cluster.count, True, tile_size)
        label = f"{size}" + (f"/{tile_size}" if tile_size else "")
        found += run_side(f"fit {label}", cluster.count, workload, 1,
                          lambda command=command, out=out, size=size, tile_size=tile_size: {
                              **cluster_run(cluster, command, env, quiet_below, out),
                              "size": size, "tile_size": tile_size})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workloads", default="w1,w3")
    parser.add_argument("--no-pool", action="store_true", help="skip the process pool's runs")
    parser.add_argument("--direct", action="store_true",
                        help="the client fetches results from the workers, not through the "
                             "scheduler (DASK_DISTRIBUTED__CLIENT__DIRECT_TO_WORKERS=True)")
    parser.add_argument("--quiet-below", type=float, default=0.0, metavar="CORES",
                        help="before each run, wait (at most 60 s) until other work takes fewer "
                             "cores (default 0: don't wait)")
    parser.add_argument("--eoscale-ref", metavar="REF",
                        help="measure this git commit's eoscale (default: this checkout's)")
    parser.add_argument("--fit-runs", default="4096,8192:512", metavar="SIZE[:TILE],...",
                        help="with the fewest workers, one more run of each workload at each "
                             "of these sizes (and tile sizes), for the model's fits")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cluster_scaling.json")
    add_estimate_options(parser)
    args = parser.parse_args()
    source = export_source(args.eoscale_ref) if args.eoscale_ref else REPO
    env = child_env(source)
    if args.estimate_from:
        report = json.loads(args.estimate_from.read_text())
        report["estimate"] = estimate_all(report, args, eoscale_command(), env)
        print(estimate_markdown(report))
        return
    if args.direct:
        env["DASK_DISTRIBUTED__CLIENT__DIRECT_TO_WORKERS"] = "True"
    chosen = [w for w in WORKLOADS if w.key in args.workloads.split(",")]
    counts = [int(n) for n in args.workers.split(",")]
    fit_runs = [(int(size), int(tile[0]) if tile else None) for size, *tile in
                (text.split(":") for text in args.fit_runs.split(",") if text)]
    scene, tiny = datagen.ensure_scene(args.size), datagen.ensure_scene(TINY_SIZE)
    out_dir = HERE / "results" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine(),
                    "settings": {"size": args.size, "workers": counts, "repeat": args.repeat,
                                 "direct": args.direct, "eoscale_source": str(source),
                                 "scene_file_bytes": scene.stat().st_size},
                    "load": {"start": os.getloadavg()[0]},
                    "workloads": [{"key": w.key, "title": w.title, "cluster": {}, "pool": {}}
                                  for w in chosen]}
    for count in counts:
        outs = {(w.key, side): out_dir / f"scaling_{w.key}_{side}{w.suffix}"
                for w in chosen for side in ("cluster", "pool")}
        # The pool first, while no cluster is up: an idle Dask worker still takes CPU (its
        # ticks, monitors and profiler), which on this machine would slow the pool.
        for entry, workload in zip(report["workloads"], chosen):
            if args.no_pool:
                break
            command = run_command(workload, scene, outs[workload.key, "pool"], None, count)
            pool_out = outs[workload.key, "pool"]
            found = run_side("pool", count, workload, args.repeat,
                             lambda: {**_basic(measured_run(command, env, args.quiet_below,
                                                            pool_out)),
                                      **output_sizes(pool_out)})
            entry["pool"][str(count)] = {"median": medians(found), "runs": found}
        with LoopbackCluster(count, env) as cluster:
            print(f"{count} worker(s): scheduler {cluster.address}, eoscale {cluster.eoscale}, "
                  f"idle {cluster.idle_cores} cores (load {os.getloadavg()[0]:.1f})", flush=True)
            report["settings"]["workers_import"] = cluster.eoscale
            for entry, workload in zip(report["workloads"], chosen):
                tiny_out = out_dir / f"scaling_tiny{workload.suffix}"
                tiny_command = run_command(workload, tiny, tiny_out, cluster.address, count, True)
                measured_run(tiny_command, env, 0)  # warm-up: the workers import what it needs
                fixed = {**cluster_run(cluster, tiny_command, env, args.quiet_below, tiny_out),
                         "size": TINY_SIZE}
                command = run_command(workload, scene, outs[workload.key, "cluster"],
                                      cluster.address, count, True)
                cluster_out = outs[workload.key, "cluster"]
                found = run_side("cluster", count, workload, args.repeat,
                                 lambda: {**cluster_run(cluster, command, env, args.quiet_below,
                                                        cluster_out), "size": args.size})
                entry["cluster"][str(count)] = {"median": medians(found), "runs": found,
                                                "idle_cores": cluster.idle_cores,
                                                "tiny": fixed}
                if count == min(counts):
                    entry["fit_workers"] = count
                    entry["fit"] = [fixed, *found, *fit_side(
                        cluster, workload, fit_runs, out_dir, env, args.quiet_below)]
                if not args.no_pool:
                    entry["equal_" + str(count)] = outputs_equal(outs[workload.key, "pool"],
                                                                 outs[workload.key, "cluster"])
    for entry in report["workloads"]:
        checks = [value["equal"] for key, value in entry.items() if key.startswith("equal_")]
        entry["equal"] = all(checks) if checks else None
    efficiencies(report)
    report["estimate"] = estimate_all(report, args, eoscale_command(), env)
    save_report(report, args.out, lambda found: markdown(found) + "\n" + estimate_markdown(found))


if __name__ == "__main__":
    main()
