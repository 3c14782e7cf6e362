"""The estimate of cluster_scaling.py: a run's wall time on N machines of c one-thread workers,
from runs on a loopback cluster (see benchmarks/README.md, "Estimate on N machines").

Two things make it more than a rule of three:

- **The tasks are the engine's.** A run's task count is not its measured count scaled by the
  area: the engine makes a few chunks of tiles per worker (``make_chunks``), and copies by strips
  of rows, a few per worker too. So the tasks at the estimated size are planned by eoscale itself:
  ``eoscale run --dry-run --json --cluster local:W`` on a header-only GeoTIFF of that size
  (uncompressed, its blocks never written: a sparse file of a few hundred KiB), for every W the
  estimate uses; the copies' tasks as :func:`eoscale.engine.assembly.copy_job` cuts them.
- **The client's CPU is taken apart** (client_threads.py records it by thread, inside and
  outside each of the executor's runs): a fixed part (interpreter, imports, plan, connecting,
  closing: the tiny run's), a part per block outside the runs (the headers and the copies' job,
  timed apart), and, inside the runs, a part per task and per block record (the main thread and Dask's event loop, fitted by
  least squares over every run's map and copies, the client's idle rate apart). Its PSS sampler
  runs beside the work under a fixed share of a core: it is counted, not put on the serial path.
  The scheduler's and the workers' CPU beyond their idle CPU are fitted the same way, per task
  with a constant per run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

MiB = 2 ** 20
#: Measured per pixel at the largest size, scaled by the area (:func:`scaled`).
PER_PIXEL = ("map_compute_s", "copy_compute_s", "read_bytes", "result_bytes", "output_bytes",
             "header_bytes", "blocks")


def add_estimate_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "estimate on N machines (from the runs with the fewest workers; see benchmarks/README.md)")
    group.add_argument("--machines", default="1,2,4,8,16", help="machine counts, comma-separated")
    group.add_argument("--cores", type=int, default=8, help="one-thread workers per machine")
    group.add_argument("--fs-bandwidth", default="1GB", metavar="BYTES_PER_S",
                       help="aggregate bandwidth of the shared filesystem, reads and writes "
                            "together (default 1GB)")
    group.add_argument("--net-bandwidth", default="1.25GB", metavar="BYTES_PER_S",
                       help="each machine's network link, each way (default 1.25GB: 10 Gbit/s)")
    group.add_argument("--estimate-size", type=int, metavar="N",
                       help="estimate for an N x N image: the per-pixel quantities scaled by "
                            "the area, the tasks planned by eoscale at that size")
    group.add_argument("--estimate-from", type=Path, metavar="JSON",
                       help="only print the estimate from a report this script saved")


def nonneg_fit(rows: list[list[float]], values: list[float]) -> list[float]:
    """Least squares with non-negative coefficients (noise must not make a cost negative)."""
    from scipy.optimize import nnls

    if not rows:
        return []
    return [float(c) for c in nnls(np.array(rows, dtype=float), np.array(values, dtype=float))[0]]


def client_in_runs(run: dict) -> tuple[float, float]:
    """The client's serial CPU (main thread and Dask's event loop) in a run's step runs, and its
    PSS sampler's there."""
    steps = run["client"]["runs"]
    return (sum(s["cpu"]["main"] + s["cpu"]["io_loop"] for s in steps),
            sum(s["cpu"]["sampler"] for s in steps))


def client_outside_runs(run: dict) -> float:
    """The client's CPU outside its step runs: start, imports, plan, connect, headers, close."""
    client = run["client"]
    return client["exit"]["total"] - sum(s["cpu"]["total"] for s in client["runs"])


def client_headers(run: dict) -> tuple[float, int]:
    """The client's CPU writing its outputs' headers and making their copies' jobs, and the
    blocks of those outputs."""
    headers = run["client"].get("headers", [])
    return (sum(h["cpu_s"] for h in headers),
            sum(h["blocks"] for h in headers if h["what"] == "header"))


def split_compute(run: dict) -> tuple[float, float]:
    """The compute seconds of a run's map tasks and of its copies' tasks: the CPU seconds of the
    threads that ran them (worker_timers.py), as on a quiet machine; else (an older report) the
    task stream's seconds by executor run, matched with the client's runs by their order, which
    count the waits for a core on a busy machine."""
    t = run["tasks"]
    if "workers_task_cpu_s" in t:
        return t["workers_task_cpu_s"], t.get("workers_copy_cpu_s", 0.0)
    kinds = [s["job"] for s in run["client"]["runs"]]
    copies = sum(seconds for number, seconds in run["tasks"]["compute_by_run"].items()
                 if 0 < int(number) <= len(kinds) and kinds[int(number) - 1] == "CopyJob")
    return run["tasks"]["compute_s"] - copies, copies


