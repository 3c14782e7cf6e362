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
from rasterio.windows import Window

from eoscale.errors import OutputExistsError, RasterError, begin_commit, check_interrupted
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
        raise OutputExistsError(f"{path}: already exists (use --overwrite, or overwrite=True "
                                "from Python, to replace it)")
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
        """Rename every staged file into place, and remove any part file still named after it
        (blocks a killed run appended after its journal's last record, which the resumed run
        computed again); a rename that fails is a RasterError naming its output (those renamed
        before it stay in place, the others are discarded). Nothing is renamed once a signal
        has stopped the run (:func:`~eoscale.errors.check_interrupted`); once they are being
        renamed, a signal no longer stops it (:func:`~eoscale.errors.begin_commit`)."""
        check_interrupted()
        begin_commit()
        done = []
        for path, temp in list(self._staged.items()):
            try:
                os.replace(temp, path)
            except OSError as exc:
                raise write_error(path, None, "cannot move the finished file into place",
                                  [exc.strerror or str(exc)], exc) from None
            del self._staged[path]
            done.append(path)
            for part in parts_of(temp):  # a killed run's part its journal did not name yet
                with contextlib.suppress(FileNotFoundError):
                    part.unlink()
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
        raise write_error(path, display, what, failures.messages[:1] or [str(exc)], exc,
                          failures.messages) from None
    finally:
        logger.removeHandler(failures)
        logger.setLevel(level)
    if failures.messages:
        raise write_error(path, display, what, failures.messages[:1], said=failures.messages)


def write_error(path: str | os.PathLike, display: str | os.PathLike | None, what: str,
                details: list[str], exc: BaseException | None = None,
                said: Sequence[str] = ()) -> RasterError:
    """The error of a write of ``path`` that failed: on a full filesystem it says so, otherwise
    it gives GDAL's (or the system's) reason (``details``; ``said``: every message GDAL gave)."""
    name = display or path
    if disk_full(Path(path), exc, [*details, *said]):
        return RasterError(f"{name}: {what}: no space left on device (the filesystem holding "
                           "it is full)")
    return RasterError(f"{name}: {what} ({'; '.join(details)})")


def disk_full(path: Path, exc: BaseException | None = None, said: Sequence[str] = ()) -> bool:
    """Whether a write of ``path`` that failed (with ``exc``; GDAL having ``said`` these
    messages) failed for want of space: the system said so (ENOSPC, EDQUOT), or GDAL's
    messages did; a system error of another kind did not; else (GDAL's errors carry no
    errno) whether the filesystem now has less than :data:`FULL_BELOW` free."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if any(os.strerror(errno.ENOSPC) in text or os.strerror(errno.EDQUOT) in text
           for text in said):
        return True
    if isinstance(exc, OSError) and exc.errno is not None:
        return False
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

    One writer, in the calling process (GDAL cannot share a file between processes). GDAL is
    given whole blocks only, each once, in the order of the file's block index (row by row;
    a strip is a block): the windows' pixels wait in a buffer here (:class:`_BlockBuffer`)
    until their block is complete and every block before it has been written. A window that is
    part of a block, handed to GDAL, sits in GDAL's block cache, which the run caps: GDAL then
    flushes the half-filled block compressed, reads it back when the rest comes, and appends it
    again, so the file grows dead bytes and its bytes depend on the order the tiles came in.
    Whole blocks in a fixed order are compressed once and appended in that order, on
    ``threads`` threads too (GDAL writes its threads' results in the order it submitted them),
    so two runs write the same bytes whatever the workers' timing.

    ``windows``: the windows that will be written, if known (they must not overlap): a block
    they cover only in part is written once those parts are in (the rest is nodata, else 0, as
    GDAL fills it), and a block they miss is left to GDAL; without them every pixel is expected
    once. A window over a block already written goes to GDAL as it is (correct, not compact).
    ``BIGTIFF=IF_SAFER`` unless the options say otherwise, so that a file over 4 GB with
    compression works. The caller stages ``path``.
    """

    def __init__(self, profile: Mapping[str, Any], path: str | os.PathLike, *,
                 options: Mapping[str, Any] | None = None, threads: int = 1,
                 display: str | os.PathLike | None = None,
                 windows: Sequence[Any] | None = None):
        self.path = Path(path)
        self.display = str(display or path)
        kwargs = creation_profile(profile, options, threads)
        kwargs.setdefault("bigtiff", "IF_SAFER")
        self.dtype = np.dtype(kwargs["dtype"])
        with writing(self.path, self.display):
            self._dataset: Any = rasterio.open(self.path, "w", **kwargs)
        dataset = self._dataset
        fill = nodata_for(dataset.nodata, self.dtype)
        # Band-interleaved bands are planes of their own: one window over several blocks
        # would have GDAL write a band's blocks before the next band's, in an order that
        # depends on how the blocks were grouped; block by block, it does not.
        self._buffer = _BlockBuffer(
            dataset.height, dataset.width, dataset.count, self.dtype,
            tuple(dataset.block_shapes[0]), 0 if fill is None else fill,
            windows=None if windows is None else [_bounds(window) for window in windows],
            grouped=dataset.count == 1 or dataset.interleaving is None
            or dataset.interleaving.name.lower() == "pixel")

    def write(self, window: Any, data: np.ndarray) -> None:
        """Take ``data`` (bands, rows, cols) at ``window``, cast to the file's dtype; give GDAL
        the blocks it completes (with those waiting for it, in block order)."""
        with writing(self.path, self.display, f"cannot write rows {window.row_off}:"
                     f"{window.row_off + window.height}, cols {window.col_off}:"
                     f"{window.col_off + window.width}"):
            self._buffer.take(_bounds(window), data, self._write)

    def _write(self, window: Any, data: np.ndarray) -> None:
        self._dataset.write(data.astype(self.dtype, copy=False), window=window)

    @property
    def held_bytes(self) -> int:
        """The bytes of pixels waiting here for their blocks to be complete."""
        return self._buffer.nbytes

    def close(self) -> None:
        """Write the blocks still waiting (a window left out: nodata where it would have been),
        then flush and close the file (a full disk often shows here). Idempotent."""
        dataset, self._dataset = self._dataset, None
        if dataset is not None:
            with writing(self.path, self.display):
                try:
                    self._buffer.flush(
                        lambda window, data: dataset.write(data, window=window))
                finally:
                    dataset.close()

    def __enter__(self) -> TileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: A window as (row_off, col_off, height, width) in pixels.
