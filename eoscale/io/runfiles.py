"""The files a run names after its pid, and the record of the folders they lie in.

A run writes files of its own beside its outputs (a staged output, ``.<name>.eoscale-tmp-<pid>-
<random>``, and the part files its workers append encoded blocks to, ``<staged>.part-<worker
host>-<worker pid>``) and in its scratch folder (``eoscale_<pid>_<random>_<image>.tif`` and their parts). It
removes them itself however it ends, but a run killed outright (SIGKILL, the out-of-memory
killer, a lost node) cannot, and what it left lies in folders only it knew. So before it writes
in a folder, a run notes the folder in a small record of its own in the system's temporary
folder, ``eoscale_<pid>_<random>.folders`` (one line a folder, appended and flushed at once), and
removes the record once its files there are gone (:class:`FolderRecord`). A cleanup told nothing
(``eoscale cleanup``, the start of every ``eoscale run``) reads the records of dead pids and
removes, in each folder listed, only the files named after that pid as that kind of folder
names them (:func:`eoscale.engine.scratch.cleanup_stale_files`).

Why a record in the temporary folder rather than a search: outputs may be anywhere, and the
temporary folder is where a cleanup told nothing already looks (the scratch folder's default).
Why it is safe: a record is read only when this user owns it, only once its pid is dead, and
only files whose names carry that pid are removed, so a live run's files never are (a pid reused
since by a live process only delays the cleanup). A record that cannot be written (a temporary
folder full or read-only) is skipped: it only serves the cleanup after a kill.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import tempfile
from pathlib import Path

#: What a staged output's name adds to its output's (after a leading dot), before the run's pid.
TEMP_MARK = ".eoscale-tmp-"
#: What a part file's name adds to its staged or scratch file's name, before its writer's
#: host and pid (:func:`eoscale.engine.encoded.writer_name`: two machines may share a pid).
PART_MARK = ".part-"
#: The writer of a part file that every process wrote into: a staged file whose blocks were
#: not all at their places, written anew from it (``eoscale.engine.assembly``).
SHARED_WRITER = "all"
#: What follows :data:`PART_MARK`: ``<host>-<pid>``, or :data:`SHARED_WRITER`.
PART_WRITER = rf"(?:[\w.]+-\d+|{SHARED_WRITER})"
#: A staged file of the run ``pid`` (group 1), its GDAL sidecar, or a part file of it.
STAGED_RE = re.compile(rf"^\..+{re.escape(TEMP_MARK)}(\d+)-[0-9a-f]+"
                       rf"(\.aux\.xml|{re.escape(PART_MARK)}{PART_WRITER})?$")
#: A run's record of its folders: its pid is group 1.
RECORD_RE = re.compile(r"^eoscale_(\d+)_[0-9a-f]+\.folders$")
#: The kinds of line of a record: a folder the run stages outputs in (and their parts), one it
#: writes scratch files in (and their parts), one it made for its outputs, and the run's journal
#: (a file: while it exists the run can be resumed, and nothing of the record is cleaned up).
STAGED, SCRATCH, MADE, JOURNAL = "staged", "scratch", "made", "journal"


def records_folder() -> Path:
    """Where runs keep their records: the system's temporary folder (``$TMPDIR``)."""
    return Path(tempfile.gettempdir())


class FolderRecord:
    """This process's record of the folders it writes files named after its pid in (see the
    module's docstring): made at the first :meth:`note`, removed by :meth:`close`."""

    def __init__(self) -> None:
        self._path: Path | None = None
        self._noted: set[tuple[str, Path]] = set()

    def note(self, folder: str | os.PathLike, kind: str) -> None:
        """Note ``folder``, of ``kind`` (``STAGED``, ``SCRATCH``, ``MADE``; ``JOURNAL``: the
        run's journal file), before this run writes anything there; noted once."""
        entry = (kind, Path(os.path.abspath(folder)))
        if entry in self._noted or "\n" in str(entry[1]):  # a line a folder
            return
        if self._path is None:
            self._path = records_folder() / f"eoscale_{os.getpid()}_{secrets.token_hex(4)}.folders"
        try:
            with open(self._path, "a", encoding="utf-8") as record:
                record.write(f"{kind} {entry[1]}\n")
        except OSError:
            return
        self._noted.add(entry)

    def keep(self) -> None:
        """Leave the record in place (the record of a journal kept for a resume): forget it
        here without removing it."""
        self._path = None
        self._noted.clear()

    def close(self) -> None:
        """Remove the record: this process's files in the folders it lists are gone."""
        path, self._path = self._path, None
        self._noted.clear()
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def list_records(folder: str | os.PathLike | None = None) -> list[tuple[Path, int]]:
    """Every record of runs' folders in ``folder`` (:func:`records_folder` by default), with the
    pid of the run that wrote it."""
    return owned_files(Path(folder) if folder is not None else records_folder(), RECORD_RE)


