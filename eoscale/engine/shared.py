"""Rasters in POSIX shared memory, attachable by name from any worker without copying.

A :class:`RasterRef` is the small picklable description of a raster (segment name, shape, dtype,
profile); a :class:`SharedRaster` is a mapping of it in the current process. The process that creates
a segment owns it and unlinks it; workers only attach and close. Every segment is named
``eoscale_<owner pid>_<random>`` so that leaks are visible in /dev/shm and segments whose owner
died can be told from those of a live run (:func:`cleanup_stale_segments`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import mmap
import os
import re
import secrets
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import _posixshmem
import numpy as np
from rasterio.windows import Window

SEGMENT_PREFIX = "eoscale_"
SHM_DIR = Path("/dev/shm")
_SEGMENT_RE = re.compile(r"^eoscale_(\d+)_[0-9a-f]+$")


def new_segment_name() -> str:
    return f"{SEGMENT_PREFIX}{os.getpid()}_{secrets.token_hex(6)}"


@dataclass(frozen=True)
class RasterRef:
    """What a worker needs to attach a shared raster: small, picklable, immutable."""

    segment: str
    shape: tuple[int, int, int]
    dtype: str
    profile: dict[str, Any] = field(compare=False, hash=False)
    name: str = ""

    @property
    def count(self) -> int:
        return self.shape[0]

    @property
    def height(self) -> int:
        return self.shape[1]

    @property
    def width(self) -> int:
        return self.shape[2]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize

    def open(self, *, readonly: bool = False) -> SharedRaster:
        """Map the raster in this process (what a worker does with a reference it received)."""
        return SharedRaster.attach(self, readonly=readonly)


class SharedRaster:
    """A raster ``(bands, rows, cols)`` mapped from a shared-memory segment, with its profile.

    Jobs reach pixels only through ``RasterRef.open``, ``read(window)`` and ``write(window, data)``:
    that is the seam where a streaming store (windows read from and written to files, for rasters
    larger than memory) plugs in.

    The creator maps its segment through :class:`multiprocessing.shared_memory.SharedMemory`, which
    registers it with multiprocessing's resource tracker: if the creator dies without unlinking,
    the tracker unlinks it. Attaching maps the segment directly (``shm_open`` and ``mmap``), without
    registering it, so that no worker's exit can ever unlink a segment the creator still uses.
    """

    def __init__(self, ref: RasterRef, mapping: shared_memory.SharedMemory | mmap.mmap, *,
                 owner: bool):
        self.ref = ref
        self._mapping: shared_memory.SharedMemory | mmap.mmap | None = mapping
        self.owner = owner
        buffer = mapping.buf if isinstance(mapping, shared_memory.SharedMemory) else mapping
        count = math.prod(ref.shape)
        self._array: np.ndarray | None = np.frombuffer(
            buffer, dtype=ref.dtype, count=count).reshape(ref.shape)

    @classmethod
    def create(cls, profile: dict[str, Any], *, name: str = "") -> SharedRaster:
        """Allocate a zero-filled raster for a profile (its count, height, width and dtype)."""
        shape = (int(profile["count"]), int(profile["height"]), int(profile["width"]))
        dtype = np.dtype(profile["dtype"]).name
        size = max(1, math.prod(shape) * np.dtype(dtype).itemsize)
        shm = shared_memory.SharedMemory(name=new_segment_name(), create=True, size=size)
        clean = dict(copy.deepcopy(profile), count=shape[0], height=shape[1], width=shape[2], dtype=dtype)
        return cls(RasterRef(shm.name, shape, dtype, clean, name), shm, owner=True)

    @classmethod
    def attach(cls, ref: RasterRef, *, readonly: bool = False) -> SharedRaster:
        """Map an existing segment; ``readonly`` maps it read-only, so no view can be written."""
        fd = open_segment(ref, os.O_RDONLY if readonly else os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            access = mmap.ACCESS_READ if readonly else mmap.ACCESS_WRITE
            mapping = mmap.mmap(fd, size, access=access)
        finally:
            os.close(fd)
        return cls(ref, mapping, owner=False)

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            raise self._released_error()
        return self._array

    def _released_error(self) -> ValueError:
        return ValueError(f"shared raster '{self.ref.name or self.ref.segment}' is released")

    def read(self, window: Window) -> np.ndarray:
        """The pixels of a window, all bands: a view, without copying."""
        rows, cols = window.toslices()
        return self.array[:, rows, cols]

    def read_private(self, window: Window) -> np.ndarray:
        """The pixels of a window, all bands, as a writable array private to the caller.

        The window's rows are mapped from the segment copy-on-write (``MAP_PRIVATE``): reading
        costs no copy, and only the pages the caller writes are copied, into memory of its own.
        Its writes never reach the segment, nor another private view of it, and every call maps
        the segment's current pixels afresh. The mapping lives as long as the array (or a view
        of it) does.
        """
        if self.released:
            raise self._released_error()
        return private_view(self.ref, window)

    def write(self, window: Window, data: np.ndarray) -> None:
        """Store ``data`` (bands, rows, cols) at a window, cast to the raster's dtype."""
        rows, cols = window.toslices()
        self.array[:, rows, cols] = data

    @property
    def profile(self) -> dict[str, Any]:
        """A copy of the raster's profile."""
        return copy.deepcopy(self.ref.profile)

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def released(self) -> bool:
        return self._mapping is None

    def release(self) -> None:
        """Unmap the segment, and unlink it if this process owns it. Idempotent.

        If a view of the array is still referenced somewhere, the mapping stays until that view
        goes; the segment's name is unlinked all the same, so its memory is freed then.
        """
        mapping, self._mapping, self._array = self._mapping, None, None
        if mapping is None:
            return
        if isinstance(mapping, mmap.mmap):
            with contextlib.suppress(BufferError):
                mapping.close()
            return
        try:
            mapping.close()
        except BufferError:
            # Drop SharedMemory's handles on the mapping (the views keep it alive) and close its
            # descriptor, so that SharedMemory.__del__ has nothing left to fail on.
            mapping._buf = None  # type: ignore[attr-defined]
            mapping._mmap = None  # type: ignore[attr-defined]
            mapping.close()
        if self.owner:
            with contextlib.suppress(FileNotFoundError):
                mapping.unlink()

    def __repr__(self) -> str:
        state = "released" if self.released else self.ref.segment
        return f"SharedRaster({self.ref.name!r}, shape={self.ref.shape}, dtype={self.ref.dtype}, {state})"


