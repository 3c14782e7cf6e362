"""A file assembled from encoded blocks in two halves: its header written by one process, its
blocks copied from the part files to their places by any number of processes.

Once every block's length is known, every block's place in the file is too (the layout decides
the order: :func:`~eoscale.io.blocks.write_geotiff_header`, :func:`~eoscale.io.cog.write_levels_header`).
The process that knows the lengths writes the header and sizes the file
(:func:`write_header`), giving the bytes the blocks will fill their disk blocks at once where
the system can (:func:`preallocate`); each block that lies in a
part file becomes a :class:`BlockCopy` (the part's path, offset and length, and the block's
place in the file), and :func:`copy_blocks` runs any subset of them, in any process that sees the
files: the copies of distinct blocks touch distinct bytes, so they need no lock and no order,
and a copy run twice writes the same bytes. So the process writing the header reads no block and
writes only the header: the blocks' bytes move from the parts to the file in the processes that
run the copies (in the kernel, ``os.copy_file_range``, where the system has it).

A block of GDAL's COG layout is *framed*: its size (4 bytes, little-endian) just before it and its
last 4 bytes repeated just after it (:data:`FRAME`); the copy writes both, reading the last 4
bytes from the part, so the header's writer needs none of them.

Why preallocate: copying into a hole (or writing a block into one) makes the filesystem find
the hole's disk blocks page by page as the bytes arrive; blocks allocated beforehand, in one
call, are only filled. On ext4 here, on a quiet machine, copying a 676 MiB part into a sparse
file took 0.19 to 0.36 s in one process (0.20 to 0.40 s in two), into a preallocated one
0.14 to 0.18 s (0.15 to 0.17 s), the allocation included; W1's COG end to end (its copies
0.5 s of 12 s) showed no difference beyond its run-to-run spread. And a disk too small for
the file fails at once, when the header is written, before any block is copied.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import struct
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from eoscale.io.raster import write_error

#: The bytes a framed block adds before it (its size) and after it (its last 4 bytes).
FRAME = 4


class BlockCopy(NamedTuple):
    """A block to copy: ``length`` bytes at ``offset`` of the part file ``part``, to ``target``
    of the assembled file; ``framed``: between its size and its last 4 bytes (GDAL's COG)."""

    part: str
    offset: int
    length: int
    target: int
    framed: bool = False


class InMemory(NamedTuple):
    """A block held in memory, written with the header: ``data`` at ``target``."""

    data: bytes
    target: int
    framed: bool = False


def split_sources(sources: Mapping[int, InMemory | BlockCopy]
                  ) -> tuple[list[InMemory], dict[int, BlockCopy]]:
    """Blocks put at their places (:func:`placed`), by block number, as what the header's
    writer writes (blocks in memory) and what the copies do (blocks in part files, by block
    number)."""
    memory = [source for source in sources.values() if isinstance(source, InMemory)]
    copies = {index: source for index, source in sources.items()
              if isinstance(source, BlockCopy)}
    return memory, copies


def placed(source: bytes | tuple[str, int, int], target: int, framed: bool
           ) -> InMemory | BlockCopy:
    """A block's bytes, or its record in a part file (part, offset, length: a
    :class:`~eoscale.io.blocks.BlockRecord`), put at ``target``."""
    if isinstance(source, bytes):
        return InMemory(source, target, framed)
    part, offset, length = source
    return BlockCopy(part, offset, length, target, framed)


def write_header(path: str | os.PathLike, header: bytes, size: int,
                 memory: Iterable[InMemory] = (), *,
                 display: str | os.PathLike | None = None) -> None:
    """Create the file at ``path`` (the caller stages it) with ``header`` at its start and the
    blocks held in ``memory`` at their places, ``size`` bytes long (the other blocks' bytes left
    for :func:`copy_blocks`). A failure to write is a RasterError naming ``display``."""
    _write_file(path, "wb", [(0, header)], memory, size, display)


def finish_in_place(path: str | os.PathLike, head: bytes, ifd: tuple[int, bytes],
                    memory: Iterable[InMemory] = (), *,
                    display: str | os.PathLike | None = None) -> None:
    """Finish the file at ``path`` whose blocks were written into it (the caller stages it):
    ``head`` at its start, the blocks held in ``memory`` at their places, and ``ifd`` (its
    offset, its bytes) last, the file ending with it (the other blocks' bytes left for
    :func:`copy_blocks`). A failure to write is a RasterError naming ``display``."""
    at, data = ifd
    _write_file(path, "r+b", [(0, head), (at, data)], memory, at + len(data), display)


def _write_file(path: str | os.PathLike, mode: str, pieces: Iterable[tuple[int, bytes]],
                memory: Iterable[InMemory], size: int,
                display: str | os.PathLike | None) -> None:
    """Open ``path`` in ``mode``, write ``pieces`` (offset, bytes) and the blocks of
    ``memory`` at their places, make the file ``size`` bytes long and its holes allocated
    (:func:`preallocate`)."""
    try:
        with open(path, mode) as out:
            descriptor = out.fileno()
            for offset, data in pieces:
                _write_at(descriptor, data, offset)
            for block in memory:
                _write_at(descriptor, _framed(block.data) if block.framed else block.data,
                          block.target - (FRAME if block.framed else 0))
            out.truncate(size)
            preallocate(descriptor, size)
    except OSError as exc:
        raise write_error(Path(path), display, "cannot write", [exc.strerror or str(exc)],
                          exc) from None


#: Linux's fallocate(2) (None: not found, or not Linux), looked up on first use.
_FALLOCATE: list[object] = []
#: What fallocate answers on a filesystem (or kernel) that cannot allocate ahead.
_CANNOT_ALLOCATE = {errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.ENODEV, errno.EPERM}


def _fallocate() -> object:
    if not _FALLOCATE:
        function = None
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL(None, use_errno=True)
                function = getattr(libc, "fallocate64", None) or libc.fallocate
                function.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                                     ctypes.c_int64)
                function.restype = ctypes.c_int
        _FALLOCATE.append(function)
    return _FALLOCATE[0]


