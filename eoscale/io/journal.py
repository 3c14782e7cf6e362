"""A run's journal: an append-only file of records that stays true whatever instant the run dies.

A record is one line: the CRC-32 of its JSON text (8 hex digits), a space, the JSON, a newline,
written by a single ``os.write`` to a file opened ``O_APPEND``. A process killed during that write
leaves at most one torn line, at the end. :func:`read_journal` reads records up to the first line
that is not whole or whose CRC does not match, and trusts nothing after it: every record it
returns was written whole. So a crash at any instant, the journal's own write included, leaves a
journal that is true; at worst the last unit is not recorded and is computed again.

A record says that a unit of work is finished (a block written, a tile's partial, a step ended);
it is appended only once the bytes it names are durable. Durable against what:

- **A process that dies** (SIGKILL, the out-of-memory killer, a walltime): bytes written to a
  file are in the kernel's page cache, and stay there whatever happens to the process that
  wrote them; so do the journal's own lines. This needs no flush: a unit is recorded as soon
  as its bytes are written.
- **A machine that stops** (a power cut, a kernel panic): only what was flushed to the disk
  (``fsync``) survives, in no particular order. Flushing every unit before recording it would
  make the disk write every part file the run writes, which a run that ends removes unread (the
  flushes and the removal of flushed files cost about 5 % of a short run's wall). So a run's
  writer records the machine's boot identifier (:func:`boot_id`, drawn at random at each boot)
  in its ``run`` or ``resume`` record, flushes the files its records name only now and then, and
  then appends a ``synced`` mark (:data:`SYNCED`): every record before the mark is durable.
  :func:`read_journal` trusts a record written since the machine last booted, or followed by a
  mark; the others (written before a restart, after the last mark) are ``lost``: their bytes
  may not have reached the disk, and their work is computed again. A writer on a system
  without a boot identifier records none, and flushes a unit's files before each record (a
  record without a boot is always trusted, as an older eoscale's are).

Only one process writes a journal (the run's main process, or its Dask client): appends from
several machines to one file on a shared filesystem are not atomic. A machine that writes part
files for another's journal (a cluster's worker on another host) flushes them itself before
it reports them.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eoscale.errors import EOScaleError


#: The kind of the record that says every record before it is durable on the disk.
SYNCED = "synced"
#: Where Linux tells the boot identifier (a random UUID drawn at each boot).
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str | None:
    """This machine's boot identifier, None where the system gives none."""
    try:
        return BOOT_ID.read_text().strip() or None
    except OSError:
        return None


class JournalError(EOScaleError):
    """A journal that cannot be created, written or read (its path is in the message)."""


@dataclass(frozen=True)
class JournalContents:
    """A journal read back: its whole records that are trusted, in order; whether a torn or
    damaged line ended it (``torn``: the last write was cut short; what follows it is not
    trusted); and the whole records that are not trusted (``lost``: written before the machine
    restarted and not followed by a :data:`SYNCED` mark, see the module). ``on_disk``: for
    each trusted record, whether what it names is flushed to the disk (a mark follows it, or
    its writer flushed before recording)."""

    records: tuple[dict[str, Any], ...]
    torn: bool
    lost: tuple[dict[str, Any], ...] = ()
    on_disk: tuple[bool, ...] = ()

    def of_kind(self, kind: str) -> Iterator[dict[str, Any]]:
        return (record for record in self.records if record.get("kind") == kind)

    def flushed(self, kind: str) -> Iterator[dict[str, Any]]:
        """The trusted records of ``kind`` whose files are on the disk (see ``on_disk``)."""
        return (record for record, flushed in zip(self.records, self.on_disk)
                if flushed and record.get("kind") == kind)

    @property
    def pids(self) -> list[int]:
        """The processes that ran it, in order (a record with a ``pid`` each: the first run,
        then each resume): the last one is the run it belongs to now."""
        return [int(record["pid"]) for record in self.records
                if isinstance(record.get("pid"), int)]

    @property
    def files(self) -> list[Path]:
        """The files its records keep (each record's ``files``: staged outputs, spilled
        images, part files), in order, once each; the ``lost`` records' too (a clean-up
        removes them)."""
        found: dict[str, Path] = {}
        for record in (*self.records, *self.lost):
            for name in record.get("files") or ():
                found.setdefault(str(name), Path(name))
        return list(found.values())


def encode_record(record: Mapping[str, Any]) -> bytes:
    """A record as its journal line: CRC-32, a space, compact JSON, a newline."""
    text = json.dumps(record, separators=(",", ":"), sort_keys=True, allow_nan=False)
    data = text.encode()
    return b"%08x %s\n" % (zlib.crc32(data), data)


