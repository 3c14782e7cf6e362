"""Rasters in POSIX shared memory, attachable by name from any worker without copying.

A :class:`RasterRef` is the small picklable description of a raster (segment name, shape, dtype,
profile); a :class:`SharedRaster` is a mapping of it in the current process. The process that creates
a segment owns it and unlinks it; workers only attach and close. Every segment is named
``eoscale_<owner pid>_<random>`` so that leaks are visible in /dev/shm and segments whose owner
died can be told from those of a live run (:func:`cleanup_stale_segments`).
"""

from __future__ import annotations

import copy
import math
import os
import re
import secrets
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np

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


class SharedRaster:
    """A raster ``(bands, rows, cols)`` mapped from a shared-memory segment, with its profile."""

    def __init__(self, ref: RasterRef, shm: shared_memory.SharedMemory, *, owner: bool,
                 readonly: bool = False):
        self.ref = ref
        self._shm: shared_memory.SharedMemory | None = shm
        self.owner = owner
        buffer = shm.buf.toreadonly() if readonly else shm.buf
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
        """Map an existing segment; ``readonly`` gives arrays that cannot be made writeable."""
        return cls(ref, shared_memory.SharedMemory(name=ref.segment), owner=False, readonly=readonly)

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            raise ValueError(f"shared raster '{self.ref.name or self.ref.segment}' is released")
        return self._array

    @property
    def profile(self) -> dict[str, Any]:
        """A copy of the raster's profile."""
        return copy.deepcopy(self.ref.profile)

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def released(self) -> bool:
        return self._shm is None

    def release(self) -> None:
        """Unmap the segment, and unlink it if this process owns it. Idempotent."""
        shm, self._shm, self._array = self._shm, None, None
        if shm is None:
            return
        try:
            shm.close()
        except BufferError:
            pass  # a view of the array is still referenced; the mapping goes when it does
        if self.owner:
            try:
                shm.unlink()
            except FileNotFoundError:
                pass

    def __repr__(self) -> str:
        state = "released" if self.released else self.ref.segment
        return f"SharedRaster({self.ref.name!r}, shape={self.ref.shape}, dtype={self.ref.dtype}, {state})"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_segments(directory: Path = SHM_DIR) -> list[tuple[str, int]]:
    """Every eoscale segment in ``directory`` with its owner's pid."""
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = _SEGMENT_RE.match(entry.name)
        if match:
            found.append((entry.name, int(match.group(1))))
    return sorted(found)


def cleanup_stale_segments(directory: Path = SHM_DIR) -> list[str]:
    """Remove the eoscale segments whose owner process is dead; never those of a live run."""
    removed = []
    for name, pid in list_segments(directory):
        if pid != os.getpid() and not pid_alive(pid):
            try:
                (directory / name).unlink()
            except FileNotFoundError:
                continue
            removed.append(name)
    return removed
