"""``eoscale cleanup``: remove what runs whose process died left (never a live run's): shared
memory, scratch files, and the staged outputs and part files beside their outputs, wherever they
lie (found through the records of the runs' folders, :mod:`eoscale.io.runfiles`), and the
journals of killed runs with the files they kept to be resumed (``eoscale run --resume``)."""

from __future__ import annotations

from pathlib import Path

import click

from eoscale.cli.options import quiet_opt, verbose_opt
from eoscale.cli.render import console, settings
from eoscale.engine.scratch import cleanup_stale_files, stale_files
from eoscale.engine.shared import cleanup_stale_segments, list_segments, pid_alive


@click.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--scratch", type=click.Path(path_type=Path, file_okay=False), default=None,
              metavar="DIR", help="Also a scratch folder no killed run recorded (default: the "
                                  "system's temporary one).")
@quiet_opt
@verbose_opt
def cleanup(dry_run: bool, scratch: Path | None) -> None:
    """Remove the shared-memory segments, scratch files, staged outputs, part files and journals
    of eoscale runs whose process is dead."""
    if dry_run:
        for name, pid in list_segments():
            if not pid_alive(pid):
                click.echo(name)
        for path, _ in stale_files(scratch, journals=True):
            click.echo(str(path))
        return
    removed = cleanup_stale_segments()
    files = cleanup_stale_files(scratch, journals=True)
    if not settings.quiet:
        console().print(f"removed {len(removed)} stale segment(s)"
                        + (": " + ", ".join(removed) if removed else ""))
        console().print(f"removed {len(files)} stale file(s)"
                        + (": " + ", ".join(str(p) for p in files) if files else ""),
                        markup=False)
