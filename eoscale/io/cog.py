"""Overview levels computed as GDAL computes them, and a file of several levels assembled in
GDAL's COG layout from blocks encoded anywhere.

**Levels.** An image's overview levels halve it again and again, each level made from the one
below it: level ``k`` is ``ceil(n / 2)`` of level ``k - 1`` on each side where GDAL's
``BuildOverviews`` makes factor ``2**k``, ``n >> k`` where its COG driver makes its own.
:func:`reduce_level` computes one level from the one below with GDAL's rules, found by comparing
with GDAL 3.10 on every dtype, odd and even sizes, nodata and NaN:

- ``nearest`` takes source pixel ``int(i * ratio + 0.5)`` (``ratio`` the sizes' quotient): the
  top-left pixel of each 2 x 2 when a side is even;
- ``average`` weights each source pixel by the part of it the target pixel covers (a side of odd
  size gives ratios a little off 2, so a target pixel covers two to four source pixels, the
  outer ones in part); nodata pixels (a NaN nodata: NaN pixels) take no part, and a target
  pixel with none valid is nodata; without a NaN nodata a NaN makes its target NaN. When the
  width halves exactly and no nodata is set, GDAL takes a two-row window as a plain 2 x 2 mean
  (its fast path), whatever the rows' weights. uint8 and uint16, which GDAL averages in
  integers, are rounded half up, and an average that rounds to the nodata value is moved to
  the next value of the dtype (down from its largest), so that no valid pixel reads as
  nodata; the other integer types, which it averages in float32 and then converts, are moved
  off nodata only when the float32 mean is exactly nodata, then rounded half away from zero
  (a mean of 7.25 with nodata 7 is stored as 7, nodata, as GDAL stores it). GDAL computes in
  its own order: floats may differ from it in the last bit, and integers by one where the
  exact mean is a half (on odd sizes only, where its weights are not exact binary fractions).
  Where both sides are even and no nodata is set (every level of W1's COG), the sums follow
  GDAL 3.10's fast path in the image's own dtype (:func:`_quad_mean`): a level made from the
  one below has the same bits as GDAL makes it from that level (but in the last columns of
  its scalar tail, float32), about 8 times cheaper than summing a float64 copy of the level,
  which was most of what computing a COG's overviews cost the workers. (GDAL's COG driver
  makes its deeper levels otherwise: on W1's output, level 1 is bit for bit its own, levels 2
  to 4 within 3 units in the last place.)

**From the full resolution.** GDAL 3.10 does not always make a level from the one below.
Where level 2's chunk, level 1's pixels for one of its blocks, is over
``GDAL_OVR_CHUNK_MAX_SIZE`` (10 MiB): (2 + 2 min(block width, level 2's width)) x (2 + 2
block height) pixels of every band in its work type (uint8 1 byte, uint16 2, float64 8,
others 4), it averages every level from 2 up from the full resolution instead
(:func:`full_resolution_levels`, found by comparing with GDAL on 1 to 6 bands, blocks of 32
to 1024 px, square and elongated images, the image given to GDAL stored with the blocks it
is to have: 3 float32 bands on 512 px blocks are over it, 2 are not). Without nodata the two give
the same means up to rounding; with nodata (or NaN) they differ, the mean of means weighing
each valid pixel below by the valid pixels it stands for. Those levels are made here from the
sums and counts of valid full-resolution pixels (:func:`first_sums`, :func:`summed_level`), so
that they equal GDAL's within the rounding of the dtype.

When both sides of a level are even, a target pixel depends on its own 2 x 2 source pixels
only (:func:`halves_exactly`): a tile whose core starts on even rows and columns can compute
that level by itself, which is what lets workers compute their tiles' levels.

**Layout.** :func:`write_levels_header` places the blocks in GDAL's COG layout: the TIFF
header, GDAL's structural metadata (the "ghost" header: ``LAYOUT=IFDS_BEFORE_DATA``, ``BLOCK_ORDER=ROW_MAJOR``,
each block led by its size and trailed by its last 4 bytes, as the COG driver writes them, so
that GDAL reports ``LAYOUT=COG`` and readers may fetch a block with its neighbour's size), every
IFD (full resolution first, then each overview, NewSubfileType 1), then the blocks: the
coarsest overview's first, full resolution's last, each level's row by row. It writes the
header; the blocks are copied from their part files, never decoded, by whichever processes run
the copies (:mod:`eoscale.io.assembled`, which also writes each block's leader and trailer), or
by this one (:func:`assemble_levels`).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from eoscale.io.assembled import (
    FRAME,
    BlockCopy,
    copy_blocks,
    placed,
    split_sources,
    write_header,
)
from eoscale.io.blocks import (
    LONG,
    BlockEncodingError,
    BlockLayout,
    BlockRecord,
    Tag,
    compression_level,
    header_size,
    tiff_header,
)

#: The resamplings computed here (any other is left to GDAL).
RESAMPLINGS = ("nearest", "average")
#: Metadata tags an overview's IFD repeats from the full resolution's (as GDAL's COG does).
OVERVIEW_TAGS = frozenset({258, 262, 277, 338, 339, 42113})
NEW_SUBFILE_TYPE, GDAL_METADATA = 254, 42112
#: The COG driver's defaults: block size, and its options read here (any other: GDAL makes it).
COG_BLOCKSIZE = 512
COG_OPTIONS = frozenset({"blocksize", "compress", "level", "predictor", "bigtiff",
                         "num_threads"})
#: The structural metadata GDAL's COG driver writes before the first IFD.
GHOST = ("LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\n"
         "BLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n ")


@dataclass(frozen=True)
class Pyramid:
    """What an image output asks of its file beyond its pixels: ``format`` (GTiff or COG), its
    overview levels (``levels``: factors 2, 4, ... 2**levels; None: as many as GDAL's COG driver
    makes), ``resampling`` (None: by the output's dtype) and the file's creation ``options``,
    written at ``path``."""

    path: Path
    format: str
    options: Mapping[str, Any]
    levels: int | None
    resampling: str | None

    def resampling_for(self, dtype: np.dtype | str) -> str:
        """The resampling asked for, else ``average`` for floats and ``nearest`` for others."""
        if self.resampling is not None:
            return self.resampling
        return "average" if np.dtype(dtype).kind in "fc" else "nearest"

    @property
    def floor_sizes(self) -> bool:
        """Whether its levels' sizes are rounded down (a COG's automatic levels, as GDAL's
        COG driver makes them) rather than up (the factors asked for, as GDAL's
        ``BuildOverviews`` makes them, also for a COG, which copies them)."""
        return self.format == "COG" and self.levels is None

    def level_count(self, layout: BlockLayout) -> int:
        """The number of overview levels of an image of ``layout``."""
        if self.levels is not None:
            return self.levels
        return cog_level_count(layout.height, layout.width, layout.block_height)


def power_of_two_levels(factors: Sequence[int]) -> int | None:
    """The number of levels of ``factors`` if they are 2, 4, 8... (the levels computed here),
    else None."""
    if not factors or list(factors) != [2 ** k for k in range(1, len(factors) + 1)]:
        return None
    return len(factors)


def cog_level_count(height: int, width: int, block: int) -> int:
    """The overview levels GDAL's COG driver makes: until the image halved fits one block."""
    count = 0
    while (height >> count) > block or (width >> count) > block:
        count += 1
    return count


