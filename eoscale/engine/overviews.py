"""A map output's overview levels computed and encoded by the workers, in the same pass as its
pixels: a COG, or a GeoTIFF with overviews, assembled without a second pass over the image.

The worker that computed a tile encodes its core's blocks (as for any encoded output, see
:mod:`eoscale.engine.encoded`) and then, from the core, the tile's pixels of each overview
level (:func:`~eoscale.io.cog.reduce_level`, level after level) for as long as the level is
the tile's own: every level below it halves exactly (even sides) and the tile starts on even
rows and columns of it. Of those levels it encodes the blocks that lie whole in the tile
(``encoded_levels``), into the same part file. The coarser levels' blocks span several tiles:
for them, the tile's pixels of the first level it does not complete (``kept_level``, 1/4**k of
the core's pixels) go into its part file too, raw, and only their place comes back.

When the map ends, the levels no tile completed are made in rounds of worker tasks, one level
a round from the kept level up (:class:`LevelsJob`, run by :meth:`PyramidAssembly.finish`):
the task of each strip of the level's block rows reads the strip's pixels back, raw (the
tiles' kept pixels for the kept level, the previous round's for the others), encodes its
blocks, and keeps its rows of the next level, computed from them, raw in its part file for
the next round. A level the next one does not halve exactly (an odd side) is read whole by one
task, which makes every coarser level from it with GDAL's rules for odd sizes. The main
process then writes the header in GDAL's COG layout (:func:`~eoscale.io.cog.write_levels_header`)
and the workers copy the blocks into place (:mod:`eoscale.engine.assembly`). Why keep arrays
rather than decode the finer level's blocks: they are raw, read back with no decoding, and no
larger than the blocks would be; and a worker never waits for another's tiles. Why rounds of
strips: each level is read once, a strip at a time (no larger than a tile of the map, so a
task holds no more than a worker held during the map; where one row of blocks is larger, square
tiles of whole blocks), and its encoding is shared between the workers. Before, one task made every
level above the kept one from the whole kept level while the other worker waited (W1's COG at
8192 x 8192, 2 workers: 1.2 to 1.6 s after the map; then, in pieces each reading the kept rows
beneath it, 1.0 to 1.3 s, reading the kept level four times over), and the kept level had to
fit one worker (64 MiB: a COG of 65,536 x 65,536 on tiles of 1024 px had its overviews made
after it, by GDAL). Now only a level read whole is bounded (:data:`MAX_KEPT_BYTES`): an
output whose tiles are too small for its blocks, whose first level does not halve exactly,
or with such a level too large, is written as before and its overviews made after it
(:mod:`eoscale.io.layout`).
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from eoscale.engine.encoded import EncodedTarget, PartWriteError, append_to_part
from eoscale.engine.filed import OutputFile
from eoscale.engine.tasks import Job
from eoscale.engine.tiling import Tile, TileLayout, whole_block_size
from eoscale.errors import RasterError
from eoscale.io.assembled import BlockCopy
from eoscale.io.blocks import (
    BlockEncodingError,
    BlockLayout,
    BlockRecord,
    geotiff_metadata,
)
from eoscale.io.cog import (
    RESAMPLINGS,
    Pyramid,
    cog_layout,
    first_sums,
    full_resolution_levels,
    halves_exactly,
    overview_layout,
    reduce_level,
    summed_level,
    with_metadata_item,
    write_levels_header,
)
from eoscale.io.raster import GRID_KEYS

#: The largest level a worker reads whole, to make the levels above it that do not halve it
#: exactly (beyond it, the output's overviews are made after it, as before).
MAX_KEPT_BYTES = 64 << 20
#: The key a tile's kept pixels come back under, with the tile's index.
KEPT = "kept"
#: The key of the sums and counts of valid full-resolution pixels of a tile's kept level,
#: where a level above it is averaged from the full resolution (``PyramidTarget.summed``).
KEPT_SUMS = "kept sums"

Window4 = tuple[int, int, int, int]


@dataclass(frozen=True)
class PyramidTarget(EncodedTarget):
    """What a worker needs to encode a tile of an output with overviews: the full resolution's
    ``layout`` (see :class:`EncodedTarget`), the overview levels' layouts (``levels``: level
    1 first), their ``resampling`` and the ``nodata`` averages leave out, how many levels the
    workers encode (``encoded_levels``), the level whose tile pixels they keep
    (``kept_level``; 0: none, the workers encode every level), and the pixels of the map's
    largest tile (``task_pixels``: a task of the levels' rounds holds no more, see
    :func:`levels_round`), and the levels averaged from the full resolution as GDAL does
    (``summed``: :func:`~eoscale.io.cog.full_resolution_levels`), made from the sums and
    counts of the valid full-resolution pixels each stands for."""

    levels: tuple[BlockLayout, ...] = ()
    resampling: str = "nearest"
    nodata: float | None = None
    encoded_levels: int = 0
    kept_level: int = 0
    task_pixels: int = 0
    summed: tuple[int, ...] = ()

    def append(self, tile: Tile, core: np.ndarray) -> dict[Any, Any]:  # type: ignore[override]
        """Encode the tile's ``core`` and its own overview blocks, keep its pixels of the kept
        level, all in this process's part file; where each lies: block records by (level,
        block number), the kept pixels' record and window under (:data:`KEPT`, tile index)."""
        row, col = int(tile.core.row_off), int(tile.core.col_off)
        encoded = {(0, index): data for index, data
                   in self.layout.encode_window(row, col, core).items()}
        kept: tuple[np.ndarray, Window4] | None = None
        data = core
        sums: np.ndarray | None = None
        for level in range(1, max(self.encoded_levels, self.kept_level) + 1):
            data, sums = self.next_level(level, data, sums)
            top, left = row >> level, col >> level
            if level <= self.encoded_levels:
                blocks = self.levels[level - 1].encode_window(top, left, data)
                encoded.update({(level, index): block for index, block in blocks.items()})
            if level == self.kept_level:
                kept = (data, (top, left, data.shape[1], data.shape[2]))
        chunks: dict[Any, bytes] = dict(encoded)
        kept_sums = kept is not None and self.kept_level + 1 in self.summed
        if kept is not None:
            chunks[(KEPT, tile.index)] = kept[0].tobytes()
            if kept_sums:
                assert sums is not None
                chunks[(KEPT_SUMS, tile.index)] = sums.tobytes()
        records: dict[Any, Any] = append_to_part(self.path, self.display, chunks)
        if kept is not None:
            records[(KEPT, tile.index)] = (records[(KEPT, tile.index)], kept[1])
            if kept_sums:
                records[(KEPT_SUMS, tile.index)] = (records[(KEPT_SUMS, tile.index)], kept[1])
        return records

    def next_level(self, level: int, data: np.ndarray, sums: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray | None]:
        """Level ``level`` from the level below (``data``; ``sums``: its sums and counts of
        valid full-resolution pixels, from level 1 up while a level above is summed):
        averaged from the full resolution when GDAL does so (``summed``, levels 2 and up),
        else from the level below; and its own sums and counts while a level above it is
        summed (None after)."""
        if not self.summed or level > self.summed[-1]:
            return reduce_level(data, self.resampling, self.nodata), None
        if level == 1:  # made from the full resolution either way
            return reduce_level(data, self.resampling, self.nodata), first_sums(data,
                                                                               self.nodata)
        assert sums is not None
        summed, mean = summed_level(sums, self.layout.dtype, self.nodata)
        return mean, summed if level < self.summed[-1] else None


