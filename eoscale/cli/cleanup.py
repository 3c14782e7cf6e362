"""``eoscale cleanup``: remove shared memory left by runs whose process died (never a live run's)."""

from __future__ import annotations

import click

from eoscale.cli.options import quiet_opt, verbose_opt
from eoscale.cli.render import console, settings
from eoscale.engine.shared import cleanup_stale_segments, list_segments, pid_alive


@click.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@quiet_opt
@verbose_opt
def cleanup(dry_run: bool) -> None:
    """Remove eoscale shared-memory segments whose owner process is dead."""
    if dry_run:
        stale = [name for name, pid in list_segments() if not pid_alive(pid)]
        for name in stale:
            click.echo(name)
        return
    removed = cleanup_stale_segments()
    if not settings.quiet:
        console().print(f"removed {len(removed)} stale segment(s)"
                        + (": " + ", ".join(removed) if removed else ""))
