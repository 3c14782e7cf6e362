"""Raster files: reading profiles, writing GeoTIFFs atomically (temporary file, then rename)."""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.env
import rasterio.io
from rasterio._err import CPLE_BaseError  # GDAL errors rasterio raises as they are
from rasterio.errors import RasterioError

from eoscale.errors import OutputExistsError, RasterError, check_interrupted
from eoscale.io.paths import is_address, redact
from eoscale.io.runfiles import MADE, STAGED, TEMP_MARK, FolderRecord, parts_of

#: Creation options used unless the user sets their own.
DEFAULT_GTIFF_OPTIONS: dict[str, Any] = {
    "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate",
}
#: Profile keys that describe the grid and pixels (kept when writing); the rest is file layout.
GRID_KEYS = ("dtype", "count", "width", "height", "crs", "transform", "nodata")
#: A write that failed with less free space than this left on its filesystem failed because the
#: filesystem is full (a write that does not fit fills it to the last block before failing).
FULL_BELOW = 1 << 20


def read_profile(path: str | os.PathLike) -> dict[str, Any]:
    """The rasterio profile of a raster file, with ``block_shape`` (rows, cols) of band 1 added."""
    with open_raster(path) as dataset:
        profile = dict(dataset.profile)
        profile["block_shape"] = tuple(dataset.block_shapes[0])
    return profile


@contextlib.contextmanager
def open_raster(path: str | os.PathLike) -> Iterator[rasterio.io.DatasetReader]:
    """Open a raster for reading; a missing file, an address that does not answer, or anything
    GDAL cannot read is a RasterError naming it (without credentials)."""
    if is_address(path):
        address = redact(os.fspath(path))
        try:
            dataset = rasterio.open(os.fspath(path))
        except RasterioError as exc:
            raise RasterError(f"cannot open {address}: unreachable, missing or not a raster "
                              f"({redact(str(exc))})") from None
    else:
        path = Path(path)
        if not path.exists():
            raise RasterError(f"file not found: {path}")
        try:
            dataset = rasterio.open(path)
        except RasterioError as exc:
            raise RasterError(f"cannot open {path} as a raster: {exc}") from None
    with dataset:
        yield dataset


def default_output_profile(template: Mapping[str, Any], count: int, dtype: np.dtype | str) -> dict[str, Any]:
    """A copy of ``template`` for ``count`` bands of ``dtype``; nodata kept only if ``dtype`` can hold it."""
    profile = dict(template, count=int(count), dtype=np.dtype(dtype).name)
    profile["nodata"] = nodata_for(template.get("nodata"), dtype)
    return profile


def nodata_for(nodata: Any, dtype: np.dtype | str) -> Any:
    """``nodata`` if a pixel of ``dtype`` can hold it exactly, else None."""
    if nodata is None:
        return None
    dtype = np.dtype(dtype)
    value = float(nodata)
    if dtype.kind == "f":
        return value if math.isnan(value) or np.isfinite(dtype.type(value)) else None
    if dtype.kind in "iu" and value.is_integer():
        info = np.iinfo(dtype)
        return int(value) if info.min <= value <= info.max else None
    if dtype.kind == "b" and value in (0.0, 1.0):
        return int(value)
    return None


def creation_profile(profile: Mapping[str, Any], options: Mapping[str, Any] | None,
                     threads: int = 1) -> dict[str, Any]:
    """The keyword arguments for ``rasterio.open(..., "w")``: the grid keys, the default creation
    options, and the user's options over them (``tiled: false`` drops the default block size:
    the user's ``blockysize`` stays, the rows per strip)."""
    kwargs: dict[str, Any] = {"driver": "GTiff"}
    kwargs.update({key: profile[key] for key in GRID_KEYS if profile.get(key) is not None})
    user = {str(key).lower(): value for key, value in (options or {}).items()}
    kwargs.update(DEFAULT_GTIFF_OPTIONS)
    kwargs.update(user)
    if threads > 1 and "num_threads" not in kwargs:
        kwargs["num_threads"] = threads
    if kwargs.get("tiled") in (False, "NO", "no"):
        for key in ("blockxsize", "blockysize"):
            if not user.get(key):
                kwargs.pop(key, None)
    return kwargs