def owned_files(folder: Path, pattern: re.Pattern[str]) -> list[tuple[Path, int]]:
    """The files of ``folder`` whose names match ``pattern``, each with the pid its first group
    holds (their owner's), sorted; none when the folder is not there."""
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = pattern.match(entry.name)
        if match:
            found.append((entry, int(match.group(1))))
    return sorted(found)


def read_record(path: Path) -> dict[str, list[Path]] | None:
    """The folders a record lists, by kind (``STAGED``, ``SCRATCH``, ``MADE``, ``JOURNAL``); None if this user
    does not own it (another user's record is never trusted, nor removed) or it cannot be read."""
    try:
        if path.stat().st_uid != os.getuid():
            return None
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    listed: dict[str, list[Path]] = {STAGED: [], SCRATCH: [], MADE: [], JOURNAL: []}
    for line in text.splitlines():
        kind, _, folder = line.partition(" ")
        if kind in listed and os.path.isabs(folder) and Path(folder) not in listed[kind]:
            listed[kind].append(Path(folder))
    return listed


#: A pointer to a run's journal, in :func:`records_folder`: names no pid (see
#: :func:`journal_pointer`).
POINTER_RE = re.compile(r"^eoscale_journal_[0-9a-f]+\.where$")


def journal_pointer(journal: str | os.PathLike) -> Path:
    """Where a pointer to ``journal`` is kept: a file in :func:`records_folder` holding its
    path, named after it. A journal kept for a resume outlives its run, and a record named after
    a dead pid is what a clean-up removes (an older eoscale's knows no journal): the pointer
    lets a clean-up find a journal wherever it lies (a run's scratch folder) even then."""
    digest = hashlib.sha256(os.path.abspath(journal).encode()).hexdigest()[:16]
    return records_folder() / f"eoscale_journal_{digest}.where"


def point_to(journal: str | os.PathLike) -> None:
    """Keep a pointer to ``journal`` (skipped if it cannot be written: it only serves a
    clean-up)."""
    with contextlib.suppress(OSError):
        journal_pointer(journal).write_text(os.path.abspath(journal), encoding="utf-8")


def pointed_journals() -> list[tuple[Path, Path]]:
    """Every pointer of this user's in :func:`records_folder`, with the journal it points to."""
    found = []
    with contextlib.suppress(OSError):
        for entry in records_folder().iterdir():
            if not POINTER_RE.match(entry.name):
                continue
            try:
                if entry.stat().st_uid != os.getuid():
                    continue
                target = entry.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                continue
            if os.path.isabs(target):
                found.append((entry, Path(target)))
    return sorted(found)


def part_owner(path: str | os.PathLike) -> Path | None:
    """The staged or scratch file whose part file ``path`` is (None: ``path`` is no part)."""
    path = Path(path)
    owner, mark, writer = path.name.rpartition(PART_MARK)
    if not mark or not owner or not re.fullmatch(PART_WRITER, writer):
        return None
    return path.with_name(owner)


def remove_named(path: str | os.PathLike) -> None:
    """Remove a file a run's journal names, with the staged or scratch file it is a part of and
    every part of that file, whoever wrote them: a killed run's workers may have appended to
    parts its journal did not name yet (their tiles after its last record)."""
    owner = part_owner(path) or Path(path)
    for found in {Path(path), owner, *parts_of(owner)}:
        with contextlib.suppress(FileNotFoundError):
            found.unlink()


def parts_of(path: str | os.PathLike) -> list[Path]:
    """The part files of the staged or scratch file ``path``, whichever process wrote them."""
    path = Path(path)
    prefix = path.name + PART_MARK
    if not path.parent.is_dir():
        return []
    return sorted(entry for entry in path.parent.iterdir()
                  if entry.name.startswith(prefix)
                  and re.fullmatch(PART_WRITER, entry.name[len(prefix):]))
