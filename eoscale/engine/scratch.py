"""Scratch files: images spilled to disk because memory would not hold them.

A :class:`Scratch` hands out paths named ``eoscale_<owner pid>_<random>_<image>.tif`` in one
folder (the system's temporary folder unless told otherwise) and removes every one of them, and
their part files, when it closes: after a run's success, its failure, Ctrl-C or SIGTERM (they
unwind through it). A run killed outright leaves them behind, and its staged outputs and their
part files beside its outputs too: :func:`cleanup_stale_files` (``eoscale cleanup`` and the start
of every ``eoscale run``) removes what runs whose process is dead left, found through the
records of their folders (:mod:`eoscale.io.runfiles`), never a live run's.

A run stopped by a signal keeps its journal (``eoscale_run_<key>.journal``, see
:mod:`eoscale.pipeline.resume`) and the files it names, for ``eoscale run --resume``: the
record of a run whose journal exists is left alone, and no file a journal names is removed by
the clean-up at a run's start. ``eoscale cleanup`` removes them too (:func:`dead_journals`):
a user who asks for a clean-up discards the killed runs' work.
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
from eoscale.io.journal import JournalError, read_journal, rewrite_path
from eoscale.io.runfiles import (
    JOURNAL,
    MADE,
    PART_MARK,
    PART_WRITER,
    SCRATCH,
    STAGED,
    STAGED_RE,
    FolderRecord,
    journal_pointer,
    list_records,
    owned_files,
    parts_of,
    pointed_journals,
    read_record,
)

#: A scratch file, its GDAL sidecar, or a part file a worker appended its blocks to (named as
#: :func:`eoscale.engine.encoded.part_path` names them: ``.part-<host>-<pid>``).
_SCRATCH_RE = re.compile(rf"^eoscale_(\d+)_[0-9a-f]+_.*\.tif(\.aux\.xml|"
                         rf"{re.escape(PART_MARK)}{PART_WRITER})?$")


#: A run's journal (:mod:`eoscale.pipeline.resume` names it after the run's key).
JOURNAL_RE = re.compile(r"^eoscale_run_[0-9a-f]+\.journal$")


def default_scratch() -> Path:
    return Path(tempfile.gettempdir())


def check_scratch_folder(folder: Path) -> None:
    """Refuse a scratch folder that is missing or cannot be written (a run's journal and its
    spilled images go there)."""
    if not folder.is_dir():
        raise RasterError(f"scratch folder {folder} does not exist (--scratch, 'scratch:')")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RasterError(f"scratch folder {folder}: cannot write in it (permission denied)")


class Scratch:
    """Paths for spilled images in ``folder``, all removed by :meth:`close`."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder is not None else default_scratch()
        self._paths: list[Path] = []
        self._record = FolderRecord()

    def keep(self, files: set[Path]) -> None:
        """Leave the scratch ``files`` where they are on closing: a run stopped by a signal,
        resumable from its journal, which names them (and through which a clean-up finds
        them); the others are removed."""
        self._paths = [path for path in self._paths if path not in files]

    def adopt(self, path: str | os.PathLike) -> None:
        """Take a killed run's scratch file as this run's (a resume): removed when released."""
        path = Path(path)
        self._record.note(path.parent, SCRATCH)
        self._paths.append(path)

    def check(self) -> None:
        """Refuse a scratch folder that is missing or cannot be written, before any work."""
        check_scratch_folder(self.folder)

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
    return owned_files(Path(folder) if folder is not None else default_scratch(), _SCRATCH_RE)


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


def _dead_records(journals: bool = False) -> list[tuple[Path, int, dict[str, list[Path]]]]:
    """The records of dead runs' folders that this user owns, with their pids and folders;
    those of runs whose journal exists (resumable) only with ``journals``."""
    found = []
    for record, pid in list_records():
        listed = read_record(record) if _dead(pid) else None
        if listed is not None and (journals or not any(j.exists() for j in listed[JOURNAL])):
            found.append((record, pid, listed))
    return found


def dead_journals(folder: str | os.PathLike | None = None) -> list[tuple[Path, list[Path]]]:
    """The journals of runs whose process is dead (found through the records of runs' folders,
    and in ``folder``, the system's temporary folder by default), each with the files it keeps
    (and their parts): what ``eoscale cleanup`` removes with them."""
    return _journals(folder, dead_only=True)


