"""``eoscale run PIPELINE``: validate, then run, with the file's values overridden by flags."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from eoscale.api import overrides
from eoscale.cli.options import pairs, quiet_opt, verbose_opt, workers_opt
from eoscale.cli.render import console, progress_for, settings, summary_table
from eoscale.engine.shared import cleanup_stale_segments
from eoscale.engine.tiling import MODES
from eoscale.errors import PipelineError
from eoscale.pipeline import load_pipeline
from eoscale.pipeline import validate as validate_spec
from eoscale.pipeline.runner import run_pipeline


def parse_params(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict:
    """``STEP.KEY=VALUE`` options; VALUE is read as YAML (``3``, ``0.5``, ``[1, 2]``, ``text``)."""
    parsed = {}
    for dotted, text in pairs("STEP.KEY=VALUE")(ctx, param, values).items():
        step, sep, key = dotted.partition(".")
        if not sep or not step or not key:
            raise click.BadParameter(f"expected STEP.KEY=VALUE, got {dotted}={text}")
        try:
            parsed[dotted] = yaml.safe_load(text)
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
@click.option("--overwrite", is_flag=True, help="Replace outputs that exist.")
@quiet_opt
@verbose_opt
def run(pipeline: Path, workers: int | None, tile_size: int | None, tiling: str | None,
        inputs: dict, outputs: dict, params: dict, overwrite: bool) -> None:
    """Run a pipeline: load inputs, run every step on every core, write the outputs."""
    spec = load_pipeline(pipeline, overrides=overrides(
        workers=workers, tile_size=tile_size, tiling=tiling, inputs=inputs, outputs=outputs,
        params=params))
    problems = validate_spec(spec)
    if problems:
        raise PipelineError(problems)
    cleanup_stale_segments()  # what crashed runs left behind; never a live run's
    out = console()
    with progress_for(out) as progress:
        result = run_pipeline(spec, progress=progress, overwrite=overwrite)
    if settings.quiet:
        return
    out.print(summary_table(list(result.reports), result.seconds))
    for name, path in result.written.items():
        out.print(f"wrote {name}: {path}", markup=False)
