"""Scaling on a Dask cluster simulated on loopback: 1, 2 and 4 worker processes of one thread.

    python benchmarks/cluster_scaling.py [--size 8192] [--workers 1,2,4] [--repeat 3]
                                         [--workloads w1,w3] [--no-pool] [--direct]
                                         [--eoscale-ref REF] [--out benchmarks/results/cluster_scaling.json]

For each worker count N it starts a scheduler (``dask scheduler``) and N workers (``dask worker
--nworkers N --nthreads 1``, each behind its nanny) as processes on 127.0.0.1, waits for them,
runs one small warm-up pipeline (the workers import eoscale, rasterio and scipy once, as the
long-lived workers of a real cluster have), then runs each workload ``--repeat`` times with
``eoscale run --cluster tcp://127.0.0.1:PORT``: the cluster is running before the command starts,
so its start is not in the wall time. The process pool runs the same command with ``--workers N``
(1: everything in the main process) alternately with it, for reference.

Each cluster run records, beside wall and CPU of the ``eoscale`` process (the client: planning,
receiving results, writing the output): from the scheduler's task stream, the tasks, the seconds
they computed (a task's compute: decoding its windows, the callable, cutting the cores) and the
bytes of their results (what crossed loopback to the client); the CPU time the scheduler and the
workers (with their nannies) took during the run; and each worker's gaps between a task's end and
the next one's start (what the scheduler and the client's fetching add per task). The load is
recorded with every run: the 1-minute load average before it, and the cores other work took
during it (all the machine's busy time less that of the client, the scheduler and the workers).

On a machine with C cores, N > C workers (with the client and the scheduler) share C cores: such
runs measure the overhead of more processes and more, smaller tasks, not a speedup.

Writes the JSON report and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import json
import os
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

MiB = 2 ** 20
#: The pipeline every cluster runs once before it is measured: the workers import what it needs.
WARM_UP_SIZE = 512
SCRATCH = HERE / "results" / "scratch"
#: Seconds the cluster is watched idle after it starts, to know its idle CPU.
IDLE_SECONDS = 3.0


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its live descendants."""
    import psutil  # a dependency of distributed

    total = 0.0
    root = psutil.Process(pid)
    for member in [root, *root.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


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
        before, started = self.cpu(), time.perf_counter()
        time.sleep(IDLE_SECONDS)
        after, seconds = self.cpu(), time.perf_counter() - started
        #: Cores the scheduler and the workers take when idle (heartbeats, monitors).
        self.idle_cores = {key: (after[key] - before[key]) / seconds for key in after}

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the scheduler, and of the workers with their nannies."""
        return {"scheduler": tree_cpu(self.scheduler.pid), "workers": tree_cpu(self.workers.pid)}

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
        self.client.close()
        for process in (self.workers, self.scheduler):
            process.terminate()
        for process in (self.workers, self.scheduler):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _eoscale_file() -> str:
    import eoscale

    return eoscale.__file__


def task_summary(stream: list[dict], workers: int) -> dict:
    """What the task stream says about a run: tasks, compute seconds, result bytes, and per worker
    the gaps between one task's end and the next one's start."""
    computes, gaps, per_worker = [], [], {}
    nbytes = 0
    for task in stream:
        compute = [s for s in task["startstops"] if s["action"] == "compute"]
        for part in compute:
            computes.append(part["stop"] - part["start"])
            per_worker.setdefault(task["worker"], []).append((part["start"], part["stop"]))
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
        "gap_total_s": sum(gaps), "workers_used": len(per_worker),
    }


def run_command(workload: Workload, scene: Path, out: Path, cluster: str | None,
                workers: int) -> list[str]:
    """``eoscale run`` of a workload on ``cluster``, else on a pool of ``workers``; a cluster's
    scratch files (W3's ratio) go to results/scratch, which its workers see at the same path."""
    command = eoscale_command() + ["run", str(HERE / workload.pipeline), "--input",
                                   f"scene={scene}", "--output", f"{workload.result}={out}",
                                   "--overwrite"]
    if cluster is None:
        return command + ["--workers", str(workers)]
    SCRATCH.mkdir(parents=True, exist_ok=True)
    return command + ["--cluster", cluster, "--scratch", str(SCRATCH)]


def measured_run(command: list[str], env: dict[str, str], quiet_below: float) -> Measured:
    if quiet_below > 0:
        wait_for_quiet(quiet_below, 60)
    run = run_measured(command, interval=None, cwd=str(HERE), env=env)
    if run.returncode != 0:
        raise SystemExit(f"failed ({run.returncode}): {' '.join(command)}\n{run.stdout}\n{run.stderr}")
    return run


def cluster_run(cluster: LoopbackCluster, command: list[str], env: dict[str, str],
                quiet_below: float) -> dict:
    if quiet_below > 0:
        wait_for_quiet(quiet_below, 60)
    before, timers_before = cluster.cpu(), cluster.timers()
    busy_before, started = cpu_busy_seconds(), time.time()
    run = run_measured(command, interval=None, cwd=str(HERE), env=env)
    stopped, busy = time.time(), cpu_busy_seconds() - busy_before
    after, timers_after = cluster.cpu(), cluster.timers()
    if run.returncode != 0:
        raise SystemExit(f"failed ({run.returncode}): {' '.join(command)}\n{run.stdout}\n{run.stderr}")
    cpu = {key: after[key] - before[key] for key in after}
    tasks = task_summary(cluster.tasks(started, stopped), cluster.count)
    tasks.update({f"workers_{key}": timers_after[key] - timers_before.get(key, 0.0)
                  for key in timers_after})
    # The machine's busy time less the client's, the scheduler's and the workers': other work.
    foreign = max(0.0, (busy - run.cpu_s - sum(cpu.values())) / run.wall_s)
    return {**_basic(run), "foreign_cores": foreign, "scheduler_cpu_s": cpu["scheduler"],
            "scheduler_beyond_idle_s": cpu["scheduler"] - cluster.idle_cores["scheduler"] * run.wall_s,
            "workers_cpu_s": cpu["workers"],
            "workers_beyond_idle_s": cpu["workers"] - cluster.idle_cores["workers"] * run.wall_s,
            "tasks": tasks}


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
                wall = row["median"]["wall_s"]
                row["speedup"] = base / wall
                row["efficiency"] = base / (int(count) * wall)


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
    lines += ["", "Outputs of the cluster and the pool bit-identical: "
              + ", ".join(f"{w['key']} {'yes' if w['equal'] else 'NO'}" for w in report["workloads"])]
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
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cluster_scaling.json")
    args = parser.parse_args()
    source = export_source(args.eoscale_ref) if args.eoscale_ref else REPO
    env = child_env(source)
    if args.direct:
        env["DASK_DISTRIBUTED__CLIENT__DIRECT_TO_WORKERS"] = "True"
    chosen = [w for w in WORKLOADS if w.key in args.workloads.split(",")]
    counts = [int(n) for n in args.workers.split(",")]
    scene, warm = datagen.ensure_scene(args.size), datagen.ensure_scene(WARM_UP_SIZE)
    out_dir = HERE / "results" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine(),
                    "settings": {"size": args.size, "workers": counts, "repeat": args.repeat,
                                 "direct": args.direct, "eoscale_source": str(source)},
                    "load": {"start": os.getloadavg()[0]},
                    "workloads": [{"key": w.key, "title": w.title, "cluster": {}, "pool": {}}
                                  for w in chosen]}
    for count in counts:
        with LoopbackCluster(count, env) as cluster:
            print(f"{count} worker(s): scheduler {cluster.address}, eoscale {cluster.eoscale} "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
            report["settings"]["workers_import"] = cluster.eoscale
            for workload in chosen:
                warm_out = out_dir / f"scaling_warm{workload.suffix}"
                measured_run(run_command(workload, warm, warm_out, cluster.address, count), env, 0)
            for entry, workload in zip(report["workloads"], chosen):
                outs = {side: out_dir / f"scaling_{workload.key}_{side}{workload.suffix}"
                        for side in ("cluster", "pool")}
                runs: dict[str, list[dict]] = {"cluster": [], "pool": []}
                for repeat in range(args.repeat):
                    sides = ["cluster", "pool"] if repeat % 2 == 0 else ["pool", "cluster"]
                    for side in sides:
                        if side == "pool" and args.no_pool:
                            continue
                        command = run_command(workload, scene, outs[side],
                                              cluster.address if side == "cluster" else None,
                                              count)
                        done = (cluster_run(cluster, command, env, args.quiet_below)
                                if side == "cluster"
                                else _basic(measured_run(command, env, args.quiet_below)))
                        runs[side].append(done)
                        extra = ""
                        if side == "cluster":
                            t = done["tasks"]
                            extra = (f" tasks {t['tasks']} in tasks {t['compute_s']:.1f} s busy "
                                     f"{t['busy']:.0%} gap {t['gap_median_s'] * 1000:.0f} ms "
                                     f"scheduler {done['scheduler_cpu_s']:.2f} s workers "
                                     f"{done['workers_cpu_s']:.1f} s")
                        print(f"  {workload.key} N={count} {side:7} #{repeat + 1}: wall "
                              f"{done['wall_s']:6.2f} s cpu {done['cpu_s']:6.2f} s load "
                              f"{done['load_before']:.1f} foreign {done['foreign_cores']:.2f}"
                              f"{extra}", flush=True)
                for side, found in runs.items():
                    if found:
                        entry[side][str(count)] = {"median": medians(found), "runs": found}
                if not args.no_pool:
                    entry["equal_" + str(count)] = outputs_equal(outs["pool"], outs["cluster"])
    for entry in report["workloads"]:
        checks = [value["equal"] for key, value in entry.items() if key.startswith("equal_")]
        entry["equal"] = all(checks) if checks else None
    efficiencies(report)
    save_report(report, args.out, markdown)


if __name__ == "__main__":
    main()
