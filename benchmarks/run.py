"""eoscale against a single-process baseline, end to end, on generated data. One command:

    python benchmarks/run.py [--size 8192] [--repeat 3] [--workers 2] [--out benchmarks/results/latest.json]
                             [--eoscale-ref HEAD] [--workloads w1,w2,w3] [--same-runs] [--env K=V]

It generates the input rasters once (datagen.py). For each workload (W1 9 x 9 mean -> float32
GeoTIFF; W2 per-band statistics and histogram -> JSON; W3 band ratio -> 5 x 5 median -> GeoTIFF) it
alternates the baseline script and the real ``eoscale run`` command, ``--repeat`` times, each time
once for timing (wall, CPU) and once sampling memory (peak PSS of the process tree; see measure.py),
after waiting for the machine to be quiet. It checks that eoscale's output has exactly the
baseline's values, runs the engine-overhead micro-benchmark, prints a table of medians and saves
everything as JSON, and the tables as Markdown beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
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
    Workload("w1", "W1 9x9 mean -> f32 GeoTIFF", "w1_mean.yaml", "mean", ".tif", 0.55),
    Workload("w2", "W2 band stats + histogram -> JSON", "w2_stats.yaml", "stats", ".json", 0.60),
    Workload("w3", "W3 ratio -> 5x5 median -> GeoTIFF", "w3_ratio_median.yaml", "median", ".tif",
             0.52),
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

    No terminal, so eoscale prints plain progress lines, which carry its phase times.
    """
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
    return {
        "cpu": first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory_gib": round(int(first("/proc/meminfo", "MemTotal").split()[0]) / 2 ** 20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__, "scipy": scipy.__version__,
        "rasterio": rasterio.__version__, "gdal": rasterio.__gdal_version__,
        "eoscale": eoscale.__version__, "commit": commit,
    }


def phases_of(run: Measured, kind: str) -> dict[str, float]:
    """Phase seconds a run reported: the baseline's JSON line, eoscale's plain progress lines."""
    if kind == "baseline":
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
    outs = {kind: out_dir / f"{workload.key}_{kind}{workload.suffix}"
            for kind in ("baseline", "eoscale")}
    runs: dict[str, list[Measured]] = {"baseline": [], "eoscale": []}
    memory: dict[str, list[Measured]] = {"baseline": [], "eoscale": []}
    # Timing runs and memory runs are separate unless --same-runs: sampling PSS makes the kernel
    # walk every page of the tree, which slows what it measures (see README).
    modes = [True] if args.same_runs else [False, True]
    for repeat in range(args.repeat):
        for sample_memory in modes:
            for kind in ("baseline", "eoscale"):
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
    equality = outputs_equal(outs["baseline"], outs["eoscale"])
    base = summarise(runs["baseline"], memory["baseline"], "baseline")
    eo = summarise(runs["eoscale"], memory["eoscale"], "eoscale")
    held = workload.held_bytes(size, bands)
    base_phase_total = sum(base["phases_s"].get(p, 0.0) for p in ("read", "compute", "write"))
    bound = base_phase_total / args.workers
    return {
        "key": workload.key, "title": workload.title, "held_bytes": held,
        "baseline": base, "eoscale": eo,
        "wall_ratio": eo["wall_s"] / base["wall_s"],
        "wall_ratio_best": eo["wall_min_s"] / base["wall_min_s"],
        "cpu_ratio": eo["cpu_s"] / base["cpu_s"],
        "peak_ratio": eo["peak_pss"] / base["peak_pss"],
        "peak_vs_held": {"baseline": base["peak_pss"] / held, "eoscale": eo["peak_pss"] / held},
        "estimate_vs_peak": eo["estimate"] / eo["peak_pss"] if eo["estimate"] else None,
        "bound_s": bound, "wall_vs_bound": eo["wall_s"] / bound,
        "equality": equality,
        "targets": {"wall_ratio": workload.wall_target, "peak_vs_held": PEAK_TARGET,
                    "wall_met": eo["wall_s"] / base["wall_s"] <= workload.wall_target,
                    "peak_met": eo["peak_pss"] / held <= PEAK_TARGET},
    }


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


