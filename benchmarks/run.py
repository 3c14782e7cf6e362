"""eoscale against a single-process baseline and dask, end to end, on generated data. One command:

    python benchmarks/run.py [--size 8192] [--repeat 3] [--workers 2] [--out benchmarks/results/latest.json]
                             [--eoscale-ref HEAD] [--workloads w1,w2,w3] [--same-runs] [--env K=V]
                             [--sides baseline,eoscale,dask] [--dask-args "--writer rioxarray"]

It generates the input rasters once (datagen.py). For each workload (W1 9 x 9 mean -> float32
GeoTIFF; W2 per-band statistics and histogram -> JSON; W3 band ratio -> 5 x 5 median -> GeoTIFF) it
alternates its sides, ``--repeat`` times: the baseline script, the real ``eoscale run`` command and
the dask script (dask_side.py; run when dask and rioxarray are installed), each time once for
timing (wall, CPU) and once sampling memory (peak PSS of the process tree; see measure.py), after
waiting for the machine to be quiet. It checks that every side's output has exactly the baseline's
values, runs the engine-overhead micro-benchmark, prints tables of medians and ratios and saves
everything as JSON, and the tables as Markdown beside it.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import datagen
import numpy as np
import rasterio
from measure import Measured, run_measured, wait_for_quiet
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MiB = 2 ** 20
#: The target for every workload's peak: at most this times the bytes of the images held.
PEAK_TARGET = 1.15
OVERHEAD_TARGET_S = 2.0
#: The sides a workload can run on, in the order they run; the first one run is the reference
#: the others' outputs are compared with.
SIDES = ("baseline", "eoscale", "dask")
SHORT = {"baseline": "base", "eoscale": "eo", "dask": "dask"}
#: The ratios reported (numerator side, denominator side). eoscale's targets against dask (issue
#: 12): wall and peak below dask's, that is a ratio under 1.
PAIRS = (("eoscale", "baseline"), ("eoscale", "dask"))
DASK_TARGET = 1.0
#: Issue 19: the main process's own CPU at most this share of the whole tree's (W1 on the pool).
MAIN_CPU_TARGET = 0.10


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    pipeline: str         # the YAML file in benchmarks/
    result: str           # the pipeline's output name
    suffix: str           # .tif or .json
    wall_target: float    # eoscale wall / baseline wall at most this (workers = 2)

    def held_bytes(self, size: int, bands: int) -> int:
        """The bytes of the images a step must hold at once (its inputs and outputs), max over
        steps: the least any implementation that keeps whole images in memory can use."""
        scene = bands * size * size * 2
        plane32 = size * size * 4
        if self.key == "w1":
            return scene + bands * plane32
        if self.key == "w2":
            return scene
        return max(scene + plane32, plane32 + plane32)


WORKLOADS = [
    Workload("w1", "W1 9x9 mean -> f32 GeoTIFF", "w1_mean.yaml", "mean", ".tif", 0.50),
    Workload("w2", "W2 band stats + histogram -> JSON", "w2_stats.yaml", "stats", ".json", 0.60),
    Workload("w3", "W3 ratio -> 5x5 median -> GeoTIFF", "w3_ratio_median.yaml", "median", ".tif",
             0.50),
]

#: The plan's estimate that eoscale prints beside its measured peak in its summary.
_ESTIMATE = re.compile(r"\(estimated ([0-9.]+) (bytes|KiB|MiB|GiB)\)")
_UNITS = {"bytes": 1, "KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30}
_PHASE_LINE = re.compile(r"^\d\d:\d\d:\d\d (read|map|reduce|write) .+: done in ([0-9.]+) s", re.MULTILINE)


def eoscale_command() -> list[str]:
    """The installed ``eoscale`` script beside this Python (not a shell shim in front of it)."""
    script = Path(sys.executable).parent / "eoscale"
    return [str(script)] if script.exists() else [sys.executable, "-m", "eoscale"]


def export_source(ref: str) -> Path:
    """The ``eoscale`` package of git commit ``ref``, exported once to benchmarks/results/.

    Put first on PYTHONPATH, it is imported instead of the installed (editable) package, so a run
    measures one fixed commit even while the work tree changes under it.
    """
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", ref], check=True,
                         capture_output=True, text=True).stdout.strip()
    folder = HERE / "results" / f"eoscale-{sha}"
    if not (folder / "eoscale" / "__init__.py").exists():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", sha, "eoscale"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


#: Extra environment for every measured command (``--env``), e.g. GDAL_CACHEMAX for experiments.
EXTRA_ENV: dict[str, str] = {}


def child_env(source: Path | None) -> dict[str, str]:
    """The environment of measured commands: bench_ops importable, and ``source`` first if given.

    No terminal, so eoscale prints plain progress lines, which carry its phase times. The
    eoscale measured and bench_ops are byte-compiled first, as an installed package is (pip
    compiles at install): with PYTHONDONTWRITEBYTECODE set, every run would compile eoscale's
    modules again (0.1 s of the main process's CPU, 5 % of it on W1).
    """
    compileall.compile_dir(str((source or REPO) / "eoscale"), quiet=1)
    compileall.compile_dir(str(HERE), maxlevels=0, quiet=1)
    path = [str(source)] if source else []
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path + [str(HERE)]), COLUMNS="200",
                **EXTRA_ENV)


def machine() -> dict:
    def first(path: str, key: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"

    import scipy

    import eoscale
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    versions = {}
    if dask_missing() is None:
        import dask
        import rioxarray
        import xarray
        versions = {"dask": dask.__version__, "xarray": xarray.__version__,
                    "rioxarray": rioxarray.__version__}
    return {
        "cpu": first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory_gib": round(int(first("/proc/meminfo", "MemTotal").split()[0]) / 2 ** 20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__, "scipy": scipy.__version__,
        "rasterio": rasterio.__version__, "gdal": rasterio.__gdal_version__,
        "eoscale": eoscale.__version__, "commit": commit, **versions,
    }


def dask_missing() -> str | None:
    """Why the dask side cannot run here (a module missing), or None if it can."""
    missing = [name for name in ("dask", "xarray", "rioxarray")
               if importlib.util.find_spec(name) is None]
    return (f"{', '.join(missing)} not installed (pip install -e '.[bench]')" if missing
            else None)


def phases_of(run: Measured, kind: str) -> dict[str, float]:
    """Phase seconds a run reported: the baseline's and dask's JSON line, eoscale's plain progress
    lines."""
    if kind != "eoscale":
        return json.loads(run.stdout.strip().splitlines()[-1])
    phases: dict[str, float] = {}
    for phase, seconds in _PHASE_LINE.findall(run.stdout):
        phases[phase] = phases.get(phase, 0.0) + float(seconds)
    return phases


def estimate_of(run: Measured) -> float | None:
    """The peak memory eoscale's plan estimated for a run (bytes), from its summary line."""
    found = _ESTIMATE.search(run.stdout)
    return float(found.group(1)) * _UNITS[found.group(2)] if found else None


def run_once(workload: Workload, kind: str, scene: Path, out: Path, args,
             sample_memory: bool) -> Measured:
    workers, interval, source = args.workers, args.interval if sample_memory else None, args.source
    out.unlink(missing_ok=True)
    waited, busy = (wait_for_quiet(args.quiet_below, args.quiet_timeout) if args.quiet_below > 0
                    else (0.0, float("nan")))
    if kind == "baseline":
        command = [sys.executable, str(HERE / "baseline.py"), workload.key, str(scene), str(out)]
    elif kind == "dask":
        command = [sys.executable, str(HERE / "dask_side.py"), workload.key, str(scene), str(out),
                   "--workers", str(workers), *args.dask_args]
    else:
        command = eoscale_command() + eoscale_arguments(workload, scene, out, workers)
    run = run_measured(command, interval=interval, cwd=str(HERE), env=child_env(source))
    if run.returncode != 0:
        raise SystemExit(f"{kind} {workload.key} failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    run.quiet_wait_s, run.busy_before_cores = waited, busy
    return run


def eoscale_arguments(workload: Workload, scene: Path, out: Path, workers: int) -> list[str]:
    return ["run", str(HERE / workload.pipeline), "--workers", str(workers),
            "--input", f"scene={scene}", "--output", f"{workload.result}={out}", "--overwrite"]


def outputs_equal(baseline: Path, candidate: Path) -> dict:
    """Whether two outputs hold the same values: every pixel (NaN equal to NaN), or the JSON result."""
    if baseline.suffix == ".json":
        a = json.loads(baseline.read_text())["result"]
        b = json.loads(candidate.read_text())["result"]
        return {"equal": a == b, "grid_equal": True, "detail": "JSON results identical" if a == b
                else "JSON results differ"}
    with rasterio.open(baseline) as a, rasterio.open(candidate) as b:
        grid = (a.count, a.height, a.width, a.dtypes, a.crs, a.transform) == \
               (b.count, b.height, b.width, b.dtypes, b.crs, b.transform)
        nodata = (a.nodata == b.nodata) or (a.nodata is not None and b.nodata is not None
                                            and math.isnan(a.nodata) and math.isnan(b.nodata))
        if not grid:
            return {"equal": False, "grid_equal": False, "detail": "grids or dtypes differ"}
        differing = 0
        for band in range(1, a.count + 1):
            x, y = a.read(band), b.read(band)
            same = (x == y) | (np.isnan(x) & np.isnan(y)) if x.dtype.kind == "f" else x == y
            differing += int(x.size - np.count_nonzero(same))
        return {"equal": differing == 0, "grid_equal": bool(grid and nodata),
                "detail": f"{differing} differing pixel(s)"
                + ("" if nodata else f"; nodata {a.nodata} vs {b.nodata}")}


def summarise(runs: list[Measured], memory_runs: list[Measured], kind: str) -> dict:
    """Medians: wall, CPU and phases of the timing runs; peak PSS of the memory runs."""
    phases = [phases_of(r, kind) for r in runs]
    names = sorted({name for p in phases for name in p})
    peak_run = sorted(memory_runs, key=lambda r: r.peak_pss)[len(memory_runs) // 2]
    estimates = [estimate_of(r) for r in memory_runs] if kind == "eoscale" else []
    return {
        "wall_s": statistics.median(r.wall_s for r in runs),
        "wall_min_s": min(r.wall_s for r in runs),
        "cpu_s": statistics.median(r.cpu_s for r in runs),
        # The main process's own share of the tree's CPU (issue 19's target: at most 10 %).
        "main_cpu_share": statistics.median(r.root_cpu_s / r.cpu_s for r in runs),
        "peak_pss": statistics.median(r.peak_pss for r in memory_runs),
        "peak_parts": peak_run.peak_parts,
        "estimate": (statistics.median(e for e in estimates if e is not None)
                     if any(e is not None for e in estimates) else None),
        "phases_s": {n: statistics.median(p.get(n, 0.0) for p in phases) for n in names},
        "runs": [dict(r.as_dict(), phases_s=p) for r, p in zip(runs, phases)],
        "memory_runs": [dict(r.as_dict(), phases_s=phases_of(r, kind)) for r in memory_runs
                        if not any(r is timed for timed in runs)],
    }


def bench_workload(workload: Workload, scene: Path, bands: int, size: int, args,
                   console: Console) -> dict:
    out_dir = HERE / "results" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    sides = args.sides
    outs = {kind: out_dir / f"{workload.key}_{kind}{workload.suffix}" for kind in sides}
    runs: dict[str, list[Measured]] = {kind: [] for kind in sides}
    memory: dict[str, list[Measured]] = {kind: [] for kind in sides}
    # Timing runs and memory runs are separate unless --same-runs: sampling PSS makes the kernel
    # walk every page of the tree, which slows what it measures (see README).
    modes = [True] if args.same_runs else [False, True]
    for repeat in range(args.repeat):
        for sample_memory in modes:
            for kind in sides:
                run = run_once(workload, kind, scene, outs[kind], args, sample_memory)
                if sample_memory:
                    memory[kind].append(run)
                if not sample_memory or args.same_runs:
                    runs[kind].append(run)
                label = "memory" if sample_memory and not args.same_runs else "time"
                console.print(
                    f"  {workload.key} {kind:8} #{repeat + 1} {label:6}: wall {run.wall_s:6.2f} s  "
                    f"cpu {run.cpu_s:6.2f} s  peak {run.peak_pss / MiB:6.0f} MiB  "
                    f"load {run.load_before:4.1f}  foreign {run.foreign_cores:3.1f} cores  "
                    f"{phases_of(run, kind)}", highlight=False)
    reference = sides[0]
    summaries = {kind: summarise(runs[kind], memory[kind], kind) for kind in sides}
    held = workload.held_bytes(size, bands)
    base = summaries.get("baseline")
    bound = (sum(base["phases_s"].get(p, 0.0) for p in ("read", "compute", "write")) / args.workers
             if base else None)
    eo, dk = summaries.get("eoscale"), summaries.get("dask")
    ratios = {f"{a}/{b}": compare(summaries[a], summaries[b]) for a, b in PAIRS
              if a in summaries and b in summaries}
    targets = {"wall_ratio": workload.wall_target, "peak_vs_held": PEAK_TARGET,
               "dask_ratio": DASK_TARGET}
    if eo:
        targets["peak_met"] = eo["peak_pss"] / held <= PEAK_TARGET
    if eo:
        targets["main_cpu_met"] = eo["main_cpu_share"] <= MAIN_CPU_TARGET
    if "eoscale/baseline" in ratios:
        targets["wall_met"] = ratios["eoscale/baseline"]["wall"] <= workload.wall_target
    if "eoscale/dask" in ratios:
        targets["dask_wall_met"] = ratios["eoscale/dask"]["wall"] < DASK_TARGET
        targets["dask_peak_met"] = ratios["eoscale/dask"]["peak"] < DASK_TARGET
    return {
        "key": workload.key, "title": workload.title, "held_bytes": held, **summaries,
        "ratios": ratios,
        "peak_vs_held": {kind: summary["peak_pss"] / held for kind, summary in summaries.items()},
        "estimate_vs_peak": eo["estimate"] / eo["peak_pss"] if eo and eo["estimate"] else None,
        "bound_s": bound,
        "wall_vs_bound": {kind: summaries[kind]["wall_s"] / bound for kind in ("eoscale", "dask")
                          if kind in summaries and bound},
        "reference": reference,
        "equality": {kind: outputs_equal(outs[reference], outs[kind]) for kind in sides[1:]},
        "dask_args": args.dask_args if dk else None,
        "targets": targets,
    }


def compare(a: dict, b: dict) -> dict:
    """Side ``a``'s medians over side ``b``'s: wall, best-of wall, CPU, peak."""
    return {"wall": a["wall_s"] / b["wall_s"], "wall_best": a["wall_min_s"] / b["wall_min_s"],
            "cpu": a["cpu_s"] / b["cpu_s"], "peak": a["peak_pss"] / b["peak_pss"]}


def bench_overhead(args) -> dict:
    run = run_measured([sys.executable, str(HERE / "overhead.py"), "--workers", str(args.workers),
                        "--repeat", str(args.repeat)], interval=args.interval, cwd=str(HERE),
                       env=child_env(args.source))
    if run.returncode != 0:
        raise SystemExit(f"overhead benchmark failed:\n{run.stdout}\n{run.stderr}")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result["target_s"] = OVERHEAD_TARGET_S
    result["met"] = result["median"]["total_s"] < OVERHEAD_TARGET_S
    result["load_before"] = run.load_before
    result["foreign_cores"] = run.foreign_cores
    return result


def report_tables(report: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's tables as (title, header, rows) of text cells, for the terminal and Markdown:
    each side's medians, the ratios against their targets, the phases."""
    sides = report["settings"]["sides"]
    workloads = report["workloads"]

    def medians(m: dict) -> str:
        return f"{m['wall_s']:.2f} s / {m['cpu_s']:.2f} s / {m['peak_pss'] / MiB:.0f} MiB"

    def equal(w: dict) -> str:
        return ", ".join(f"{kind} " + ("yes" if e["equal"] else f"NO ({e['detail']})")
                         for kind, e in w["equality"].items()) or "-"

    def met(w: dict, key: str) -> str:
        return "" if key not in w["targets"] else " ok" if w["targets"][key] else " MISS"

    median_table = (
        f"size {report['settings']['size']}, workers {report['settings']['workers']}, "
        f"medians of {report['settings']['repeat']}",
        ["workload", *(f"{kind} wall / CPU / peak" for kind in sides),
         f"pixels equal to {sides[0]}"],
        [[w["title"], *(medians(w[kind]) for kind in sides), equal(w)] for w in workloads])

    # The workloads' keys, not their titles: this table is wide.
    header, cells = ["workload"], [[w["key"].upper()] for w in workloads]

    def column(name: str, cell) -> None:
        header.append(name)
        for row, w in zip(cells, workloads):
            row.append(cell(w))

    if "eoscale" in sides and "baseline" in sides:
        column("wall eo/base (target)", lambda w: f"{w['ratios']['eoscale/baseline']['wall']:.2f} "
               f"({w['targets']['wall_ratio']:.2f}){met(w, 'wall_met')}")
        column("best-of eo/base", lambda w: f"{w['ratios']['eoscale/baseline']['wall_best']:.2f}")
        column("peak eo/base", lambda w: f"{w['ratios']['eoscale/baseline']['peak']:.2f}")
    if "eoscale" in sides and "dask" in sides:
        column(f"wall eo/dask (<{DASK_TARGET:g})",
               lambda w: f"{w['ratios']['eoscale/dask']['wall']:.2f}{met(w, 'dask_wall_met')}")
        column("best-of eo/dask", lambda w: f"{w['ratios']['eoscale/dask']['wall_best']:.2f}")
        column(f"peak eo/dask (<{DASK_TARGET:g})",
               lambda w: f"{w['ratios']['eoscale/dask']['peak']:.2f}{met(w, 'dask_peak_met')}")
    for kind in sides:
        target = f" (<={PEAK_TARGET})" if kind == "eoscale" else ""
        column(f"{SHORT[kind]} peak/held{target}",
               lambda w, kind=kind: f"{w['peak_vs_held'][kind]:.2f}{met(w, 'peak_met') if kind == 'eoscale' else ''}")
    if "eoscale" in sides:
        column(f"eo main CPU share (<={MAIN_CPU_TARGET:.0%})",
               lambda w: f"{w['eoscale']['main_cpu_share']:.0%}{met(w, 'main_cpu_met')}")
    column("held (in+out)", lambda w: f"{w['held_bytes'] / MiB:.0f} MiB")
    if "eoscale" in sides:
        column("eo estimate/peak", lambda w: _ratio(w.get("estimate_vs_peak")))
    if "baseline" in sides:
        column("bound", lambda w: f"{w['bound_s']:.2f} s")
        for kind in ("eoscale", "dask"):
            if kind in sides:
                column(f"{SHORT[kind]} wall/bound",
                       lambda w, kind=kind: f"{w['wall_vs_bound'][kind]:.2f}")
    ratio_table = ("ratios of medians, against their targets; held: the bytes of the images a step "
                   "reads and writes; bound: the baseline's read + compute + write over the workers",
                   header, cells)

    phase_names = {"baseline": ("read", "compute", "write"),
                   "eoscale": ("read", "map", "reduce", "write"), "dask": ("graph", "run")}

    def phases(w: dict, kind: str) -> str:
        times = w[kind]["phases_s"]
        rest = w[kind]["wall_s"] - sum(times.values())
        return " / ".join(f"{t:.2f}" for t in [*(times.get(p, 0.0) for p in phase_names[kind]), rest])

    phase_table = (
        "phase medians (s); rest: the wall time outside the phases (start, imports, exit); dask's "
        "graph: opening the scene and building the graph, its run: computing and writing",
        ["workload", *(f"{kind} {' / '.join(phase_names[kind])} / rest" for kind in sides)],
        [[w["title"], *(phases(w, kind) for kind in sides)] for w in workloads])
    return [median_table, ratio_table, phase_table]


def rich_table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for name in header:
        table.add_column(name, justify="left" if name == "workload" else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(report: dict) -> str:
    """The report as Markdown: a sentence on the machine and load, the tables, the overhead."""
    m, s, load = report["machine"], report["settings"], report["load"]
    dask_versions = (f", dask {m['dask']}, xarray {m['xarray']}, rioxarray {m['rioxarray']}"
                     if "dask" in m else "")
    machine_line = (
        f"Run of {report['date']} on {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; "
        f"Python {m['python']}, numpy {m['numpy']}, scipy {m['scipy']}, rasterio {m['rasterio']}, "
        f"GDAL {m['gdal']}{dask_versions}; eoscale {m['eoscale']} ({m['commit']}). Size "
        f"{s['size']} x {s['size']}, workers {s['workers']}, sides {', '.join(s['sides'])}, "
        f"medians of {s['repeat']} runs; 1-minute load average "
        f"{load['start']:.1f} at the start, {load['end']:.1f} at the end; other work took "
        f"{load['foreign_cores_median']:.1f} cores on average (median over runs) while measuring.")
    lines = [machine_line]
    for title, header, rows in report_tables(report):
        lines += ["", f"{title}:", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    if report.get("overhead"):
        o = report["overhead"]["median"]
        overhead = (f"Engine overhead, {o['tiles']:.0f} tiles of a callable that does nothing "
                    f"(map identity + reduce returning 0, {o['workers']:.0f} workers): "
                    f"{o['total_s']:.2f} s in all (start {o['start_s']:.2f}, map {o['map_s']:.2f}, "
                    f"reduce {o['reduce_s']:.2f}); target < {OVERHEAD_TARGET_S:.0f} s.")
        lines += ["", overhead]
    return "\n".join(lines) + "\n"


def chosen_sides(requested: str | None, console: Console) -> list[str]:
    """The sides to run, in SIDES's order: ``requested`` (comma-separated), or all of them, less
    dask (with the reason printed) when it is not installed."""
    missing = dask_missing()
    if requested is None:
        if missing:
            console.print(f"dask side skipped: {missing}", markup=False)
            return [kind for kind in SIDES if kind != "dask"]
        return list(SIDES)
    names = [name.strip() for name in requested.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SIDES))
    if unknown or not names:
        raise SystemExit(f"--sides: {', '.join(unknown) or 'nothing'} is not one of {', '.join(SIDES)}")
    if "dask" in names and missing:
        raise SystemExit(f"--sides: cannot run the dask side: {missing}")
    return [kind for kind in SIDES if kind in names]


def main() -> None:
    parser = argparse.ArgumentParser(
        description="eoscale against a single-process baseline and dask, end to end, on "
                    "generated data.")
    parser.add_argument("--size", type=int, default=8192, help="image side in pixels")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side, alternated")
    parser.add_argument("--workers", type=int, default=2, help="eoscale workers and dask threads")
    parser.add_argument("--sides", metavar="baseline,eoscale,dask",
                        help="the sides to run (default: all three, less dask when dask or "
                             "rioxarray is not installed); the first is the reference for equality")
    parser.add_argument("--dask-args", type=shlex.split, default=[], metavar="ARGS",
                        help="more arguments for dask_side.py (e.g. \"--writer rioxarray\")")
    parser.add_argument("--workloads", default="w1,w2,w3", help="comma-separated subset")
    parser.add_argument("--no-overhead", action="store_true", help="skip the micro-benchmark")
    parser.add_argument("--interval", type=float, default=0.05, help="PSS sampling period, s")
    parser.add_argument("--same-runs", action="store_true",
                        help="time the runs that sample memory (default: separate runs for each)")
    parser.add_argument("--quiet-below", type=float, default=0.3, metavar="CORES",
                        help="before each run, wait until other work takes fewer cores (0: don't)")
    parser.add_argument("--quiet-timeout", type=float, default=120.0, metavar="S",
                        help="longest wait for a quiet machine before running anyway")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "latest.json")
    parser.add_argument("--eoscale-ref", metavar="REF",
                        help="measure the eoscale package of this git commit (e.g. HEAD) instead of "
                             "the installed one, which may change while others work")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="set in the environment of every side (e.g. GDAL_CACHEMAX=64)")
    args = parser.parse_args()
    args.source = export_source(args.eoscale_ref) if args.eoscale_ref else None
    EXTRA_ENV.update(item.split("=", 1) for item in args.env)
    chosen = [w for w in WORKLOADS if w.key in args.workloads.split(",")]
    # Wide enough for the tables when the output goes to a file or a pipe.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    args.sides = chosen_sides(args.sides, console)

    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine(),
                    "settings": {"size": args.size, "repeat": args.repeat, "workers": args.workers,
                                 "interval_s": args.interval, "same_runs": args.same_runs,
                                 "quiet_below_cores": args.quiet_below,
                                 "quiet_timeout_s": args.quiet_timeout, "env": EXTRA_ENV,
                                 "sides": args.sides, "dask_args": args.dask_args,
                                 "eoscale_source": str(args.source or "installed package")},
                    "load": {"start": os.getloadavg()[0]}}
    if args.source:
        report["machine"]["commit"] = args.source.name.removeprefix("eoscale-")
    report["settings"]["eoscale_imported_from"] = subprocess.run(
        [sys.executable, "-c", "import eoscale; print(eoscale.__file__)"], check=False,
        capture_output=True, text=True, cwd=HERE, env=child_env(args.source)).stdout.strip()
    console.print(f"machine: {report['machine']}")
    started = time.perf_counter()
    scene = datagen.ensure_scene(args.size)
    datagen.ensure_dsm(args.size)
    console.print(f"data ready in {time.perf_counter() - started:.1f} s: {scene}")
    with rasterio.open(scene) as src:
        bands = src.count

    report["workloads"] = []
    for workload in chosen:
        console.print(f"{workload.title}  (load average {os.getloadavg()[0]:.1f})")
        report["workloads"].append(bench_workload(workload, scene, bands, args.size, args, console))
    if not args.no_overhead:
        console.print(f"engine overhead  (load average {os.getloadavg()[0]:.1f})")
        report["overhead"] = bench_overhead(args)
    timed = [r for w in report["workloads"] for side in args.sides for r in w[side]["runs"]]
    foreign = [r["foreign_cores"] for r in timed]
    loads = [r["load_before"] for r in timed]
    report["load"].update(end=os.getloadavg()[0],
                          foreign_cores_median=statistics.median(foreign) if foreign else 0.0,
                          quiet_wait_s_total=sum(r.get("quiet_wait_s", 0.0) for r in timed),
                          foreign_cores_max=max(foreign, default=0.0),
                          load_before_runs_median=statistics.median(loads) if loads else 0.0)

    for title, header, rows in report_tables(report):
        console.print(rich_table(title, header, rows))
    if report.get("overhead"):
        o = report["overhead"]
        console.print(f"engine overhead ({o['median']['tiles']:.0f} tiles): "
                      f"{o['median']['total_s']:.2f} s median (target < {OVERHEAD_TARGET_S} s): "
                      f"{'ok' if o['met'] else 'MISS'}; start {o['median']['start_s']:.2f}, map "
                      f"{o['median']['map_s']:.2f}, reduce {o['median']['reduce_s']:.2f}")
    console.print(f"load: {report['load']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    console.print(f"saved {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
