"""Finished tiles a run records, and a resumed run takes back instead of computing them again.

A run that keeps a journal (:mod:`eoscale.pipeline.resume`) gives its engine a :class:`UnitLog`.
A map whose every output is encoded by the workers (:mod:`eoscale.engine.encoded`: compressed
blocks appended to part files, uncompressed ones, a spilled image's, written in place into
their file) can then be resumed tile by tile: as chunks of its tiles come back, their block
records (and the partials of the reduces its tiles feed) go to the log, which flushes the files
they name (part files, or the file written in place) to the disk before it records them; a
resumed run hands the recorded tiles to the output files as if they had just come back (their
blocks stay in the killed run's files, which the assembly copies from) and runs only the others.
A reduce's partials are recorded and taken back the same way. A map with an output held in
memory, or written by this process, is not: it is computed again whole (its step is the unit).
"""

from __future__ import annotations

import base64
import os
import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from eoscale.engine.encoded import EncodedTarget
from eoscale.engine.tiling import Tile
from eoscale.io.blocks import BlockRecord

Collect = Callable[[Sequence[int], Any], None]


class UnitLog(Protocol):
    """Where a run records its finished tiles, by step, and finds those a killed run did."""

    def recorded(self, step: str) -> Mapping[int, Any]:
        """The units of ``step`` a killed run recorded, by tile (as :meth:`add` was given
        them)."""

    def add(self, step: str, units: Mapping[int, Any], files: set[str], last: bool) -> None:
        """Record tiles' units (JSON values), once ``files`` (the part files they name) are
        flushed to the disk; ``last``: the step's last ones (flush now)."""


def resumable(encoded: Sequence[EncodedTarget | None]) -> bool:
    """Whether a map's outputs are all encoded by the workers, into part files or in place (so
    its tiles can be resumed)."""
    return bool(encoded) and all(target is not None for target in encoded)


def records_tiles(units: UnitLog | None, encoded: Sequence[EncodedTarget | None],
                  remaining: Sequence[int], tiles: Sequence[Tile]) -> bool:
    """Whether a map's tiles are recorded as they come back (and taken back by a resume): with
    a log, outputs all encoded into part files, and every tile to run (none stored here)."""
    return units is not None and resumable(encoded) and len(remaining) == len(tiles)


def resumed_map(units: UnitLog | None, step: str, tiles: Sequence[Tile],
                encoded: Sequence[EncodedTarget | None], remaining: Sequence[int],
                collect: Collect) -> tuple[Sequence[int], Collect]:
    """The tiles a map still runs, and where their results go: with a log and outputs all
    encoded into part files, the recorded tiles whose blocks are still there are handed to
    ``collect`` now (the output files, and the folds of the reduces the map feeds)
    and left out, and every tile that comes back is recorded; else as they are."""
    if units is None or not records_tiles(units, encoded, remaining, tiles):
        return remaining, collect
    taken = {}
    for index, unit in units.recorded(step).items():
        result = _map_result(unit)
        if result is not None:
            taken[index] = result
    if taken:
        collect(sorted(taken), [(index, taken[index]) for index in sorted(taken)])
    left = [index for index in remaining if index not in taken]
    count = [0]

    def recording(chunk: Sequence[int], done: Any) -> None:
        collect(chunk, done)
        count[0] += len(chunk)
        found: dict[int, Any] = {}
        files: set[str] = set()
        for index, result in done:
            found[index] = _map_unit(result, files)
        units.add(step, found, files, count[0] == len(left))

    return left, recording


def resumed_reduce(units: UnitLog | None, step: str, remaining: Sequence[int],
                   collect: Collect) -> tuple[Sequence[int], Collect]:
    """The tiles a reduce still runs, and where their partials go (see :func:`resumed_map`)."""
    if units is None:
        return remaining, collect
    taken = {index: _loads(unit["partial"]) for index, unit in units.recorded(step).items()}
    if taken:
        collect(sorted(taken), [taken[index] for index in sorted(taken)])
    left = [index for index in remaining if index not in taken]
    count = [0]

    def recording(chunk: Sequence[int], partials: Any) -> None:
        collect(chunk, partials)
        count[0] += len(chunk)
        units.add(step, {index: {"partial": _dumps(partial)}
                         for index, partial in zip(chunk, partials)}, set(),
                  count[0] == len(left))

    return left, recording


def _map_unit(result: Any, files: set[str]) -> dict[str, Any]:
    """A map tile's result (its blocks' places by output, and the partials of the reduces it
    feeds) as a JSON unit; the part files it names are added to ``files``."""
    files.update(record.part for record in _records_in(result))
    return {"result": _dumps(result)}


def _map_result(unit: Mapping[str, Any]) -> Any:
    """A map tile's result from its unit, or None when a block it names is not (all) there."""
    result = _loads(unit["result"])
    for record in _records_in(result):
        try:
            if os.stat(record.part).st_size < record.offset + record.length:
                return None
        except OSError:
            return None
    return result


def _records_in(value: Any) -> list[BlockRecord]:
    """The block records a tile's result holds, at any depth (an output's blocks by number, a
    pyramid's by level, a kept level's pixels with their window)."""
    if isinstance(value, BlockRecord):
        return [value]
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [record for item in value for record in _records_in(item)]
    return []


def _dumps(value: Any) -> str:
    return base64.b64encode(pickle.dumps(value)).decode()


def _loads(text: str) -> Any:
    return pickle.loads(base64.b64decode(text))
