"""Scratch files: images spilled to disk because memory would not hold them.

A :class:`Scratch` hands out paths named ``eoscale_<owner pid>_<random>_<image>.tif`` in one
folder (the system's temporary folder unless told otherwise) and removes every one of them, and
their part files, when it closes: after a run's success, its failure, Ctrl-C or SIGTERM (they
unwind through it). A run killed outright leaves them behind, and its staged outputs and their
part files beside its outputs too: :func:`cleanup_stale_files` (``eoscale cleanup`` and the start
of every ``eoscale run``) removes what runs whose process is dead left, found through the
records of their folders (:mod:`eoscale.io.runfiles`), never a live run's.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
from pathlib import Path

from eoscale.engine.shared import SEGMENT_PREFIX, pid_alive
from eoscale.errors import RasterError
from eoscale.io.runfiles import (
    MADE,
    PART_MARK,
    PART_WRITER,
    SCRATCH,
    STAGED,
    STAGED_RE,
    FolderRecord,
    list_records,
    parts_of,
    read_record,
)

#: A scratch file, its GDAL sidecar, or a part file a worker appended its blocks to (named as
#: :func:`eoscale.engine.encoded.part_path` names them: ``.part-<host>-<pid>``).
_SCRATCH_RE = re.compile(rf"^eoscale_(\d+)_[0-9a-f]+_.*\.tif(\.aux\.xml|"
                         rf"{re.escape(PART_MARK)}{PART_WRITER})?$")


def default_scratch() -> Path:
    return Path(tempfile.gettempdir())


class Scratch:
    """Paths for spilled images in ``folder``, all removed by :meth:`close`."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder is not None else default_scratch()
        self._paths: list[Path] = []
        self._record = FolderRecord()

    def check(self) -> None:
        """Refuse a scratch folder that is missing or cannot be written, before any work."""
        if not self.folder.is_dir():
            raise RasterError(f"scratch folder {self.folder} does not exist (--scratch, 'scratch:')")
        if not os.access(self.folder, os.W_OK | os.X_OK):
            raise RasterError(f"scratch folder {self.folder}: cannot write in it (permission "
                              "denied)")

    def path(self, name: str) -> Path:
        """A new scratch file path for the image ``name``."""
        safe = re.sub(r"[^\w.-]+", "-", name)[:40] or "image"
        path = self.folder / f"{SEGMENT_PREFIX}{os.getpid()}_{secrets.token_hex(4)}_{safe}.tif"
        self._record.note(self.folder, SCRATCH)
        self._paths.append(path)
        return path

    def remove(self, path: Path) -> None:
        """Remove one scratch file now (its image is released), its sidecar and part files."""
        for candidate in (path, path.with_name(path.name + ".aux.xml"), *parts_of(path)):
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()

    def close(self) -> None:
        paths, self._paths = self._paths, []
        for path in paths:
            self.remove(path)
        self._record.close()

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def list_scratch(folder: str | os.PathLike | None = None) -> list[tuple[Path, int]]:
    """Every eoscale scratch file in ``folder`` with its owner's pid."""
    folder = Path(folder) if folder is not None else default_scratch()
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _SCRATCH_RE.match(entry.name)
        if match:
            found.append((entry, int(match.group(1))))
    return sorted(found)


def _named_after(folder: Path, pid: int, pattern: re.Pattern[str]) -> list[Path]:
    """The files in ``folder`` that ``pattern`` names after the run ``pid`` (its group 1)."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        match = pattern.match(entry.name)
        if match and int(match.group(1)) == pid:
            found.append(entry)
    return sorted(found)


def _dead(pid: int) -> bool:
    return pid != os.getpid() and not pid_alive(pid)


def _dead_records() -> list[tuple[Path, int, dict[str, list[Path]]]]:
    """The records of dead runs' folders that this user owns, with their pids and folders."""
    found = []
    for record, pid in list_records():
        listed = read_record(record) if _dead(pid) else None
        if listed is not None:
            found.append((record, pid, listed))
    return found


def stale_files(folder: str | os.PathLike | None = None) -> list[tuple[Path, int]]:
    """What runs whose process is dead left, with their pids: for each record of a dead run's
    folders, the files named after it there (staged outputs where it staged them, scratch files
    where it spilled them, and their parts), then the record; then the scratch files of dead
    runs in ``folder`` (the system's temporary folder by default)."""
    found: list[tuple[Path, int]] = []
    for record, pid, listed in _dead_records():
        for kind, pattern in ((STAGED, STAGED_RE), (SCRATCH, _SCRATCH_RE)):
            for folder_ in listed[kind]:
                found += [(path, pid) for path in _named_after(folder_, pid, pattern)]
        found.append((record, pid))
    seen = {path for path, _ in found}
    return found + [(path, pid) for path, pid in list_scratch(folder)
                    if _dead(pid) and path not in seen]


def cleanup_stale_files(folder: str | os.PathLike | None = None) -> list[Path]:
    """Remove what :func:`stale_files` lists, and the folders dead runs made for their outputs
    if they are empty now; never a live run's files, nor another user's that this one may not
    remove. The files removed."""
    made = [folder_ for _, _, listed in _dead_records() for folder_ in listed[MADE]]
    removed = []
    for path, _ in stale_files(folder):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            path.unlink()
            removed.append(path)
    for made_folder in sorted(made, key=lambda path: len(path.parts), reverse=True):
        with contextlib.suppress(OSError):
            made_folder.rmdir()
    return removed


def cleanup_stale_scratch(folder: str | os.PathLike | None = None) -> list[Path]:
    """Remove the scratch files whose owner process is dead; never those of a live run, nor
    another user's that this one may not remove (a sticky temporary folder)."""
    removed = []
    for path, pid in list_scratch(folder):
        if pid != os.getpid() and not pid_alive(pid):
            with contextlib.suppress(FileNotFoundError, PermissionError):
                path.unlink()
                removed.append(path)
    return removed
