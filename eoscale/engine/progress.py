"""How the engine reports progress: a protocol the caller implements (the CLI draws it with rich).

The engine never draws anything; it calls ``started``, ``advance`` and ``finished`` on the object it
was given, from the main process only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PhaseReport:
    """What a finished phase (load, map, reduce, write) did and how long it took."""

    kind: str
    name: str
    tiles: int
    pixels: int
    seconds: float

    @property
    def megapixels_per_second(self) -> float:
        return self.pixels / 1e6 / self.seconds if self.seconds > 0 else float("inf")


class Progress(Protocol):
    def started(self, kind: str, name: str, total: int) -> None:
        """A phase begins: ``kind`` is load, map, reduce or write; ``total`` counts its tiles."""

    def advance(self, done: int) -> None:
        """``done`` more tiles of the current phase are finished."""

    def finished(self, report: PhaseReport) -> None:
        """The current phase ended successfully."""


class NoProgress:
    """Reports nothing."""

    def started(self, kind: str, name: str, total: int) -> None:
        pass

    def advance(self, done: int) -> None:
        pass

    def finished(self, report: PhaseReport) -> None:
        pass
