"""``eoscale run PIPELINE``: validate, then run, with the file's values overridden by flags."""

from __future__ import annotations

import gc
import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import click
import yaml

from eoscale import __version__
from eoscale.api import overrides
from eoscale.cli.options import (
    cluster_option,
    json_opt,
    pairs,
    quiet_opt,
    size_option,
    verbose_opt,
    workers_opt,
)
from eoscale.cli.render import (
    console,
    error_console,
    plan_tables,
    plan_text,
    progress_for,
    settings,
    summary_table,
    summary_title,
)
from eoscale.engine.scratch import cleanup_stale_files
from eoscale.engine.shared import cleanup_stale_segments
from eoscale.engine.tiling import MODES
from eoscale.errors import late_signal
from eoscale.pipeline import checked_plan, load_pipeline
from eoscale.pipeline.document import load
from eoscale.pipeline.resume import FRESH, RESTART, RESUME, Resuming, describe, outlook
from eoscale.pipeline.runner import check_outputs, run_pipeline

if TYPE_CHECKING:
    from eoscale.engine.cluster import DaskExecutor


def parse_params(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict:
    """``STEP.KEY=VALUE`` options; VALUE is read as YAML (``3``, ``0.5``, ``[1, 2]``, ``text``)."""
    parsed = {}
    for dotted, text in pairs("STEP.KEY=VALUE")(ctx, param, values).items():
        step, sep, key = dotted.partition(".")
        if not sep or not step or not key:
            raise click.BadParameter(f"expected STEP.KEY=VALUE, got {dotted}={text}")
        try:
            parsed[dotted] = load(text)
        except yaml.YAMLError:
            parsed[dotted] = text
    return parsed


@click.command()
@click.argument("pipeline", type=click.Path(path_type=Path))
@workers_opt
@click.option("--tile-size", type=click.IntRange(min=1), default=None, metavar="PX",
              help="Tile side (or strip height) in pixels; default automatic.")
@click.option("--tiling", type=click.Choice(MODES), default=None, help="Square tiles or full-width strips.")
@click.option("--input", "inputs", multiple=True, metavar="NAME=PATH",
              callback=pairs("NAME=PATH"), help="Replace an input's raster path.")
@click.option("--output", "outputs", multiple=True, metavar="NAME=PATH",
              callback=pairs("NAME=PATH"), help="Write a result to PATH (adds or replaces an output).")
@click.option("--param", "params", multiple=True, metavar="STEP.KEY=VALUE", callback=parse_params,
              help="Set a step's param; VALUE is read as YAML.")
@click.option("--memory", metavar="SIZE", callback=size_option, default=None,
              help="Memory budget: 4GiB, 512MB...; default: the memory available less 10 %.")
@click.option("--scratch", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="Folder for images spilled to disk; default: the system's temporary folder.")
@click.option("--cluster", metavar="ADDRESS", default=None, callback=cluster_option,
              help="Run on a Dask cluster: local, local:N (N worker processes here) or a "
                   "scheduler's address, tcp://host:8786 (needs the 'dask' extra).")
@click.option("--overwrite", is_flag=True, help="Replace outputs that exist.")
@click.option("--dry-run", is_flag=True,
              help="Print the run plan (tiles, where each image lives, memory) and exit.")
@click.option("--resume", is_flag=True,
              help="Continue a run of this pipeline that was killed or stopped: skip the steps "
                   "it finished (refused if the pipeline, its inputs or its code changed).")
@click.option("--restart", is_flag=True,
              help="Discard what a killed run of this pipeline left and run from the start.")
@json_opt
@quiet_opt
@verbose_opt
def run(pipeline: Path, workers: int | None, tile_size: int | None, tiling: str | None,
        inputs: dict, outputs: dict, params: dict, memory: int | None, scratch: Path | None,
        cluster: str | None, overwrite: bool, dry_run: bool, resume: bool, restart: bool,
        as_json: bool) -> None:
    """Run a pipeline: load inputs, run every step on every core, write the outputs."""
    if as_json and not dry_run:
        raise click.UsageError("--json goes with --dry-run (it prints the plan as JSON)")
    if resume and restart:
        raise click.UsageError("--resume or --restart, not both")
    resuming = Resuming(RESUME if resume else RESTART if restart else FRESH, __version__)
    spec = load_pipeline(pipeline, overrides=overrides(
        workers=workers, tile_size=tile_size, tiling=tiling, inputs=inputs, outputs=outputs,
        params=params, memory=memory, scratch=None if scratch is None else str(scratch),
        cluster=cluster))
    out = console()
    if dry_run:
        plan = checked_plan(spec)
        if as_json:
            found = plan.to_dict()
            if resume or restart:  # what a run would do about a killed run's journal
                found["resume"] = outlook(plan, resuming)
            click.echo(json.dumps(found, indent=2))
        elif out.is_terminal:
            for table in plan_tables(plan):
                out.print(table)
        else:
            out.print(plan_text(plan), markup=False, soft_wrap=True)
        if resume and not as_json:
            out.print(describe(plan, resuming), markup=False, soft_wrap=True)
        return
    cleanup_stale_segments()  # what crashed runs left behind; never a live run's
    cleanup_stale_files(spec.scratch)  # and what they left beside their outputs
    check_outputs(spec, overwrite)  # before a cluster starts, or a killed run is said resumed
    from eoscale.pipeline.session import open_run

    def connected(cluster: DaskExecutor) -> None:
        if not settings.quiet:
            out.print(f"cluster: {cluster.describe()}", markup=False, soft_wrap=True)

    # A run on a cluster is planned on one of its workers, once connected: this process does
    # not import the pipeline's modules (the spec was checked as it loaded).
    with open_run(spec if spec.cluster is not None else checked_plan(spec),
                  connected=connected) as opened:
        plan = opened.plan
        where = None if opened.cluster is None else opened.cluster.summary()
        said = describe(plan, resuming)
        if said and not settings.quiet:
            out.print(said, markup=False, soft_wrap=True)
        # What exists now (modules, dask's too on a cluster, the plan) lives as long as the
        # run: the collector need not look at it again during the run (its full collections
        # were 4 % of W1's CPU, in this process alone), and the workers the engine forks leave
        # its pages shared (gc.freeze's documented use before a fork). Unfrozen after it, for
        # a caller that runs the command in its own process (click's test runner).
        gc.freeze()
        try:
            with progress_for(out) as progress:
                result = run_pipeline(plan, progress=progress, overwrite=overwrite,
                                      executor=opened.executor, resuming=resuming)
        finally:
            gc.unfreeze()
    late = late_signal()
    if late is not None:  # it came while the outputs were put in place: the run had finished
        error_console().print(f"{signal.Signals(late).name} came as the outputs were put in "
                              "place: the run finished first", markup=False, soft_wrap=True)
    if settings.quiet:
        return
    # On a cluster the estimate is the main process's alone: not comparable with the peak
    # measured over this process's tree (a local cluster's workers in it).
    out.print(summary_title(result.seconds, result.peak_bytes,
                            None if where else plan.peak.total, cluster=where),
              markup=False, highlight=False, soft_wrap=True)
    out.print(summary_table(list(result.reports)))
    for name, path in result.written.items():
        output = spec.outputs.get(name)
        extras = [] if output is None else [
            f"{what} {extra}" for what, extra in (("quicklook", output.quicklook_path()),
                                                  ("STAC Item", output.item_path()))
            if extra is not None]
        out.print(f"wrote {name}: {path}" + (f" (and its {', '.join(extras)})" if extras else ""),
                  markup=False, soft_wrap=True)
