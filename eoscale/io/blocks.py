"""GeoTIFF blocks encoded anywhere, and one file assembled from them without decoding them again.

A written output is a grid of TIFF blocks (tiles, or strips of whole rows). :class:`BlockLayout`
is that grid and its encoding (compression, level, predictor, interleave, dtype), made from the
output's profile and creation options the way GDAL's GTiff driver makes them; it is a small
frozen value, so a worker process receives it and encodes the blocks of the pixels it computed
(:meth:`BlockLayout.encode`, or :meth:`BlockLayout.encode_window` for a tile core made of whole
blocks) into the exact bytes the file holds, with no GDAL dataset open. The
bytes reach the file directly or through part files (:class:`PartFile`: appended, each block
a :class:`BlockRecord` of part, offset and length). :func:`write_geotiff_header` then writes the
file's header once (IFD, block offsets and byte counts, and the georeferencing, nodata,
descriptions, tags and colour interpretation of :func:`geotiff_metadata`), sizes the file, and
says where each block in a part goes: the copies, which any process that sees the files runs
(:func:`~eoscale.io.assembled.copy_blocks`: the bytes copied, ``os.copy_file_range`` where the
system has it, never decoded). :func:`assemble_geotiff` does both halves in this process.

Why these libraries. Encoding uses imagecodecs: it compresses a numpy buffer directly with the
libraries GDAL links (zlib/libdeflate, zstd, an LZW writing libtiff's stream) and applies the
TIFF predictors as libtiff does (tifffile, which reads and writes GDAL's files, relies on the
same functions), releasing the GIL, with no GDAL state in the worker. GDAL's own in-memory
encoding would need a dataset per block and hand back a whole TIFF to take the block out of.
The header's metadata, on the other hand, is GDAL's own: :func:`geotiff_metadata` has GDAL write
a one-pixel GeoTIFF with the output's CRS, transform, nodata, descriptions, tags and colour
interpretation, and takes its tags (:func:`first_ifd_entries`), so the keys, GDAL_NODATA and
GDAL_METADATA are byte for byte what GDAL writes for the same output, with no GeoTIFF key
encoder of our own to keep in step with PROJ.

An uncompressed file needs no assembly: its blocks' sizes are known before they are computed,
so :func:`preallocate_geotiff` writes its header first, each block's offset fixed
(:meth:`BlockLayout.fixed_offset`), and the workers write their blocks straight into the file at
those places (``os.pwrite``): what spilled images are.

The header is written by :func:`tiff_header` from a list of IFDs (each a list of tags, chained
in order, all before the blocks), with block offsets chosen by the caller: one IFD here; a COG
(:mod:`eoscale.io.cog`) gives its full-resolution and overview IFDs in that order and places the
coarsest overview's blocks first, with no change to the writer.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import imagecodecs
import numpy as np
import rasterio

from eoscale.io.assembled import (
    BlockCopy,
    copy_blocks,
    finish_in_place,
    placed,
    split_sources,
    write_header,
)
from eoscale.io.raster import GRID_KEYS, creation_profile, write_error

#: TIFF tag codes this module writes itself (the block layout); every other tag of the
#: metadata template is copied.
WIDTH, HEIGHT, COMPRESSION, STRIP_OFFSETS, ROWS_PER_STRIP = 256, 257, 259, 273, 278
STRIP_BYTE_COUNTS, PLANAR_CONFIG, PREDICTOR = 279, 284, 317
TILE_WIDTH, TILE_LENGTH, TILE_OFFSETS, TILE_BYTE_COUNTS = 322, 323, 324, 325
LAYOUT_TAGS = frozenset({WIDTH, HEIGHT, COMPRESSION, STRIP_OFFSETS, ROWS_PER_STRIP,
                         STRIP_BYTE_COUNTS, PLANAR_CONFIG, PREDICTOR, TILE_WIDTH, TILE_LENGTH,
                         TILE_OFFSETS, TILE_BYTE_COUNTS})
#: TIFF field types: code -> bytes per value.
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
              13: 4, 16: 8, 17: 8, 18: 8}
SHORT, LONG, LONG8 = 3, 4, 16
#: TIFF compression codes, by the name of GDAL's COMPRESS option.
COMPRESSIONS = {"none": 1, "lzw": 5, "deflate": 8, "zstd": 50000}
#: GDAL's default levels (ZLEVEL, ZSTD_LEVEL).
DEFAULT_LEVELS = {"deflate": 6, "zstd": 9}
#: The creation options that shape the blocks, read here, and those that shape only the
#: metadata, handed to GDAL's template (:func:`geotiff_metadata`); any other is refused.
LAYOUT_OPTIONS = frozenset({"tiled", "blockxsize", "blockysize", "compress", "zlevel",
                            "zstd_level", "predictor", "interleave", "bigtiff", "num_threads"})
METADATA_OPTIONS = frozenset({"photometric", "alpha", "profile", "geotiff_keys_flavor",
                              "geotiff_version"})
#: libtiff's target strip size when rows per strip are not given (TIFFDefaultStripSize).
DEFAULT_STRIP_BYTES = 8192
#: GDAL's BIGTIFF thresholds on the uncompressed image size (IF_NEEDED: uncompressed files
#: only; IF_SAFER: any).
IF_NEEDED_BYTES, IF_SAFER_BYTES = 4_200_000_000, 2_000_000_000
CLASSIC_LIMIT = 2**32 - 1


class BlockEncodingError(ValueError):
    """An output whose options or dtype the block encoder does not handle (write it with GDAL)."""


class BlockRecord(NamedTuple):
    """Where an encoded block lies: ``length`` bytes at ``offset`` of the part file ``part``."""

    part: str
    offset: int
    length: int


@dataclass(frozen=True)
class BlockLayout:
    """A GeoTIFF's block grid and how each block is encoded.

    Blocks are numbered in the file's order: row by row, and with ``interleave == "band"`` band
    by band (each band its own blocks, the whole of band 1's first). A tile at the right or
    bottom edge is padded to the full tile with zeros, as GDAL pads it; a strip holds whole rows
    and the last one only the rows left.
    """

    height: int
    width: int
    count: int
    dtype: str
    tiled: bool
    block_height: int
    block_width: int
    compression: str
    level: int | None
    predictor: int
    interleave: str
    bigtiff: str

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any],
                     options: Mapping[str, Any] | None = None) -> BlockLayout:
        """The layout GDAL would give ``profile`` with the creation options eoscale writes it
        with (:func:`~eoscale.io.raster.creation_profile`: its defaults, the user's ``options``
        over them; BIGTIFF=IF_SAFER unless they say, as :class:`~eoscale.io.raster.TileWriter`
        writes); options that change the blocks and are not handled here (another compression,
        say) raise :class:`BlockEncodingError`."""
        opts = {key: value for key, value in creation_profile(profile, options).items()
                if key not in GRID_KEYS and key != "driver"}
        unknown = set(opts) - LAYOUT_OPTIONS - METADATA_OPTIONS
        if unknown:
            raise BlockEncodingError(f"creation options not handled by block encoding: "
                                     f"{', '.join(sorted(unknown))}")
        dtype = np.dtype(profile["dtype"])
        if dtype.kind not in "iuf" or dtype.itemsize > 8:
            raise BlockEncodingError(f"dtype {dtype.name} not handled by block encoding")
        height, width, count = int(profile["height"]), int(profile["width"]), int(profile["count"])
        compression = str(opts.get("compress") or "none").lower()
        if compression not in COMPRESSIONS:
            raise BlockEncodingError(f"compression {compression} not handled by block encoding")
        interleave = str(opts.get("interleave") or "pixel").lower()
        if interleave not in ("pixel", "band"):
            raise BlockEncodingError(f"interleave {interleave} not handled by block encoding")
        tiled = option_is_true(opts.get("tiled", False))
        sample_bytes = dtype.itemsize * (count if interleave == "pixel" else 1)
        if tiled:
            block_width = int(opts.get("blockxsize") or 256)
            block_height = int(opts.get("blockysize") or 256)
            if block_width % 16 or block_height % 16:
                raise BlockEncodingError("tile sizes must be multiples of 16")
        else:
            block_width = width
            default_rows = max(1, DEFAULT_STRIP_BYTES // (width * sample_bytes))
            block_height = min(height, int(opts.get("blockysize") or default_rows))
        return cls(height=height, width=width, count=count, dtype=dtype.name, tiled=tiled,
                   block_height=block_height, block_width=block_width,
                   compression=compression, level=compression_level(compression, opts),
                   predictor=predictor_for(compression, opts.get("predictor"), dtype),
                   interleave=interleave, bigtiff=str(opts.get("bigtiff") or "if_safer").lower())

    @property
    def grid(self) -> tuple[int, int]:
        """The number of block rows and block columns."""
        return (math.ceil(self.height / self.block_height),
                math.ceil(self.width / self.block_width))

    @property
    def planes(self) -> int:
        """Blocks per grid cell: one per band if bands are interleaved by band, else one."""
        return self.count if self.interleave == "band" else 1

    @property
    def block_count(self) -> int:
        """The number of blocks in the file (every band's)."""
        rows, cols = self.grid
        return rows * cols * self.planes

    def window(self, row: int, col: int) -> tuple[int, int, int, int]:
        """The pixels the block at (``row``, ``col``) of the grid holds in the image:
        (row offset, column offset, rows, columns), clipped at the image's edge."""
        row_off, col_off = row * self.block_height, col * self.block_width
        return (row_off, col_off, min(self.block_height, self.height - row_off),
                min(self.block_width, self.width - col_off))

    def windows(self) -> Iterator[tuple[int, int, tuple[int, int, int, int]]]:
        """Every grid cell as (row, column, window), row by row."""
        rows, cols = self.grid
        for row in range(rows):
            for col in range(cols):
                yield row, col, self.window(row, col)

    def indices(self, row: int, col: int) -> list[int]:
        """The file's block numbers of the grid cell (``row``, ``col``), one per plane."""
        rows, cols = self.grid
        return [plane * rows * cols + row * cols + col for plane in range(self.planes)]

    def encode(self, row: int, col: int, data: np.ndarray) -> dict[int, bytes]:
        """The bytes of the blocks of grid cell (``row``, ``col``), by block number, from
        ``data`` (bands, rows, cols), the pixels of :meth:`window` (cast to the file's dtype)."""
        _, _, rows, cols = self.window(row, col)
        if data.shape != (self.count, rows, cols):
            raise ValueError(f"block ({row}, {col}) holds {(self.count, rows, cols)} pixels, "
                             f"got an array of shape {data.shape}")
        block_rows = self.block_height if self.tiled else rows
        block = np.zeros((self.count, block_rows, self.block_width),
                         dtype=np.dtype(self.dtype).newbyteorder("<"))
        block[:, :rows, :cols] = data
        if self.interleave == "pixel":
            planes = [np.ascontiguousarray(block.transpose(1, 2, 0))]
        else:
            planes = [block[band][..., np.newaxis] for band in range(self.count)]
        return {index: self._compress(self._predict(plane))
                for index, plane in zip(self.indices(row, col), planes)}

    def is_aligned(self, row_off: int, col_off: int, rows: int, cols: int) -> bool:
        """Whether the window holds whole blocks only (those at the image's edge as clipped):
        a tile core a worker can encode by itself."""
        def on_grid(offset: int, length: int, block: int, size: int) -> bool:
            end = offset + length
            return offset % block == 0 and (end % block == 0 or end == size) and end <= size

        return (rows > 0 and cols > 0
                and on_grid(row_off, rows, self.block_height, self.height)
                and on_grid(col_off, cols, self.block_width, self.width))

    def window_indices(self, row_off: int, col_off: int, rows: int, cols: int) -> list[int]:
        """The block numbers of a window of whole blocks, in the order :meth:`encode_window`
        gives them: grid row by grid row, and each cell's planes."""
        return [index
                for row in range(row_off // self.block_height,
                                 math.ceil((row_off + rows) / self.block_height))
                for col in range(col_off // self.block_width,
                                 math.ceil((col_off + cols) / self.block_width))
                for index in self.indices(row, col)]

    def encode_window(self, row_off: int, col_off: int, data: np.ndarray) -> dict[int, bytes]:
        """The bytes of every block of the window at (``row_off``, ``col_off``) that ``data``
        (bands, rows, cols) covers, by block number; the window must be :meth:`is_aligned`."""
        _, rows, cols = data.shape
        if not self.is_aligned(row_off, col_off, rows, cols):
            raise ValueError(f"window rows {row_off}:{row_off + rows}, cols {col_off}:"
                             f"{col_off + cols} is not made of whole blocks of "
                             f"{self.block_height} x {self.block_width}")
        encoded: dict[int, bytes] = {}
        for row in range(row_off // self.block_height,
                         math.ceil((row_off + rows) / self.block_height)):
            for col in range(col_off // self.block_width,
                             math.ceil((col_off + cols) / self.block_width)):
                top, left, height, width = self.window(row, col)
                encoded.update(self.encode(row, col, data[:, top - row_off:top - row_off + height,
                                                          left - col_off:left - col_off + width]))
        return encoded

    def block_bytes(self, index: int) -> int:
        """The uncompressed size of block ``index``: a tile's whole (edge tiles are padded), a
        strip's rows (the last one of each plane holds only the rows left)."""
        rows, cols = self.grid
        row = (index % (rows * cols)) // cols
        block_rows = self.block_height if self.tiled else self.window(row, 0)[2]
        samples = self.count if self.interleave == "pixel" else 1
        return block_rows * self.block_width * samples * np.dtype(self.dtype).itemsize

    def fixed_offset(self, start: int, index: int) -> int:
        """Where block ``index`` of an uncompressed file lies when its blocks follow each other
        from ``start`` in the file's order: only a plane's last row of blocks may be shorter."""
        rows, cols = self.grid
        plane, cell = divmod(index, rows * cols)
        last_row = self.block_bytes((rows - 1) * cols)
        plane_bytes = ((rows - 1) * self.block_bytes(0) + last_row) * cols
        return start + plane * plane_bytes + cell * self.block_bytes(0)

    def _predict(self, plane: np.ndarray) -> np.ndarray:
        """``plane`` (rows, cols, samples) with the TIFF predictor applied along its rows."""
        if self.predictor == 2:  # libtiff differences the samples' bits as unsigned integers
            unsigned = plane.view(f"<u{plane.dtype.itemsize}")
            return imagecodecs.delta_encode(unsigned, axis=-2)
        if self.predictor == 3:
            return imagecodecs.floatpred_encode(plane, axis=-2)
        return plane

    def _compress(self, plane: np.ndarray) -> bytes:
        if self.compression == "deflate":
            return bytes(imagecodecs.deflate_encode(plane, level=self.level))
        if self.compression == "zstd":
            return bytes(imagecodecs.zstd_encode(plane, level=self.level))
        if self.compression == "lzw":
            return bytes(imagecodecs.lzw_encode(plane))
        return plane.tobytes()

    def is_bigtiff(self, data_bytes: int) -> bool:
        """Whether the file is a BigTIFF: as GDAL's BIGTIFF option decides from the image's
        uncompressed size, and also whenever ``data_bytes`` of blocks (and their header) would
        not fit in a classic TIFF, where GDAL would fail (unless BIGTIFF=NO, which fails)."""
        too_big = data_bytes + self.block_count * 16 + (1 << 20) > CLASSIC_LIMIT
        if self.bigtiff in ("yes", "true", "1"):
            return True
        if self.bigtiff in ("no", "false", "0"):
            if too_big:
                raise BlockEncodingError("BIGTIFF=NO, but the file would exceed 4 GB")
            return False
        uncompressed = self.height * self.width * self.count * np.dtype(self.dtype).itemsize
        if self.bigtiff == "if_needed":
            by_rule = self.compression == "none" and uncompressed > IF_NEEDED_BYTES
        else:
            by_rule = uncompressed > IF_SAFER_BYTES
        return by_rule or too_big

    def layout_tags(self, offsets: Sequence[int], lengths: Sequence[int],
                    bigtiff: bool) -> list[Tag]:
        """The tags of the block layout, for blocks at ``offsets`` of ``lengths`` bytes."""
        pointer = LONG8 if bigtiff else LONG
        tags = [Tag.of(WIDTH, LONG, [self.width]), Tag.of(HEIGHT, LONG, [self.height]),
                Tag.of(COMPRESSION, SHORT, [COMPRESSIONS[self.compression]]),
                Tag.of(PLANAR_CONFIG, SHORT, [1 if self.interleave == "pixel" else 2])]
        if self.compression != "none":
            tags.append(Tag.of(PREDICTOR, SHORT, [self.predictor]))
        if self.tiled:
            tags += [Tag.of(TILE_WIDTH, LONG, [self.block_width]),
                     Tag.of(TILE_LENGTH, LONG, [self.block_height]),
                     Tag.of(TILE_OFFSETS, pointer, offsets),
                     Tag.of(TILE_BYTE_COUNTS, pointer, lengths)]
        else:
            tags += [Tag.of(ROWS_PER_STRIP, LONG, [self.block_height]),
                     Tag.of(STRIP_OFFSETS, pointer, offsets),
                     Tag.of(STRIP_BYTE_COUNTS, pointer, lengths)]
        return tags


def option_is_true(value: Any) -> bool:
    """A GDAL boolean creation option's value (YES/NO, TRUE/FALSE, 1/0 or a Python bool)."""
    return str(value).lower() in ("yes", "true", "1", "on")


def compression_level(compression: str, options: Mapping[str, Any]) -> int | None:
    """The level of ``compression`` (ZLEVEL for deflate, ZSTD_LEVEL for zstd), GDAL's default
    unless the options say."""
    key = {"deflate": "zlevel", "zstd": "zstd_level"}.get(compression)
    if key is None:
        return None
    return int(options.get(key) or DEFAULT_LEVELS[compression])


def predictor_for(compression: str, value: Any, dtype: np.dtype) -> int:
    """The PREDICTOR applied: 1 (none), 2 (horizontal differencing) or 3 (floating point, for
    floats only); GDAL applies none to uncompressed files."""
    predictor = int(value or 1)
    if predictor not in (1, 2, 3):
        raise BlockEncodingError(f"predictor {predictor} not handled by block encoding")
    if predictor == 3 and dtype.kind != "f":
        raise BlockEncodingError(f"predictor 3 applies to floating-point data, not {dtype.name}")
    return 1 if compression == "none" else predictor


@dataclass(frozen=True)
class Tag:
    """One TIFF tag: its ``code``, field ``type``, number of values and their little-endian
    bytes."""

    code: int
    type: int
    count: int
    data: bytes

    @classmethod
    def of(cls, code: int, type_: int, values: Sequence[int]) -> Tag:
        """An integer tag (SHORT, LONG or LONG8) holding ``values``."""
        fmt = {SHORT: "H", LONG: "I", LONG8: "Q"}[type_]
        return cls(code, type_, len(values), struct.pack(f"<{len(values)}{fmt}", *values))


def geotiff_metadata(profile: Mapping[str, Any],
                     options: Mapping[str, Any] | None = None) -> list[Tag]:
    """The tags GDAL writes for ``profile``'s metadata, but for the block layout: sample
    format and bits, photometric interpretation and extra samples, the GeoTIFF keys and model
    transformation, GDAL_NODATA, and GDAL_METADATA (band descriptions, ``tags``).

    ``profile`` is a rasterio profile (``crs``, ``transform``, ``nodata``, ``count``,
    ``dtype``...) with, optionally, ``descriptions`` (one per band), ``tags`` (the dataset's)
    and ``colorinterp`` (one per band). GDAL writes them into a one-pixel in-memory GeoTIFF,
    from which the tags are taken as bytes (see the module's docstring)."""
    kwargs = {key: profile[key] for key in ("crs", "transform", "nodata")
              if profile.get(key) is not None}
    user = {str(key).lower(): value for key, value in (options or {}).items()}
    kwargs.update({key: value for key, value in user.items() if key in METADATA_OPTIONS})
    kwargs["interleave"] = str(user.get("interleave") or "pixel")
    with rasterio.MemoryFile() as memory:
        with memory.open(driver="GTiff", width=1, height=1, count=int(profile["count"]),
                         dtype=np.dtype(profile["dtype"]).name, **kwargs) as dataset:
            for band, description in enumerate(profile.get("descriptions") or (), start=1):
                if description:
                    dataset.set_band_description(band, description)
            if profile.get("tags"):
                dataset.update_tags(**profile["tags"])
            if profile.get("colorinterp"):
                dataset.colorinterp = profile["colorinterp"]
        content = memory.read()
    tags = []
    for code, type_, count, value_at in first_ifd_entries(content):
        if code in LAYOUT_TAGS:
            continue
        size = TYPE_SIZES[type_] * count
        tags.append(Tag(code, type_, count, content[value_at:value_at + size]))
    return tags


def first_ifd_entries(content: bytes) -> Iterator[tuple[int, int, int, int]]:
    """Each entry of a little-endian TIFF's (or BigTIFF's) first IFD: its tag code, field type,
    count, and where its value starts in ``content`` (in the entry when it fits there).

    Enough to read the tags of the one-pixel file GDAL writes for :func:`geotiff_metadata`,
    without importing tifffile in the process that writes headers (40 ms of its CPU)."""
    if content[:2] != b"II":
        raise ValueError("not a little-endian TIFF")
    big = struct.unpack_from("<H", content, 2)[0] == 43
    count_fmt, entry_fmt, entry_size, inline, first = (
        ("<Q", "<HHQ", 20, 8, struct.unpack_from("<Q", content, 8)[0]) if big else
        ("<H", "<HHI", 12, 4, struct.unpack_from("<I", content, 4)[0]))
    entries = struct.unpack_from(count_fmt, content, first)[0]
    start = first + struct.calcsize(count_fmt)
    for number in range(entries):
        at = start + number * entry_size
        code, type_, count = struct.unpack_from(entry_fmt, content, at)
        value_at = at + struct.calcsize(entry_fmt)
        if TYPE_SIZES[type_] * count > inline:
            value_at = struct.unpack_from("<Q" if big else "<I", content, value_at)[0]
        yield code, type_, count, value_at


def header_size(ifds: Sequence[Sequence[Tag]], bigtiff: bool, leader: bytes = b"") -> int:
    """The bytes :func:`tiff_header` takes for ``ifds`` (it depends on the tags' counts and
    types only, so block offsets can be computed before they are known)."""
    entry, inline, head, counts = (20, 8, 16, 8) if bigtiff else (12, 4, 8, 2)
    size = head + _even(len(leader))
    for tags in ifds:
        size += counts + entry * len(tags) + (8 if bigtiff else 4)
        size += sum(_even(len(tag.data)) for tag in tags if len(tag.data) > inline)
    return size


def tiff_header(ifds: Sequence[Sequence[Tag]], bigtiff: bool, leader: bytes = b"") -> bytes:
    """A little-endian TIFF's header and its IFDs, chained in order, each followed by its
    values that do not fit in an entry (word-aligned); blocks go after it, where the offset
    tags say. ``leader`` goes between the header and the first IFD (GDAL's COG puts its
    structural metadata there)."""
    first = (16 if bigtiff else 8) + _even(len(leader))
    leader = leader + b"\0" * (_even(len(leader)) - len(leader))
    return tiff_head(bigtiff, first) + leader + tiff_ifds(ifds, bigtiff, first)


def tiff_head(bigtiff: bool, first: int) -> bytes:
    """A little-endian TIFF's first bytes (8; 16 for a BigTIFF): its byte order, version and
    where its first IFD starts (``first``, even)."""
    return b"II" + (struct.pack("<HHHQ", 43, 8, 0, first) if bigtiff
                    else struct.pack("<HI", 42, first))


def tiff_ifds(ifds: Sequence[Sequence[Tag]], bigtiff: bool, first: int) -> bytes:
    """``ifds`` as the bytes that go at ``first`` (even) of the file: chained in order, each
    followed by its values that do not fit in an entry (word-aligned)."""
    entry, inline, counts = (20, 8, 8) if bigtiff else (12, 4, 2)
    pointer = "Q" if bigtiff else "I"
    out = bytearray()
    for number, tags in enumerate(ifds):
        tags = sorted(tags, key=lambda tag: tag.code)
        start = first + len(out)
        values_at = start + counts + entry * len(tags) + (8 if bigtiff else 4)
        entries, values = bytearray(), bytearray()
        for tag in tags:
            entries += struct.pack(f"<HH{pointer}", tag.code, tag.type, tag.count)
            if len(tag.data) > inline:
                entries += struct.pack(f"<{pointer}", values_at + len(values))
                values += tag.data + b"\0" * (_even(len(tag.data)) - len(tag.data))
            else:
                entries += tag.data.ljust(inline, b"\0")
        following = values_at + len(values) if number + 1 < len(ifds) else 0
        out += struct.pack(f"<{pointer}", len(tags)) if bigtiff else struct.pack("<H", len(tags))
        out += entries + struct.pack(f"<{pointer}", following) + values
    return bytes(out)


def _even(size: int) -> int:
    return size + (size & 1)


#: The bytes a file whose blocks are written in tile order keeps at its start for its TIFF
#: head (8, or 16 for a BigTIFF: which one is decided when the last block is in).
IN_ORDER_HEAD = 16


class PartFile:
    """A part file a worker appends its encoded blocks to, one process's own (no other
    process appends to it, so the offset it records is the block's)."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._file: BinaryIO | None = open(self.path, "ab")  # noqa: SIM115 - closed by close()
        self._end = self._file.seek(0, os.SEEK_END)

    @property
    def end(self) -> int:
        """Where the next block goes: the file's size, once what was appended is flushed."""
        return self._end

    def append(self, data: bytes) -> BlockRecord:
        """Append ``data``; where it now lies."""
        if self._file is None:
            raise ValueError(f"{self.path}: part file closed")
        self._file.write(data)
        record = BlockRecord(self.path, self._end, len(data))
        self._end += len(data)
        return record

    def sync(self) -> None:
        """Flush what was appended to the disk (the file's data; its size with it)."""
        if self._file is None:
            raise ValueError(f"{self.path}: part file closed")
        self._file.flush()
        os.fdatasync(self._file.fileno())

    def close(self) -> None:
        """Flush and close the file. Idempotent."""
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def __enter__(self) -> PartFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_geotiff_header(path: str | os.PathLike, layout: BlockLayout,
                         metadata: Sequence[Tag], blocks: Mapping[int, bytes | BlockRecord], *,
                         display: str | os.PathLike | None = None) -> dict[int, BlockCopy]:
    """Start the GeoTIFF of ``layout`` at ``path`` (the caller stages it) from every block's
    bytes or :class:`BlockRecord`, by block number: the header, with every block's place (the
    file's order, one after the other), and the blocks given as bytes are written, the file
    sized; the copies of the blocks in part files are returned by block number, for any
    process to run (:func:`~eoscale.io.assembled.copy_blocks`). A missing block is an error (never an empty
    block), raised before anything is written; a failure to write is a RasterError naming
    ``display`` (else ``path``)."""
    path = Path(path)
    _check_complete(layout, blocks, display or path)
    sources = [blocks[index] for index in range(layout.block_count)]
    lengths = [_length(source) for source in sources]
    bigtiff = layout.is_bigtiff(sum(lengths))
    placeholder = layout.layout_tags([0] * len(lengths), lengths, bigtiff)
    start = header_size([placeholder + list(metadata)], bigtiff)
    offsets = list(accumulate(lengths[:-1], initial=start))
    header = tiff_header([layout.layout_tags(offsets, lengths, bigtiff) + list(metadata)],
                         bigtiff)
    memory, copies = split_sources({index: placed(source, offset, False) for index, (source, offset)
                                    in enumerate(zip(sources, offsets))})
    write_header(path, header, start + sum(lengths), memory, display=display)
    return copies


def finish_in_order_geotiff(path: str | os.PathLike, layout: BlockLayout,
                            metadata: Sequence[Tag], blocks: Mapping[int, bytes | BlockRecord],
                            order: Sequence[int], *, display: str | os.PathLike | None = None
                            ) -> dict[int, BlockCopy] | None:
    """Finish, in place, the GeoTIFF of ``layout`` at ``path`` (the caller stages it) whose
    blocks follow its first :data:`IN_ORDER_HEAD` bytes one after the other in ``order`` (every
    block number once: a map's tiles in turn), then its IFD, to which the first bytes point (a
    classic TIFF or a BigTIFF, decided now that the blocks' lengths are known). ``blocks`` gives
    every block's bytes or :class:`BlockRecord` by number: a record already in ``path`` at its
    place (a worker wrote it there) stays, untouched; the others are written there (bytes) or
    returned by number, as copies for any process to run. So the same blocks always make the
    same bytes, whoever wrote them and in whatever order.

    None, with nothing written, when a record in ``path`` is not at its place (a tile encoded
    twice with another size): the caller then writes the file anew (:func:`write_geotiff_header`),
    from this one as a part. A missing block is an error, raised before anything is written; a
    failure to write is a RasterError naming ``display`` (else ``path``)."""
    _check_complete(layout, blocks, display or path)
    here = os.fspath(path)
    offsets, end = {}, IN_ORDER_HEAD
    for index in order:
        offsets[index], end = end, end + _length(blocks[index])
    inside = {index for index, record in blocks.items()
              if isinstance(record, BlockRecord) and record.part == here}
    if any(blocks[index].offset != offsets[index] for index in inside):  # type: ignore[union-attr]
        return None
    bigtiff = layout.is_bigtiff(end)
    first = _even(end)
    lengths = [_length(blocks[index]) for index in range(layout.block_count)]
    ifd = tiff_ifds([layout.layout_tags([offsets[index] for index in range(layout.block_count)],
                                        lengths, bigtiff) + list(metadata)], bigtiff, first)
    memory, copies = split_sources({index: placed(blocks[index], offsets[index], False)
                                    for index in order if index not in inside})
    finish_in_place(path, tiff_head(bigtiff, first).ljust(IN_ORDER_HEAD, b"\0"),
                    (first, ifd), memory, display=display)
    return copies


def _check_complete(layout: BlockLayout, blocks: Mapping[int, Any], name: Any) -> None:
    """Never a file with a block left out: the missing ones named."""
    missing = [index for index in range(layout.block_count) if index not in blocks]
    if missing:
        raise ValueError(f"{name}: {len(missing)} of {layout.block_count} blocks "
                         f"missing (the first: block {missing[0]})")


def _length(source: bytes | BlockRecord) -> int:
    return len(source) if isinstance(source, bytes) else source.length


def assemble_geotiff(path: str | os.PathLike, layout: BlockLayout, metadata: Sequence[Tag],
                     blocks: Mapping[int, bytes | BlockRecord], *,
                     display: str | os.PathLike | None = None) -> Path:
    """Write the whole GeoTIFF of ``layout`` at ``path`` in this process: its header
    (:func:`write_geotiff_header`), then its blocks copied from their part files as they are."""
    copies = write_geotiff_header(path, layout, metadata, blocks, display=display)
    copy_blocks(path, list(copies.values()), display=display)
    return Path(path)


def preallocate_geotiff(path: str | os.PathLike, layout: BlockLayout,
                        metadata: Sequence[Tag], *,
                        display: str | os.PathLike | None = None) -> int:
    """Create the uncompressed GeoTIFF of ``layout`` at ``path`` (the caller stages it) with
    its header and every block at its fixed place (:meth:`BlockLayout.fixed_offset`), the
    blocks' bytes left for the workers to write there (allocated on disk already where the
    filesystem can: :func:`~eoscale.io.assembled.preallocate`); where the blocks start. A failure to write is a RasterError naming ``display`` (else ``path``)."""
    if layout.compression != "none":
        raise BlockEncodingError("blocks have fixed places in uncompressed files only")
    lengths = [layout.block_bytes(index) for index in range(layout.block_count)]
    bigtiff = layout.is_bigtiff(sum(lengths))
    placeholder = layout.layout_tags([0] * len(lengths), lengths, bigtiff)
    start = header_size([placeholder + list(metadata)], bigtiff)
    offsets = [layout.fixed_offset(start, index) for index in range(layout.block_count)]
    header = tiff_header([layout.layout_tags(offsets, lengths, bigtiff) + list(metadata)],
                         bigtiff)
    write_header(path, header, start + sum(lengths), display=display)
    return start