@dataclass(frozen=True)
class EncodedPyramid:
    """An image output's :class:`~eoscale.io.cog.Pyramid`, as an
    :class:`~eoscale.engine.filed.OutputFile` offers it to the map that writes it
    (:meth:`assembly`)."""

    pyramid: Pyramid

    def assembly(self, profile: Mapping[str, Any], target: OutputFile, tiles: Sequence[Tile]
                 ) -> PyramidAssembly | None:
        """The file's assembly when the workers can encode it and its overviews for ``tiles``
        (the output's real ``profile``: its dtype decides the default resampling), else
        None."""
        made = pyramid_target(self.pyramid, profile, tiles,
                              str(target.display or self.pyramid.path))
        return None if made is None else PyramidAssembly(self.pyramid, profile, made)


def pyramid_target(pyramid: Pyramid, profile: Mapping[str, Any], tiles: Sequence[Tile],
                   display: str) -> PyramidTarget | None:
    """How the workers encode ``pyramid`` for ``tiles``, or None when they cannot (see the
    module's docstring, and :func:`pyramid_refusal` for why)."""
    made = _pyramid(pyramid, profile, [_window(tile) for tile in tiles], display)
    return None if isinstance(made, str) else made


def pyramid_refusal(pyramid: Pyramid, profile: Mapping[str, Any],
                    cores: Sequence[Window4]) -> str | None:
    """Why the workers cannot encode ``pyramid``'s overviews for tile ``cores`` (row, col,
    height, width), so that they are made after the image is written; None: they can."""
    made = _pyramid(pyramid, profile, cores, os.fspath(pyramid.path))
    return made if isinstance(made, str) else None


