"""The ``eoscale`` group and the one place where errors become messages and exit codes.

Exit codes: 0 success, 1 run failure, 2 usage error, 3 invalid pipeline, 4 a killed run's journal
refused (changed since, or found by a rerun told neither ``--resume`` nor ``--restart``), 130
interrupted (SIGINT), 143 terminated (SIGTERM). A user's mistake never shows a Python traceback
unless ``-v`` is given.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import signal
import sys
import traceback
import warnings
from gettext import gettext as _
from types import FrameType

import click

from eoscale import __version__
from eoscale.errors import (
    EXIT_FAILURE,
    EOScaleError,
    Interrupted,
    PipelineError,
    StepError,
    defer_signal,
    record_interrupt,
)

#: Each command: the module that defines it (under the command's name), and the first paragraph
#: of its help, which ``eoscale --help`` lists. A command's module is imported only when that
#: command runs, and imports what it uses: the group's help and version import none of them
#: (nor rasterio, the engine, dask or scipy). tests/cli check these summaries are the commands'.
COMMANDS = {
    "cleanup": ("eoscale.cli.cleanup",
                ("Remove the shared-memory segments, scratch files, staged outputs, part files "
                 "and journals of eoscale runs whose process is dead.")),
    "info": ("eoscale.cli.info",
             "Describe a raster: size, bands, dtype, CRS, resolution, bounds, nodata, layout."),
    "run": ("eoscale.cli.run",
            "Run a pipeline: load inputs, run every step on every core, write the outputs."),
    "schema": ("eoscale.cli.schema",
               "Print the JSON Schema of pipeline files (save it and point your editor at it)."),
    "validate": ("eoscale.cli.validate",
                 "Check a pipeline without running it; exit 3 if any problem is found."),
}


class EOScaleGroup(click.Group):
    """A group that turns eoscale's errors into messages and exit codes, in one place, and loads
    its commands when they are used (:data:`COMMANDS`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, _summary = COMMANDS[cmd_name]
        from eoscale.engine.native_threads import one_blas_thread_at_load
        from eoscale.lazy import collector_paused

        # this process computes only with one worker
        with one_blas_thread_at_load(command=True), collector_paused():
            return getattr(importlib.import_module(module), cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands with their summaries, shortened as click does, without importing them."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, click.Command(name, help=summary).get_short_help_str(limit))
                for name, (_module, summary) in sorted(COMMANDS.items())]
        with formatter.section(_("Commands")):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (Exception, Interrupted) as exc:  # noqa: BLE001 - the one place errors become codes
            if isinstance(exc, (click.exceptions.ClickException, click.exceptions.Exit,
                                click.exceptions.Abort)):
                raise
            ctx.exit(report(exc))


@click.group(cls=EOScaleGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="eoscale")
def cli() -> None:
    """Run raster processing pipelines on every core, tile by tile, from shared memory."""
    from eoscale.cli.render import settings

    settings.verbose = settings.quiet = False  # each command sets them again from its options


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # One signal stops the run; further ones must not interrupt the cleanup that follows. It is
    # recorded first: a raise that lands in a __del__ is lost, and the run checks it again. A
    # run whose outputs are being put in place is not stopped: it is said after it.
    if defer_signal(signum):
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    record_interrupt(signum)
    raise Interrupted(signum)


def report(exc: BaseException) -> int:
    """Print an error the way a user should see it; return the exit code."""
    from rich.markup import escape

    from eoscale.cli.render import error_console, settings

    console = error_console()
    if isinstance(exc, Interrupted):
        if exc.kept:
            console.print(f"[bold red]interrupted[/]: {escape(str(exc))}; stopped, "
                          f"{escape(exc.kept)}", highlight=False, soft_wrap=True)
        else:
            console.print(f"[bold red]interrupted[/]: {exc}; stopped, nothing was left behind")
        return exc.exit_code
    if isinstance(exc, EOScaleError):
        console.print(f"[bold red]error[/]: {escape(str(exc))}", markup=True, highlight=False,
                      soft_wrap=True)
        shown = isinstance(exc, StepError) and bool(exc.details)
        if shown:
            console.print(exc.details.rstrip(), markup=False, highlight=False, soft_wrap=True)
        if settings.verbose and not isinstance(exc, PipelineError):  # the callable's frames once
            console.print("".join(traceback.format_exception(exc, chain=not shown)),
                          markup=False, highlight=False)
        return exc.exit_code
    console.print("[bold red]internal error[/] (a bug in eoscale; please report it with this "
                  "traceback):", highlight=False)
    console.print("".join(traceback.format_exception(exc)), markup=False, highlight=False)
    return EXIT_FAILURE


#: The warnings this process has printed (:func:`_show_warning`).
_WARNED: set[tuple[type, str, str]] = set()


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    """A warning as one line, once: ``warning: Category: message``, with its place when it comes
    from the user's code (not from a library's, whose source line means nothing to the user:
    rasterio warned three times of one input without georeferencing, each with its own code)."""
    library = any(part in filename for part in ("site-packages", "dist-packages")) or \
        filename.startswith(os.path.dirname(os.path.dirname(__file__)))
    where = "" if library or filename.startswith("<") else f" ({filename}:{lineno})"
    key = (category, str(message), where)
    if key in _WARNED:
        return
    _WARNED.add(key)
    with contextlib.suppress(OSError, ValueError):  # a closed or full standard error
        print(f"warning: {category.__name__}: {message}{where}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    """The console script: Ctrl-C and SIGTERM stop the run cleanly (exit 130 and 143)."""
    if sys.stdout is None:  # started with its standard output closed (>&-, some daemons):
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - what it prints is dropped
    warnings.showwarning = _show_warning
    record_interrupt(None)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        cli.main(args=argv, prog_name="eoscale")
    finally:
        # The interpreter's last collections would look at every object of every module
        # (numpy's, rasterio's, scipy's...) before exiting: 0.3 s of a 2-core EPYC's CPU at the
        # end of every command, for nothing to free. Frozen objects are left alone.
        gc.freeze()
