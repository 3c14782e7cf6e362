"""Run a command and measure its whole process tree: wall time, CPU time, peak PSS, foreign load.

- Wall time: from just before the process is started to its exit (``time.perf_counter``).
- CPU time: user + system from ``os.wait4`` on the child. The kernel adds to a process's usage that
  of every descendant it has waited for, so this covers eoscale's workers (which it joins) and
  GDAL's threads. Orphans reparented elsewhere would be missed; the run records the descendants
  still alive when the child exited (``stragglers``), which should be none.
- The main process's own CPU time (``root_cpu_s``): user + system of the child alone (all its
  threads, none of its children), read from /proc/PID/stat once it has exited but before it is
  reaped (``waitid`` with ``WNOWAIT``: a zombie keeps its counters), so nothing is missed at the end.
- Peak memory: every ``interval`` seconds a thread finds the tree (the child and all its
  descendants, by the ppid field of /proc/*/stat) and sums ``Pss`` from /proc/PID/smaps_rollup.
  PSS divides each shared page among the processes mapping it, so a shared-memory raster mapped by
  the main process and both workers counts once, not three times; the sum is the tree's real
  footprint (private pages, its share of libraries, shared rasters once). The peak is the max over
  samples; a spike shorter than the interval can be missed. Pss_Anon / Pss_Shmem / Pss_File at
  that sample say what the peak was made of. Page cache of files read or written is not counted.
- Foreign load: CPU time the whole machine spent busy (/proc/stat) during the run, less the tree's
  own and the sampler's, divided by the wall time: how many cores other work took meanwhile.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eoscale.engine.memory import TreeSampler
from eoscale.engine.shared import pid_alive


@dataclass
class Measured:
    """One run of a command, measured."""

    command: list[str]
    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    peak_pss: int                      # bytes
    peak_parts: dict[str, int]         # Pss_Anon, Pss_Shmem, Pss_File (bytes) at the peak sample
    peak_processes: int                # processes in the tree at the peak sample
    samples: int
    sampler_cpu_s: float               # CPU time the PSS sampler itself took (in the harness)
    load_before: float                 # 1-minute load average when the run started
    foreign_cores: float               # average cores busy with other work during the run
    root_cpu_s: float = float("nan")   # the child's own CPU (its threads, not its children)
    stragglers: list[str] = field(default_factory=list)  # "pid name" of descendants left alive
    quiet_wait_s: float = 0.0          # waited for a quiet machine before the run (run.py)
    busy_before_cores: float = float("nan")  # other work's cores just before the run (run.py)
    stdout: str = ""
    stderr: str = ""

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def as_dict(self) -> dict:
        data = asdict(self)
        data["cpu_s"] = self.cpu_s
        data.pop("stdout")
        data.pop("stderr")
        return data


def cpu_busy_seconds() -> float:
    """Seconds of CPU time the whole machine has spent not idle (all cores), from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    # guest time is already counted in user time
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(below_cores: float, timeout: float, window: float = 1.0) -> tuple[float, float]:
    """Wait until the machine's other work takes fewer than ``below_cores`` cores over ``window``
    seconds (checked from /proc/stat), or ``timeout`` seconds have passed.

    Returns (seconds waited, cores busy in the last window). This process and its idle threads
    count as nothing, so the busy cores are other people's.

    The page cache's dirty pages are written first (``sync``): a run that follows another would
    else pay for the writeback of the other's output (W1's COG after its GeoTIFF: 10 to 13 s of
    system CPU instead of 3, the 1.4 GB of the GeoTIFF and the COG's parts and copies above the
    kernel's dirty thresholds together). Each run then starts as the first of a session does.
    """
    started = time.perf_counter()
    os.sync()
    while True:
        before = cpu_busy_seconds()
        time.sleep(window)
        busy = (cpu_busy_seconds() - before) / window
        waited = time.perf_counter() - started
        if busy < below_cores or waited >= timeout:
            return waited, busy


def run_measured(command: Sequence[str], *, interval: float | None = 0.05, cwd: str | None = None,
                 env: dict[str, str] | None = None) -> Measured:
    """Run ``command`` to its end, measuring its process tree (see the module's docstring);
    ``interval`` None: no memory sampling at all (``peak_pss`` 0), for timing runs."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        load_before = os.getloadavg()[0]
        busy_before = cpu_busy_seconds()
        started = time.perf_counter()
        process = subprocess.Popen(list(command), stdout=out, stderr=err, cwd=cwd, env=env)
        sampler = TreeSampler(process.pid, interval or 0.0)
        if interval:
            # Found anew at least every ten samples: a short run's workers (a tiny raster's live
            # a few tenths of a second) would else be missed between two finds of the tree, 0.5 s
            # apart (a run of 1.0 s measured at 85 MiB, its workers unseen, for 119 MiB).
            sampler.RESCAN_SECONDS = min(TreeSampler.RESCAN_SECONDS, 10 * interval)
            sampler.start()
        try:
            os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
            root_cpu = own_cpu_seconds(process.pid)
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            if interval:
                sampler.stop()
            raise
        wall = time.perf_counter() - started
        busy = cpu_busy_seconds() - busy_before
        if interval:
            sampler.stop()
        process.returncode = os.waitstatus_to_exitcode(status)
        stragglers = _stragglers(sampler.tree, process.pid)
        out.seek(0)
        err.seek(0)
        cpu = usage.ru_utime + usage.ru_stime
        return Measured(
            command=list(command), returncode=process.returncode, wall_s=wall,
            user_s=usage.ru_utime, sys_s=usage.ru_stime, peak_pss=sampler.peak,
            peak_parts=sampler.peak_parts, peak_processes=sampler.peak_processes,
            root_cpu_s=root_cpu, samples=sampler.samples, sampler_cpu_s=sampler.cpu_s, load_before=load_before,
            foreign_cores=max(0.0, (busy - cpu - sampler.cpu_s) / wall) if wall > 0 else 0.0,
            stragglers=stragglers,
            stdout=out.read().decode(errors="replace"), stderr=err.read().decode(errors="replace"))


def own_cpu_seconds(pid: int) -> float:
    """User + system seconds of process ``pid`` itself (utime and stime of /proc/PID/stat: all
    its threads, none of its children); NaN when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state is fields[0]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stragglers(tree: list[int], root: int, grace: float = 2.0) -> list[str]:
    """Descendants seen in the last sample still alive ``grace`` seconds after the root exited
    (multiprocessing's resource tracker, for one, exits just after the process it served)."""
    deadline = time.perf_counter() + grace
    while True:
        alive = [pid for pid in tree if pid != root and pid_alive(pid)]
        if not alive or time.perf_counter() > deadline:
            return [f"{pid} {_command(pid)}" for pid in alive]
        time.sleep(0.05)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"