def preallocate(descriptor: int, size: int) -> bool:
    """Give the file's first ``size`` bytes their disk blocks now (Linux's ``fallocate``,
    mode 0: the holes read as zeros, the file's size is kept), so that the copies and the
    workers' block writes that follow fill allocated blocks (see the module's docstring);
    whether it did. Where the filesystem cannot (tmpfs can, ext4 and XFS can, an NFS server
    may not) or the system has no ``fallocate``, nothing is done: never ``posix_fallocate``,
    which would write the file's zeros itself. A disk without the room raises the OSError
    (ENOSPC)."""
    function = _fallocate()
    if function is None or size <= 0:
        return False
    while function(descriptor, 0, 0, size) != 0:  # type: ignore[operator]
        code = ctypes.get_errno()
        if code == errno.EINTR:
            continue
        if code in _CANNOT_ALLOCATE:
            return False
        raise OSError(code, os.strerror(code))
    return True


def copy_blocks(path: str | os.PathLike, copies: Sequence[BlockCopy], *,
                display: str | os.PathLike | None = None, sync: bool = False) -> None:
    """Copy ``copies`` into the file at ``path`` (its header written by :func:`write_header`),
    then, with ``sync``, flush the file to its disk (``fdatasync``): the copies done are then in
    the file whichever machine looks (the processes of one machine share its page cache: they
    need no flush). Copies of consecutive bytes of one part to consecutive places are done as
    one. A failure (a full disk, a part shorter than its records) is a RasterError naming
    ``display``."""
    try:
        target = os.open(path, os.O_WRONLY)
        try:
            with contextlib.ExitStack() as stack:
                parts: dict[str, int] = {}
                for run in _runs(sorted(copies, key=lambda copy: copy.target)):
                    first = run[0]
                    if first.part not in parts:
                        parts[first.part] = os.open(first.part, os.O_RDONLY)
                        stack.callback(os.close, parts[first.part])
                    _copy(parts[first.part], target, run)
            if sync:
                getattr(os, "fdatasync", os.fsync)(target)
        finally:
            os.close(target)
    except OSError as exc:
        raise write_error(Path(path), display, "cannot write", [exc.strerror or str(exc)],
                          exc) from None


def _runs(copies: Sequence[BlockCopy]) -> list[list[BlockCopy]]:
    """``copies`` (sorted by place) as runs to copy at once: unframed blocks that follow each
    other both in one part and in the file; a framed block is a run by itself."""
    runs: list[list[BlockCopy]] = []
    for copy in copies:
        if runs and not copy.framed and not runs[-1][-1].framed:
            last = runs[-1][-1]
            if (last.part == copy.part and last.offset + last.length == copy.offset
                    and last.target + last.length == copy.target):
                runs[-1].append(copy)
                continue
        runs.append([copy])
    return runs


def _copy(source: int, target: int, run: Sequence[BlockCopy]) -> None:
    first = run[0]
    length = sum(copy.length for copy in run)
    copy_range(source, target, first.offset, first.target, length)
    if first.framed:  # its size before it, its last 4 bytes after it
        last = os.pread(source, min(FRAME, length), first.offset + max(0, length - FRAME))
        _write_at(target, struct.pack("<I", length), first.target - FRAME)
        _write_at(target, last.rjust(FRAME, b"\0"), first.target + length)


def _framed(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data + data[-FRAME:].rjust(FRAME, b"\0")


def _write_at(descriptor: int, data: bytes, offset: int) -> None:
    written = 0
    while written < len(data):
        written += os.pwrite(descriptor, data[written:], offset + written)


def copy_range(source: int, target: int, source_offset: int, target_offset: int,
               length: int) -> None:
    """Copy ``length`` bytes between two files' offsets: in the kernel where it can
    (``copy_file_range``), else through a buffer."""
    copy = getattr(os, "copy_file_range", None)
    while length > 0 and copy is not None:
        try:
            done = copy(source, target, length, source_offset, target_offset)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                break
            raise
        if done == 0:
            raise OSError(errno.EIO, "part file shorter than its records")
        length, source_offset, target_offset = (length - done, source_offset + done,
                                                target_offset + done)
    while length > 0:
        chunk = os.pread(source, min(length, 1 << 24), source_offset)
        if not chunk:
            raise OSError(errno.EIO, "part file shorter than its records")
        written = os.pwrite(target, chunk, target_offset)
        length, source_offset, target_offset = (length - written, source_offset + written,
                                                target_offset + written)
