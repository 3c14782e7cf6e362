"""``eoscale cleanup``: remove shared memory and scratch files left by runs whose process died
(never a live run's)."""

from __future__ import annotations

from pathlib import Path

import click

from eoscale.cli.options import quiet_opt, verbose_opt
from eoscale.cli.render import console, settings
from eoscale.engine.scratch import cleanup_stale_scratch, list_scratch
from eoscale.engine.shared import cleanup_stale_segments, list_segments, pid_alive


@click.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--scratch", type=click.Path(path_type=Path, file_okay=False), default=None,
              metavar="DIR", help="Scratch folder to clean (default: the system's temporary one).")
@quiet_opt
@verbose_opt
def cleanup(dry_run: bool, scratch: Path | None) -> None:
    """Remove eoscale shared-memory segments and scratch files whose owner process is dead."""
    if dry_run:
        for name, pid in list_segments():
            if not pid_alive(pid):
                click.echo(name)
        for path, pid in list_scratch(scratch):
            if not pid_alive(pid):
                click.echo(str(path))
        return
    removed = cleanup_stale_segments()
    files = cleanup_stale_scratch(scratch)
    if not settings.quiet:
        console().print(f"removed {len(removed)} stale segment(s)"
                        + (": " + ", ".join(removed) if removed else ""))
        console().print(f"removed {len(files)} stale scratch file(s)"
                        + (": " + ", ".join(str(p) for p in files) if files else ""),
                        markup=False)