Bounds = tuple[int, int, int, int]
#: Where :class:`_BlockBuffer` hands pixels on: a rasterio window and (bands, rows, cols).
BlockSink = Callable[[Any, np.ndarray], None]


def _bounds(window: Any) -> Bounds:
    return (int(window.row_off), int(window.col_off), int(window.height), int(window.width))


def _spans(start: int, stop: int, size: int) -> tuple[int, int, np.ndarray]:
    """The blocks of ``size`` pixels that pixels ``start:stop`` of an axis touch (first, last
    + 1) and how many of those pixels each holds."""
    first, last = start // size, (stop - 1) // size + 1
    edges = np.arange(first, last + 1) * size
    return first, last, np.minimum(edges[1:], stop) - np.maximum(edges[:-1], start)


class _BlockBuffer:
    """The pixels of a file's blocks not yet written, and the order they are written in.

    Blocks are numbered as the file's block index numbers them: row by row (``block``: rows,
    cols; a strip is a block as wide as the image). The buffer holds whole image rows, from the
    top of the first block not yet written down to the lowest window taken: about a row of
    blocks and a row of tiles when the windows come nearly in order (a window far ahead makes
    it taller). A block is written once it holds the pixels expected of it (``windows``'
    pixels in it, else all) and every block before it has been; consecutive ready blocks of a
    block row (and consecutive strips) go in one window when ``grouped``, else one by one.
    """

    def __init__(self, height: int, width: int, count: int, dtype: np.dtype,
                 block: tuple[int, int], fill: Any, *, windows: Sequence[Bounds] | None,
                 grouped: bool):
        self.height, self.width, self.count, self.dtype = height, width, count, dtype
        self.block_height, self.block_width = block
        self.fill, self.grouped = fill, grouped
        rows = -(-height // self.block_height)
        cols = -(-width // self.block_width)
        self.taken = np.zeros((rows, cols), np.int64)
        if windows is None:
            self.expected = np.outer(_spans(0, height, self.block_height)[2],
                                     _spans(0, width, self.block_width)[2])
        else:
            self.expected = np.zeros((rows, cols), np.int64)
            for row, col, rows_, cols_ in windows:
                (r0, r1, down), (c0, c1, across) = (_spans(row, row + rows_, self.block_height),
                                                    _spans(col, col + cols_, self.block_width))
                self.expected[r0:r1, c0:c1] += np.outer(down, across)
        self.next = 0  # the first block, in block order, not yet written
        self.top = 0  # the image row the buffer starts at: the top of block ``next``'s row
        self.pixels = np.empty((count, 0, width), dtype)

    @property
    def nbytes(self) -> int:
        return int(self.pixels.nbytes)

    def take(self, bounds: Bounds, data: np.ndarray, sink: BlockSink) -> None:
        """Keep ``data`` (bands, rows, cols) at ``bounds``, then write the blocks it makes
        ready (to ``sink``). Its part over blocks already written goes to ``sink`` as it is."""
        row, col, rows, cols = bounds
        if rows < 1 or cols < 1:
            return
        r0, r1, down = _spans(row, row + rows, self.block_height)
        c0, c1, across = _spans(col, col + cols, self.block_width)
        numbers = (np.arange(r0, r1)[:, None] * self.taken.shape[1] + np.arange(c0, c1))
        late = numbers < self.next
        for r, c in zip(*np.nonzero(late)):  # a window over blocks written already: rare
            self._write_late(bounds, data, r0 + int(r), c0 + int(c), sink)
        self.taken[r0:r1, c0:c1] += np.where(late, 0, np.outer(down, across))
        start = max(row, self.top)
        if start < row + rows:
            self._hold(row + rows)
            self.pixels[:, start - self.top:row + rows - self.top, col:col + cols] = \
                data[:, start - row:]
        self._write_ready(sink)

    def flush(self, sink: BlockSink) -> None:
        """Write every block not yet written that holds a pixel taken (the rest of it nodata,
        else 0), in block order: the windows expected did not all come."""
        self.expected = np.minimum(self.expected, self.taken)
        self._write_ready(sink)
        self.pixels = np.empty((self.count, 0, self.width), self.dtype)

    def _write_late(self, bounds: Bounds, data: np.ndarray, r: int, c: int,
                    sink: BlockSink) -> None:
        row, col, rows, cols = bounds
        top, bottom = max(row, r * self.block_height), min(row + rows, (r + 1) * self.block_height)
        left, right = max(col, c * self.block_width), min(col + cols, (c + 1) * self.block_width)
        sink(Window(left, top, right - left, bottom - top),
             data[:, top - row:bottom - row, left - col:right - col])

    def _hold(self, bottom: int) -> None:
        """Grow the buffer down to image row ``bottom`` (new rows hold the fill value)."""
        held = self.pixels.shape[1]
        if self.top + held >= bottom:
            return
        grown = np.full((self.count, bottom - self.top, self.width), self.fill, self.dtype)
        grown[:, :held] = self.pixels
        self.pixels = grown

    def _write_ready(self, sink: BlockSink) -> None:
        """Write the blocks from ``next`` on that are ready, in block order, then drop the
        buffer's rows above the first block still waiting."""
        taken, expected = self.taken.ravel(), self.expected.ravel()
        start = self.next
        while self.next < taken.size and taken[self.next] >= expected[self.next]:
            self.next += 1
        if self.next == start:
            return
        for window in self._windows(start, self.next):
            self._hold(int(window.row_off + window.height))
            rows = slice(int(window.row_off) - self.top,
                         int(window.row_off + window.height) - self.top)
            sink(window, self.pixels[:, rows, int(window.col_off):
                                     int(window.col_off + window.width)])
        blocks_across = self.taken.shape[1]
        top = min(self.height, self.next // blocks_across * self.block_height)
        if top > self.top:
            self.pixels = self.pixels[:, top - self.top:].copy()
            self.top = top

    def _windows(self, start: int, stop: int) -> Iterator[Any]:
        """The windows that write blocks ``start:stop`` in block order (those expecting no
        pixel are left to GDAL): runs of a block row, consecutive strips, or single blocks."""
        across = self.taken.shape[1]
        expected = self.expected.ravel()
        runs: list[list[int]] = []  # [first row, last row + 1, first col, last col + 1]
        for number in range(start, stop):
            if not expected[number]:
                continue
            r, c = divmod(number, across)
            last = runs[-1] if runs and self.grouped else None
            if last is not None and last[0] == r and last[3] == c:  # the next of a block row
                last[3] = c + 1
            elif last is not None and across == 1 and last[1] == r:  # the next strip
                last[1] = r + 1
            else:
                runs.append([r, r + 1, c, c + 1])
        for r0, r1, c0, c1 in runs:
            top, left = r0 * self.block_height, c0 * self.block_width
            bottom = min(self.height, r1 * self.block_height)
            right = min(self.width, c1 * self.block_width)
            yield Window(left, top, right - left, bottom - top)


class TileWriters:
    """The files a map's outputs are written to as its tiles come (a :class:`TileWriter` each,
    on ``threads`` threads), in the order they were added: a tile's cores go to them in that
    order; ``windows``: the map's tile cores, if known (see :class:`TileWriter`)."""

    def __init__(self, *, threads: int = 1, windows: Sequence[Any] | None = None):
        self.threads = threads
        self.windows = windows
        self._writers: list[TileWriter] = []

    def __bool__(self) -> bool:
        return bool(self._writers)

    def add(self, profile: Mapping[str, Any], path: str | os.PathLike, *,
            options: Mapping[str, Any] | None = None,
            display: str | os.PathLike | None = None) -> None:
        """Create the file of the next output (the caller stages ``path``)."""
        self._writers.append(TileWriter(profile, path, options=options, threads=self.threads,
                                        display=display, windows=self.windows))

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
