"""Issue 20's targets: a run killed at about 60 % of its tiles, resumed; and what the journal costs.

    python benchmarks/resume.py [--size 8192 | --input DSM.tif] [--repeat 3] [--workers 2]
                                [--kill-at 0.6] [--journal-pairs 1]
                                [--eoscale-args "--memory 400MiB"]
                                [--quiet-below 0.3] [--eoscale-ref REF]
                                [--out benchmarks/results/resume.json]

The workload is ``ooc_chain.yaml`` (fill_nodata -> 3 x 3 median -> gaussian -> stats) on a
float32 surface model, writing the smoothed GeoTIFF and the statistics' JSON. Each repeat runs:

1. **uninterrupted**: the chain from start to end (wall, CPU, tiles computed);
2. **killed**: the same, started in a process group of its own, SIGKILLed (``os.killpg``, the
   main process and its workers at once) as soon as the tiles computed reach ``--kill-at`` of
   the uninterrupted run's; what was computed, what eoscale's progress lines said had come back,
   and what its journal had recorded at that instant are read once the group is dead;
3. **resume**: ``--resume`` with the same arguments (wall, CPU, tiles computed), its outputs
   compared with the uninterrupted run's (every pixel, NaN equal to NaN; the JSON result), and
   what the runs left (staged files, part files, journal, scratch files, shared memory);
4. **journal on / off** (``--journal-pairs`` pairs, the order alternating): the chain run through
   ``journal_probe.py``, once as it is (the journal's functions timed: CPU and wall in them) and
   once with the journal switched off.

Tiles are counted, not taken from eoscale: runs 1-3 use the chain with its callables wrapped by
``counted_ops.py`` (one byte appended to a counter file per call, by whichever process made the
call), so "computed" means computed, whether or not its result reached the main process. The
kill watches that counter; the fraction done at the kill is the calls counted once the group is
dead over the uninterrupted run's calls. Every timed run waits for a quiet machine first
(``--quiet-below``) and records the 1-minute load before it and the cores other work took during
it (measure.py). Writes the JSON report and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import datagen
from cluster_scaling import save_report
from counted_ops import COUNTER_ENV, read_counts, total
from journal_probe import TIMES_ENV
from measure import Measured, run_measured, wait_for_quiet
from run import HERE, REPO, child_env, eoscale_command, export_source, machine, outputs_equal

from eoscale.engine.shared import pid_alive
from eoscale.io.journal import JournalError, read_journal
from eoscale.io.runfiles import TEMP_MARK

#: Issue 20's targets: a resume computes at most this share of the tiles ...
COMPUTED_TARGET = 0.45
#: ... in at most this share of the uninterrupted run's wall; the journal costs at most this
#: share of an uninterrupted run's wall.
WALL_TARGET = 0.5
JOURNAL_TARGET = 0.02
#: How often the killed run's counter is read (seconds).
POLL_SECONDS = 0.005
#: The killed run's progress lines: at least this often (eoscale's EOSCALE_PROGRESS_SECONDS).
KILLED_PROGRESS_SECONDS = "0.25"
_PROGRESS = re.compile(r"^\d\d:\d\d:\d\d (?:map|reduce) (.+?): (\d+)/(\d+) tiles", re.MULTILINE)
_DONE = re.compile(r"^\d\d:\d\d:\d\d (?:map|reduce) (.+?): done in [0-9.]+ s: (\d+)/\d+ tiles",
                   re.MULTILINE)
_TAKEN = re.compile(r"taking back (.+?) \(recorded\)")
_TAKEN_ONE = re.compile(r"(\d+) of (\d+) tiles of '([^']+)'")


class Bench:
    """The benchmark's files and commands: one folder of outputs and scratch, one counter file
    per run."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.env = child_env(export_source(args.eoscale_ref) if args.eoscale_ref else REPO)
        self.dsm = args.input.resolve() if args.input else datagen.ensure_dsm(args.size)
        self.folder = HERE / "results" / "out" / "resume"
        self.scratch = self.folder / "scratch"
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.extra = shlex.split(args.eoscale_args)
        self.plain = HERE / "ooc_chain.yaml"
        self.counted = self.folder / "ooc_chain_counted.yaml"
        # The same chain, its callables counting their calls (counted_ops.py).
        self.counted.write_text(self.plain.read_text().replace("eoscale.ops.", "counted_ops."))
        self._runs = 0

    def arguments(self, pipeline: Path, label: str) -> list[str]:
        """``run`` arguments writing the outputs ``<label>.tif`` and ``<label>.json``."""
        return ["run", str(pipeline), "--workers", str(self.args.workers), "--overwrite",
                "--input", f"dsm={self.dsm}", "--output", f"smooth={self.folder / label}.tif",
                "--output", f"stats={self.folder / label}.json", "--scratch", str(self.scratch),
                *self.extra]

    def counter(self) -> Path:
        """A new, empty counter file."""
        self._runs += 1
        path = self.folder / f"calls_{self._runs}.count"
        path.unlink(missing_ok=True)
        return path

    def quiet(self) -> float:
        """Wait for a quiet machine (``--quiet-below``); the seconds waited."""
        if self.args.quiet_below <= 0:
            return 0.0
        return wait_for_quiet(self.args.quiet_below, self.args.quiet_timeout)[0]

    def measured(self, command: list[str], env: dict[str, str],
                 what: str) -> tuple[Measured, float]:
        """Run ``command`` to its end once the machine is quiet, timed (no memory sampling);
        the run and the seconds waited before it."""
        waited = self.quiet()
        done = run_measured(command, interval=None, cwd=str(HERE), env=env)
        if done.returncode != 0:
            raise SystemExit(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done, waited


#: What a plan's step and image must agree on between the counted chain and the plain one.
_STEP_KEYS = ("name", "kind", "margin", "tiling", "loads", "releases", "fused_into", "chain",
              "fed_by")
_IMAGE_KEYS = ("name", "lives", "made_by", "encoded_by_workers")


def plans(bench: Bench) -> dict[str, Any]:
    """The plans of the counted chain and of ``ooc_chain.yaml`` (``--dry-run --json``), as far
    as tiling, fusion, feeding and residence go: they must be the same, or the tiles counted are
    not those of the workload."""
    found = []
    for pipeline in (bench.counted, bench.plain):
        done = subprocess.run(eoscale_command() + bench.arguments(pipeline, "plan")
                              + ["--dry-run", "--json"], capture_output=True, text=True,
                              env=bench.env, cwd=str(HERE), check=False)
        if done.returncode != 0:
            raise SystemExit(f"--dry-run of {pipeline} failed:\n{done.stdout}\n{done.stderr}")
        plan = json.loads(done.stdout)
        found.append({"steps": [{key: step[key] for key in _STEP_KEYS} for step in plan["steps"]],
                      "images": [{key: image[key] for key in _IMAGE_KEYS}
                                 for image in plan["images"]]})
    if found[0] != found[1]:
        raise SystemExit("the counted chain is not planned as ooc_chain.yaml is:\n"
                         f"{json.dumps(found, indent=1)}")
    return found[1]


def plan_text(plan: dict[str, Any]) -> str:
    """The plan in a few words: each computed step's tiles, its fused chain, what it feeds."""
    steps = plan["steps"]
    parts = []
    for step in steps:
        if step["fused_into"] is not None:
            continue
        name = " > ".join(steps[i]["name"] for i in step["chain"]) if step["chain"] \
            else step["name"]
        text = f"'{name}' {step['tiling']['tiles']} tiles of {step['tiling']['tile_size']} px"
        if step["fed_by"] is not None:
            feeder = step["fed_by"]
            feeder = steps[feeder]["name"] if isinstance(feeder, int) else feeder
            text = f"'{step['name']}' fed by the tiles of '{feeder}'"
        parts.append(text)
    return "; ".join(parts)


def figures(done: Measured, waited: float) -> dict[str, Any]:
    return {"wall_s": done.wall_s, "cpu_s": done.cpu_s, "main_cpu_s": done.root_cpu_s,
            "load_before": done.load_before, "foreign_cores": done.foreign_cores,
            "quiet_wait_s": waited}


def uninterrupted(bench: Bench) -> dict[str, Any]:
    counter = bench.counter()
    done, waited = bench.measured(eoscale_command() + bench.arguments(bench.counted, "full"),
                                  dict(bench.env, **{COUNTER_ENV: str(counter)}), "uninterrupted")
    counts = read_counts(counter)
    return {**figures(done, waited), "calls": counts, "calls_total": total(counts),
            "progress": _DONE.findall(done.stdout)}


def killed(bench: Bench, full_calls: int) -> dict[str, Any]:
    """Run the counted chain and SIGKILL its process group once it computed ``--kill-at`` of
    ``full_calls``; what it computed, said and recorded, read once the group is dead."""
    counter = bench.counter()
    threshold = bench.args.kill_at * full_calls
    env = dict(bench.env, **{COUNTER_ENV: str(counter), "EOSCALE_PROGRESS_SECONDS":
                             KILLED_PROGRESS_SECONDS})
    command = eoscale_command() + bench.arguments(bench.counted, "resumed") + ["--restart"]
    out, err = bench.folder / "killed.out", bench.folder / "killed.err"
    bench.quiet()
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, cwd=str(HERE),
                                   start_new_session=True)
        try:
            while _size(counter) < threshold:
                if process.poll() is not None:
                    raise SystemExit(f"the run ended ({process.returncode}) before "
                                     f"{bench.args.kill_at:.0%} of its tiles were computed: "
                                     f"see {out} and {err}")
                time.sleep(POLL_SECONDS)
            group = _group(process.pid)
            os.killpg(process.pid, signal.SIGKILL)
            at_s, at_time = time.perf_counter() - started, time.time()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            raise
        finally:
            process.wait()
    _wait_gone(group)
    counts = read_counts(counter)
    said = out.read_text(errors="replace") + err.read_text(errors="replace")
    progress = _PROGRESS.findall(said)
    return {"killed_after_s": at_s, "calls": counts, "calls_total": total(counts),
            "fraction_done": total(counts) / full_calls,
            "progress_said": ({"step": progress[-1][0], "done": int(progress[-1][1]),
                               "of": int(progress[-1][2])} if progress else None),
            "steps_finished_said": _DONE.findall(said), "journal": _journal_at(bench, at_time),
            "left": _left(bench), "pids": group}


