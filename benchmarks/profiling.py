"""Where eoscale's time goes: py-spy samples of every process of an ``eoscale run``, by category.

    python benchmarks/profiling.py [--size 8192] [--workers 2] [--workloads w1,w3] [--rate 100]
                                   [--eoscale-ref HEAD]
    python benchmarks/profiling.py --summarise benchmarks/results/profile_w1.txt

Runs ``py-spy record --subprocesses --idle --format raw`` around the real command (``pip install
py-spy``), keeps the folded stacks in benchmarks/results/profile_<workload>.txt, and sorts every
sample of every process (main, workers) into a category by the innermost frame that names one:
the user callable (compute), copying results into shared memory, decoding windows, GeoTIFF writing,
waiting for workers, a worker waiting for work, start-up (imports, validation), and so on. With
``--idle`` a process is sampled whether it runs or waits, so a process's samples / rate is its
lifetime and the categories add up to it. Native frames (inside GDAL or scipy) are not unwound:
they count for the Python frame that called them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import datagen
from run import HERE, WORKLOADS, child_env, eoscale_arguments, eoscale_command, export_source

#: (substring of a frame, category), tried on each frame from the innermost outwards; first wins.
MARKERS: list[tuple[str, str]] = [
    ("(bench_ops.py", "compute: the callable"),
    ("MapJob.store (", "copy results into shared memory"),
    ("check_results (", "check results"),
    ("run_probe (", "compute: the callable"),
    ("LoadJob.run_chunk (", "read: decode windows"),
    ("write_geotiff (", "write: GeoTIFF encode + write"),
    ("SharedRaster.release (", "release shared memory"),
    ("SharedRaster.create (", "allocate shared memory"),
    ("SharedRaster.attach (", "attach shared memory"),
    ("TileOrderFold", "fold reduce partials"),
    ("Engine.load (", "wait: workers read"),
    ("Engine._execute (", "wait: workers compute"),
    ("Engine.close (", "stop workers"),
    ("Engine.__init__ (", "start workers"),
    ("_worker_main (", "worker: wait for work"),
    ("write_json (", "write: JSON"),
    ("summary_table (", "summary"),
    ("_find_and_load (", "start: import modules"),
    ("(eoscale/pipeline/validate.py", "start: validate"),
    ("load_pipeline (", "start: load pipeline"),
    ("run_pipeline (", "main: pipeline bookkeeping"),
    ("(multiprocessing/resource_tracker.py", "resource tracker"),
]
#: py-spy starts a child's stacks with its ancestors' headers and its own: ``process PID:"cmd";``
_HEADER = re.compile(r'process (\d+):"(.*?)";')


#: What the main process waits for in ``Engine._execute``, by the step method around it.
_WAITS = (("Engine.load (", "wait: workers read"), ("Engine.reduce (", "wait: workers reduce"),
          ("Engine.map (", "wait: workers compute (map)"))


def categorise(frames: list[str]) -> str:
    for frame in reversed(frames):
        for marker, category in MARKERS:
            if marker in frame:
                if category == "wait: workers compute":
                    return next((wait for step, wait in _WAITS
                                 if any(step in f for f in frames)), category)
                return category
    return "other"


def summarise(raw: Path, rate: int) -> dict:
    """Samples per process role and category from py-spy's raw (folded) output."""
    samples: dict[int, Counter] = defaultdict(Counter)
    commands: dict[int, str] = {}
    roles: dict[int, str] = {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        stack += ";"
        pid, position = 0, 0
        # The last header is the sampled process's own (commands may hold ';', not '";').
        while match := _HEADER.match(stack, position):
            pid, commands[int(match.group(1))] = int(match.group(1)), match.group(2)
            position = match.end()
        frames = [f for f in stack[position:].split(";") if f]
        if any("_worker_main (" in f for f in frames):
            roles[pid] = "worker"
        samples[pid][categorise(frames) if frames else "no Python frame"] += int(count)
    processes = []
    for pid, counter in sorted(samples.items()):
        role = roles.get(pid) or ("resource tracker" if "resource_tracker" in commands.get(pid, "")
                                  else "main")
        total = sum(counter.values())
        processes.append({
            "pid": pid, "role": role, "samples": total, "seconds": total / rate,
            "categories": {k: {"samples": v, "seconds": v / rate, "share": v / total}
                           for k, v in counter.most_common()}})
    by_role: dict[str, Counter] = defaultdict(Counter)
    for process in processes:
        for category, value in process["categories"].items():
            by_role[process["role"]][category] += value["samples"]
    return {"raw": str(raw), "rate": rate, "processes": processes,
            "by_role": {role: {k: v / rate for k, v in counter.most_common()}
                        for role, counter in by_role.items()}}


def render(summary: dict) -> str:
    lines = [f"{summary['raw']} ({summary['rate']} Hz)"]
    for process in summary["processes"]:
        lines.append(f"  {process['role']} (pid {process['pid']}): {process['seconds']:.1f} s sampled")
        for category, value in process["categories"].items():
            lines.append(f"    {value['seconds']:7.2f} s {value['share'] * 100:5.1f} %  {category}")
    return "\n".join(lines)


def record(workload_key: str, size: int, workers: int, rate: int, source: Path | None) -> Path:
    workload = next(w for w in WORKLOADS if w.key == workload_key)
    scene = datagen.ensure_scene(size)
    results = HERE / "results"
    out = results / "out" / f"{workload.key}_profiled{workload.suffix}"
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = results / f"profile_{workload.key}.txt"
    command = ["py-spy", "record", "--subprocesses", "--idle", "--rate", str(rate),
               "--format", "raw", "-o", str(raw), "--"] + eoscale_command() + eoscale_arguments(
        workload, scene, out, workers)
    print(f"load average {os.getloadavg()[0]:.1f}: {' '.join(command)}", flush=True)
    subprocess.run(command, check=True, cwd=HERE, env=child_env(source))
    out.unlink(missing_ok=True)
    return raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workloads", default="w1,w3")
    parser.add_argument("--rate", type=int, default=100, help="samples per second per process")
    parser.add_argument("--summarise", type=Path, nargs="*", help="only summarise these raw files")
    parser.add_argument("--eoscale-ref", metavar="REF", help="profile this git commit's eoscale")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "profile.json",
                        help="where to save the summaries")
    args = parser.parse_args()
    source = export_source(args.eoscale_ref) if args.eoscale_ref else None
    raws = args.summarise or [record(key, args.size, args.workers, args.rate, source)
                              for key in args.workloads.split(",")]
    summaries = []
    for raw in raws:
        summary = summarise(raw, args.rate)
        summaries.append(summary)
        print(render(summary))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summaries, indent=2) + "\n")
    print(f"saved {args.json}")


if __name__ == "__main__":
    sys.exit(main())