def _window(tile: Tile) -> Window4:
    core = tile.core
    return int(core.row_off), int(core.col_off), int(core.height), int(core.width)


def _pyramid(pyramid: Pyramid, profile: Mapping[str, Any], cores: Sequence[Window4],
             display: str) -> PyramidTarget | str:
    """:func:`pyramid_target`'s target, or why there is none."""
    resampling = pyramid.resampling_for(profile["dtype"])
    if resampling not in RESAMPLINGS:
        return (f"resampling {resampling} is GDAL's (the workers compute "
                f"{' and '.join(RESAMPLINGS)})")
    try:
        if pyramid.format == "COG":
            layout = cog_layout(profile, pyramid.options)
        else:
            layout = BlockLayout.from_profile(profile, pyramid.options)
    except BlockEncodingError as exc:
        return str(exc)
    if not layout.tiled:
        return "the file is striped, not tiled"
    if not all(layout.is_aligned(*core) for core in cores) or \
            sum(rows * cols for _, _, rows, cols in cores) != layout.height * layout.width:
        return (f"the tiles are not whole blocks of the file's {layout.block_height} x "
                f"{layout.block_width} blocks")
    count = pyramid.level_count(layout)
    levels = tuple(overview_layout(layout, level, pyramid.floor_sizes)
                   for level in range(1, count + 1))
    own = 0  # the levels every tile computes by itself
    while own < count and _tiles_compute(layout, cores, own + 1):
        own += 1
    encoded = 0  # of those, the levels whose blocks lie whole in every tile
    while encoded < own and all(levels[encoded].is_aligned(*_at(core, encoded + 1))
                                for core in cores):
        encoded += 1
    kept = 0 if encoded == count else min(encoded + 1, own)
    if encoded < count and kept == 0:
        if not halves_exactly(layout.height, layout.width, 1):
            return (f"its size {layout.height} x {layout.width} is odd: a level-1 pixel "
                    "straddles two tiles")
        return "its tiles do not start on even rows and columns"
    nodata = profile.get("nodata")
    nodata = None if nodata is None else float(nodata)
    summed = full_resolution_levels(layout, levels, resampling, nodata)
    whole = _read_whole(levels, kept)
    if summed and whole is not None:  # summed: every level from 2 up, so some above it
        return (f"GDAL averages its overview levels from 2 up from the full resolution, "
                f"and level {whole} is not halved exactly by the next")
    if whole is not None:
        size = levels[whole - 1].height * levels[whole - 1].width * layout.count
        if size * np.dtype(layout.dtype).itemsize > MAX_KEPT_BYTES:
            mib = size * np.dtype(layout.dtype).itemsize >> 20
            return (f"its overview level {whole} would take {mib} MiB in the worker making "
                    f"the levels above it, which do not halve it exactly (at most "
                    f"{MAX_KEPT_BYTES >> 20} MiB)")
    return PyramidTarget(layout, os.fspath(pyramid.path), display, levels=levels,
                         resampling=resampling, nodata=nodata,
                         encoded_levels=encoded, kept_level=kept,
                         task_pixels=max(rows * cols for _, _, rows, cols in cores),
                         summed=summed)