def _journals(folder: str | os.PathLike | None, *, dead_only: bool
              ) -> list[tuple[Path, list[Path]]]:
    folder = Path(folder) if folder is not None else default_scratch()
    candidates = {journal for _, journal in pointed_journals()}
    for record, _pid in list_records():
        listed = read_record(record)
        if listed is not None:
            candidates.update(listed[JOURNAL])
    with contextlib.suppress(OSError):
        candidates.update(entry for entry in folder.iterdir() if JOURNAL_RE.match(entry.name))
    found = []
    for journal in sorted(candidates):
        try:
            contents = read_journal(journal)
        except JournalError:
            continue
        if dead_only and contents.pids and not _dead(contents.pids[-1]):
            continue
        files = [path for path in contents.files if path.exists()]
        found.append((journal, files + [part for path in files for part in parts_of(path)]))
    return found


def forget_journal(journal: str | os.PathLike) -> None:
    """Remove the pointer to ``journal`` and the records of dead runs that name it (discarded,
    or taken over by a resumed run that ended)."""
    journal = Path(os.path.abspath(journal))
    with contextlib.suppress(FileNotFoundError):
        journal_pointer(journal).unlink()
    for record, pid in list_records():
        listed = read_record(record) if _dead(pid) else None
        if listed is not None and journal in listed[JOURNAL]:
            with contextlib.suppress(FileNotFoundError):
                record.unlink()


def _kept_files(folder: str | os.PathLike | None, journals: bool) -> set[Path]:
    """Every file a journal keeps (with ``journals``: a journal a live run resumes), never
    cleaned up."""
    dead = {journal for journal, _ in dead_journals(folder)} if journals else set()
    return {path for journal, files in _journals(folder, dead_only=False)
            if journal not in dead for path in files}


def stale_files(folder: str | os.PathLike | None = None, *, journals: bool = False
                ) -> list[tuple[Path, int]]:
    """What runs whose process is dead left, with their pids: for each record of a dead run's
    folders, the files named after it there (staged outputs where it staged them, scratch files
    where it spilled them, and their parts), then the record; then the scratch files of dead
    runs in ``folder`` (the system's temporary folder by default). A run that kept a journal
    to be resumed is left out, its files and those its journal keeps, unless ``journals``:
    then its journal and the files it keeps are listed too (pid 0: a journal may span runs)."""
    found: list[tuple[Path, int]] = []
    kept = _kept_files(folder, journals)
    if journals:
        for journal, files in dead_journals(folder):
            found += [(path, 0) for path in (*files, journal, rewrite_path(journal),
                                             journal_pointer(journal)) if path.exists()]
        found += [(pointer, 0) for pointer, journal in pointed_journals()
                  if not journal.exists()]
    for record, pid, listed in _dead_records(journals):
        for kind, pattern in ((STAGED, STAGED_RE), (SCRATCH, _SCRATCH_RE)):
            for folder_ in listed[kind]:
                found += [(path, pid) for path in _named_after(folder_, pid, pattern)]
        found.append((record, pid))
    found += [(path, pid) for path, pid in list_scratch(folder) if _dead(pid)]
    # By absolute path: a relative scratch folder names the files its record names absolutely,
    # and two records of one run may name one folder; a kept file is kept however it is named.
    unique: dict[str, tuple[Path, int]] = {}
    for path, pid in found:
        unique.setdefault(os.path.abspath(path), (path, pid))
    kept_paths = {os.path.abspath(path) for path in kept}
    return [item for key, item in unique.items() if key not in kept_paths]


def cleanup_stale_files(folder: str | os.PathLike | None = None, *,
                        journals: bool = False) -> list[Path]:
    """Remove what :func:`stale_files` lists (``journals``: the killed runs' journals and the
    files they keep too), and the folders dead runs made for their outputs if they are empty
    now; never a live run's files, nor another user's that this one may not remove. The files
    removed."""
    made = [folder_ for _, _, listed in _dead_records(journals) for folder_ in listed[MADE]]
    removed = []
    for path, _ in stale_files(folder, journals=journals):
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