def model_parameters(entry: dict) -> dict | None:
    """The model's parameters from a workload's cluster runs with the fewest workers: every
    size measured (``entry["fit"]``, the main size's repeats, the tiny run) for the fits, the
    largest size's median for what grows with the pixels."""
    runs = list(entry.get("fit", []))
    if not runs:
        return None
    step_rows, step_cpu = [], []
    for run in runs:
        blocks = run.get("blocks", 0)
        for step in run["client"]["runs"]:
            step_rows.append([step["chunks"] + 1, blocks, step["wall_s"]])
            step_cpu.append(step["cpu"]["main"] + step["cpu"]["io_loop"])
    per_task, per_record, idle = nonneg_fit(step_rows, step_cpu)
    tasks = [r["tasks"]["tasks"] for r in runs]
    headers = [client_headers(r) for r in runs]
    header = nonneg_fit([[1.0, blocks] for _, blocks in headers], [cpu for cpu, _ in headers])
    scheduler = nonneg_fit([[1.0, t] for t in tasks],
                           [max(0.0, r["scheduler_beyond_idle_s"]) for r in runs])
    workers = nonneg_fit([[1.0, t] for t in tasks],
                         [max(0.0, r["workers_beyond_idle_s"] - sum(split_compute(r)))
                          for r in runs])
    tiny = min((r for r in runs if r["size"] == min(x["size"] for x in runs)),
               key=lambda r: r["wall_s"])
    size = max(r["size"] for r in runs if not r.get("tile_size"))
    largest = [r for r in runs if r["size"] == size and not r.get("tile_size")]
    middle = sorted(largest, key=lambda r: r["wall_s"])[len(largest) // 2]
    map_compute, copy_compute = split_compute(middle)
    fit_points = sorted({(r["size"], r.get("tile_size") or 0) for r in runs})
    return {
        "measured_with_workers": entry["fit_workers"], "measured_size": size, "size": size,
        "fit_runs": [f"{s}" + (f" (tiles {t})" if t else "") for s, t in fit_points],
        # The fixed cost as on a quiet machine: the client's CPU outside its runs (one process,
        # one thread at a time) plus the wall of the tiny run's steps (one task each).
        "fixed_s": client_outside_runs(tiny) + sum(s["wall_s"] for s in tiny["client"]["runs"]),
        "tiny_wall_s": tiny["wall_s"],
        "client_fixed_s": client_outside_runs(tiny) - client_headers(tiny)[0],
        "client_header_s": header[0], "client_per_block_header_s": header[1],
        "client_per_task_s": per_task, "client_per_block_record_s": per_record,
        "client_idle_cores": idle,
        "client_sampler_share": (sum(client_in_runs(r)[1] for r in runs)
                                 / sum(s["wall_s"] for r in runs for s in r["client"]["runs"])),
        "scheduler_per_task_s": scheduler[1], "worker_per_task_s": workers[1],
        "map_compute_s": map_compute, "copy_compute_s": copy_compute,
        "read_bytes": middle["workers_read_bytes"], "result_bytes": middle["tasks"]["result_bytes"],
        "output_bytes": middle["output_bytes"], "header_bytes": middle["header_bytes"],
        "blocks": middle["blocks"],
    }


def scaled(p: dict, size: int | None) -> dict:
    """``p`` for an image of ``size`` x ``size``: :data:`PER_PIXEL` times the area's ratio; the
    fixed cost and the per-task and per-block costs as measured."""
    if not size:
        return p
    factor = (size / p["measured_size"]) ** 2
    return {**p, **{key: p[key] * factor for key in PER_PIXEL}, "size": size}


def sparse_scene(profile_from: Path, size: int, folder: Path) -> Path:
    """A ``size`` x ``size`` GeoTIFF with the bands, dtype, blocks and georeferencing of
    ``profile_from``, uncompressed and none of its blocks written: a header and an empty block
    table, a few hundred KiB whatever its size, which eoscale can plan but not read."""
    import rasterio

    with rasterio.open(profile_from) as source:
        profile = dict(source.profile)
    profile.pop("compress", None)
    profile.update(width=size, height=size, BIGTIFF="YES", SPARSE_OK=True)
    path = folder / f"sparse_{size}.tif"
    with rasterio.open(path, "w", **profile):
        pass
    return path


def planned_tasks(command: list[str], env: dict[str, str], pipeline: Path, result: str,
                  scene: Path, workers: int, folder: Path) -> dict:
    """The tasks eoscale makes for ``pipeline`` on ``scene`` on a cluster of ``workers``, from
    its own plan (``--dry-run --json``): each step that runs (not fused into another) is a run
    of its chunks; each of its outputs encoded by the workers (deflated here: assembled) adds a
    run of copy tasks, a strip of rows each (:func:`eoscale.engine.assembly.copy_job`); every
    run sends its job as one more task."""
    from eoscale.engine.assembly import COPIES_PER_WORKER, MAX_COPY_TASKS

    plan = json.loads(subprocess.run(
        command + ["run", str(pipeline), "--input", f"scene={scene}", "--output",
                   f"{result}={folder / 'planned.tif'}", "--cluster", f"local:{workers}",
                   "--scratch", str(folder), "--dry-run", "--json"],
        env=env, capture_output=True, text=True, check=True).stdout)
    found = {"map_chunks": 0, "copy_tasks": 0, "runs": 0, "tiles": 0, "tile_size": 0}
    for step in plan["steps"]:
        if step["fused_into"] is not None:
            continue
        tiling = step["tiling"]
        found["map_chunks"] += tiling["chunks"]
        found["tiles"] += tiling["tiles"]
        found["tile_size"] = max(found["tile_size"], tiling["tile_size"])
        found["runs"] += 1
        for image in plan["images"]:
            if image["made_by"] == step["name"] and image["encoded_by_workers"]:
                height = image["shape"][1]
                found["copy_tasks"] += max(1, min(height, MAX_COPY_TASKS,
                                                  COPIES_PER_WORKER * workers))
                found["runs"] += 1
    found["tasks"] = found["map_chunks"] + found["copy_tasks"] + found["runs"]
    return found


def estimate_wall(p: dict, tasks: dict, machines: int, cores: int, fs: float, net: float
                  ) -> dict:
    """Seconds on ``machines`` x ``cores`` one-thread workers with ``tasks`` (planned): fixed +
    the map, bound by the largest of (the client's serial work per task and per block record,
    on one core; the workers' compute and per-task overhead; the scheduler's per-task work; the
    shared filesystem (``fs`` bytes/s in all) carrying the inputs read and the parts written;
    each machine's link (``net`` bytes/s each way); the client's link receiving the records) +
    the headers (the client, per block) + the copies, which nothing overlaps (each output byte
    read from the parts and written into the file again: 2 x output bytes over the filesystem,
    each machine's share through its link; at least the copies' compute spread on the workers)
    + one map task (the last one)."""
    workers = machines * cores
    k = tasks["tasks"]
    moved = p["read_bytes"] + p["output_bytes"]
    terms = {
        "client": p["client_per_task_s"] * k + p["client_per_block_record_s"] * p["blocks"],
        "workers": (p["map_compute_s"] + k * p["worker_per_task_s"]) / workers,
        "scheduler": k * p["scheduler_per_task_s"],
        "shared filesystem": moved / fs,
        "links": max(p["read_bytes"], p["output_bytes"]) / (machines * net),
        "client's link": p["result_bytes"] / net,
    }
    bound = max(terms, key=terms.__getitem__)
    copies = max(2 * p["output_bytes"] / fs, p["output_bytes"] / (machines * net),
                 p["copy_compute_s"] / workers)
    headers = p["client_header_s"] + p["client_per_block_header_s"] * p["blocks"]
    last = p["map_compute_s"] / max(1, tasks["map_chunks"])
    return {"wall_s": p["fixed_s"] + terms[bound] + headers + copies + last, "bound": bound,
            "terms": terms, "copies_s": copies, "headers_s": headers, "last_task_s": last,
            "machines": machines, "workers": workers, "tasks": tasks}


def estimate_all(report: dict, args: argparse.Namespace, command: list[str],
                 env: dict[str, str]) -> dict:
    """The estimate of every workload measured, for ``args``' assumptions; the tasks planned
    by eoscale (``command``, in ``env``) at the estimated size for each worker count."""
    import datagen
    from run import HERE, WORKLOADS, Workload

    from eoscale.sizes import parse_size

    size = args.estimate_size or report["settings"]["size"]
    assumptions = {"machines": [int(n) for n in args.machines.split(",")], "cores": args.cores,
                   "fs_bytes_per_s": parse_size(args.fs_bandwidth),
                   "net_bytes_per_s": parse_size(args.net_bandwidth), "size": size}
    fs, net = assumptions["fs_bytes_per_s"], assumptions["net_bytes_per_s"]
    found: dict = {"assumptions": assumptions, "workloads": {}}
    workloads = {w.key: w for w in WORKLOADS}
    with tempfile.TemporaryDirectory(prefix="eoscale-scaling-plan-") as folder:
        scene = sparse_scene(datagen.ensure_scene(512), size, Path(folder))
        for entry in report["workloads"]:
            measured = model_parameters(entry)
            if measured is None:
                continue
            p = scaled(measured, size)
            workload = workloads[entry["key"]]

            def plan(workers: int, workload: Workload = workload) -> dict:
                return planned_tasks(command, env, HERE / workload.pipeline, workload.result,
                                     scene, workers, Path(folder))

            # Against one worker, by the same model, at the same size.
            base = estimate_wall(p, plan(1), 1, 1, fs, net)
            rows = [estimate_wall(p, plan(machines * args.cores), machines, args.cores, fs, net)
                    for machines in assumptions["machines"]]
            for row in rows:
                row["speedup"] = base["wall_s"] / row["wall_s"]
                row["efficiency"] = row["speedup"] / row["workers"]
            out = p["output_bytes"] or float("nan")
            client = {"reads_per_output_byte": 0.0,  # no block: see eoscale/engine/assembly.py
                      "writes_per_output_byte": p["header_bytes"] / out,
                      "receives_per_output_byte": p["result_bytes"] / out}
            found["workloads"][entry["key"]] = {"title": entry["title"], "parameters": p,
                                                "one_worker": base, "client_bytes": client,
                                                "rows": rows}
    return found


def parameters_text(p: dict, base: dict, c: dict) -> str:
    return (f"fixed {p['fixed_s']:.1f} s (tiny run's wall {p['tiny_wall_s']:.1f} s, its "
            f"client's CPU outside its runs {p['client_fixed_s']:.1f} s); client "
            f"{p['client_per_task_s'] * 1000:.1f} ms per task + "
            f"{p['client_per_block_record_s'] * 1e6:.0f} us per block record + "
            f"{p['client_header_s'] * 1000:.0f} ms + {p['client_per_block_header_s'] * 1e6:.1f} "
            f"us per block for headers and copy jobs, idle "
            f"{p['client_idle_cores']:.3f} cores, sampler {p['client_sampler_share']:.3f} cores; "
            f"per task {p['worker_per_task_s'] * 1000:.1f} ms (workers) + "
            f"{p['scheduler_per_task_s'] * 1000:.2f} ms (scheduler); compute "
            f"{p['map_compute_s']:.0f} s (map) + {p['copy_compute_s']:.0f} s (copies); "
            f"{p['blocks']:.0f} blocks; read {p['read_bytes'] / MiB:.0f} MiB, output "
            f"{p['output_bytes'] / MiB:.0f} MiB, records {p['result_bytes'] / MiB:.1f} MiB; "
            f"the client reads 0 and writes {c['writes_per_output_byte']:.1e} bytes per output "
            f"byte (headers), receives {c['receives_per_output_byte']:.1e}; one worker "
            f"{base['wall_s']:.0f} s ({base['tasks']['tasks']} tasks)")


def estimate_markdown(report: dict) -> str:
    e = report["estimate"]
    a = e["assumptions"]
    lines = [(f"Estimate for {a['size']} x {a['size']} on N machines of {a['cores']} one-thread "
             f"workers, a shared filesystem giving {a['fs_bytes_per_s'] / 1e9:.2f} GB/s in all, "
             f"links of {a['net_bytes_per_s'] / 1e9:.2f} GB/s each way; fitted on the runs with "
             "the fewest workers, tasks planned by eoscale. Each cell: the wall time, the tasks "
             "(map chunks of tiles + copies + job sends), the speed-up over one worker by the "
             "same model and the efficiency per worker, what bounds the map (its seconds; the "
             "client's beside it), then the headers, copies and last task after it:"), "",
             "| workload | parameters | " + " | ".join(f"{n} machine{'s' if n > 1 else ''}"
                                                      for n in a["machines"]) + " |",
             "|---|---|" + "---|" * len(a["machines"])]
    for found in e["workloads"].values():
        p = found["parameters"]
        cells = []
        for row in found["rows"]:
            t, terms = row["tasks"], row["terms"]
            cells.append(
                f"{row['wall_s']:.1f} s, {t['map_chunks']} + {t['copy_tasks']} + {t['runs']} "
                f"tasks ({t['tiles']} tiles of {t['tile_size']} px), x{row['speedup']:.1f}, "
                f"{row['efficiency']:.2f}, {row['bound']} {terms[row['bound']]:.1f} s (client "
                f"{terms['client']:.1f} s); + {row['headers_s']:.1f} + {row['copies_s']:.1f} + "
                f"{row['last_task_s']:.1f} s")
        lines.append(f"| {found['title']} | "
                     f"{parameters_text(p, found['one_worker'], found['client_bytes'])} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
