"""The memory of a process tree, as the kernel accounts it: PSS summed over the processes.

PSS (proportional set size) divides each shared page among the processes mapping it, so a
shared-memory raster mapped by the main process and its workers counts once, and libraries and
pages shared after fork are not counted once per process: the sum over a tree is its real
footprint. Read from ``/proc/PID/smaps_rollup`` (Linux); elsewhere nothing is measured.

:class:`TreeSampler` samples a tree's PSS in a thread and keeps the peak: ``eoscale run`` reports
its own peak with it, and the benchmarks measure commands with it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

PROC = Path("/proc")
ROLLUP_KEYS = ("Pss", "Pss_Anon", "Pss_Shmem", "Pss_File")


def parent_map() -> dict[int, list[int]]:
    """Every live process's children, from the ppid field of /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                text = stat.read()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: fields start after the last ')'.
        fields = text[text.rindex(b")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def descendants(root: int) -> list[int]:
    """``root`` and every live descendant of it."""
    children = parent_map()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def rollup(pid: int) -> dict[str, int] | None:
    """Pss and its parts (bytes) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as file:
            text = file.read().decode()
    except (OSError, UnicodeDecodeError):
        return None
    values = {}
    for line in text.splitlines()[1:]:
        key, _, rest = line.partition(":")
        if key in ROLLUP_KEYS:
            values[key] = int(rest.split()[0]) * 1024
    return values or None


def own_pss() -> int | None:
    """This process's PSS in bytes, or None where it cannot be read."""
    values = rollup(os.getpid())
    return values.get("Pss") if values else None


class TreeSampler(threading.Thread):
    """Samples the summed PSS of a process tree until stopped; keeps the peak.

    Reading smaps_rollup makes the kernel walk every mapped page, about 10 ms per sample for a
    tree holding a gigabyte in 4 KiB pages: the thread runs at nice 10 so that, on a machine the
    measured tree saturates, it takes less of the CPU the tree could use (it then samples less
    often), finds the tree anew only every ``RESCAN`` samples (eoscale forks its workers at the
    start), and counts its own CPU time (``cpu_s``), which the harness reports. With a
    ``share`` (of one core), after its first ``full_rate_s`` seconds (a short run's peak is
    brief, and its samples cheap), it samples at most as often as keeps its own CPU under that
    share: a run measuring itself must not spend on measuring what its workers need (a gigabyte
    mapped by three processes costs 15 to 30 ms a sample: at every 50 ms, a third of a core),
    and a long run's peak lasts (a step's images and its workers' tiles).
    """

    RESCAN = 10

    def __init__(self, root: int, interval: float, share: float | None = None,
                 full_rate_s: float = 0.0):
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.share = share
        self.full_rate_s = full_rate_s
        self.peak = 0
        self.peak_parts: dict[str, int] = {}
        self.peak_processes = 0
        self.samples = 0
        self.cpu_s = 0.0
        self.tree: list[int] = []
        self._stop_event = threading.Event()

    def sample(self) -> None:
        if self.samples % self.RESCAN == 0 or not self.tree:
            self.tree = descendants(self.root)
        total: dict[str, int] = dict.fromkeys(ROLLUP_KEYS, 0)
        alive = []
        for pid in self.tree:
            values = rollup(pid)
            if values is None:
                continue
            alive.append(pid)
            for key, value in values.items():
                total[key] += value
        self.tree = alive
        self.samples += 1
        if total["Pss"] > self.peak:
            self.peak = total["Pss"]
            self.peak_parts = {k: v for k, v in total.items() if k != "Pss"}
            self.peak_processes = len(alive)

    def run(self) -> None:
        started = time.thread_time()
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        next_at = first = time.perf_counter()
        while not self._stop_event.is_set():
            before = time.thread_time()
            self.sample()
            interval = self.interval
            if self.share and time.perf_counter() - first > self.full_rate_s:
                # no more often than keeps this thread under its share of a core
                interval = max(interval, (time.thread_time() - before) / self.share)
            next_at = max(next_at + interval, time.perf_counter())
            self._stop_event.wait(max(0.0, next_at - time.perf_counter()))
        self.cpu_s = time.thread_time() - started

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
