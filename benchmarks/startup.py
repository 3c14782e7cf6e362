"""Start-up: how long the commands take to start and finish against importing rasterio and numpy.

    python benchmarks/startup.py [--repeat 7] [--module] [--json PATH]

Each command runs as a whole new process, as a user starts it: ``eoscale --version``, ``eoscale
--help``, ``eoscale validate pipelines/quickstart.yaml`` (the quick start, on the sample scene in
``pipelines/data``, which ``python -m eoscale.sample pipelines/data`` makes again), and the
reference ``python -c "import rasterio, numpy"``. The rounds are interleaved (each round runs
every command once, in an order rotated from round to round) after one round not counted (it
fills the file cache and writes the bytecode of changed modules, even under
PYTHONDONTWRITEBYTECODE), so a change in the machine's load touches all of them alike. Printed:
the median wall time of each, its ratio to the reference's and the target (``--version`` and
``--help`` within 1.25 x, ``validate`` within 1.5 x), ``validate`` against the reference plus
``scipy.ndimage`` too (what the quick start's callables import at their module's top, as a
user's do, and validating must import them), and the machine's load: /proc/loadavg, and
the cores kept busy by other processes meanwhile (from /proc/stat, less this script and its
commands).

``eoscale`` is the console script beside this Python (``--module``: ``python -m eoscale``); it
imports the ``eoscale`` that Python finds, so ``PYTHONPATH=$PWD`` measures a work tree's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = "pipelines/quickstart.yaml"

#: The targets, as a multiple of the reference's median.
TARGETS = {"--version": 1.25, "--help": 1.25, "validate": 1.5}


def eoscale_command(module: bool) -> list[str]:
    script = Path(sys.executable).with_name("eoscale")
    if module or not script.exists():
        return [sys.executable, "-m", "eoscale"]
    return [str(script)]


def commands(module: bool) -> dict[str, list[str]]:
    eoscale = eoscale_command(module)
    return {
        "reference": [sys.executable, "-c", "import rasterio, numpy"],
        # what validating the quick start must import whatever eoscale does: its callables'
        # module imports scipy.ndimage at its top, as users' modules do
        "reference+callables": [sys.executable, "-c", "import rasterio, numpy, scipy.ndimage"],
        "--version": [*eoscale, "--version"],
        "--help": [*eoscale, "--help"],
        "validate": [*eoscale, "validate", QUICKSTART],
    }


#: The commands' environment: bytecode written and read, as in an installed package (where
#: PYTHONDONTWRITEBYTECODE is set, every run would compile eoscale's modules again).
ENVIRONMENT = {key: value for key, value in os.environ.items()
               if key != "PYTHONDONTWRITEBYTECODE"}


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=ENVIRONMENT, check=True)
    return time.perf_counter() - started


def busy_jiffies() -> tuple[int, int]:
    """The machine's busy and total CPU time so far, in clock ticks (/proc/stat)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def own_cpu_seconds() -> float:
    mine = resource.getrusage(resource.RUSAGE_SELF)
    commands_ = resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + commands_.ru_utime + commands_.ru_stime


def measure(repeat: int, module: bool) -> dict:
    runs = commands(module)
    names = list(runs)
    for name in names:  # one round not counted: the file cache, the bytecode
        timed(runs[name])
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    busy0, total0 = busy_jiffies()
    cpu0, wall0 = own_cpu_seconds(), time.perf_counter()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeat):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            seconds[name].append(timed(runs[name]))
    wall = time.perf_counter() - wall0
    busy1, total1 = busy_jiffies()
    cores = os.cpu_count() or 1
    busy_cores = (busy1 - busy0) / max(1, total1 - total0) * cores
    others = max(0.0, busy_cores - (own_cpu_seconds() - cpu0) / wall)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    reference = medians["reference"]
    return {
        "eoscale": runs["--version"][:-1],
        "repeat": repeat,
        "seconds": seconds,
        "medians": medians,
        "ratios": {name: medians[name] / reference for name in TARGETS},
        "validate_over_callables": medians["validate"] / medians["reference+callables"],
        "targets": TARGETS,
        "loadavg_before": load_before,
        "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
        "cores": cores,
        "other_processes_cores": round(others, 2),
    }


def report(result: dict) -> str:
    reference = result["medians"]["reference"]
    lines = [(f"medians of {result['repeat']} runs, interleaved; eoscale is "
              f"{' '.join(result['eoscale'])}"),
             f"{'command':<12} {'median s':>9} {'ratio':>6} {'target':>7}",
             (f"{'reference':<12} {reference:9.3f} {1:6.2f} {'':>7}  python -c 'import rasterio, "
              "numpy'")]
    for name, target in result["targets"].items():
        ratio = result["ratios"][name]
        verdict = "meets" if ratio <= target else "misses"
        lines.append(f"{name:<12} {result['medians'][name]:9.3f} {ratio:6.2f} {target:7.2f}  "
                     f"{verdict}")
    lines.append(f"{'callables':<12} {result['medians']['reference+callables']:9.3f} "
                 f"{result['medians']['reference+callables'] / reference:6.2f} {'':>7}  python -c "
                 f"'import rasterio, numpy, scipy.ndimage' (what the quick start's module imports)"
                 f": validate is {result['validate_over_callables']:.2f} x it")
    lines.append(f"load average {' '.join(result['loadavg_before'])} before, "
                 f"{' '.join(result['loadavg_after'])} after; other processes kept "
                 f"{result['other_processes_cores']} of {result['cores']} cores busy meanwhile")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="rounds counted (default 7)")
    parser.add_argument("--module", action="store_true",
                        help="run python -m eoscale instead of the console script")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    result = measure(args.repeat, args.module)
    print(report(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
