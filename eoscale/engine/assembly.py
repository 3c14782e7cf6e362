"""A map's written outputs finished when the map ends: the headers written here, the blocks copied
into place by the workers.

While a map runs, the workers encode the blocks of the tiles they compute, write them at their
place in the staged file or into part files, and send back only where each block lies
(:mod:`eoscale.engine.encoded`). When its last tile is in, :class:`OutputFiles` finishes each
encoded file in three moves, none of which brings a block's bytes into this process:

1. the overview levels no tile could make alone (the coarsest: their pixels span several
   tiles) are made by one worker task (:meth:`~eoscale.engine.overviews.PyramidAssembly.finish`),
   which appends their blocks to its part file and returns their records;
2. this process, which now knows every block's length, computes every block's offset, writes
   each file's header (its IFDs, and GDAL's structural metadata for a COG) and sizes the file
   (:func:`~eoscale.io.blocks.write_geotiff_header`, :func:`~eoscale.io.cog.write_levels_header`;
   for a file written in tile order, its head and IFD only, after its blocks:
   :func:`~eoscale.io.blocks.finish_in_order_geotiff`);
3. the workers copy the blocks from the part files into the files at those offsets
   (:class:`CopyJob`: :func:`~eoscale.io.assembled.copy_blocks`, in the kernel where it can,
   then flushed to disk on a cluster, whose other machines read the files), in parallel,
   through the executor like any step: on the pool, its workers; on a Dask cluster, any worker
   (the parts are on the shared folder); in-process (one worker), this process. The copies are cut by the image's rows (:func:`copy_job`): a task copies the blocks,
   of every output and every level, whose first row lies in its strip of rows, so the tasks are
   about equal and their number is the executor's usual few per worker, whatever the blocks.

So, per output byte, this process reads none and writes only its share of the header: 8 bytes
per block (its offset and length in the IFD; 16 in a BigTIFF) plus the file's metadata, about
5 x 10^-5 of the output for a 256 x 256 deflated float32 block (about 150 KiB); on a cluster it
receives a record per block in the tiles' results (a few tens of bytes: the part's name comes
once per result) and sends six integers per block in the copy job. The
bytes go through the workers and the filesystem: on a cluster, written once into the parts,
read and written again by the copies (3 times the output's bytes over the filesystem, shared
between the workers). On the pool (and in-process) the blocks of a GeoTIFF without overviews go
in tile order, most of them written once, at their place, by the worker that encoded them; the
copies move only the few a worker finished before an earlier tile's size was known. A COG, and
a file with overviews, is assembled from part files everywhere (GDAL's layout puts the
coarsest level first).

The staged files are renamed by the caller only when the whole run succeeds; the part files are
removed in every outcome (:meth:`OutputFiles.close` and :meth:`OutputFiles.abort`); a copy that
fails (a full disk) fails the run with a message naming the file. Any other output is written
as before by a :class:`~eoscale.io.raster.TileWriter` here, from the tiles' pixels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from eoscale.engine.encoded import (
    EncodedTarget,
    encoded_target,
    part_path,
    publish_size,
    remove_parts,
    start_in_order,
)
from eoscale.engine.executors import Executor, run_job
from eoscale.engine.filed import OutputFile
from eoscale.engine.shared import SharedRaster
from eoscale.engine.tasks import Job
from eoscale.engine.tiling import TILES_PER_WORKER, Tile, TileLayout
from eoscale.errors import RasterError
from eoscale.io.assembled import BlockCopy, copy_blocks
from eoscale.io.blocks import (
    BlockLayout,
    BlockRecord,
    finish_in_order_geotiff,
    geotiff_metadata,
    preallocate_geotiff,
    write_geotiff_header,
)
from eoscale.io.raster import GRID_KEYS, TileWriters, write_error
from eoscale.io.runfiles import SHARED_WRITER

#: Copy tasks per worker (each a strip of the image's rows), and at most this many in all.
COPIES_PER_WORKER, MAX_COPY_TASKS = TILES_PER_WORKER, 256

#: Runs a job's chunks on the map's executor to the end (:func:`~eoscale.engine.executors.run_job`).
RunJob = Callable[[Job, Sequence[Sequence[int]]], list[Any]]
#: A level's blocks to copy, by block number, with the level's layout and number (0: the image).
LevelCopies = tuple[BlockLayout, int, Mapping[int, BlockCopy]]


@dataclass
class CopyJob(Job):
    """The copies of a map's encoded files' blocks into place, run by the workers: its tiles are
    strips of the image's rows (``layout``), and tile ``k`` copies ``copies[k]``, rows of (file,
    part, offset in the part, length, offset in the file, framed) indexing ``files`` (staged path
    and the name messages give it) and ``parts``; ``sync``: each file is flushed to its disk
    once copied (:func:`~eoscale.io.assembled.copy_blocks`)."""

    files: tuple[tuple[str, str], ...] = ()
    parts: tuple[str, ...] = ()
    copies: tuple[np.ndarray, ...] = ()
    sync: bool = True

    def run_chunk(self, indices: Sequence[int]) -> Any:
        """Copy the chunk's blocks, file by file (each then flushed to its disk, with
        ``sync``); the bytes copied (never None: a pool's worker answering None has died), or
        the failure (a full disk) naming the file."""
        rows = np.concatenate([self.copies[index] for index in indices])
        for number, (path, display) in enumerate(self.files):
            mine = rows[rows[:, 0] == number]
            if not len(mine):
                continue
            try:
                copy_blocks(path, [BlockCopy(self.parts[part], int(offset), int(length),
                                             int(target), bool(framed))
                                   for _, part, offset, length, target, framed in mine.tolist()],
                            display=display, sync=self.sync)
            except RasterError as exc:
                return self.failure(self.tiles[indices[0]], exc, "write")
        return int(rows[:, 3].sum())


def copy_job(step: str, workers: int, files: Sequence[tuple[str, str, Sequence[LevelCopies]]],
             *, sync: bool = True) -> CopyJob:
    """The :class:`CopyJob` of ``files`` (staged path, display name, the copies of each level)
    for ``workers``: a block goes to the strip of the image's rows that holds its first row (in
    the full-resolution image: a level-``k`` block's row times 2**k)."""
    height, width = max((layout.height, layout.width) for _, _, levels in files
                        for layout, level, _ in levels if level == 0)
    strips = max(1, min(height, MAX_COPY_TASKS, COPIES_PER_WORKER * workers))
    rows_per_strip = math.ceil(height / strips)
    layout = TileLayout(height, width, rows_per_strip, 0, "strips")
    parts: dict[str, int] = {}
    by_strip: list[list[tuple[int, ...]]] = [[] for _ in range(layout.tile_count)]
    for number, (_, _, levels) in enumerate(files):
        for block_layout, level, copies in levels:
            grid_rows, grid_cols = block_layout.grid
            for index, copy in copies.items():
                row = (index % (grid_rows * grid_cols)) // grid_cols
                first = (row * block_layout.block_height) << level
                part = parts.setdefault(copy.part, len(parts))
                by_strip[min(first // rows_per_strip, len(by_strip) - 1)].append(
                    (number, part, copy.offset, copy.length, copy.target, int(copy.framed)))
    return CopyJob(step=step, inputs=(), layout=layout,
                   files=tuple((path, display) for path, display, _ in files),
                   parts=tuple(parts),
                   copies=tuple(np.array(rows, dtype=np.int64).reshape(-1, 6)
                                for rows in by_strip), sync=sync)


class _Assembled:
    """An encoded output's file without overviews: its header written when the map ends, its
    blocks then copied by the workers; or, uncompressed, made now with its header and its blocks'
    places, for the workers to fill as they compute (the blocks a resume takes back from a
    killed run's file are copied to theirs when the map ends)."""

    def __init__(self, profile: Mapping[str, Any], target: OutputFile, encoded: EncodedTarget,
                 tiles: Sequence[Tile], in_order: bool = False):
        self.display = target.display
        self.options = target.options
        # The profile's grid keys only: what a TileWriter gives GDAL, so the metadata is the same.
        self.grid = {key: profile[key] for key in GRID_KEYS if key in profile}
        self.blocks: dict[int, BlockRecord] = {}
        self.sizes: SharedRaster | None = None
        if encoded.layout.compression == "none":
            encoded = replace(encoded, start=preallocate_geotiff(
                encoded.path, encoded.layout, geotiff_metadata(self.grid, self.options),
                display=self.display))
        elif in_order:  # the blocks go in tile order: the workers write them at their places
            self.sizes = start_in_order(encoded.path, str(self.display or encoded.path),
                                        len(tiles))
            encoded = replace(encoded, sizes=self.sizes.ref)
        self.encoded = encoded
        self.order = [index for tile in tiles for index in encoded.layout.window_indices(
            int(tile.core.row_off), int(tile.core.col_off), int(tile.core.height),
            int(tile.core.width))] if in_order else []

    def finish(self, run: RunJob, workers: int = 1) -> None:
        """Nothing left to encode."""

    def took(self, tile: Tile, records: Mapping[int, BlockRecord]) -> None:
        """Keep a tile's records (and its size, where the workers look for it: a tile a
        resume took back, or one this process stored, may come before theirs)."""
        self.blocks.update(records)
        if self.sizes is not None:
            publish_size(self.sizes.array[0, 0], tile.index,
                         sum(record.length for record in records.values()))

    def write_header(self) -> list[LevelCopies]:
        """Write the file's header (blocks in place: check that every block was written);
        the copies left to do."""
        layout = self.encoded.layout
        if self.sizes is not None:  # in tile order, the blocks at their places stay there
            copies = finish_in_order_geotiff(self.encoded.path, layout,
                                             geotiff_metadata(self.grid, self.options),
                                             self.blocks, self.order, display=self.display)
            if copies is not None:
                return [(layout, 0, copies)] if copies else []
            self._as_part()
        if self.encoded.start is None:
            copies = write_geotiff_header(self.encoded.path, layout,
                                          geotiff_metadata(self.grid, self.options),
                                          self.blocks, display=self.display)
            return [(layout, 0, copies)]
        start = self.encoded.start
        missing = layout.block_count - len(self.blocks)
        if missing:  # never a file with blocks left as zeros
            raise RasterError(f"{self.display or self.encoded.path}: {missing} of "
                              f"{layout.block_count} blocks were not written")
        # The blocks a resume took back lie in the killed run's file: copied to their places.
        copies = {index: BlockCopy(record.part, record.offset, record.length,
                                   layout.fixed_offset(start, index))
                  for index, record in self.blocks.items() if record.part != self.encoded.path}
        return [(layout, 0, copies)] if copies else []

    def _as_part(self) -> None:
        """Make the staged file, whose blocks are not all at their places, a part file that
        the file written anew copies them from."""
        path = self.encoded.path
        part = os.fspath(part_path(path, SHARED_WRITER))
        try:
            os.replace(path, part)
        except OSError as exc:
            raise write_error(Path(path), self.display, "cannot write",
                              [exc.strerror or str(exc)], exc) from None
        self.blocks = {index: record._replace(part=part) if record.part == path else record
                       for index, record in self.blocks.items()}

    def release(self) -> None:
        """Free the tiles' sizes (shared memory)."""
        if self.sizes is not None:
            self.sizes.release()


class OutputFiles:
    """The files of a map's written outputs, in the order they were added: each encoded by the
    workers (:func:`~eoscale.engine.encoded.encoded_target`) when the executor's workers write
    files and it can be, else written here by a :class:`~eoscale.io.raster.TileWriter` on
    ``threads`` threads. ``job`` is the map's (its step and tiles).

    A tile's results for these outputs come in that order: block records for an encoded
    output, the core's pixels for the others (:meth:`write`). :meth:`close` finishes every file
    (see the module's docstring); :meth:`abort` closes them raising nothing; both remove every
    part file.
    """

    def __init__(self, job: Job, executor: Executor, *, threads: int = 1):
        self.tiles = job.tiles
        self.step = job.step
        self.executor = executor
        self.on_workers = executor.writes_files
        self._writers = TileWriters(threads=threads,
                                    windows=[tile.core for tile in self.tiles])
        self._outputs: list[Any] = []  # an _Assembled, a PyramidAssembly, or None

    def __bool__(self) -> bool:
        return bool(self._outputs)

    def add(self, profile: Mapping[str, Any], target: OutputFile) -> EncodedTarget | None:
        """Start the file of the next output (the caller stages its path); how the workers
        encode it, or None when its tiles' pixels are to be sent here."""
        pyramid = (target.pyramid.assembly(profile, target, self.tiles)
                   if self.on_workers and target.pyramid is not None else None)
        if pyramid is not None:  # the file with its overviews (eoscale.engine.overviews)
            self._outputs.append(pyramid)
            return pyramid.encoded  # type: ignore[no-any-return]
        encoded = encoded_target(profile, target, self.tiles) if self.on_workers else None
        if encoded is None:
            self._writers.add(profile, target.path, options=target.options,
                              display=target.display)
            self._outputs.append(None)
            return None
        assembled = _Assembled(profile, target, encoded, self.tiles,
                               in_order=self.executor.shares_memory)
        self._outputs.append(assembled)
        return assembled.encoded

    def write(self, tile: Tile, results: Sequence[np.ndarray | dict[int, BlockRecord]]) -> None:
        """Take a tile's ``results``, one per output: records are kept for the assembly, pixels
        are written at the tile's core now."""
        cores = []
        for output, result in zip(self._outputs, results):
            if output is None:
                cores.append(result)
            elif isinstance(output, _Assembled):
                output.took(tile, result)
            else:
                output.blocks.update(result)
        if cores:
            self._writers.write(tile.core, cores)

    def close(self, keep_parts: bool = False) -> None:
        """Finish every file (a failure to, a full disk say, is raised); remove the parts
        (unless ``keep_parts``: a journal recorded their tiles, and removes them once it has
        recorded the step, or at the run's end: a run killed in between takes the tiles back)."""
        self._writers.close()
        assembled = [output for output in self._outputs if output is not None]
        self._release()
        for output in assembled:
            output.finish(self._run, self.executor.workers)
        headers = [output.write_header() for output in assembled]
        files = [(output.encoded.path, output.encoded.display, copies)
                 for output, copies in zip(assembled, headers) if copies]
        if files:
            # Flushed to disk where other machines may read the files (a cluster's workers
            # share no memory: no page cache either); one machine's processes share its own.
            job = copy_job(self.step, self.executor.workers, files,
                           sync=not self.executor.shares_memory)
            self._run(job, [[index] for index, rows in enumerate(job.copies) if len(rows)])
        if not keep_parts:  # a failure above leaves them to the caller's abort
            self._remove_parts()

    def abort(self, keep_parts: bool = False) -> None:
        """Close every file after a failure, raising nothing (the caller discards them), and
        remove the parts (unless ``keep_parts``: a run stopped by a signal whose journal names
        them, :mod:`eoscale.engine.units`)."""
        try:
            self._writers.abort()
        finally:
            self._release()
            if not keep_parts:
                self._remove_parts()

    def _release(self) -> None:
        """Free the boards of the tiles' sizes: every tile is in (or none is coming)."""
        for output in self._outputs:
            if isinstance(output, _Assembled):
                output.release()

    def _run(self, job: Job, chunks: Sequence[Sequence[int]]) -> list[Any]:
        return run_job(self.executor, job, chunks)

    def _remove_parts(self) -> None:
        for output in self._outputs:
            if output is not None:
                remove_parts(output.encoded.path)