def _read_whole(levels: Sequence[BlockLayout], kept: int) -> int | None:
    """The level a task of the levels' rounds reads whole (the first from the kept one up
    that the level above it does not halve exactly: an odd side), or None."""
    for level in range(kept, len(levels)) if kept else ():
        if not halves_exactly(levels[level - 1].height, levels[level - 1].width, 1):
            return level
    return None


def _tiles_compute(layout: BlockLayout, cores: Sequence[Window4], level: int) -> bool:
    """Whether each tile computes its pixels of ``level`` by itself."""
    step = 1 << level
    return halves_exactly(layout.height, layout.width, level) and all(
        value % step == 0 for core in cores for value in core)


def _at(core: Window4, level: int) -> Window4:
    return core[0] >> level, core[1] >> level, core[2] >> level, core[3] >> level


@dataclass
class LevelsJob(Job):
    """A round of the levels no tile could make alone: level ``level`` of an output with
    overviews, made by worker tasks from that level's pixels (``source``: each piece's record
    in a part file and its window in the level: the tiles' kept pixels for the kept level, the
    previous round's for the others). Its tiles are strips of the level's rows (``layout``),
    whole rows of its blocks, or square tiles of whole blocks (:func:`levels_round`). The task
    of a tile reads the tile's pixels only, encodes its blocks (unless the map's tiles did),
    and, when the next level halves this one exactly (``reduces``), computes the tile's pixels
    of it and keeps them, raw, for the next round. When
    the next level does not halve it exactly (``whole``), the round is one task, which reads the
    whole level and makes every coarser level from it (GDAL's rules for odd sizes; such a level
    is bounded: :data:`MAX_KEPT_BYTES`). So each level is read once and the work of a round is
    shared between the workers. Each task appends what it made to its worker's part file; its
    result: the blocks' records by (level, block number), and the kept rows' by (:data:`KEPT`,
    level, tile) with their window."""

    target: PyramidTarget | None = None
    level: int = 0
    source: tuple[tuple[BlockRecord, Window4], ...] = ()
    sums: tuple[tuple[BlockRecord, Window4], ...] = ()

    @property
    def reduces(self) -> bool:
        """Whether the level above this one halves it exactly (its tasks keep their pixels of
        it for the next round)."""
        assert self.target is not None
        return _reduces(self.target, self.level)

    @property
    def whole(self) -> bool:
        """Whether the level above this one does not halve it exactly (one task reads it whole
        and makes every coarser level)."""
        assert self.target is not None
        return _whole(self.target, self.level)

    def run_chunk(self, indices: Sequence[int]) -> Any:
        target = self.target
        assert target is not None
        layouts = [target.layout, *target.levels]
        made: dict[Any, Any] = {}
        kept: dict[Any, Window4] = {}
        try:
            for index in indices:
                core = self.tiles[index].core
                top, left = int(core.row_off), int(core.col_off)
                rows, cols = int(core.height), int(core.width)
                data = self._window(self.source, top, left, rows, cols)
                if self.level > target.encoded_levels:
                    made.update({(self.level, block): blocks for block, blocks in
                                 layouts[self.level].encode_window(top, left, data).items()})
                if self.reduces:
                    sums = (self._window(self.sums, top, left, rows, cols, summed=True)
                            if self.level + 1 in target.summed else None)
                    data, sums = target.next_level(self.level + 1, data, sums)
                    window = (top // 2, left // 2, data.shape[1], data.shape[2])
                    key = (KEPT, self.level + 1, index)
                    made[key] = data.tobytes()
                    kept[key] = window
                    if sums is not None:  # the level above the next is summed too
                        made[(KEPT_SUMS, self.level + 1, index)] = sums.tobytes()
                        kept[(KEPT_SUMS, self.level + 1, index)] = window
                elif self.whole:
                    made.update(self._coarser(layouts, data))
            records: dict[Any, Any] = append_to_part(target.path, target.display, made)
        except RasterError as exc:  # a part file unread, or a full disk
            return self.failure(self.tiles[indices[0]], exc, "write")
        for key, window in kept.items():
            records[key] = (records[key], window)
        return records

    def _window(self, kept: Sequence[tuple[BlockRecord, Window4]], top: int, left: int,
                rows: int, cols: int, summed: bool = False) -> np.ndarray:
        """A window of the level, read back from the pieces ``kept`` holds of it: its pixels,
        or (``summed``) its sums and counts of valid full-resolution pixels."""
        target = self.target
        assert target is not None
        layout = replace(target.levels[self.level - 1], height=rows, width=cols)
        if summed:
            layout = replace(layout, count=2 * layout.count, dtype="float64")
        pieces = kept if top == left == 0 else _shifted(kept, top, left)
        return kept_image(layout, pieces, target.display)

    def _coarser(self, layouts: Sequence[BlockLayout], data: np.ndarray
                 ) -> dict[tuple[int, int], bytes]:
        """Every level above this one, from the whole level ``data``, by (level, block
        number)."""
        target = self.target
        assert target is not None
        blocks: dict[tuple[int, int], bytes] = {}
        for level in range(self.level + 1, len(layouts)):
            data = reduce_level(data, target.resampling, target.nodata,
                                (layouts[level].height, layouts[level].width))
            if level > target.encoded_levels:
                blocks.update({(level, block): made for block, made
                               in encode_all(layouts[level], data).items()})
        return blocks


def _reduces(target: PyramidTarget, level: int) -> bool:
    """Whether ``level`` of ``target`` has a level above it that halves it exactly."""
    made = [target.layout, *target.levels][level]
    return level < len(target.levels) and halves_exactly(made.height, made.width, 1)


def _whole(target: PyramidTarget, level: int) -> bool:
    """Whether ``level`` of ``target`` has a level above it that does not halve it exactly."""
    return level < len(target.levels) and not _reduces(target, level)


def levels_round(target: PyramidTarget, level: int,
                 source: Sequence[tuple[BlockRecord, Window4]], workers: int,
                 sums: Sequence[tuple[BlockRecord, Window4]] = ()) -> LevelsJob:
    """The :class:`LevelsJob` of ``level`` of ``target`` from its pixels ``source``, for
    ``workers``: about two strips of the level per worker, each whole rows of its blocks, none
    of more pixels than a tile of the map (``task_pixels``: what a worker held then); where one
    row of blocks is more, square tiles of whole blocks of about that many pixels; one task,
    the whole level, when a level above it does not halve it exactly."""
    layout = [target.layout, *target.levels][level]
    height, width = layout.height, layout.width
    most = max(target.task_pixels, layout.block_height * layout.block_width)
    block_rows = layout.grid[0]
    per_strip = most // (layout.block_height * width)  # block rows a strip may hold
    if _whole(target, level):  # one task reads the whole level
        tiling = TileLayout(height, width, height, 0, "strips")
    elif per_strip:
        strips = max(1, min(block_rows, max(2 * workers, math.ceil(block_rows / per_strip))))
        tiling = TileLayout(height, width, math.ceil(block_rows / strips) *
                            layout.block_height, 0, "strips")
    else:
        side = whole_block_size(math.isqrt(most), height, width, "tiles",
                                (layout.block_height, layout.block_width))
        assert side is not None  # grown to whole blocks
        tiling = TileLayout(height, width, side, 0, "tiles")
    return LevelsJob(step=f"overviews of {target.display}", inputs=(), layout=tiling,
                     target=target, level=level, source=tuple(source), sums=tuple(sums))


def _shifted(kept: Sequence[tuple[BlockRecord, Window4]], top: int, left: int = 0
             ) -> list[tuple[BlockRecord, Window4]]:
    """``kept`` with its windows moved up by ``top`` rows and left by ``left`` columns (in a
    window of the level starting there)."""
    return [(record, (row - top, col - left, rows, cols))
            for record, (row, col, rows, cols) in kept]


def kept_image(layout: BlockLayout, kept: Sequence[tuple[BlockRecord, Window4]],
               display: str) -> np.ndarray:
    """The image of ``layout`` (the kept level's, or a window of it) from the tiles' ``kept``
    pixels, read back from the part files (raw: no decoding); the pixels of a window outside
    the image are left out, and a window wholly outside it is not read."""
    dtype = np.dtype(layout.dtype)
    image = np.empty((layout.count, layout.height, layout.width), dtype)
    files: dict[str, int] = {}
    try:
        for record, (top, left, rows, cols) in kept:
            first, last = max(top, 0), min(top + rows, layout.height)
            start, end = max(left, 0), min(left + cols, layout.width)
            if first >= last or start >= end:
                continue
            if record.part not in files:
                files[record.part] = os.open(record.part, os.O_RDONLY)
            raw = os.pread(files[record.part], record.length, record.offset)
            if len(raw) != record.length:
                raise OSError(errno.EIO, "part file shorter than its records")
            pixels = np.frombuffer(raw, dtype).reshape(layout.count, rows, cols)
            image[:, first:last, start:end] = \
                pixels[:, first - top:last - top, start - left:end - left]
    except OSError as exc:
        raise PartWriteError(f"{display}: cannot read the overviews' pixels kept in "
                             f"{record.part} ({exc.strerror or exc})") from None
    finally:
        for descriptor in files.values():
            os.close(descriptor)
    return image


class PyramidAssembly:
    """An output with overviews, finished when the map ends from the records its tiles sent
    (``blocks``, filled by :class:`~eoscale.engine.assembly.OutputFiles`)."""

    def __init__(self, pyramid: Pyramid, profile: Mapping[str, Any], encoded: PyramidTarget):
        self.pyramid = pyramid
        self.encoded = encoded
        self.grid = {key: profile[key] for key in GRID_KEYS if key in profile}
        self.blocks: dict[Any, Any] = {}

    def finish(self, run: Callable[[Job, Sequence[Sequence[int]]], list[Any]],
               workers: int = 1) -> None:
        """Have the workers make the levels the tiles left, round after round from the kept
        level up (:func:`levels_round`), through ``run`` (the map's executor, of ``workers``);
        their records join the tiles'."""
        target = self.encoded
        if not target.kept_level:
            return
        level = target.kept_level
        source = [value for key, value in self.blocks.items() if key[0] == KEPT]
        sums = [value for key, value in self.blocks.items() if key[0] == KEPT_SUMS]
        while True:
            job = levels_round(target, level, source, workers, sums)
            source, sums = [], []
            for records in run(job, [[index] for index in range(job.layout.tile_count)]):
                for key, value in records.items():
                    if key[0] == KEPT:
                        source.append(value)
                    elif key[0] == KEPT_SUMS:
                        sums.append(value)
                    else:
                        self.blocks[key] = value
            if not job.reduces:
                return
            level += 1

    def write_header(self) -> list[tuple[BlockLayout, int, dict[int, BlockCopy]]]:
        """Write the file's header (GDAL's COG layout); each level's copies left to do."""
        target = self.encoded
        layouts = [target.layout, *target.levels]
        by_level: list[dict[int, BlockRecord]] = [{} for _ in layouts]
        for key, value in self.blocks.items():
            if key[0] not in (KEPT, KEPT_SUMS):
                by_level[key[0]][key[1]] = value
        cog = self.pyramid.format == "COG"
        metadata = geotiff_metadata(self.grid, None if cog else self.pyramid.options)
        if not cog:  # as GDAL's overview building marks them (see eoscale.io.layout)
            metadata = with_metadata_item(metadata, "resampling", target.resampling,
                                          "rio_overview")
        copies = write_levels_header(target.path, layouts, metadata, by_level,
                                     display=target.display, cog=cog)
        return [(layout, level, copies[level]) for level, layout in enumerate(layouts)]


def encode_all(layout: BlockLayout, data: np.ndarray) -> dict[int, bytes]:
    """Every block of an image ``data`` of ``layout``, by block number."""
    blocks: dict[int, bytes] = {}
    for row, col, (top, left, rows, cols) in layout.windows():
        blocks.update(layout.encode(row, col, data[:, top:top + rows, left:left + cols]))
    return blocks
