"""The ``eoscale`` group and the one place where errors become messages and exit codes.

Exit codes: 0 success, 1 run failure, 2 usage error, 3 invalid pipeline, 130 interrupted (SIGINT),
143 terminated (SIGTERM). A user's mistake never shows a Python traceback unless ``-v`` is given.
"""

from __future__ import annotations

import signal
import traceback
from types import FrameType

import click
from rich.markup import escape

from eoscale import __version__
from eoscale.cli.cleanup import cleanup
from eoscale.cli.info import info
from eoscale.cli.render import error_console, settings
from eoscale.cli.run import run
from eoscale.cli.schema import schema
from eoscale.cli.validate import validate
from eoscale.errors import EXIT_FAILURE, EOScaleError, Interrupted, PipelineError, StepError


class EOScaleGroup(click.Group):
    """A group that turns eoscale's errors into messages and exit codes, in one place."""

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
    settings.verbose = settings.quiet = False  # each command sets them again from its options


cli.add_command(run)
cli.add_command(validate)
cli.add_command(info)
cli.add_command(cleanup)
cli.add_command(schema)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # One signal stops the run; further ones must not interrupt the cleanup that follows.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signum)


def report(exc: BaseException) -> int:
    """Print an error the way a user should see it; return the exit code."""
    console = error_console()
    if isinstance(exc, Interrupted):
        console.print(f"[bold red]interrupted[/]: {exc}; stopped, nothing was left behind")
        return exc.exit_code
    if isinstance(exc, EOScaleError):
        console.print(f"[bold red]error[/]: {escape(str(exc))}", markup=True, highlight=False,
                      soft_wrap=True)
        if isinstance(exc, StepError) and exc.details:
            console.print(exc.details.rstrip(), markup=False, highlight=False, soft_wrap=True)
        if settings.verbose and not isinstance(exc, PipelineError):
            console.print("".join(traceback.format_exception(exc)), markup=False, highlight=False)
        return exc.exit_code
    console.print("[bold red]internal error[/] (a bug in eoscale; please report it with this "
                  "traceback):", highlight=False)
    console.print("".join(traceback.format_exception(exc)), markup=False, highlight=False)
    return EXIT_FAILURE


def main(argv: list[str] | None = None) -> None:
    """The console script: Ctrl-C and SIGTERM stop the run cleanly (exit 130 and 143)."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    cli.main(args=argv, prog_name="eoscale")