def open_segment(ref: RasterRef, flags: int) -> int:
    """A descriptor of a raster's segment, or an error naming the raster if it is gone."""
    try:
        return _posixshmem.shm_open("/" + ref.segment, flags, mode=0o600)
    except FileNotFoundError:
        raise FileNotFoundError(f"shared raster '{ref.name}' ({ref.segment}) does not exist "
                                "any more (released, or its run ended)") from None


def private_view(ref: RasterRef, window: Window) -> np.ndarray:
    """A copy-on-write mapping of a window of a shared raster (:meth:`SharedRaster.read_private`).

    One mapping spans the window's rows of the first band to those of the last (whole rows, from
    a page boundary): pages in between that the window does not touch are never faulted in.
    """
    bands, height, width = ref.shape
    dtype = np.dtype(ref.dtype)
    rows, cols = window.toslices()
    row_bytes = width * dtype.itemsize
    first = rows.start * row_bytes
    end = ((bands - 1) * height + rows.stop) * row_bytes
    if rows.stop <= rows.start or cols.stop <= cols.start:
        return np.zeros((bands, max(0, rows.stop - rows.start), max(0, cols.stop - cols.start)),
                        dtype)
    offset = first - first % mmap.ALLOCATIONGRANULARITY
    fd = open_segment(ref, os.O_RDONLY)
    try:
        mapping = mmap.mmap(fd, end - offset, access=mmap.ACCESS_COPY, offset=offset)
    finally:
        os.close(fd)
    whole_rows = np.ndarray((bands, rows.stop - rows.start, width), dtype, buffer=mapping,
                            offset=first - offset,
                            strides=(height * row_bytes, row_bytes, dtype.itemsize))
    return whole_rows[:, :, cols]


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists and has not exited: a zombie (killed, not yet
    reaped by a parent that is gone, as in a container whose first process reaps nothing) is
    dead, and what it left may be cleaned up or resumed."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True  # no /proc (not Linux), or gone meanwhile: as os.kill said
    return stat[stat.rindex(b")") + 2:][:1] != b"Z"


def list_segments(directory: Path | None = None) -> list[tuple[str, int]]:
    """Every eoscale segment in ``directory`` (:data:`SHM_DIR` when None, read at each call so
    that a test can point it at a folder of its own) with its owner's pid."""
    directory = SHM_DIR if directory is None else directory
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = _SEGMENT_RE.match(entry.name)
        if match:
            found.append((entry.name, int(match.group(1))))
    return sorted(found)


def cleanup_stale_segments(directory: Path | None = None) -> list[str]:
    """Remove the eoscale segments whose owner process is dead; never those of a live run, nor
    another user's (the shared-memory folder is sticky: only its owner may remove it)."""
    directory = SHM_DIR if directory is None else directory
    removed = []
    for name, pid in list_segments(directory):
        if pid != os.getpid() and not pid_alive(pid):
            try:
                (directory / name).unlink()
            except (FileNotFoundError, PermissionError):
                continue
            removed.append(name)
    return removed
