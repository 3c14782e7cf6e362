"""Everything the command line draws: progress (rich on a terminal, plain lines otherwise), tables."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table

from eoscale.engine.progress import NoProgress, PhaseReport


@dataclass
class Settings:
    """Output settings of the current command, set by the shared options."""

    verbose: bool = False
    quiet: bool = False


settings = Settings()


def console() -> Console:
    return Console(highlight=False)


def error_console() -> Console:
    return Console(stderr=True, highlight=False)


UNITS = {"load": "read", "map": "map", "reduce": "reduce", "write": "write"}


class RichProgress:
    """A progress bar per phase: tiles done of total, elapsed time and ETA."""

    def __init__(self, out: Console):
        self._bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TextColumn("tiles"), TimeElapsedColumn(), TimeRemainingColumn(),
                              console=out, transient=False)
        self._task: TaskID | None = None
        self._live = False

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live:
            self._bars.stop()

    def started(self, kind: str, name: str, total: int) -> None:
        # The display's refresh thread starts with the first phase, after the engine has forked
        # its workers: forking while a thread holds a lock (stdout's) can deadlock the child.
        if not self._live:
            self._bars.start()
            self._live = True
        self._task = self._bars.add_task(f"{UNITS.get(kind, kind):>6} {name}", total=total)

    def advance(self, done: int) -> None:
        if self._task is not None:
            self._bars.advance(self._task, done)

    def finished(self, report: PhaseReport) -> None:
        if self._task is not None:
            self._bars.update(self._task, completed=report.tiles)
        self._task = None


class PlainProgress:
    """One log line when a phase starts and one when it ends: for CI logs and batch jobs."""

    def __init__(self, out: Console):
        self._out = out

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _line(self, text: str) -> None:
        self._out.print(f"{time.strftime('%H:%M:%S')} {text}", markup=False, soft_wrap=True)

    def started(self, kind: str, name: str, total: int) -> None:
        self._line(f"{UNITS.get(kind, kind)} {name}: {total} tile(s)")

    def advance(self, done: int) -> None:
        pass

    def finished(self, report: PhaseReport) -> None:
        self._line(f"{UNITS.get(report.kind, report.kind)} {report.name}: done in "
                   f"{report.seconds:.2f} s ({report.megapixels_per_second:.1f} Mpx/s)")


class QuietProgress(NoProgress):
    def __enter__(self) -> QuietProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_for(out: Console) -> RichProgress | PlainProgress | QuietProgress:
    """Rich bars on a terminal, plain lines otherwise, nothing with --quiet."""
    if settings.quiet:
        return QuietProgress()
    return RichProgress(out) if out.is_terminal else PlainProgress(out)


def peak_memory_bytes() -> int:
    """Peak resident memory of this process and of its largest finished child (shared pages
    are counted in each, so this over-counts rasters that both touched)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024
    return max(own, children) * scale


def summary_table(reports: list[PhaseReport], seconds: float) -> Table:
    table = Table(title=f"done in {seconds:.2f} s, peak memory {peak_memory_bytes() / 2**20:.0f} MiB",
                  title_justify="left")
    for column in ("phase", "name", "tiles", "seconds", "Mpx/s"):
        table.add_column(column, justify="right" if column in ("tiles", "seconds", "Mpx/s") else "left")
    for r in reports:
        table.add_row(r.kind, r.name, str(r.tiles), f"{r.seconds:.2f}", f"{r.megapixels_per_second:.1f}")
    return table