def level_shape(height: int, width: int, level: int, floor: bool = False) -> tuple[int, int]:
    """The (rows, cols) of overview level ``level`` (0: the image itself): each level half the
    one below, rounded up as GDAL's ``BuildOverviews`` rounds, or down (``floor``, at least 1)
    as its COG driver does."""
    if floor:
        return max(1, height >> level), max(1, width >> level)
    for _ in range(level):
        height, width = (height + 1) // 2, (width + 1) // 2
    return height, width


def halves_exactly(height: int, width: int, level: int) -> bool:
    """Whether every level up to ``level`` is made from 2 x 2 pixels of the level below (both
    sides even at each level below it): its pixels then depend on their own block only."""
    for _ in range(level):
        if height % 2 or width % 2:
            return False
        height, width = height // 2, width // 2
    return True


def cog_layout(profile: Mapping[str, Any], options: Mapping[str, Any] | None) -> BlockLayout:
    """The block layout GDAL's COG driver gives ``profile`` with ``options`` (its names:
    ``blocksize``, ``compress``, ``level``, ``predictor``...); options it does not read here
    raise :class:`~eoscale.io.blocks.BlockEncodingError`."""
    user = {str(key).lower(): value for key, value in (options or {}).items()}
    unknown = set(user) - COG_OPTIONS
    if unknown:
        raise BlockEncodingError(f"COG options not handled by block encoding: "
                                 f"{', '.join(sorted(unknown))}")
    dtype = np.dtype(profile["dtype"])
    compression = str(user.get("compress") or "deflate").lower()
    block = int(user.get("blocksize") or COG_BLOCKSIZE)
    gtiff: dict[str, Any] = {"tiled": True, "blockxsize": block, "blockysize": block,
                             "compress": compression, "interleave": "pixel",
                             "predictor": cog_predictor(user.get("predictor"), dtype),
                             "bigtiff": user.get("bigtiff") or "if_safer"}
    level = compression_level(compression, {"zlevel": user.get("level"),
                                            "zstd_level": user.get("level")})
    layout = BlockLayout.from_profile(profile, gtiff)
    return replace(layout, level=level)