def resumed(bench: Bench, full: dict[str, Any], pids: list[int]) -> dict[str, Any]:
    counter = bench.counter()
    done, waited = bench.measured(
        eoscale_command() + bench.arguments(bench.counted, "resumed") + ["--resume"],
        dict(bench.env, **{COUNTER_ENV: str(counter)}), "resume")
    counts = read_counts(counter)
    line = next((line for line in done.stdout.splitlines() if line.startswith("resuming")), "")
    taken = _TAKEN.search(line)
    return {**figures(done, waited), "calls": counts, "calls_total": total(counts),
            "computed_share": total(counts) / full["calls_total"], "said": line,
            "taken_back_said": ([{"step": s, "tiles": int(n), "of": int(m)}
                                 for n, m, s in _TAKEN_ONE.findall(taken.group(1))]
                                if taken else []),
            "equality": {name: outputs_equal(bench.folder / f"full{suffix}",
                                             bench.folder / f"resumed{suffix}")
                         for name, suffix in (("smooth", ".tif"), ("stats", ".json"))},
            "left_after": _left(bench, pids)}


def journal_pair(bench: Bench, repeat: int) -> dict[str, dict[str, Any]]:
    """The uninterrupted chain with its journal (its functions timed) and without it, in the
    order the repeat alternates."""
    found = {}
    for mode in (("timed", "off") if repeat % 2 == 0 else ("off", "timed")):
        times = bench.folder / "journal_times.json"
        times.unlink(missing_ok=True)
        command = [sys.executable, str(HERE / "journal_probe.py"), mode, "--",
                   *bench.arguments(bench.plain, f"journal_{mode}")]
        done, waited = bench.measured(command, dict(bench.env, **{TIMES_ENV: str(times)}),
                                      f"journal {mode}")
        found[mode] = figures(done, waited)
        # Switched off, the journal must change nothing else: the same outputs.
        found[mode]["equality"] = {
            name: outputs_equal(bench.folder / f"full{suffix}",
                                bench.folder / f"journal_{mode}{suffix}")
            for name, suffix in (("smooth", ".tif"), ("stats", ".json"))}
        if mode == "timed":
            found[mode]["journal_functions"] = json.loads(times.read_text())
    return found