def tables(report: dict) -> tuple[Table, Table]:
    """The summary (medians, ratios, checks) and the phase breakdown."""
    workers = report["settings"]["workers"]
    summary = Table(title=f"size {report['settings']['size']}, workers {workers}, "
                          f"medians of {report['settings']['repeat']}", title_justify="left")
    for column in ("workload", "base wall s", "base CPU s", "base peak MiB", "eo wall s",
                   "eo CPU s", "eo peak MiB", "wall eo/base (target)", "best-of eo/base",
                   "peak eo/base",
                   "in+out MiB", "eo peak/in+out (<=1.15)", "eo estimate/peak", "bound s",
                   "eo wall/bound", "equal"):
        summary.add_column(column, justify="left" if column == "workload" else "right")
    for w in report["workloads"]:
        b, e, t = w["baseline"], w["eoscale"], w["targets"]
        summary.add_row(
            w["title"], f"{b['wall_s']:.2f}", f"{b['cpu_s']:.2f}", f"{b['peak_pss'] / MiB:.0f}",
            f"{e['wall_s']:.2f}", f"{e['cpu_s']:.2f}", f"{e['peak_pss'] / MiB:.0f}",
            f"{w['wall_ratio']:.2f} ({t['wall_ratio']:.2f}) {'ok' if t['wall_met'] else 'MISS'}",
            f"{w['wall_ratio_best']:.2f}", f"{w['peak_ratio']:.2f}", f"{w['held_bytes'] / MiB:.0f}",
            f"{w['peak_vs_held']['eoscale']:.2f} {'ok' if t['peak_met'] else 'MISS'}",
            _ratio(w.get("estimate_vs_peak")), f"{w['bound_s']:.2f}", f"{w['wall_vs_bound']:.2f}",
            "yes" if w["equality"]["equal"] else f"NO ({w['equality']['detail']})")
    phases = Table(title="phase medians (s): baseline read / compute / write; "
                         "eoscale read / map / reduce / write (as it reports them)",
                   title_justify="left")
    for column in ("workload", "base read", "base compute", "base write", "eo read", "eo map",
                   "eo reduce", "eo write", "eo unaccounted (start, import, exit)"):
        phases.add_column(column, justify="left" if column == "workload" else "right")
    for w in report["workloads"]:
        b, e = w["baseline"]["phases_s"], w["eoscale"]["phases_s"]
        rest = w["eoscale"]["wall_s"] - sum(e.values())
        phases.add_row(w["title"], *(f"{b.get(p, 0.0):.2f}" for p in ("read", "compute", "write")),
                       *(f"{e.get(p, 0.0):.2f}" for p in ("read", "map", "reduce", "write")),
                       f"{rest:.2f}")
    return summary, phases


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(report: dict) -> str:
    """The report as Markdown: a sentence on the machine and load, the two tables, the overhead."""
    m, s, load = report["machine"], report["settings"], report["load"]
    machine_line = (
        f"Run of {report['date']} on {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; "
        f"Python {m['python']}, numpy {m['numpy']}, scipy {m['scipy']}, rasterio {m['rasterio']}, "
        f"GDAL {m['gdal']}; eoscale {m['eoscale']} ({m['commit']}). Size {s['size']} x {s['size']}, "
        f"workers {s['workers']}, medians of {s['repeat']} runs; 1-minute load average "
        f"{load['start']:.1f} at the start, {load['end']:.1f} at the end; other work took "
        f"{load['foreign_cores_median']:.1f} cores on average (median over runs) while measuring.")
    summary_header = ("| workload | baseline wall / CPU / peak | eoscale wall / CPU / peak "
                      "| wall eo/base (target) | best-of wall eo/base | peak eo/base "
                      "| peak eo / in+out held (target 1.15) | eo estimate / peak | bound "
                      "| eo / bound | pixels equal |")
    lines = [machine_line, "", summary_header, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for w in report["workloads"]:
        b, e, t = w["baseline"], w["eoscale"], w["targets"]
        equal = "yes" if w["equality"]["equal"] else "no: " + w["equality"]["detail"]
        lines.append(
            f"| {w['title']} | {b['wall_s']:.1f} s / {b['cpu_s']:.1f} s / {b['peak_pss'] / MiB:.0f} MiB "
            f"| {e['wall_s']:.1f} s / {e['cpu_s']:.1f} s / {e['peak_pss'] / MiB:.0f} MiB "
            f"| {w['wall_ratio']:.2f} ({t['wall_ratio']:.2f}) | {w['wall_ratio_best']:.2f} "
            f"| {w['peak_ratio']:.2f} "
            f"| {w['peak_vs_held']['eoscale']:.2f} ({w['held_bytes'] / MiB:.0f} MiB held) "
            f"| {_ratio(w.get('estimate_vs_peak'))} | {w['bound_s']:.1f} s | {w['wall_vs_bound']:.2f} | {equal} |")
    phase_header = ("| workload | baseline read / compute / write "
                    "| eoscale read / map / reduce / write / rest |")
    lines += ["", phase_header, "|---|---|---|"]
    for w in report["workloads"]:
        b, e = w["baseline"]["phases_s"], w["eoscale"]["phases_s"]
        rest = w["eoscale"]["wall_s"] - sum(e.values())
        base_phases = " / ".join(f"{b.get(p, 0.0):.2f}" for p in ("read", "compute", "write"))
        eo_phases = " / ".join(f"{e.get(p, 0.0):.2f}" for p in ("read", "map", "reduce", "write"))
        lines.append(f"| {w['title']} | {base_phases} | {eo_phases} / {rest:.2f} |")
    if report.get("overhead"):
        o = report["overhead"]["median"]
        overhead = (f"Engine overhead, {o['tiles']:.0f} tiles of a callable that does nothing "
                    f"(map identity + reduce returning 0, {o['workers']:.0f} workers): "
                    f"{o['total_s']:.2f} s in all (start {o['start_s']:.2f}, map {o['map_s']:.2f}, "
                    f"reduce {o['reduce_s']:.2f}); target < {OVERHEAD_TARGET_S:.0f} s.")
        lines += ["", overhead]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description="eoscale against a single-process baseline, end to end, on generated data.")
    parser.add_argument("--size", type=int, default=8192, help="image side in pixels")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side, alternated")
    parser.add_argument("--workers", type=int, default=2, help="eoscale workers")
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
                        help="set in the environment of both sides (e.g. GDAL_CACHEMAX=64)")
    args = parser.parse_args()
    args.source = export_source(args.eoscale_ref) if args.eoscale_ref else None
    EXTRA_ENV.update(item.split("=", 1) for item in args.env)
    chosen = [w for w in WORKLOADS if w.key in args.workloads.split(",")]
    # Wide enough for the tables when the output goes to a file or a pipe.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)

    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine(),
                    "settings": {"size": args.size, "repeat": args.repeat, "workers": args.workers,
                                 "interval_s": args.interval, "same_runs": args.same_runs,
                                 "quiet_below_cores": args.quiet_below,
                                 "quiet_timeout_s": args.quiet_timeout, "env": EXTRA_ENV,
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
    foreign = [r["foreign_cores"] for w in report["workloads"] for side in ("baseline", "eoscale")
               for r in w[side]["runs"]]
    loads = [r["load_before"] for w in report["workloads"] for side in ("baseline", "eoscale")
             for r in w[side]["runs"]]
    report["load"].update(end=os.getloadavg()[0],
                          foreign_cores_median=statistics.median(foreign) if foreign else 0.0,
                          quiet_wait_s_total=sum(r.get("quiet_wait_s", 0.0) for w in report["workloads"]
                                                 for side in ("baseline", "eoscale")
                                                 for r in w[side]["runs"]),
                          foreign_cores_max=max(foreign, default=0.0),
                          load_before_runs_median=statistics.median(loads) if loads else 0.0)

    summary, phases = tables(report)
    console.print(summary)
    console.print(phases)
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
