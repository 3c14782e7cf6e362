"""``eoscale validate PIPELINE``: every problem found without computing, each with file, line, step."""

from __future__ import annotations

from pathlib import Path

import click

from eoscale.cli.options import quiet_opt, verbose_opt
from eoscale.cli.render import console, settings
from eoscale.errors import PipelineError
from eoscale.pipeline import MemoryEstimate, check, estimate_memory, load_pipeline


@click.command()
@click.argument("pipeline", type=click.Path(path_type=Path))
@quiet_opt
@verbose_opt
def validate(pipeline: Path) -> None:
    """Check a pipeline without running it; exit 3 if any problem is found."""
    spec = load_pipeline(pipeline)
    check(spec)
    if settings.quiet:
        return
    out = console()
    steps = len(spec.steps)
    out.print(f"{pipeline}: valid ({len(spec.inputs)} input(s), {steps} step(s), "
              f"{len(spec.outputs)} output(s))", markup=False)
    try:
        estimate = estimate_memory(spec)
    except PipelineError:
        return
    out.print(describe_estimate(estimate), markup=False)


def describe_estimate(estimate: MemoryEstimate) -> str:
    mib = 2 ** 20
    text = (f"estimated peak memory {estimate.peak_bytes / mib:.0f} MiB"
            f"{f' at step {estimate.peak_step!r}' if estimate.peak_step else ''} "
            f"({estimate.image_bytes / mib:.0f} MiB of images, {estimate.working_bytes / mib:.0f} MiB "
            f"of tiles in {estimate.workers} worker(s))")
    if estimate.available_bytes:
        text += f"; {estimate.available_bytes / mib:.0f} MiB available"
    return text
