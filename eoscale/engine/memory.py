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
import math
import os
import threading
import time
from pathlib import Path

PROC = Path("/proc")
ROLLUP_KEYS = ("Pss", "Pss_Anon", "Pss_Shmem", "Pss_File")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


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


def own_peak_rss() -> int:
    """The most memory this process has had resident so far, in bytes (its high-water mark,
    which the kernel keeps: nothing to sample)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def resident_pages(pid: int) -> int | None:
    """The pages ``pid`` has resident (anonymous, file and shared memory: its RSS), or None if
    it is gone: a counter the kernel keeps, read from ``/proc/PID/statm`` without walking any
    page (a hundredth of a millisecond, where a PSS costs milliseconds)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as file:
            return int(file.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None


class TreeSampler(threading.Thread):
    """Samples the summed PSS of a process tree until stopped; keeps the peak.

    Reading smaps_rollup makes the kernel walk every page a process has resident, about 10 ms
    per sample for a tree holding a gigabyte in 4 KiB pages (3 ms for a Python process that
    imported numpy, rasterio and scipy, by their libraries alone): the thread runs at nice 10
    so that, on a machine the measured tree saturates, it takes less of the CPU the tree could
    use (it then samples less often), finds the tree anew (a scan of every process of the
    machine) at most every ``RESCAN_SECONDS`` when it samples (eoscale forks its workers at the
    start), and counts its own CPU time (``cpu_s``), which the harness reports.

    Without a ``share`` it samples every ``interval`` (the benchmarks' harness, which is not
    part of what it measures). With one (a run measuring itself must not spend on measuring
    what its workers need), the PSS is read only when it may matter, and never more often than
    keeps the thread's CPU under ``share`` of one core (``start_share`` during the first
    ``full_rate_s`` seconds, where a short run's brief peak must not be missed while its
    samples are cheap). Every ``interval`` (``watch_s`` after the first seconds: at 0.15 ms a
    look, every 50 ms would be 0.3 % of a core) the thread reads instead the kernel's counts
    of resident pages (:func:`resident_pages`), and reads the PSS when the tree may be above
    its peak: when its PSS at the last sample plus every page a process gained since (counted
    whole, as if nobody shared it) exceeds the peak by ``PEAK_STEP`` of it. What those counts
    cannot see (a worker writing to pages it shares with its parent since the fork, which
    doubles them; a page one process drops while another maps a new one; processes outside
    the tree leaving pages they shared) is caught by a sample at least every ``floor_s``
    seconds, or every eighth of the time elapsed when that is shorter (:meth:`_floor`).
    """

    RESCAN_SECONDS = 0.5
    #: The least rise of the peak worth a sample, as a share of the peak: a process whose memory
    #: creeps up (a client receiving results) is not sampled at every page it gains.
    PEAK_STEP = 1 / 64

    def __init__(self, root: int, interval: float, share: float | None = None,
                 full_rate_s: float = 0.0, start_share: float | None = None,
                 floor_s: float = 5.0, watch_s: float = 0.25):
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.share = share
        self.full_rate_s = full_rate_s
        self.start_share = start_share
        self.floor_s = floor_s
        self.watch_s = watch_s
        self.peak = 0
        self.peak_parts: dict[str, int] = {}
        self.peak_processes = 0
        self.samples = 0
        self.cpu_s = 0.0
        self.tree: list[int] = []
        self._scanned_at = -math.inf
        self._sampled_pss = 0
        self._sampled_pages: dict[int, int] = {}
        self._stop_event = threading.Event()

    def sample(self) -> None:
        """Read the PSS of every process of the tree (the tree found anew if it is time)."""
        self._rescan()
        total: dict[str, int] = dict.fromkeys(ROLLUP_KEYS, 0)
        alive, pages = [], {}
        for pid in self.tree:
            resident = resident_pages(pid) if self.share else None
            values = rollup(pid)
            if values is None:
                continue
            alive.append(pid)
            if resident is not None:
                pages[pid] = resident
            for key, value in values.items():
                total[key] += value
        self.tree = alive
        self.samples += 1
        self._sampled_pss, self._sampled_pages = total["Pss"], pages
        if total["Pss"] > self.peak:
            self.peak = total["Pss"]
            self.peak_parts = {k: v for k, v in total.items() if k != "Pss"}
            self.peak_processes = len(alive)

    def may_exceed_peak(self) -> bool:
        """Whether the tree's resident pages say its PSS may now be above the peak (see the
        class's docstring): the PSS of the last sample plus every page gained since, over the
        tree the last sample found (a process started since counts from the next sample)."""
        gained = 0
        for pid in self.tree:
            resident = resident_pages(pid)
            if resident is not None:
                gained += max(0, resident - self._sampled_pages.get(pid, 0))
        return self._sampled_pss + gained * PAGE_SIZE > self.peak * (1 + self.PEAK_STEP)

    def _rescan(self) -> None:
        now = time.perf_counter()
        if not self.tree or now - self._scanned_at >= self.RESCAN_SECONDS:
            self.tree = descendants(self.root)
            self._scanned_at = now

    def run(self) -> None:
        started = time.thread_time()
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        next_at = first = sampled_at = time.perf_counter()
        allowed_at = -math.inf  # the earliest next sample within the thread's share
        while not self._stop_event.is_set():
            now = time.perf_counter()
            if self.share is None or (now >= allowed_at and (
                    self.samples == 0 or now - sampled_at >= self._floor(now - first)
                    or self.may_exceed_peak())):
                before = time.thread_time()
                self.sample()
                share = self.start_share if now - first < self.full_rate_s else self.share
                if share:
                    allowed_at = now + (time.thread_time() - before) / share
                sampled_at = now
            watching = self.share is not None and now - first >= self.full_rate_s
            next_at = max(next_at + (max(self.interval, self.watch_s) if watching
                                     else self.interval), time.perf_counter())
            self._stop_event.wait(max(0.0, next_at - time.perf_counter()))
        self.cpu_s = time.thread_time() - started

    def _floor(self, elapsed: float) -> float:
        """The longest wait between two samples after ``elapsed`` seconds: ``floor_s``, but an
        eighth of the time elapsed while that is shorter (at least ``2 * watch_s``), so that a
        run of a few seconds, whose peak lasts a fraction of a second, gets a few samples
        its resident pages did not call for too (one of 4.5 s was once measured 15 % under
        its peak)."""
        return min(self.floor_s, max(2 * self.watch_s, elapsed / 8))

    def stop(self) -> None:
        """Stop sampling; one last sample if the resident pages say the peak may have been
        missed (a run shorter than the samples its share allows: its workers still hold what
        they reached)."""
        self._stop_event.set()
        self.join()
        if self.share is not None and self.may_exceed_peak():
            with contextlib.suppress(OSError):
                self.sample()
