"""The one exception hierarchy of eoscale.

Every error a user can cause derives from :class:`EOScaleError` and carries the exit code the CLI
maps it to (in one place, ``eoscale.cli.main``).  Messages name the place: file, line, step, tile.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INVALID_PIPELINE = 3
#: A killed run's journal stands in the way: what it depends on changed since (``--resume``
#: refused, naming what), or a rerun without ``--resume``/``--restart``, or its run still lives.
EXIT_RESUME_REFUSED = 4
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

#: What user code (a callable, or its margin, profile, check, memory, combine or finalize
#: function) may raise that becomes an error naming its place: any Exception, and SystemExit,
#: so that a ``sys.exit()`` in it does not end the command with the user's exit code and no
#: message (with one worker, tiles are computed in this process).
USER_ERRORS: tuple[type[BaseException], ...] = (Exception, SystemExit)


class EOScaleError(Exception):
    """Base class of every error eoscale raises on purpose."""

    exit_code: int = EXIT_FAILURE


class ConfigError(EOScaleError, ValueError):
    """An argument of the library API or the command line is out of range (tile size 0, workers -1)."""

    exit_code = EXIT_USAGE


class RasterError(EOScaleError):
    """A raster cannot be opened, read or written (a full disk too: not the user's mistake, a
    run failure); the message names the file."""


class OutputExistsError(EOScaleError):
    """An output path exists and overwriting was not asked for."""


class ResumeRefused(EOScaleError):
    """A killed run's journal cannot be resumed as asked (what changed is in the message), or a
    rerun found one and was not told what to do with it (``--resume`` or ``--restart``)."""

    exit_code = EXIT_RESUME_REFUSED


@dataclass(frozen=True)
class Problem:
    """One problem found in a pipeline, with where it is."""

    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    path: str | None = None
    step: str | None = None

    def __str__(self) -> str:
        where = []
        if self.file:
            loc = self.file
            if self.line is not None:
                loc += f":{self.line}"
                if self.column is not None:
                    loc += f":{self.column}"
            where.append(loc)
        if self.step:
            where.append(f"step '{self.step}'")
        if self.path:
            where.append(self.path)
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class PipelineError(EOScaleError):
    """A pipeline is invalid; holds every problem found, not only the first."""

    exit_code = EXIT_INVALID_PIPELINE
    #: What the message says before its problems.
    heading = "invalid pipeline"

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        count = len(self.problems)
        head = self.heading if count == 1 else f"{self.heading} ({count} problems)"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


class CallableTraceback(Exception):
    """The traceback of a callable's error, as the process that ran it formatted it: the cause
    of the :class:`StepError` it became, so that a library user's uncaught error shows the
    callable's own frames below eoscale's message (the command prints them itself)."""

    def __str__(self) -> str:
        return f'\n"""\n{self.args[0].rstrip()}\n"""'


class StepError(EOScaleError):
    """A step failed while computing; names the step and the tile. ``details``: the callable's
    traceback, when it raised (also the error's cause: :class:`CallableTraceback`)."""

    def __init__(self, message: str, *, step: str | None = None, tile: str | None = None,
                 details: str | None = None):
        self.step = step
        self.tile = tile
        self.details = details
        if details:
            self.__cause__ = CallableTraceback(details)
        where = []
        if step is not None:
            where.append(f"step '{step}'")
        if tile is not None:
            where.append(tile)
        text = f"{', '.join(where)}: {message}" if where else message
        super().__init__(text)

    @property
    def summary(self) -> str:
        return str(self)


class ResultError(StepError):
    """A callable returned results of the wrong count, shape or dtype."""


class WorkerDiedError(StepError):
    """A worker process died (killed, crashed in C code, exited) while running a step."""


class Interrupted(BaseException):
    """The run was stopped by SIGINT (Ctrl-C) or SIGTERM.

    Like KeyboardInterrupt it is not an ``Exception``, so that no ``except Exception`` around user
    code can swallow it; it carries the exit code (130 or 143).
    """

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        #: What the stopped run kept to be resumed, and how (None: nothing was kept).
        self.kept: str | None = None
        self.exit_code = EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


#: The signal that stopped this process's run, once one has (None: none). The command line's
#: handler records it before raising :class:`Interrupted`, because Python loses an exception
#: raised by a signal handler while the main thread runs a ``__del__`` or a weakref callback (a
#: Dask future released, a file closed): it only prints it, and the run would go on to the end,
#: renaming its outputs into place and exiting 0 after a Ctrl-C. :func:`check_interrupted` raises
#: it again where a run must not go on: between chunks of tiles, before outputs are renamed.
_stopped_by: int | None = None


#: Whether the run's outputs are being put in place (or are): from then on a signal does not
#: stop the run, which has finished but for moving its files and releasing what it holds (a
#: stop then would say "nothing was left behind" with the outputs replaced); the signal that
#: came then (None: none) is said after the run.
_committed = False
_late: int | None = None


def record_interrupt(signum: int | None) -> None:
    """Record the signal that stops the run (None: a new run, nothing stopped it yet)."""
    global _stopped_by
    _stopped_by = signum
    if signum is None:
        begin_run()


def begin_run() -> None:
    """A run starts: signals stop it again until its outputs are committed."""
    global _committed, _late
    _committed, _late = False, None


def begin_commit() -> None:
    """The run's outputs are being put in place: from now on a signal no longer stops it
    (:func:`defer_signal`)."""
    global _committed
    _committed = True


def defer_signal(signum: int) -> bool:
    """Whether a signal that came now is left for after the run (its outputs are being put in
    place, or are), recorded for :func:`late_signal`."""
    global _late
    if _committed:
        _late = _late or signum
    return _committed


def late_signal() -> int | None:
    """The signal that came while the run's outputs were being put in place, if one did."""
    return _late


def stopped_by() -> int | None:
    """The signal that stopped the run, None while none has."""
    return _stopped_by


def check_interrupted() -> None:
    """Raise :class:`Interrupted` if a signal stopped the run (its first raise may have been
    lost: see :data:`_stopped_by`)."""
    if _stopped_by is not None:
        raise Interrupted(_stopped_by)


def close_match(name: str, candidates: Iterable[object]) -> str | None:
    """The candidate closest to a misspelt name, if one is close enough."""
    close = difflib.get_close_matches(name, [str(c) for c in candidates], n=1)
    return close[0] if close else None


def did_you_mean(name: str, candidates: Iterable[object]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or nothing: every message that names
    a misspelt key, name, step or asset says it this way."""
    close = close_match(name, candidates)
    return f" (did you mean '{close}'?)" if close else ""