def read_journal(path: str | os.PathLike) -> JournalContents:
    """The records of the journal at ``path`` that were written whole (see the module)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise JournalError(f"{os.fspath(path)}: no journal there") from None
    except OSError as exc:
        raise JournalError(f"{os.fspath(path)}: cannot read the journal: "
                           f"{exc.strerror or exc}") from None
    records: list[dict[str, Any]] = []
    torn = not data.endswith(b"\n") and bool(data)
    for line in data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n"):
        record = _decode(line)
        if record is None:
            torn = True
            break
        records.append(record)
    return _trusted(records, torn, boot_id())


def _trusted(records: list[dict[str, Any]], torn: bool, now: str | None) -> JournalContents:
    """``records`` parted into those trusted on the machine booted as ``now`` and those lost:
    a record is trusted when a :data:`SYNCED` mark follows it, or when the ``run`` or
    ``resume`` record it follows says no boot (its writer flushed before recording) or this
    boot; ``run``, ``resume`` and mark records are always kept."""
    last_mark = max((i for i, record in enumerate(records) if record.get("kind") == SYNCED),
                    default=-1)
    kept, lost, on_disk = [], [], []
    boot = None
    for i, record in enumerate(records):
        kind = record.get("kind")
        if kind in ("run", "resume"):
            boot = record.get("boot")
        flushed = i < last_mark or boot is None
        if kind in ("run", "resume", SYNCED) or flushed or boot == now:
            kept.append(record)
            on_disk.append(flushed)
        else:
            lost.append(record)
    return JournalContents(tuple(kept), torn, tuple(lost), tuple(on_disk))


def _decode(line: bytes) -> dict[str, Any] | None:
    crc, _, text = line.partition(b" ")
    try:
        if len(crc) != 8 or int(crc, 16) != zlib.crc32(text):
            return None
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


class Journal:
    """A journal open for appending records (:meth:`create` a new one, :meth:`reopen` a killed
    run's to go on with it)."""

    def __init__(self, path: str | os.PathLike, fd: int):
        self.path = Path(path)
        self._fd: int | None = fd
        self._lock = threading.Lock()

    @classmethod
    def create(cls, path: str | os.PathLike, first: Mapping[str, Any]) -> Journal:
        """A new journal at ``path`` (never over an existing file) whose first record is
        ``first``, flushed with its folder's entry so that the journal itself is durable; none
        is left when it cannot be written (a full disk)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except OSError as exc:
            raise JournalError(f"{os.fspath(path)}: cannot create the run's journal: "
                               f"{exc.strerror or exc}") from None
        journal = cls(path, fd)
        try:
            journal.record(**first)
            journal.sync()
            _sync_folder(Path(path).parent)
        except BaseException:  # a full disk: no journal left, empty or torn
            journal.remove()
            raise
        return journal

    @classmethod
    def reopen(cls, path: str | os.PathLike) -> Journal:
        """The journal at ``path``, open to append after its last whole record (a torn last
        line is cut off first, so that the next record starts a line). Records ``lost`` to a
        restart of the machine are removed first (the journal is written again, without them,
        and renamed over the old one): a mark appended later would otherwise vouch for them."""
        contents = read_journal(path)
        try:
            if contents.lost:
                _rewrite(Path(path), contents.records)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            if contents.torn and not contents.lost:
                os.ftruncate(fd, sum(len(encode_record(record))
                                     for record in contents.records))
        except OSError as exc:
            raise JournalError(f"{os.fspath(path)}: cannot reopen the journal: "
                               f"{exc.strerror or exc}") from None
        return cls(path, fd)

    def record(self, kind: str, **fields: Any) -> None:
        """Append the record ``{"kind": kind, **fields}`` in one write (thread-safe)."""
        line = encode_record({"kind": kind, **fields})
        with self._lock:
            if self._fd is None:
                raise JournalError(f"{self.path}: the journal is closed")
            try:
                written = os.write(self._fd, line)
            except OSError as exc:
                raise JournalError(f"{self.path}: cannot write the journal: "
                                   f"{exc.strerror or exc}") from None
            if written != len(line):  # a full disk: the line is torn, reading stops there
                raise JournalError(f"{self.path}: cannot write the journal: the disk is full")

    def sync(self) -> None:
        """Flush the records written so far to the disk."""
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def remove(self) -> None:
        """Close and delete the journal (a run that ended, by success or by an error)."""
        self.close()
        for path in (self.path, rewrite_path(self.path)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rewrite_path(path: str | os.PathLike) -> Path:
    """Where a journal is written again before it is renamed over the old one (a machine that
    stops then may leave it: it goes with the journal)."""
    path = Path(path)
    return path.with_name(path.name + ".rewrite")


def _rewrite(path: Path, records: tuple[dict[str, Any], ...]) -> None:
    """Replace the journal at ``path`` by one holding ``records``, flushed, in one rename."""
    temporary = rewrite_path(path)
    data = b"".join(encode_record(record) for record in records)
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries (a new file's name), where the platform allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
