"""A map's written outputs encoded by the workers: what a worker needs to encode a tile's blocks
and where it puts them (into part files, or in place).

An output file whose creation options the block encoder handles
(:meth:`~eoscale.io.blocks.BlockLayout.from_profile`) and whose step's tile cores are whole blocks
of it (:meth:`~eoscale.io.blocks.BlockLayout.is_aligned`: the plan aligns a written output's
tiles to its blocks) is *encoded* (:func:`encoded_target`): the worker that computed a tile
encodes the tile's core into the file's blocks and sends back only where each block lies
(:class:`~eoscale.io.blocks.BlockRecord`), never pixels. Where the blocks go depends on the
compression:

- compressed blocks, where the executor's workers share this machine's memory (the pool, or
  this process), go in tile order: the file holds a head (:data:`~eoscale.io.blocks.
  IN_ORDER_HEAD` bytes), then tile 0's blocks, tile 1's, and so on, then its IFD. A worker
  that has encoded tile ``k`` publishes its size on a board in shared memory (one number per
  tile: :func:`tile_place`); if every earlier tile's size is known, it writes the blocks at
  their place in the staged file (``os.pwrite``), else appends them to a part file of its own.
  When the map ends, the head and IFD are written and only the blocks in part files are copied
  to their places (:func:`~eoscale.io.blocks.finish_in_order_geotiff`): on the benchmark's 8192
  x 8192 float32 output, 4 to 32 of 256 blocks, where copying every block took 0.26 to 0.76 s
  of a 10 s run. A chunk is one tile on these executors (up to
  :data:`~eoscale.engine.executors.MAX_LOCAL_CHUNKS` tiles): a chunk of many tiles would hold
  back the sizes the other worker's next tiles wait for (with 4 tiles a chunk, 389 of 1024
  blocks went to part files; with one, 67). The file's bytes do not depend on who wrote which
  tile, or when;
- otherwise (a cluster's workers share no memory with this process) compressed blocks are
  appended to a part file of the worker's own (:func:`part_path`: beside the staged file,
  named after it, the worker's host and its pid, since two machines of a cluster may share a
  pid); when the map ends, the file's header is written from the records and the workers copy
  the blocks into place (:mod:`eoscale.engine.assembly`);
- either way the part files are removed when the map ends (all of them, by name, whichever
  worker wrote them: also those of a worker that died: :func:`remove_parts`), also when it
  fails;
- uncompressed blocks (every spilled image, in scratch files) have sizes known in advance: the
  main process writes the file's header first (:func:`~eoscale.io.blocks.preallocate_geotiff`)
  and the workers write their blocks straight into the file at their fixed places
  (``os.pwrite``), with no part file and no assembly (but for the blocks a resume takes back
  from a killed run's file: copied to their places when the map ends). A tile written twice (a
  task Dask ran again) writes the same bytes at the same places.

A map stopped in the middle (a signal, a tile that failed, a full disk) on a Dask cluster leaves
tasks running: a cancel does not stop a task its worker runs, and such a task would go on
appending its tiles' blocks, re-creating the part files the main process has just removed, where
no one would find them. So a cluster's worker runs a chunk inside :func:`writing_for` its step,
and the step's end reaches it (:func:`eoscale.engine.cluster_worker.forget`, which the main
process waits for before it removes anything): a thread then writes no more blocks of that step
(:class:`StepEndedError`), and an append that was under way when the step ended is taken back
(:func:`append_to_part`): the part file is cut back to its size before it, or removed if the
append made it. Blocks written before stay: a run stopped by a signal keeps the part files its
journal names, for a resume. A write in place opens the file without creating it, so a late one
leaves nothing once the file is removed.

The first tile of a map whose outputs' profiles are learnt from it (computed on a worker and
sent back whole) goes back to the workers with the map's job, and the worker that gets that
tile stores and encodes it like the others: the main process encodes no block.

Records come back only with a task's result: the records of a worker that died while running a
task never arrive (its part file is removed with the others), and the task's tiles, run again
elsewhere, are appended to another part. Every executor whose workers write files the main
process reads (:attr:`~eoscale.engine.executors.Executor.writes_files`: the in-process one, the
pool, a Dask cluster whose workers see the output and scratch folders) writes this way.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from eoscale.engine.filed import OutputFile
from eoscale.engine.shared import RasterRef, SharedRaster
from eoscale.engine.tiling import Tile
from eoscale.errors import RasterError
from eoscale.io.blocks import (
    IN_ORDER_HEAD,
    BlockEncodingError,
    BlockLayout,
    BlockRecord,
    PartFile,
)
from eoscale.io.raster import write_error
from eoscale.io.runfiles import PART_MARK

K = TypeVar("K")

#: The most buffers one ``pwritev`` takes (POSIX guarantees at least 16; Linux takes 1024).
_IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 16

#: One thread of a process appends to its part files at a time (a Dask worker runs several).
_APPENDING = threading.Lock()
#: Whether this process flushes its part files to the disk before it returns their blocks'
#: records (:func:`sync_appends`).
_SYNC_APPENDS = [False]


def sync_appends(on: bool) -> None:
    """Flush appended blocks (and blocks written in place) to the disk before returning their
    records (``on``), as a cluster's worker on another machine than the client must: the
    client flushes the files before its journal records their blocks, but its flush reaches
    only its own machine's cache, and a worker's machine lost after the record would lose
    them."""
    _SYNC_APPENDS[0] = on


class PartWriteError(RasterError):
    """A worker could not write encoded blocks to its part file or in place (a full disk, say)."""


class StepEndedError(PartWriteError):
    """The step a worker writes blocks for has ended (stopped, or failed on another tile): its
    blocks are no longer written (see the module's docstring)."""


#: Per thread: whether the step it runs a chunk of has ended (:func:`writing_for`).
_STEP = threading.local()


@contextlib.contextmanager
def writing_for(ended: Callable[[], bool]) -> Iterator[None]:
    """Inside the block this thread writes blocks only while ``ended()`` is False: a cluster's
    worker running a chunk of a step (``ended`` says whether the main process ended the step);
    outside any, a thread always writes (the pool's workers, whose tasks stop with their
    processes, and this process)."""
    previous = getattr(_STEP, "ended", None)
    _STEP.ended = ended
    try:
        yield
    finally:
        _STEP.ended = previous


def step_ended() -> bool:
    """Whether the step this thread writes blocks for has ended (see :func:`writing_for`)."""
    ended = getattr(_STEP, "ended", None)
    return ended is not None and bool(ended())


def refuse_ended_step(path: str | os.PathLike, display: str) -> None:
    """Raise a :class:`StepEndedError` naming ``path`` if the step this thread writes its
    blocks for has ended."""
    if step_ended():
        raise StepEndedError(f"{display or path}: not writing to {path}: the step has ended "
                             "(stopped, or failed on another tile)")


@dataclass(frozen=True)
class EncodedTarget:
    """What a worker needs to encode a map output: the file's block ``layout``, the staged
    ``path`` (its part files are named after it), the name messages give it (``display``); for
    an uncompressed file, where its blocks start (``start``): they are written in place; for
    a compressed one written in tile order, the board of its tiles' sizes (``sizes``)."""

    layout: BlockLayout
    path: str
    display: str
    start: int | None = None
    sizes: RasterRef | None = None

    def append(self, tile: Tile, core: np.ndarray) -> dict[int, BlockRecord]:
        """Encode the tile's ``core`` (bands, rows, cols, in the file's dtype) and write its
        blocks (at their place in the file when it is known, else appended to this process's
        part file, or in place); where each block now lies, by block number."""
        window = tile.core
        encoded = self.layout.encode_window(int(window.row_off), int(window.col_off), core)
        if self.start is not None:  # uncompressed: every block has its fixed place
            return self._write({index: self.layout.fixed_offset(self.start, index)
                                for index in encoded}, encoded)
        if self.sizes is not None:
            place = tile_place(self.sizes, tile.index, sum(map(len, encoded.values())))
            if place is not None:  # the tile's blocks one after the other from there
                starts = accumulate([len(data) for data in encoded.values()][:-1], initial=place)
                return self._write(dict(zip(encoded, starts)), encoded)
        return append_to_part(self.path, self.display, encoded)

    def _write(self, offsets: Mapping[int, int], encoded: Mapping[int, bytes]
               ) -> dict[int, BlockRecord]:
        """Write each block at its offset in the file (blocks that follow each other, at once);
        where each now lies. A failure to (a full disk) is a :class:`PartWriteError`."""
        runs: list[tuple[int, list[bytes]]] = []
        for index, data in encoded.items():
            if runs and runs[-1][0] + sum(map(len, runs[-1][1])) == offsets[index]:
                runs[-1][1].append(data)
            else:
                runs.append((offsets[index], [data]))
        refuse_ended_step(self.path, self.display)
        try:  # the file is not created: a write once the step ended and the file went fails
            descriptor = os.open(self.path, os.O_WRONLY)
            try:
                for offset, chunks in runs:
                    write_all_at(descriptor, chunks, offset)
                if _SYNC_APPENDS[0]:  # on another machine than the journal's (sync_appends)
                    os.fdatasync(descriptor)
            finally:
                os.close(descriptor)
        except OSError as exc:
            raise PartWriteError(str(write_error(
                self.path, self.display, "cannot write", [exc.strerror or str(exc)], exc))
            ) from None
        return {index: BlockRecord(self.path, offsets[index], len(data))
                for index, data in encoded.items()}


def write_all_at(descriptor: int, chunks: Sequence[bytes], offset: int) -> None:
    """Write ``chunks`` one after the other from ``offset`` of the file, without joining them
    (a tile's blocks: as many bytes again, were they joined), a batch of at most ``IOV_MAX``
    at a time, until every byte is written."""
    views = [memoryview(chunk) for chunk in chunks if len(chunk)]
    while views:
        written = os.pwritev(descriptor, views[:_IOV_MAX], offset)
        if not written:
            raise OSError(errno.EIO, "nothing written")
        offset += written
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def publish_size(known: np.ndarray, index: int, size: int) -> bool:
    """Put tile ``index``'s ``size`` on the board ``known`` (-1: not known yet), unless
    another size is there already: a size once published is never changed. Whether the board
    now holds ``size``."""
    if known[index] < 0:
        known[index] = size
    return bool(known[index] == size)


def tile_place(sizes: RasterRef, index: int, size: int) -> int | None:
    """Publish that tile ``index`` encodes to ``size`` bytes on the board ``sizes`` (one
    number per tile of the map, -1 until its tile is encoded), and where its blocks go in the
    file: after the head and every earlier tile's blocks, or None while an earlier tile's size
    is not known yet (its blocks then go to a part file, and are copied to their place when the
    map ends). A size once published is never changed: a tile encoded again to another size
    (a task run twice) goes to a part file, so the places written never overlap."""
    board = sizes.open()
    try:
        known = board.array[0, 0]
        if not publish_size(known, index, size):
            return None
        before = known[:index]
        if before.size and int(before.min()) < 0:
            return None
        return IN_ORDER_HEAD + int(before.sum())
    finally:
        board.release()


def start_in_order(path: str | os.PathLike, display: str, tiles: int) -> SharedRaster:
    """Start the file at ``path`` (the caller stages it) whose blocks the workers write in tile
    order, at their places (:func:`tile_place`): its first bytes kept for the TIFF head; and
    the board of its ``tiles`` tiles' sizes, in shared memory (released by the caller). A
    failure to write is a RasterError naming ``display``."""
    try:
        with open(path, "wb") as out:
            out.write(b"\0" * IN_ORDER_HEAD)
    except OSError as exc:
        raise write_error(path, display, "cannot write", [exc.strerror or str(exc)],
                          exc) from None
    board = SharedRaster.create({"count": 1, "height": 1, "width": max(1, tiles),
                                 "dtype": "int64"}, name=f"{display}: tile sizes")
    board.array[...] = -1
    return board


def append_to_part(path: str, display: str, chunks: Mapping[K, bytes]) -> dict[K, BlockRecord]:
    """Append ``chunks`` to this process's part file of ``path`` (:func:`part_path`), one thread
    of the process at a time; where each chunk now lies, by its key. A failure to (a full disk)
    is a :class:`PartWriteError` naming the part file and ``display``.

    Nothing is appended once this thread's step has ended (:class:`StepEndedError`), and an
    append during which it ended is taken back, failed or not (:func:`_take_back`): the main
    process, told that the step ended, may have removed the part file already, which the append
    then made again. The step's end is asked again once the bytes are written, so an append
    either was written before the step ended (and the main process, which removes the parts
    only once every worker knows that the step ended, removes its bytes too) or is taken
    back."""
    part = part_path(path)
    with _APPENDING:
        refuse_ended_step(part, display)
        size: int | None = None  # the part's size before this append, once it is open
        try:
            with PartFile(part) as out:
                size = out.end
                records = {key: out.append(data) for key, data in chunks.items()}
                if _SYNC_APPENDS[0]:
                    out.sync()
        except OSError as exc:
            raise PartWriteError(str(write_error(
                part, display, "cannot write", [exc.strerror or str(exc)], exc))) from None
        finally:
            if size is not None and step_ended():
                _take_back(part, size)
        refuse_ended_step(part, display)  # records of blocks just taken back are not returned
        return records


def _take_back(part: Path, size: int) -> None:
    """Cut ``part`` back to ``size`` bytes, its size before an append (blocks appended before
    stay: a stopped run's journal may name them), or remove it if the append made it (``size``
    0); nothing if it is gone. Only this process writes ``part``, under ``_APPENDING``."""
    with contextlib.suppress(FileNotFoundError):
        if size:
            os.truncate(part, size)
        else:
            part.unlink()


def part_path(path: str | os.PathLike, writer: str | None = None) -> Path:
    """The part file that ``writer`` (by default this process: :func:`writer_name`) appends
    ``path``'s blocks to: beside it, so that whatever finds the staged file (its discard, a
    cleanup) finds its parts."""
    path = Path(path)
    return path.with_name(f"{path.name}{PART_MARK}{writer or writer_name()}")


def writer_name(pid: int | None = None) -> str:
    """``<host>-<pid>``: a process that writes part files, among every machine's."""
    host = re.sub(r"[^\w.]+", "_", socket.gethostname())[:64] or "host"
    return f"{host}-{os.getpid() if pid is None else pid}"


def remove_parts(path: str | os.PathLike) -> None:
    """Remove every part file of ``path``, whichever process wrote it."""
    path = Path(path)
    for part in path.parent.glob(f"{glob.escape(path.name)}{PART_MARK}*"):
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


def encoded_target(profile: Mapping[str, Any], target: OutputFile, tiles: Sequence[Tile]
                   ) -> EncodedTarget | None:
    """How the workers encode ``target`` for tiles ``tiles``, or None when they cannot: options
    the block encoder does not handle, a tile core that is not whole blocks of the file, or
    cores that leave pixels out (an explicit layout may: GDAL writes those blocks empty)."""
    try:
        layout = BlockLayout.from_profile(profile, target.options)
    except BlockEncodingError:
        return None
    cores = [tile.core for tile in tiles]
    if not all(layout.is_aligned(int(core.row_off), int(core.col_off), int(core.height),
                                 int(core.width)) for core in cores):
        return None
    if sum(int(core.height) * int(core.width) for core in cores) != layout.height * layout.width:
        return None  # the cores of a layout do not overlap: they cover the image if this holds
    return EncodedTarget(layout, os.fspath(target.path), str(target.display or target.path))