def cog_predictor(value: Any, dtype: np.dtype) -> int:
    """The COG driver's PREDICTOR option as a TIFF predictor: YES is 3 for floats, else 2."""
    text = str(value if value is not None else "no").lower()
    if text in ("yes", "true", "on"):
        return 3 if dtype.kind == "f" else 2
    named = {"no": 1, "false": 1, "off": 1, "1": 1, "standard": 2, "2": 2,
             "floating_point": 3, "3": 3}
    if text not in named:
        raise BlockEncodingError(f"predictor {value} not handled by block encoding")
    return named[text]


def overview_layout(layout: BlockLayout, level: int, floor: bool = False) -> BlockLayout:
    """The block layout of overview level ``level`` of ``layout`` (sizes as
    :func:`level_shape`): the same blocks and encoding, on the level's size."""
    height, width = level_shape(layout.height, layout.width, level, floor)
    return replace(layout, height=height, width=width)


# -- levels ---------------------------------------------------------------------------------


def is_nan(value: Any) -> bool:
    return value is not None and isinstance(value, float) and math.isnan(value)


#: GDAL's GDAL_OVR_CHUNK_MAX_SIZE by default (see the module's docstring).
OVR_CHUNK_MAX_SIZE = 10485760


def _work_itemsize(dtype: np.dtype | str) -> int:
    """The bytes of a pixel of GDAL's work type for averaging ``dtype``."""
    dtype = np.dtype(dtype)
    return {np.dtype("uint8"): 1, np.dtype("uint16"): 2, np.dtype("float64"): 8}.get(dtype, 4)


def full_resolution_levels(layout: BlockLayout, levels: Sequence[BlockLayout], resampling: str,
                           nodata: float | None) -> tuple[int, ...]:
    """The overview levels (2 and up) that GDAL averages from the full resolution rather than
    from the level below (see the module's docstring): every one when level 2's chunk is over
    the limit (it is the largest), none otherwise; and only where it matters, an average with
    nodata. ``levels``: the overview levels' layouts, level 1 first."""
    if resampling != "average" or nodata is None or len(levels) < 2:
        return ()
    limit = int(os.environ.get("GDAL_OVR_CHUNK_MAX_SIZE", OVR_CHUNK_MAX_SIZE))
    chunk = (2 + 2 * min(layout.block_width, levels[1].width)) * (2 + 2 * layout.block_height)
    if chunk * layout.count * _work_itemsize(layout.dtype) <= limit:
        return ()
    return tuple(range(2, len(levels) + 1))


