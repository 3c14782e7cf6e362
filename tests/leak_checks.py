"""What this test session's own processes left behind, and nothing of anyone else's.

Shared-memory segments and scratch files are named after their owner's pid
(``eoscale_<pid>_...``): the main process of a run owns them, its workers only attach. So a leak
check that looks at the segments or scratch files of the pids it is responsible for sees all of
its own leaks and none of another eoscale run on the same machine (another user's, another test
session's), which may start, end or crash at any moment. Those pids are this process (in-process
runs, the CLI through ``CliRunner``) and the commands the session started: :func:`record_commands`
notes the pid of every ``subprocess.Popen`` this process makes.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from eoscale.engine.scratch import list_scratch
from eoscale.engine.shared import list_segments

_commands: set[int] = set()
_segments_at_start: set[str] = set()
_scratch_at_start: set[Path] = set()


class _RecordedPopen(subprocess.Popen):
    """``subprocess.Popen`` that notes the pid of the command it started."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _commands.add(self.pid)


def record_commands() -> None:
    """From now on, note the pid of every command this process starts (``subprocess.run`` and
    ``check_output`` go through ``Popen`` too)."""
    subprocess.Popen = _RecordedPopen  # type: ignore[misc]


def session_pids() -> set[int]:
    """This process and every command it started since :func:`record_commands`."""
    return {os.getpid()} | _commands


def own_segments(pids: Iterable[int] | None = None) -> set[str]:
    """The segments in /dev/shm owned by ``pids`` (by default this process), now."""
    owners = {os.getpid()} if pids is None else set(pids)
    return {name for name, pid in list_segments() if pid in owners}


def own_scratch(pids: Iterable[int] | None = None, folder: Path | None = None) -> set[Path]:
    """The scratch files in ``folder`` (the system's temporary one by default) owned by ``pids``
    (by default this process), now."""
    owners = {os.getpid()} if pids is None else set(pids)
    return {path for path, pid in list_scratch(folder) if pid in owners}


def note_session_start() -> None:
    """Remember every segment and scratch file there is now, whoever owns it: should a pid of
    the session be a reused one, what its former owner left is not counted as a leak."""
    _segments_at_start.update(name for name, _ in list_segments())
    _scratch_at_start.update(path for path, _ in list_scratch())


def leaked_segments() -> list[str]:
    """Segments that this process or a command the session started made and left.

    Only the session's own pids count: other eoscale runs on the machine, alive or crashed, are
    none of the suite's business.
    """
    return sorted(own_segments(session_pids()) - _segments_at_start)


def leaked_scratch() -> list[Path]:
    """Scratch files in the system's temporary folder that this process or a command the session
    started made and left (as :func:`leaked_segments`)."""
    return sorted(own_scratch(session_pids()) - _scratch_at_start)