def _size(path: Path) -> int:
    """A file's size; 0 when it is not (or no longer) there."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _group(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` (the run's main process and its workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[2]) == pgid:
                found.append(int(entry.name))
    return found


def _wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    """Wait until the killed processes are dead (a zombie is: where the first process reaps
    no orphan, the workers stay zombies)."""
    deadline = time.perf_counter() + timeout
    while any(pid_alive(pid) for pid in pids) and time.perf_counter() < deadline:
        time.sleep(0.02)


def _journal_at(bench: Bench, killed_at: float) -> dict[str, Any]:
    """What the killed run's journal recorded: the steps finished, the tiles by step, and how
    long before the kill it was last written."""
    paths = sorted(bench.scratch.glob("eoscale_run_*.journal"))
    if not paths:
        return {"path": None}
    path = paths[-1]
    try:
        contents = read_journal(path)
    except JournalError as exc:
        return {"path": str(path), "error": str(exc)}
    tiles: dict[str, set[str]] = {}
    for record in contents.of_kind("tiles"):
        tiles.setdefault(str(record["step"]), set()).update(record["tiles"])
    return {"path": str(path), "torn": contents.torn,
            "steps": [record.get("name") for record in contents.of_kind("step")],
            "tiles": {step: len(indices) for step, indices in tiles.items()},
            "tiles_records": sum(1 for _ in contents.of_kind("tiles")),
            "last_write_before_kill_s": killed_at - path.stat().st_mtime,
            "bytes": path.stat().st_size}


def _left(bench: Bench, pids: list[int] | None = None) -> dict[str, Any]:
    """What lies in the benchmark's folders that a run writes for itself (staged outputs, part
    files, journal, scratch files), and, given the killed run's pids, their shared-memory
    segments and folder records still there."""
    staged = [p for p in bench.folder.iterdir() if p.name.startswith(".") and TEMP_MARK in p.name]
    scratch = [p for p in bench.scratch.iterdir() if p.name.startswith("eoscale_")]
    found: dict[str, Any] = {
        "staged_and_parts": len(staged), "staged_bytes": sum(_size(p) for p in staged),
        "scratch_files": [p.name for p in scratch]}
    if pids is not None:
        marks = tuple(f"eoscale_{pid}_" for pid in pids)
        found["segments"] = [p.name for p in Path("/dev/shm").glob("eoscale_*")
                             if p.name.startswith(marks)]
        found["records"] = [p.name for p in Path(os.environ.get("TMPDIR", "/tmp")).glob(
            "eoscale_*.folders") if p.name.startswith(marks)]
    return found


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians and ratios, with each target met or missed."""
    keys = ("wall_s", "cpu_s", "main_cpu_s", "load_before", "foreign_cores")
    medians = {kind: {key: _median(found, key) for key in keys} for kind, found in runs.items()
               if kind != "killed"}
    full, resume = medians["uninterrupted"], medians["resume"]
    computed = _median(runs["resume"], "computed_share")
    journal_ratio = medians["journal_on"]["wall_s"] / medians["journal_off"]["wall_s"]
    functions = [run["journal_functions"] for run in runs["journal_on"]]
    equal = all(e["equal"] for run in runs["resume"] for e in run["equality"].values())
    journal_equal = all(e["equal"] for kind in ("journal_on", "journal_off")
                        for run in runs[kind] for e in run["equality"].values())
    return {
        "medians": medians,
        "killed_fraction": _median(runs["killed"], "fraction_done"),
        "computed_share": computed, "computed_met": computed <= COMPUTED_TARGET,
        # What the kill lost: computed before it and again by the resume.
        "computed_twice": statistics.median(
            cut["fraction_done"] + again["computed_share"] - 1
            for cut, again in zip(runs["killed"], runs["resume"])),
        "wall_ratio": resume["wall_s"] / full["wall_s"],
        "wall_met": resume["wall_s"] / full["wall_s"] <= WALL_TARGET,
        "cpu_ratio": resume["cpu_s"] / full["cpu_s"],
        "outputs_equal": equal,
        "journal_outputs_equal": journal_equal,
        "journal_ratio": journal_ratio, "journal_met": journal_ratio - 1 <= JOURNAL_TARGET,
        "journal_cpu_s": statistics.median(f["cpu_s"] for f in functions),
        "journal_wall_in_functions_s": statistics.median(f["wall_s"] for f in functions),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=8192,
                        help="the generated surface model's size (datagen.py)")
    parser.add_argument("--input", type=Path, help="a float32 surface model instead")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-at", type=float, default=0.6, metavar="FRACTION")
    parser.add_argument("--journal-pairs", type=int, default=1, metavar="N",
                        help="journal on / off pairs of runs per repeat (default 1)")
    parser.add_argument("--eoscale-args", default="", metavar="ARGS",
                        help="more arguments for every eoscale run, e.g. \"--memory 400MiB\"")
    parser.add_argument("--quiet-below", type=float, default=0.3, metavar="CORES")
    parser.add_argument("--quiet-timeout", type=float, default=60.0, metavar="S")
    parser.add_argument("--eoscale-ref", metavar="REF",
                        help="measure this git commit's eoscale (default: this checkout's)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "resume.json")
    args = parser.parse_args()
    if args.journal_pairs < 1:
        parser.error("--journal-pairs must be at least 1: the report compares the journal's cost")
    bench = Bench(args)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine(),
        "settings": {"input": str(bench.dsm), "repeat": args.repeat, "workers": args.workers,
                     "kill_at": args.kill_at, "journal_pairs": args.journal_pairs,
                     "eoscale_args": bench.extra,
                     "quiet_below_cores": args.quiet_below},
        "load": {"start": os.getloadavg()[0]}}
    report["plan"] = plans(bench)
    print(f"plan: {plan_text(report['plan'])}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {
        "uninterrupted": [], "killed": [], "resume": [], "journal_on": [], "journal_off": []}
    for repeat in range(args.repeat):
        full = uninterrupted(bench)
        cut = killed(bench, full["calls_total"])
        again = resumed(bench, full, cut["pids"])
        runs["uninterrupted"].append(full)
        runs["killed"].append(cut)
        runs["resume"].append(again)
        for number in range(args.journal_pairs):
            pair = journal_pair(bench, repeat * args.journal_pairs + number)
            runs["journal_on"].append(pair["timed"])
            runs["journal_off"].append(pair["off"])
        print(f"  #{repeat + 1}: uninterrupted {full['wall_s']:.2f} s ({full['calls_total']} "
              f"calls); killed at {cut['fraction_done']:.0%} after {cut['killed_after_s']:.2f} s"
              f" (journal: {cut['journal'].get('tiles')}); resume {again['wall_s']:.2f} s, "
              f"{again['computed_share']:.0%} computed; journal on {pair['timed']['wall_s']:.2f}"
              f" s, off {pair['off']['wall_s']:.2f} s; load {full['load_before']:.1f}",
              flush=True)
    report.update(runs=runs, summary=summarise(runs),
                  targets={"computed_share": COMPUTED_TARGET, "wall_ratio": WALL_TARGET,
                           "journal_extra": JOURNAL_TARGET})
    save_report(report, args.out, markdown)


