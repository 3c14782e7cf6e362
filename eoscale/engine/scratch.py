"""Scratch files: images spilled to disk because memory would not hold them.

A :class:`Scratch` hands out paths named ``eoscale_<owner pid>_<random>_<image>.tif`` in one
folder (the system's temporary folder unless told otherwise) and removes every one of them when
it closes: after a run's success, its failure, Ctrl-C or SIGTERM (they unwind through it). A run
killed outright leaves them behind; :func:`cleanup_stale_scratch` (``eoscale cleanup``, and every
``eoscale run`` for the default folder) removes those whose owner is dead, never a live run's.
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

#: A scratch file, its GDAL sidecar, or a part file a worker appended its blocks to (named as
#: :func:`eoscale.engine.encoded.part_path` names them: ``.part-<host>-<pid>``).
_SCRATCH_RE = re.compile(r"^eoscale_(\d+)_[0-9a-f]+_.*\.tif(\.aux\.xml|\.part-[\w.]+-\d+)?$")


def default_scratch() -> Path:
    return Path(tempfile.gettempdir())


class Scratch:
    """Paths for spilled images in ``folder``, all removed by :meth:`close`."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder is not None else default_scratch()
        self._paths: list[Path] = []

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
        self._paths.append(path)
        return path

    def remove(self, path: Path) -> None:
        """Remove one scratch file now (its image is released)."""
        for candidate in (path, path.with_name(path.name + ".aux.xml")):
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()

    def close(self) -> None:
        paths, self._paths = self._paths, []
        for path in paths:
            self.remove(path)

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
