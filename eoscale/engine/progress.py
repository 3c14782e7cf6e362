"""How the engine reports progress: a protocol the caller implements (the CLI draws it with rich).

The engine never draws anything; it calls ``started``, ``advance`` and ``finished`` on the object it
was given, from the main process only. :class:`PhaseCount` is what a caller keeps of the current
phase to say how far it is: tiles done, rate, elapsed time and an estimate of the time left.
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


@dataclass
class PhaseCount:
    """The tiles of the current phase done so far, counted from ``started`` (a monotonic time)."""

    kind: str
    name: str
    total: int
    started: float
    done: int = 0

    def elapsed(self, now: float) -> float:
        return max(now - self.started, 0.0)

    def rate(self, now: float) -> float | None:
        """Tiles a second so far; None before the first tile or the first instant."""
        elapsed = self.elapsed(now)
        return self.done / elapsed if self.done and elapsed > 0 else None

    def left(self, now: float) -> float | None:
        """Seconds left at the rate so far; None while there is no rate."""
        rate = self.rate(now)
        return (self.total - self.done) / rate if rate else None

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0


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
