"""W1 written as a COG with overviews against W1 written as a plain GeoTIFF, end to end.

    python benchmarks/cog_pass.py [--size 8192] [--repeat 3] [--workers 2] [--quiet-below 0.3]
                                  [--eoscale-ref REF] [--out benchmarks/results/cog_pass.json]

Issue 19's target: ``format: COG`` with overviews of W1's output takes at most 1.25 x the wall of
the plain GeoTIFF run (the overview levels add about a third more pixels to encode). Each repeat
runs both (the order alternating), timing only, with the pipeline ``w1_cog.yaml`` (W1's, its output
``format: COG``) and ``w1_mean.yaml``; every run records the 1-minute load average before it and
the cores other work took during it (measure.py), and the share of the CPU the main process took
itself. The COG of the last run is checked with rio-cogeo's ``cog_validate`` and its full
resolution compared with the plain output, pixel for pixel. Writes the JSON report and a Markdown
table beside it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import datagen
from cluster_scaling import save_report
from measure import run_measured, wait_for_quiet
from run import HERE, REPO, child_env, eoscale_command, export_source, machine, outputs_equal

#: The issue's bound on the COG run's wall time, as a multiple of the plain GeoTIFF run's.
TARGET = 1.25
PIPELINES = {"gtiff": "w1_mean.yaml", "cog": "w1_cog.yaml"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quiet-below", type=float, default=0.3, metavar="CORES")
    parser.add_argument("--quiet-timeout", type=float, default=60.0, metavar="S")
    parser.add_argument("--eoscale-ref", metavar="REF",
                        help="measure this git commit's eoscale (default: this checkout's)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cog_pass.json")
    args = parser.parse_args()
    env = child_env(export_source(args.eoscale_ref) if args.eoscale_ref else REPO)
    scene = datagen.ensure_scene(args.size)
    out_dir = HERE / "results" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    outs = {side: out_dir / f"w1_{side}.tif" for side in PIPELINES}
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine(),
                    "settings": {"size": args.size, "repeat": args.repeat, "workers": args.workers,
                                 "quiet_below_cores": args.quiet_below},
                    "load": {"start": os.getloadavg()[0]}}
    runs: dict[str, list[dict]] = {side: [] for side in PIPELINES}
    for repeat in range(args.repeat):
        for side in (("gtiff", "cog") if repeat % 2 == 0 else ("cog", "gtiff")):
            # As run.py does: replacing the last run's output would add freeing its blocks (and
            # dropping its cached pages) to this run's time, the larger COG's more.
            outs[side].unlink(missing_ok=True)
            waited = (wait_for_quiet(args.quiet_below, args.quiet_timeout)[0]
                      if args.quiet_below > 0 else 0.0)
            command = eoscale_command() + [
                "run", str(HERE / PIPELINES[side]), "--workers", str(args.workers),
                "--input", f"scene={scene}", "--output", f"mean={outs[side]}", "--overwrite"]
            done = run_measured(command, interval=None, cwd=str(HERE), env=env)
            if done.returncode != 0:
                raise SystemExit(f"{side} failed:\n{done.stdout}\n{done.stderr}")
            runs[side].append({"wall_s": done.wall_s, "cpu_s": done.cpu_s,
                               "user_s": done.user_s, "sys_s": done.sys_s,
                               "main_cpu_s": done.root_cpu_s, "load_before": done.load_before,
                               "foreign_cores": done.foreign_cores, "quiet_wait_s": waited})
            print(f"  {side:5} #{repeat + 1}: wall {done.wall_s:6.2f} s cpu {done.cpu_s:6.2f} s "
                  f"(user {done.user_s:6.2f} s, sys {done.sys_s:5.2f} s) "
                  f"main {done.root_cpu_s:5.2f} s load {done.load_before:.1f} foreign "
                  f"{done.foreign_cores:.2f}", flush=True)
    medians = {side: {key: statistics.median(r[key] for r in found)
                      for key in ("wall_s", "cpu_s", "user_s", "sys_s", "main_cpu_s",
                                  "load_before", "foreign_cores")}
               for side, found in runs.items()}
    ratio = medians["cog"]["wall_s"] / medians["gtiff"]["wall_s"]
    from rio_cogeo.cogeo import cog_validate

    valid, errors, warnings = cog_validate(str(outs["cog"]))
    report.update(runs=runs, medians=medians, wall_ratio=ratio, target=TARGET,
                  met=ratio <= TARGET, equality=outputs_equal(outs["gtiff"], outs["cog"]),
                  cog_validate={"valid": valid, "errors": errors, "warnings": warnings})
    save_report(report, args.out, markdown)


def markdown(report: dict) -> str:
    s, m = report["settings"], report["machine"]
    g, c = report["medians"]["gtiff"], report["medians"]["cog"]
    check = report["cog_validate"]
    validity = ("valid, no warning" if check["valid"] and not check["warnings"]
                else f"valid {check['valid']}: {check['errors'] + check['warnings']}")
    equal = "equal" if report["equality"]["equal"] else "DIFFER: " + report["equality"]["detail"]
    return "\n".join([
        f"Run of {report['date']} on {m['cpu']}, {m['cores']} cores; eoscale {m['commit']}; size "
        f"{s['size']} x {s['size']}, {s['workers']} workers, medians of {s['repeat']} (order "
        f"alternated); 1-minute load {report['load']['start']:.1f} at the start, "
        f"{report['load']['end']:.1f} at the end.", "",
        "| W1 output | wall | CPU (user + system) | main process CPU | foreign cores |",
        "|---|---|---|---|---|",
        f"| GeoTIFF | {g['wall_s']:.2f} s | {g['cpu_s']:.2f} s ({g['user_s']:.2f} + "
        f"{g['sys_s']:.2f}) | {g['main_cpu_s']:.2f} s | {g['foreign_cores']:.2f} |",
        f"| COG with overviews | {c['wall_s']:.2f} s | {c['cpu_s']:.2f} s ({c['user_s']:.2f} + "
        f"{c['sys_s']:.2f}) | {c['main_cpu_s']:.2f} s | {c['foreign_cores']:.2f} |", "",
        f"COG / GeoTIFF wall: **{report['wall_ratio']:.2f}** (target {TARGET}, "
        f"{'met' if report['met'] else 'MISSED'}); COG: {validity}; full resolution {equal} to "
        "the GeoTIFF's.", ""])


if __name__ == "__main__":
    main()
