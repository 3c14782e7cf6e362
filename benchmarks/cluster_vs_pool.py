"""``eoscale run --cluster local:N`` against the default process pool of N workers, end to end.

    python benchmarks/cluster_vs_pool.py [--size 8192] [--repeat 3] [--workers 2]
                                         [--workloads w1,w3] [--quiet-below 0.3]
                                         [--eoscale-ref REF] [--out benchmarks/results/cluster_vs_pool.json]

The issue's target: on this machine, ``--cluster local:2`` takes at most 1.25 x the pool's wall
time, with bit-identical outputs. Each repeat runs both commands (the order alternating from one
repeat to the next), timing only; the cluster's wall time includes starting and closing its
LocalCluster, as a user's run does. Every run records the 1-minute load average before it and the
cores other work took during it (measure.py). Writes the JSON report and a Markdown table beside
it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import datagen
from cluster_scaling import run_command, save_report
from measure import run_measured, wait_for_quiet
from run import HERE, REPO, WORKLOADS, child_env, export_source, machine, outputs_equal, phases_of

#: The issue's bound on the cluster's wall time, as a multiple of the pool's.
TARGET = 1.25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workloads", default="w1,w3")
    parser.add_argument("--quiet-below", type=float, default=0.3, metavar="CORES",
                        help="before each run, wait (at most --quiet-timeout s) until other work "
                             "takes fewer cores (0: don't wait)")
    parser.add_argument("--quiet-timeout", type=float, default=60.0, metavar="S")
    parser.add_argument("--eoscale-ref", metavar="REF",
                        help="measure this git commit's eoscale (default: this checkout's)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cluster_vs_pool.json")
    args = parser.parse_args()
    env = child_env(export_source(args.eoscale_ref) if args.eoscale_ref else REPO)
    scene = datagen.ensure_scene(args.size)
    out_dir = HERE / "results" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine(),
                    "settings": {"size": args.size, "repeat": args.repeat, "workers": args.workers,
                                 "quiet_below_cores": args.quiet_below},
                    "load": {"start": os.getloadavg()[0]}, "workloads": []}
    for workload in [w for w in WORKLOADS if w.key in args.workloads.split(",")]:
        outs = {side: out_dir / f"{workload.key}_{side}{workload.suffix}"
                for side in ("pool", "cluster")}
        runs: dict[str, list[dict]] = {"pool": [], "cluster": []}
        for repeat in range(args.repeat):
            for side in (("pool", "cluster") if repeat % 2 == 0 else ("cluster", "pool")):
                waited = (wait_for_quiet(args.quiet_below, args.quiet_timeout)[0]
                          if args.quiet_below > 0 else 0.0)
                cluster = f"local:{args.workers}" if side == "cluster" else None
                done = run_measured(run_command(workload, scene, outs[side], cluster, args.workers),
                                    interval=None, cwd=str(HERE), env=env)
                if done.returncode != 0:
                    raise SystemExit(f"{side} {workload.key} failed:\n{done.stdout}\n{done.stderr}")
                phases = phases_of(done, "eoscale")
                runs[side].append({"wall_s": done.wall_s, "cpu_s": done.cpu_s,
                                   "load_before": done.load_before,
                                   "foreign_cores": done.foreign_cores, "quiet_wait_s": waited,
                                   "phases_s": phases})
                print(f"  {workload.key} {side:7} #{repeat + 1}: wall {done.wall_s:6.2f} s cpu "
                      f"{done.cpu_s:6.2f} s load {done.load_before:.1f} foreign "
                      f"{done.foreign_cores:.2f} {phases}", flush=True)
        medians = {side: {key: statistics.median(r[key] for r in found)
                          for key in ("wall_s", "cpu_s", "load_before", "foreign_cores")}
                   for side, found in runs.items()}
        ratio = medians["cluster"]["wall_s"] / medians["pool"]["wall_s"]
        report["workloads"].append({
            "key": workload.key, "title": workload.title, "runs": runs, "medians": medians,
            "wall_ratio": ratio, "target": TARGET, "met": ratio <= TARGET,
            "equality": outputs_equal(outs["pool"], outs["cluster"])})
    save_report(report, args.out, markdown)


def markdown(report: dict) -> str:
    s, m = report["settings"], report["machine"]
    lines = [f"Run of {report['date']} on {m['cpu']}, {m['cores']} cores; eoscale {m['commit']}; "
             f"size {s['size']} x {s['size']}, {s['workers']} workers, medians of {s['repeat']} "
             f"(order alternated); 1-minute load {report['load']['start']:.1f} at the start, "
             f"{report['load']['end']:.1f} at the end.", "",
             "| workload | pool wall / CPU | `--cluster local:N` wall / CPU | ratio (target "
             f"{TARGET}) | load before (median) | foreign cores (median) | outputs |",
             "|---|---|---|---|---|---|---|"]
    for w in report["workloads"]:
        p, c = w["medians"]["pool"], w["medians"]["cluster"]
        equal = "bit-identical" if w["equality"]["equal"] else "DIFFER: " + w["equality"]["detail"]
        lines.append(f"| {w['title']} | {p['wall_s']:.1f} s / {p['cpu_s']:.1f} s "
                     f"| {c['wall_s']:.1f} s / {c['cpu_s']:.1f} s | {w['wall_ratio']:.2f} "
                     f"| {statistics.median([p['load_before'], c['load_before']]):.1f} "
                     f"| {statistics.median([p['foreign_cores'], c['foreign_cores']]):.2f} "
                     f"| {equal} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
