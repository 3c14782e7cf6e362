"""Run the ``eoscale`` command with its journal switched off, or with the journal's work timed:
how the resume benchmark measures what the journal costs, without a user-facing switch.

    python benchmarks/journal_probe.py off   -- run PIPELINE ...   # no journal at all
    python benchmarks/journal_probe.py timed -- run PIPELINE ...   # journal on, its work timed

``off`` runs the pipeline as the library does when it is asked for no journal
(``run_pipeline(resuming=None)``): the runner's journal context yields None, so nothing is
fingerprinted (no hashing of the inputs' first blocks and of the callables' modules), no
journal is created, no staged file or part file is flushed for it, and the engine gets no
unit log (its tiles' results are not pickled for the journal). Everything else (the command
line, the plan, the outputs, the clean-ups) is as in a normal run. This is a wider switch
than stubbing ``RunJournal``'s recording (``add``, ``_flush``, ``step_done``) alone: it also
removes what the journal costs before the first tile and per tile, which is all the journal's.

``timed`` changes nothing but wraps, in the main process, every function through which the
journal works (:data:`TIMED`) to add up the CPU time of the thread that calls it
(``time.thread_time``), its wall time (fsyncs wait on the disk: wall, not CPU) and its calls;
nested calls count once in the total, in the outermost; :data:`DETAILS` say where inside. At
exit they are written as JSON to the file ``EOSCALE_BENCH_JOURNAL_TIMES`` names.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

TIMES_ENV = "EOSCALE_BENCH_JOURNAL_TIMES"
#: (module, owner, attribute): the journal's work. RunJournal.__init__ fingerprints the run,
#: looks for a killed run's journal and creates this one (flushed); step_done flushes the staged
#: and spilled files and records the step; add records tiles, and every FLUSH_SECONDS flushes
#: their part files (_flush); _remove deletes it at the end; _map_unit / _dumps pickle each
#: tile's result or partial for the journal (in the engine's collection of results); describe
#: looks for a killed run before the run starts.
TIMED = (
    ("eoscale.pipeline.resume", "RunJournal", "__init__"),
    ("eoscale.pipeline.resume", "RunJournal", "step_done"),
    ("eoscale.pipeline.resume", "RunJournal", "add"),
    ("eoscale.pipeline.resume", "RunJournal", "_flush"),
    ("eoscale.pipeline.resume", "RunJournal", "_remove"),
    ("eoscale.engine.units", None, "_map_unit"),
    ("eoscale.engine.units", None, "_dumps"),
    ("eoscale.cli.run", None, "describe"),
)
#: Inside those, where the time goes (timed inclusively, not added to the total): the
#: fingerprint (hashing inputs and code), the flushes of part, staged and journal files, the
#: flush of the journal's folder, and the journal's appends.
DETAILS = (
    ("eoscale.pipeline.resume", None, "fingerprint"),
    ("eoscale.pipeline.resume", None, "_fsync"),
    ("eoscale.io.journal", "Journal", "sync"),
    ("eoscale.io.journal", None, "_sync_folder"),
    ("eoscale.io.journal", "Journal", "record"),
)


def switch_off() -> None:
    """Make every run of this process keep no journal (see the module)."""
    from eoscale.pipeline import runner

    @contextlib.contextmanager
    def no_journal(*args: Any) -> Iterator[None]:
        yield None

    runner._journal = no_journal


class Timings:
    """CPU and wall seconds spent in the wrapped functions, by name (inclusive), and in all of
    :data:`TIMED` (``cpu_s``, ``wall_s``: outermost calls only, so nothing counts twice)."""

    def __init__(self) -> None:
        self.by_name: dict[str, dict[str, float]] = {}
        self.total = {"cpu_s": 0.0, "wall_s": 0.0}
        self._lock = threading.Lock()
        self._depth = threading.local()

    def wrap(self, name: str, fn: Callable[..., Any], counted: bool) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(self._depth, "value", 0)
            outermost = counted and not depth
            self._depth.value = depth + counted
            cpu, wall = time.thread_time(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
                self._depth.value = depth
                with self._lock:
                    entry = self.by_name.setdefault(name, {"calls": 0, "cpu_s": 0.0,
                                                           "wall_s": 0.0})
                    entry["calls"] += 1
                    entry["cpu_s"] += cpu
                    entry["wall_s"] += wall
                    if outermost:
                        self.total["cpu_s"] += cpu
                        self.total["wall_s"] += wall

        return timed

    def install(self) -> None:
        import importlib

        for found, counted in ((TIMED, True), (DETAILS, False)):
            for module_name, owner, attribute in found:
                module = importlib.import_module(module_name)
                target = getattr(module, owner) if owner else module
                label = f"{owner}.{attribute}" if owner else attribute
                setattr(target, attribute, self.wrap(label, getattr(target, attribute), counted))

    def dump(self, path: str, pid: int) -> None:
        if os.getpid() != pid:  # a forked worker exiting through Python: not the main process
            return
        with self._lock:
            data = {"by_name": self.by_name, **self.total}
        with open(path, "w") as out:
            json.dump(data, out, indent=2)


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] not in ("off", "timed") or argv[1] != "--":
        raise SystemExit("usage: journal_probe.py off|timed -- EOSCALE_ARGUMENTS...")
    if argv[0] == "off":
        switch_off()
    else:
        timings = Timings()
        timings.install()
        path = os.environ.get(TIMES_ENV)
        if path:
            atexit.register(timings.dump, path, os.getpid())
    from eoscale.cli.main import main as eoscale_main

    eoscale_main(argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