def check_writable(path: Path, overwrite: bool) -> None:
    """Refuse an existing output unless overwriting, and a folder that cannot be made."""
    if path.is_dir():
        raise RasterError(f"{path}: is a folder")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists (use --overwrite to replace it)")
    parent = nearest_existing(path.parent)
    if not parent.is_dir():
        raise RasterError(f"{path}: cannot create the folder {path.parent} ({parent} is a file)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RasterError(f"{path}: cannot write in {parent} (permission denied)")


def nearest_existing(path: Path) -> Path:
    """``path`` if it exists, else its nearest parent that does."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        try:
            created.mkdir()
        except OSError as exc:
            raise RasterError(f"cannot create the folder {created} ({exc.strerror})") from None
    return list(reversed(missing))


def temporary_path(path: Path) -> Path:
    """A hidden sibling of ``path`` to write to before the rename."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


class Staging:
    """Outputs written to temporary siblings, renamed into place together only on success.

    So a run that fails leaves neither a partial file at an output path nor a replaced one: every
    existing output stays as it was until ``commit()``; ``discard()`` (also on leaving the ``with``
    block without a commit) removes the temporary files and their part files. The folders they
    lie in are noted in this process's :class:`~eoscale.io.runfiles.FolderRecord` first, so that
    a cleanup finds them after a kill.

    A run stopped by a signal that keeps its finished work for a resume calls :meth:`keep`
    first: nothing is renamed, and the files its journal names are not removed; a resumed run :meth:`adopt`-s the staged files
    a killed run's journal names.
    """

    def __init__(self, overwrite: bool = False):
        self.overwrite = overwrite
        self._staged: dict[Path, Path] = {}
        self._made: list[Path] = []
        self._record = FolderRecord()

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()

    @property
    def files(self) -> dict[Path, Path]:
        """The staged file of each output path staged so far."""
        return dict(self._staged)

    def keep(self, files: set[Path]) -> None:
        """Leave the staged ``files`` (and their parts) where they are: a run stopped by a
        signal, resumable from its journal, which names them (and through which a clean-up
        finds them); discard the others now (a step stopped in the middle)."""
        self._staged = {path: temp for path, temp in self._staged.items() if temp not in files}
        self.discard(keep=files)

    def adopt(self, path: str | os.PathLike, temp: str | os.PathLike) -> None:
        """Take a killed run's staged file ``temp`` of ``path`` as this run's (a resume)."""
        path = Path(path)
        self._record.note(path.parent, STAGED)
        self._staged[path] = Path(temp)

    def check(self, path: str | os.PathLike) -> Path:
        """Check that ``path`` may be written, before any work is done."""
        path = Path(path)
        check_writable(path, self.overwrite)
        return path

    def stage(self, path: str | os.PathLike) -> Path:
        """The temporary path to write ``path``'s content to (its folder is made if needed)."""
        path = self.check(path)
        made = make_folders(path.parent)
        self._made += made
        earlier = self._staged.pop(path, None)
        for old in (earlier, *parts_of(earlier)) if earlier is not None else ():
            with contextlib.suppress(FileNotFoundError):
                old.unlink()  # staged again (a step a resume computes again)
        for folder in made:
            self._record.note(folder, MADE)
        self._record.note(path.parent, STAGED)
        temp = self._staged[path] = temporary_path(path)
        return temp

    def staged(self, path: str | os.PathLike) -> Path:
        """The temporary file ``path`` was staged to."""
        return self._staged[Path(path)]

    def commit(self) -> list[Path]:
        """Rename every staged file into place; a rename that fails is a RasterError naming its
        output (those renamed before it stay in place, the others are discarded). Nothing is
        renamed once a signal has stopped the run (:func:`~eoscale.errors.check_interrupted`)."""
        check_interrupted()
        done = []
        for path, temp in list(self._staged.items()):
            try:
                os.replace(temp, path)
            except OSError as exc:
                raise write_error(path, None, "cannot move the finished file into place",
                                  [exc.strerror or str(exc)], exc) from None
            del self._staged[path]
            done.append(path)
        self._made = []
        self._record.close()
        return done

    def discard(self, keep: set[Path] | frozenset[Path] = frozenset()) -> None:
        """Remove the temporary files and their part files (a worker stopped late may have
        appended to one after its map removed them), but those in ``keep``, and the folders
        made for them if they are empty; then this process's record of them."""
        staged, self._staged = self._staged, {}
        for temp in staged.values():
            for path in (temp, *parts_of(temp)):
                if path in keep:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        made, self._made = self._made, []
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._record.close()


class _GdalFailures(logging.Handler):
    """The failures GDAL reports in this thread while this handler listens, as rasterio logs
    them (at INFO, on ``rasterio._env``) when it does not raise them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if (record.thread == self.thread and record.levelno == logging.INFO
                and str(record.msg).startswith("GDAL signalled an error")):
            args = record.args if isinstance(record.args, tuple) else ()
            self.messages.append(str(args[-1]) if args else record.getMessage())


@contextlib.contextmanager
def writing(path: str | os.PathLike, display: str | os.PathLike | None = None,
            what: str = "cannot write") -> Iterator[None]:
    """GDAL writes ``path`` inside the block; any failure becomes a RasterError naming
    ``display`` (else ``path``) and saying ``what`` could not be done.

    GDAL writes most blocks of a file when it closes it, and rasterio does not raise the
    failures of a close (a full disk, say): it only logs them. So this listens to that log while
    the block runs, and a failure logged there fails the write as a raised one does; without it
    a truncated file would pass for a written one. A failure on a full filesystem says so.
    """
    logger = logging.getLogger("rasterio._env")
    failures = _GdalFailures()
    level = logger.level
    logger.addHandler(failures)
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)
    try:
        with rasterio.env.env_ctx_if_needed():  # where GDAL's errors reach rasterio's log
            yield
    except (RasterioError, CPLE_BaseError, ValueError, TypeError, OSError) as exc:
        raise write_error(path, display, what, failures.messages[:1] or [str(exc)], exc) from None
    finally:
        logger.removeHandler(failures)
        logger.setLevel(level)
    if failures.messages:
        raise write_error(path, display, what, failures.messages[:1])


def write_error(path: str | os.PathLike, display: str | os.PathLike | None, what: str,
                details: list[str], exc: BaseException | None = None) -> RasterError:
    """The error of a write of ``path`` that failed: on a full filesystem it says so, otherwise
    it gives GDAL's (or the system's) reason."""
    name = display or path
    if disk_full(Path(path), exc):
        return RasterError(f"{name}: {what}: no space left on device (the filesystem holding "
                           "it is full)")
    return RasterError(f"{name}: {what} ({'; '.join(details)})")


def disk_full(path: Path, exc: BaseException | None = None) -> bool:
    """Whether a write of ``path`` that failed (with ``exc``) failed for want of space."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        stats = os.statvfs(nearest_existing(path.parent))
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < FULL_BELOW


