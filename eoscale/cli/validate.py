"""``eoscale validate PIPELINE``: every problem found without computing, each with file, line, step."""

from __future__ import annotations

from pathlib import Path

import click

from eoscale.cli.options import quiet_opt, verbose_opt
from eoscale.cli.render import console, describe_estimate, settings, stac_lines
from eoscale.pipeline import checked_plan, load_pipeline


@click.command()
@click.argument("pipeline", type=click.Path(path_type=Path))
@quiet_opt
@verbose_opt
def validate(pipeline: Path) -> None:
    """Check a pipeline without running it; exit 3 if any problem is found."""
    spec = load_pipeline(pipeline)
    plan = checked_plan(spec)
    if settings.quiet:
        return
    out = console()
    out.print(f"{pipeline}: valid ({len(spec.inputs)} input(s), {len(spec.steps)} step(s), "
              f"{len(spec.outputs)} output(s))", markup=False)
    for line in stac_lines(plan):
        out.print(line, markup=False, soft_wrap=True)
    out.print(describe_estimate(plan), markup=False, soft_wrap=True)