def first_sums(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """Level 1's sums and counts of the valid pixels of the full resolution ``data`` (bands,
    rows, cols; both sides even): (2 x bands, rows / 2, cols / 2) float64, the sums first
    (see :func:`summed_level`), with no float64 copy of ``data``."""
    bands, height, width = data.shape
    valid = _valid(data, nodata)
    shape = (bands, height // 2, 2, width // 2, 2)
    values = data if valid is None else np.where(valid, data, 0)
    total = values.reshape(shape).sum(axis=(2, 4), dtype=np.float64)
    count = (np.full(total.shape, 4.0) if valid is None
             else valid.reshape(shape).sum(axis=(2, 4), dtype=np.float64))
    return np.concatenate([total, count])


def summed_level(sums: np.ndarray, dtype: np.dtype | str, nodata: float | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The level above the sums and counts ``sums`` (:func:`first_sums`; both sides even):
    its own sums and counts, and its pixels, the mean of the valid full-resolution pixels each
    stands for, in ``dtype`` (integers rounded half up, none valid: nodata)."""
    bands2, height, width = sums.shape
    summed = sums.reshape(bands2, height // 2, 2, width // 2, 2).sum(axis=(2, 4))
    return summed, _mean(summed[:bands2 // 2], summed[bands2 // 2:], dtype, nodata)


def _valid(data: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """Which pixels of ``data`` are valid (not nodata; a NaN nodata: not NaN), or None: all."""
    if nodata is None:
        return None
    return ~np.isnan(data) if is_nan(nodata) else data != nodata


def _float_work(dtype: np.dtype | str) -> bool:
    """Whether GDAL 3.10 averages an integer ``dtype`` in floating point (its work type): every
    integer type but uint8 and uint16, which it averages in integers."""
    dtype = np.dtype(dtype)
    return dtype.kind in "iu" and dtype not in (np.dtype(np.uint8), np.dtype(np.uint16))


def _mean(total: np.ndarray, weights: np.ndarray, dtype: np.dtype | str,
          nodata: float | None) -> np.ndarray:
    """``total / weights`` in ``dtype`` as GDAL stores an average; with a nodata, a pixel of
    no weight is nodata. uint8 and uint16 (averaged in integers): rounded half up, and a
    rounded mean equal to nodata moved off it. Other integers (averaged in floating point,
    then converted): a mean exactly nodata moved off it, then rounded half away from zero, so
    that a mean that only rounds to nodata (7.25, nodata 7) is stored as nodata, as GDAL
    stores it. Floats: a mean equal to nodata moved off it."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / weights
    float_work = _float_work(dtype)
    if float_work:
        mean = mean.astype(np.float32)  # GDAL's work type: its mean's last bits go
        if nodata is not None:
            mean = _not_nodata(mean, nodata, dtype)
        mean = _half_away(mean)
    elif np.dtype(dtype).kind in "iu":
        mean = np.floor(mean + 0.5)
    if nodata is not None:
        mean = np.where(weights > 0, mean if float_work else _not_nodata(mean, nodata, dtype),
                        nodata)
    return mean.astype(dtype)


def _half_away(values: np.ndarray) -> np.ndarray:
    """``values`` rounded to integers, halves away from zero (as GDAL converts a floating-point
    average to an integer type)."""
    return np.copysign(np.floor(np.abs(values) + 0.5), values)


def _not_nodata(mean: np.ndarray, nodata: float, dtype: np.dtype | str) -> np.ndarray:
    """``mean`` with every value that equals ``nodata`` (an average of valid pixels that
    rounds to it) replaced as GDAL replaces it: by the next value of ``dtype`` up (down from
    the dtype's largest), so that no valid pixel reads as nodata."""
    if is_nan(nodata):
        return mean
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        top = np.iinfo(dtype).max
        other = nodata - 1 if nodata >= top else nodata + 1
    else:
        value = dtype.type(nodata)
        other = float(np.nextafter(value, dtype.type(-np.inf) if value >= np.finfo(dtype).max
                                   else dtype.type(np.inf)))
    return np.where(mean == nodata, other, mean)


def reduce_level(data: np.ndarray, resampling: str, nodata: float | None = None,
                 shape: tuple[int, int] | None = None) -> np.ndarray:
    """The overview level above ``data`` (bands, rows, cols), of ``shape`` (rows, cols; by
    default half of ``data``'s, rounded up), as GDAL makes it (see the module's docstring), in
    ``data``'s dtype."""
    _, height, width = data.shape
    target = shape or ((height + 1) // 2, (width + 1) // 2)
    if resampling == "nearest":
        return data[:, _nearest(height, target[0]), :][:, :, _nearest(width, target[1])]
    if resampling != "average":
        raise ValueError(f"resampling {resampling} is not computed here")
    if nodata is None and (height, width) == (2 * target[0], 2 * target[1]) \
            and (data.dtype in (np.float32, np.float64) or
                 (data.dtype.kind in "iu" and data.dtype.itemsize <= 4)):
        return _quad_mean(data)
    values = data.astype(np.float64)
    valid = _valid(values, nodata)
    if (height, width) == (2 * target[0], 2 * target[1]):
        total, weights = _quad_sums(values, valid)
    else:
        total, weights = _weighted_sums(values, valid, target,
                                        fast_rows=width == 2 * target[1] and valid is None)
    return _mean(total, weights, data.dtype, nodata)


def _quad_mean(data: np.ndarray) -> np.ndarray:
    """Both sides even, no nodata: each target pixel the mean of its own 2 x 2, in GDAL 3.10's
    order of operations, without a float64 copy of the image (a level's reduction then costs
    about as much as reading its source once). float32 as GDAL's vectorised path: each quarter
    of the two rows' sum, then the two columns' (bit for bit, but for the last columns of a
    chunk of GDAL's whose width is not a multiple of 4, which its scalar path sums in another
    order: the last bit may differ there); float64 as GDAL sums it, ((a + b) + c) + d, then
    quartered; integers as exact sums, rounded as :func:`_mean` rounds them."""
    top, bottom = data[:, 0::2], data[:, 1::2]
    if data.dtype == np.float32:
        quarter = np.float32(0.25)
        rows = top * quarter
        rows += bottom * quarter
        return rows[:, :, 0::2] + rows[:, :, 1::2]
    if data.dtype == np.float64:
        total = top[:, :, 0::2] + top[:, :, 1::2]
        total += bottom[:, :, 0::2]
        total += bottom[:, :, 1::2]
        total *= 0.25
        return total
    total = top.astype(np.int64)
    total += bottom
    total = total[:, :, 0::2] + total[:, :, 1::2]
    negative = total < 0 if _float_work(data.dtype) else None  # halves away from zero
    if negative is not None:
        np.abs(total, out=total)
    total += 2
    total //= 4
    if negative is not None:
        np.negative(total, out=total, where=negative)
    return total.astype(data.dtype)


def _quad_sums(values: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Both sides even: each target pixel's sum over its own 2 x 2 and their count."""
    bands, height, width = values.shape
    quads = values.reshape(bands, height // 2, 2, width // 2, 2)
    if valid is None:
        total = quads.sum(axis=(2, 4))
        return total, np.full(total.shape, 4.0)
    used = valid.reshape(quads.shape)
    return (np.where(used, quads, 0.0).sum(axis=(2, 4)),
            used.sum(axis=(2, 4)).astype(np.float64))


def _weighted_sums(values: np.ndarray, valid: np.ndarray | None, target: tuple[int, int],
                   fast_rows: bool) -> tuple[np.ndarray, np.ndarray]:
    """A side not halved exactly: each target pixel's sum over the source pixels it covers,
    weighted by the part it covers, and the weights' sum. With ``fast_rows`` (the width halves
    exactly, no nodata), a two-row window weighs its rows alike, as GDAL's 2 x 2 fast path
    does."""
    rows, row_weights = _taps(values.shape[1], target[0])
    cols, col_weights = _taps(values.shape[2], target[1])
    if fast_rows:
        two = sum((weight > 0).astype(int) for weight in row_weights) == 2
        row_weights = [np.where(two, (weight > 0).astype(float), weight)
                       for weight in row_weights]
    total = np.zeros((values.shape[0], len(rows[0]), len(cols[0])))
    weights = np.zeros_like(total)
    for row, row_weight in zip(rows, row_weights):
        for col, col_weight in zip(cols, col_weights):
            weight = row_weight[:, None] * col_weight[None, :]
            picked = np.where(weight > 0, values[:, row][:, :, col], 0.0)  # never 0 * NaN
            if valid is None:
                total += picked * weight
                weights += weight
            else:
                used = valid[:, row][:, :, col]
                total += np.where(used, picked, 0.0) * weight
                weights += weight * used
    return total, weights


def _nearest(size: int, target: int) -> np.ndarray:
    """The source indices GDAL's nearest takes along a side of ``size`` made ``target``."""
    if size == 2 * target:
        return np.arange(target) * 2
    ratio = size / target
    return np.minimum((np.arange(target) * ratio + 0.5).astype(np.int64), size - 1)


def _taps(size: int, target: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Along a side of ``size`` made ``target``: for each of the source pixels a target pixel
    covers (at most the ratio rounded up, plus one), their indices and the part of each it
    covers."""
    ratio = size / target
    start = np.arange(target) * ratio
    end = np.minimum(start + ratio, size)
    first = np.floor(start + 1e-8).astype(np.int64)
    indices, weights = [], []
    for tap in range(math.ceil(ratio) + 1):
        index = first + tap
        weight = np.clip(np.minimum(end, index + 1) - np.maximum(start, index), 0, None)
        weight[index >= size] = 0
        indices.append(np.minimum(index, size - 1))
        weights.append(weight)
    return indices, weights


# -- the file -------------------------------------------------------------------------------


def overview_metadata(metadata: Sequence[Tag]) -> list[Tag]:
    """The tags an overview's IFD repeats from the full resolution's metadata."""
    return [tag for tag in metadata if tag.code in OVERVIEW_TAGS]


def with_metadata_item(metadata: Sequence[Tag], name: str, value: str, domain: str
                       ) -> list[Tag]:
    """``metadata`` with a GDAL metadata item ``name`` of ``domain`` added to its
    GDAL_METADATA XML (made if there is none), as GDAL writes one set by ``SetMetadataItem``."""
    item = f'  <Item name="{name}" domain="{domain}">{value}</Item>\n'
    tags = [tag for tag in metadata if tag.code != GDAL_METADATA]
    old = next((tag for tag in metadata if tag.code == GDAL_METADATA), None)
    if old is None:
        xml = f"<GDALMetadata>\n{item}</GDALMetadata>\n"
    else:
        text = old.data.rstrip(b"\0").decode("utf-8")
        xml = re.sub(r"</GDALMetadata>\s*$", lambda _: f"{item}</GDALMetadata>\n", text)
    data = xml.encode("utf-8") + b"\0"
    return [*tags, Tag(GDAL_METADATA, 2, len(data), data)]


def ghost_header() -> bytes:
    """GDAL's structural metadata, as its COG driver writes it."""
    return f"GDAL_STRUCTURAL_METADATA_SIZE={len(GHOST):06d} bytes\n{GHOST}".encode("ascii")


def write_levels_header(path: str | os.PathLike, layouts: Sequence[BlockLayout],
                        metadata: Sequence[Tag],
                        blocks: Sequence[Mapping[int, bytes | BlockRecord]], *,
                        display: str | os.PathLike | None = None, cog: bool = True
                        ) -> list[dict[int, BlockCopy]]:
    """Start at ``path`` the GeoTIFF of full resolution ``layouts[0]`` and overviews
    ``layouts[1:]`` in GDAL's COG layout (see the module's docstring; without ``cog``, a plain
    GeoTIFF with overviews: the same order, but no structural metadata and no block framed,
    so that GDAL opens it for update as any GeoTIFF; it refuses to update a COG), from each
    level's blocks' bytes or records by block number (``blocks``, one mapping per level): the header
    and the blocks given as bytes are written, the file sized; the copies of the blocks in part
    files (framed: :mod:`eoscale.io.assembled`) are returned, by level and block number, for
    any process to run. A missing block is an error, raised before anything is written; a
    failure to write is a RasterError naming ``display``."""
    path = Path(path)
    sources: list[list[bytes | BlockRecord]] = []
    for level, (layout, level_blocks) in enumerate(zip(layouts, blocks)):
        missing = [index for index in range(layout.block_count) if index not in level_blocks]
        if missing:
            raise ValueError(f"{display or path}: {len(missing)} of {layout.block_count} blocks "
                             f"of level {level} missing (the first: block {missing[0]})")
        sources.append([level_blocks[index] for index in range(layout.block_count)])
    lengths = [[_length(source) for source in level] for level in sources]
    frame = FRAME if cog else 0
    bigtiff = layouts[0].is_bigtiff(sum(map(sum, lengths)) + 2 * frame * sum(map(len, lengths)))
    overview = overview_metadata(metadata)

    def ifds(offsets: Sequence[Sequence[int]]) -> list[list[Tag]]:
        made = [layouts[0].layout_tags(offsets[0], lengths[0], bigtiff) + list(metadata)]
        for level in range(1, len(layouts)):
            made.append([Tag.of(NEW_SUBFILE_TYPE, LONG, [1]), *overview,
                         *layouts[level].layout_tags(offsets[level], lengths[level], bigtiff)])
        return made

    leader = ghost_header() if cog else b""
    position = header_size(ifds([[0] * len(level) for level in lengths]), bigtiff, leader)
    offsets: list[list[int]] = [[] for _ in layouts]
    for level in reversed(range(len(layouts))):  # the coarsest's blocks first
        for length in lengths[level]:
            offsets[level].append(position + frame)   # after the block's leader
            position += length + 2 * frame
    header = tiff_header(ifds(offsets), bigtiff, leader)
    split = [split_sources({index: placed(source, offset, cog) for index, (source, offset)
                            in enumerate(zip(level, level_offsets))})
             for level, level_offsets in zip(sources, offsets)]
    write_header(path, header, position, [block for memory, _ in split for block in memory],
                 display=display)
    return [copies for _, copies in split]


def assemble_levels(path: str | os.PathLike, layouts: Sequence[BlockLayout],
                    metadata: Sequence[Tag],
                    blocks: Sequence[Mapping[int, bytes | BlockRecord]], *,
                    display: str | os.PathLike | None = None) -> Path:
    """Write the whole file of :func:`write_levels_header` at ``path`` in this process: its
    header, then its blocks copied from their part files."""
    copies = write_levels_header(path, layouts, metadata, blocks, display=display)
    copy_blocks(path, [copy for level in copies for copy in level.values()], display=display)
    return Path(path)


def _length(source: bytes | BlockRecord) -> int:
    return len(source) if isinstance(source, bytes) else source.length