def write_text(path: Path, text: str, display: str | os.PathLike | None = None) -> None:
    """Write ``text`` to ``path`` as UTF-8; a failure is a RasterError naming ``display``."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise write_error(path, display, "cannot write", [exc.strerror or str(exc)], exc) from None


def write_atomically(path: str | os.PathLike, overwrite: bool,
                     write: Callable[[Path], None]) -> Path:
    """Write ``path`` with ``write(temporary path)``, then rename it into place (see
    :class:`Staging`): a failure leaves neither a partial file nor a replaced one."""
    with Staging(overwrite) as staging:
        write(staging.stage(path))
        staging.commit()
    return Path(path)


def write_geotiff(array: np.ndarray, profile: Mapping[str, Any], path: str | os.PathLike, *,
                  options: Mapping[str, Any] | None = None, threads: int = 1,
                  display: str | os.PathLike | None = None) -> Path:
    """Write ``array`` (bands, rows, cols) as a GeoTIFF at ``path`` (errors name ``display``)."""
    path = Path(path)
    kwargs = creation_profile(profile, options, threads)
    with writing(path, display), rasterio.open(path, "w", **kwargs) as dataset:
        dataset.write(array)
    return path


class TileWriter:
    """A GeoTIFF written window by window as tiles are computed, never held whole.

    One writer, in the calling process (GDAL cannot share a file between processes); windows that
    cover whole blocks of the file are compressed and written as they come (GDAL's block cache
    does not keep them), on ``threads`` threads. ``BIGTIFF=IF_SAFER`` unless the options say
    otherwise, so that a file over 4 GB with compression works. The caller stages ``path``.
    """

    def __init__(self, profile: Mapping[str, Any], path: str | os.PathLike, *,
                 options: Mapping[str, Any] | None = None, threads: int = 1,
                 display: str | os.PathLike | None = None):
        self.path = Path(path)
        self.display = str(display or path)
        kwargs = creation_profile(profile, options, threads)
        kwargs.setdefault("bigtiff", "IF_SAFER")
        self.dtype = np.dtype(kwargs["dtype"])
        with writing(self.path, self.display):
            self._dataset: Any = rasterio.open(self.path, "w", **kwargs)

    def write(self, window: Any, data: np.ndarray) -> None:
        """Write ``data`` (bands, rows, cols) at ``window``, cast to the file's dtype."""
        with writing(self.path, self.display, f"cannot write rows {window.row_off}:"
                     f"{window.row_off + window.height}, cols {window.col_off}:"
                     f"{window.col_off + window.width}"):
            self._dataset.write(data.astype(self.dtype, copy=False), window=window)

    def close(self) -> None:
        """Flush and close the file (what is left of its blocks is compressed and written now,
        so a full disk often shows here). Idempotent."""
        dataset, self._dataset = self._dataset, None
        if dataset is not None:
            with writing(self.path, self.display):
                dataset.close()

    def __enter__(self) -> TileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TileWriters:
    """The files a map's outputs are written to as its tiles come (a :class:`TileWriter` each,
    on ``threads`` threads), in the order they were added: a tile's cores go to them in that
    order."""

    def __init__(self, *, threads: int = 1):
        self.threads = threads
        self._writers: list[TileWriter] = []

    def __bool__(self) -> bool:
        return bool(self._writers)

    def add(self, profile: Mapping[str, Any], path: str | os.PathLike, *,
            options: Mapping[str, Any] | None = None,
            display: str | os.PathLike | None = None) -> None:
        """Create the file of the next output (the caller stages ``path``)."""
        self._writers.append(TileWriter(profile, path, options=options, threads=self.threads,
                                        display=display))

    def write(self, window: Any, cores: Sequence[np.ndarray]) -> None:
        """Write a tile's ``cores`` at ``window``, one to each file."""
        for writer, core in zip(self._writers, cores):
            writer.write(window, core)

    def close(self) -> None:
        """Finish every file (a failure to, a full disk say, is raised)."""
        for writer in self._writers:
            writer.close()

    def abort(self) -> None:
        """Close every file after a failure, raising nothing (the caller discards them)."""
        for writer in self._writers:
            with contextlib.suppress(Exception):
                writer.close()