def _met(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def markdown(report: dict[str, Any]) -> str:
    s, m, summary = report["settings"], report["machine"], report["summary"]
    med = summary["medians"]
    full, resume = med["uninterrupted"], med["resume"]
    on, off = med["journal_on"], med["journal_off"]
    runs = report["runs"]
    header = (f"Run of {report['date']} on {m['cpu']}, {m['cores']} cores; eoscale {m['commit']}; "
              f"input {Path(s['input']).name}, {s['workers']} workers, eoscale arguments "
              f"{' '.join(s['eoscale_args']) or 'none'}; medians of {s['repeat']}; 1-minute load "
              f"{report['load']['start']:.1f} at the start, {report['load']['end']:.1f} at the "
              f"end; other work's cores during the runs (median): "
              f"{full['foreign_cores']:.2f} uninterrupted, {resume['foreign_cores']:.2f} resume."
              f" Plan: {plan_text(report['plan'])}.")
    calls = "; ".join(f"{again['calls_total']}/{first['calls_total']}"
                      for again, first in zip(runs["resume"], runs["uninterrupted"]))
    rows = [
        ("uninterrupted run", f"{full['wall_s']:.2f} s wall, {full['cpu_s']:.2f} s CPU", "", ""),
        ("killed (SIGKILL to the group) at",
         f"{summary['killed_fraction']:.0%} of the tiles computed", f"about {s['kill_at']:.0%}",
         ""),
        ("resume: wall",
         f"{resume['wall_s']:.2f} s, **{summary['wall_ratio']:.2f}** x the uninterrupted",
         f"<= {WALL_TARGET} x", _met(summary["wall_met"])),
        ("resume: CPU (the tree's)",
         f"{resume['cpu_s']:.2f} s, {summary['cpu_ratio']:.2f} x the uninterrupted", "", ""),
        ("resume: tiles computed", f"**{summary['computed_share']:.0%}** ({calls} calls)",
         f"<= {COMPUTED_TARGET:.0%}", _met(summary["computed_met"])),
        ("computed twice (before the kill and by the resume)",
         f"{summary['computed_twice']:.1%} of the tiles", "", ""),
        ("resume: outputs equal the uninterrupted run's",
         "yes" if summary["outputs_equal"] else "NO", "equal", _met(summary["outputs_equal"])),
        ("journal on / off: wall",
         f"{on['wall_s']:.2f} s / {off['wall_s']:.2f} s = **{summary['journal_ratio']:.3f}**",
         f"<= {1 + JOURNAL_TARGET:.2f}", _met(summary["journal_met"])),
        ("journal on / off: outputs equal the uninterrupted run's",
         "yes" if summary["journal_outputs_equal"] else "NO", "equal",
         _met(summary["journal_outputs_equal"])),
        ("journal's functions (main process)",
         (f"{summary['journal_cpu_s']:.3f} s CPU, "
          f"{summary['journal_wall_in_functions_s']:.3f} s wall"), "", ""),
    ]
    return "\n".join([header, "", "| figure | measured | target | |", "|---|---|---|---|",
                      *(f"| {' | '.join(row)} |" for row in rows), "", _kills(runs), ""])


def _kills(runs: dict[str, list[dict[str, Any]]]) -> str:
    """What each kill left: calls computed, tiles come back to the main process (its last
    progress line), steps and tiles recorded, and what the resume took back."""
    computed = ", ".join(f"{cut['calls_total']}/{full['calls_total']}"
                         for cut, full in zip(runs["killed"], runs["uninterrupted"]))
    said = ", ".join(f"{p['done']}/{p['of']} of '{p['step']}'" if (p := run["progress_said"])
                     else "-" for run in runs["killed"])
    recorded = "; ".join(_recorded(run["journal"]) for run in runs["killed"])
    taken = "; ".join(", ".join(f"{t['tiles']}/{t['of']} of '{t['step']}'"
                                for t in run["taken_back_said"]) or "none"
                      for run in runs["resume"])
    return (f"At each kill, by repeat: calls computed {computed}; eoscale's last progress line "
            f"{said}; the journal had recorded {recorded}; the resume said it took back "
            f"{taken}.")


def _recorded(journal: dict[str, Any]) -> str:
    if not journal.get("path"):
        return "no journal"
    steps = ", ".join(f"'{name}'" for name in journal["steps"])
    tiles = ", ".join(f"{n} tiles of '{k}'" for k, n in journal["tiles"].items())
    return (f"{'steps ' + steps if steps else 'no step'}, {tiles or 'no tile'} (last written "
            f"{journal['last_write_before_kill_s']:.2f} s before the kill)")


if __name__ == "__main__":
    main()
