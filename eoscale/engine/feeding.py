"""Reduces fed by a map's tiles: the partials folded in tile order, without reading the map's
outputs back.

A reduce (N images -> a result: per-tile partials, merged by ``combine`` in tile order, then
``finalize``-d) normally runs over its own tiles after the images it reads exist. When every
image it reads is an output of one map and it needs no margin, the map's tiles can feed it
instead: the worker that computed a tile's results calls the reduce's callable on the tile's
core of them, cut and cast as the outputs store them, so exactly the arrays a reduce over those
outputs would read on that tile (:meth:`~eoscale.engine.tasks.FeedWork.partial`). The partials
travel back with the tile and this process folds them in tile order (:class:`TileOrderFold`), as
:meth:`Engine.reduce <eoscale.engine.core.Engine.reduce>` does: with the map's tiling the result
is the separate reduce's, bit for bit. A written or spilled output is thus never read back and
decoded again for its statistics.

:class:`FedReduce` describes one such reduce; a :class:`Feeding` gathers the reduces one map
feeds, is handed to :meth:`Engine.map <eoscale.engine.core.Engine.map>` (or ``map_fused``), and
holds their results when the map has run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eoscale.engine.assembly import OutputFiles
from eoscale.engine.contract import CombineFn, FinalizeFn, declared, declared_writable_inputs
from eoscale.engine.tasks import FeedWork, user_traceback
from eoscale.engine.tiling import Tile
from eoscale.errors import USER_ERRORS, ConfigError, StepError


class TileOrderFold:
    """Folds per-tile partials with ``combine`` in tile order, holding back those that come early."""

    def __init__(self, step: str, combine: CombineFn, tiles: Sequence[Tile]):
        self.step = step
        self.combine = combine
        self.tiles = tiles
        self.next = 0
        self.value: Any = None
        self.early: dict[int, Any] = {}

    def add(self, chunk: Sequence[int], partials: Sequence[Any]) -> None:
        self.early.update(zip(chunk, partials))
        while self.next in self.early:
            partial = self.early.pop(self.next)
            if self.next == 0:
                self.value = partial
            else:
                try:
                    self.value = self.combine(self.value, partial)
                except USER_ERRORS as exc:  # a user error, reported with its place
                    # A combine may say its own name, and which tile's partial it was merging
                    # (EOScale 1.0's concatenate_filter merges the left one too).
                    named = getattr(self.combine, "eoscale_name", "combine")
                    tile = getattr(exc, "eoscale_tile_index", self.next)
                    raise StepError(f"{named} raised {type(exc).__name__}: {exc}",
                                    step=self.step, tile=self.tiles[tile].describe(),
                                    details=user_traceback(exc)) from exc
            self.next += 1

    def check_complete(self) -> None:
        if self.next != len(self.tiles):
            raise StepError(f"only {self.next} of {len(self.tiles)} tiles were reduced", step=self.step)


def reduce_functions(name: str, fn: Callable, combine: CombineFn | None,
                     finalize: FinalizeFn | None) -> tuple[CombineFn, FinalizeFn | None]:
    """A reduce's combine and finalize functions: those given, else its callable's attributes;
    a reduce without a combine function is refused."""
    combine = combine or declared(fn, "combine")
    if combine is None:
        raise ConfigError(f"step '{name}': a reduce needs a combine function")
    return combine, finalize or declared(fn, "finalize")


def finalized(name: str, value: Any, finalize: FinalizeFn | None,
              params: Mapping[str, Any]) -> Any:
    """A reduce's folded ``value`` through its ``finalize`` function, if it has one; a raise
    there is the step's error."""
    if finalize is None:
        return value
    try:
        return finalize(value, params)
    except USER_ERRORS as exc:  # a user error, reported with its place
        raise StepError(f"finalize raised {type(exc).__name__}: {exc}", step=name,
                        details=user_traceback(exc)) from exc


@dataclass(frozen=True)
class FedReduce:
    """A reduce fed by a map's tiles: its step ``name``, callable, combine and finalize
    functions (None: the callable's attributes), params, whether its tiles get private writable
    arrays (None: the callable's attribute), and ``sources``: the positions, among the map's
    outputs, of the images it reads, in the order it reads them."""

    name: str
    fn: Callable
    sources: tuple[int, ...]
    combine: CombineFn | None = None
    finalize: FinalizeFn | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    writable_inputs: bool | None = None


class Feeding:
    """The reduces one map's tiles feed: what their workers need (:meth:`work`), the folds of
    their partials while the map runs, and, once it has, their :attr:`results` by step name."""

    def __init__(self, reduces: Sequence[FedReduce]):
        self.reduces = tuple(reduces)
        self.functions = [reduce_functions(r.name, r.fn, r.combine, r.finalize)
                          for r in self.reduces]
        self.results: dict[str, Any] = {}
        self._folds: list[TileOrderFold] = []

    def work(self, step: str, profiles: Sequence[Mapping[str, Any]]) -> tuple[FeedWork, ...]:
        """The reduces as they travel to the workers of map ``step``, whose outputs have
        ``profiles``; a source that is no output of the map is refused."""
        works = []
        for reduce in self.reduces:
            wrong = [s for s in reduce.sources if not 0 <= s < len(profiles)]
            if not reduce.sources or wrong:
                raise ConfigError(f"step '{reduce.name}': fed by step '{step}', which has "
                                  f"{len(profiles)} output(s), it reads output positions "
                                  f"{list(reduce.sources)}")
            works.append(FeedWork(reduce.name, reduce.fn, tuple(reduce.sources),
                                  dict(reduce.params),
                                  tuple(dict(profiles[s]) for s in reduce.sources),
                                  declared_writable_inputs(reduce.fn, reduce.writable_inputs)))
        return tuple(works)

    def start(self, tiles: Sequence[Tile]) -> None:
        """Begin folding, for a map that runs ``tiles``."""
        self._folds = [TileOrderFold(r.name, combine, tiles)
                       for r, (combine, _) in zip(self.reduces, self.functions)]
        self.results = {}

    def add(self, index: int, partials: Sequence[Any]) -> None:
        """Fold tile ``index``'s partials, one per reduce."""
        for fold, partial in zip(self._folds, partials):
            fold.add([index], [partial])

    def finish(self) -> dict[str, Any]:
        """Every reduce's result, finalized, once every tile was folded."""
        for fold in self._folds:
            fold.check_complete()
        self.results = {r.name: finalized(r.name, fold.value, finalize, r.params)
                        for r, fold, (_, finalize) in zip(self.reduces, self._folds,
                                                          self.functions)}
        return self.results


def fed_collector(tiles: Sequence[Tile], files_out: OutputFiles,
                  feeding: Feeding | None) -> Callable[[Sequence[int], Any], None]:
    """Where a map's chunk results go: the tiles of its written outputs to ``files_out``, and
    with a ``feeding`` (started here, for ``tiles``) each tile's partials to its folds."""
    if feeding is not None:
        feeding.start(tiles)

    def collect(_chunk: Sequence[int], done: Any) -> None:
        if feeding is None:
            if files_out:
                for index, results in done:
                    files_out.write(tiles[index], results)
            return
        for index, (results, partials) in done:
            if files_out:
                files_out.write(tiles[index], results)
            feeding.add(index, partials)

    return collect
