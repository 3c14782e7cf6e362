"""Everything the command line draws: progress (rich on a terminal, plain lines otherwise), tables."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Console

from eoscale.engine.progress import NoProgress, PhaseCount, PhaseReport
from eoscale.errors import ConfigError
from eoscale.sizes import size_text

if TYPE_CHECKING:  # rich's progress and tables, and the plan, are imported where they are used
    from rich.progress import TaskID
    from rich.table import Table

    from eoscale.pipeline.plan import ImagePlan, RunPlan, StepPlan


@dataclass
class Settings:
    """Output settings of the current command, set by the shared options."""

    verbose: bool = False
    quiet: bool = False


settings = Settings()


def console() -> Console:
    return Console(file=_Stdout(), highlight=False)


class _Stdout:
    """The standard output, for a run's progress and summary, that a reader who stops reading
    (``| head``, a ``tee`` that dies) or a full device does not stop: after a failed write what
    is printed is dropped (the output goes to the null device, as Python's documentation
    advises) and the run goes on, its outputs written. A broken stderr still fails as any
    error."""

    def __getattr__(self, name: str) -> object:
        return getattr(sys.stdout, name)

    def write(self, text: str) -> int:
        try:
            return sys.stdout.write(text)
        except OSError:  # a broken pipe, a full device (>/dev/full)
            _drop_stdout()
            return len(text)

    def flush(self) -> None:
        try:
            sys.stdout.flush()
        except OSError:
            _drop_stdout()


def _drop_stdout() -> None:
    """Point the standard output at the null device (its pipe has no reader any more, or its
    device is full); what Python still buffers for it is dropped."""
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()  # the buffered text now goes to the null device


def error_console() -> Console:
    return Console(stderr=True, highlight=False)


UNITS = {"load": "read", "map": "map", "reduce": "reduce", "write": "write"}
#: Off a terminal, a phase prints a progress line at least this often (seconds), besides one at
#: every tenth of its tiles; the environment's EOSCALE_PROGRESS_SECONDS overrides it.
PROGRESS_SECONDS = 30.0
PROGRESS_ENV = "EOSCALE_PROGRESS_SECONDS"


class RichProgress:
    """A progress bar per phase: tiles done of total, elapsed time and ETA."""

    def __init__(self, out: Console):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TextColumn("tiles"), TimeElapsedColumn(), TimeRemainingColumn(),
                              console=out, transient=False)
        self._task: TaskID | None = None
        self._live = False

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live:
            self._bars.stop()

    def started(self, kind: str, name: str, total: int) -> None:
        # The display's refresh thread starts with the first phase, after the engine has forked
        # its workers: forking while a thread holds a lock (stdout's) can deadlock the child.
        if not self._live:
            self._bars.start()
            self._live = True
        self._task = self._bars.add_task(f"{UNITS.get(kind, kind):>6} {name}", total=total)

    def advance(self, done: int) -> None:
        if self._task is not None:
            self._bars.advance(self._task, done)

    def finished(self, report: PhaseReport) -> None:
        if self._task is not None:
            self._bars.update(self._task, completed=report.tiles)
        self._task = None


class PlainProgress:
    """Log lines, for CI logs and batch jobs (a SLURM or PBS job's log): one when a phase starts,
    one at every tenth of its tiles and at least every ``interval`` seconds while it runs (tiles
    done of total, rate, elapsed, estimated time left), one when it ends.

    The lines every ``interval`` seconds come from a thread of their own, so that a phase whose
    tiles are slow to finish still shows it is alive; it starts with the first phase, after the
    engine has forked its workers, as :class:`RichProgress`'s display does.
    """

    def __init__(self, out: Console, interval: float = PROGRESS_SECONDS):
        self._out = out
        self._interval = interval
        self._lock = threading.Lock()
        self._phase: PhaseCount | None = None
        self._last_line = 0.0  # when the current phase's last line was printed (monotonic)
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            # A signal that came inside the ticker's start() leaves it not started (join
            # refuses it); the daemon thread, if it starts, sees the stop and ends.
            with contextlib.suppress(RuntimeError):
                self._ticker.join(timeout=2)

    def _line(self, text: str) -> None:
        self._out.print(f"{time.strftime('%H:%M:%S')} {text}", markup=False, soft_wrap=True)

    def started(self, kind: str, name: str, total: int) -> None:
        with self._lock:
            self._phase = PhaseCount(kind, name, total, time.monotonic())
            self._last_line = self._phase.started
            self._line(f"{UNITS.get(kind, kind)} {name}: {total} tile(s)")
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="eoscale-progress",
                                            daemon=True)
            self._ticker.start()

    def advance(self, done: int) -> None:
        with self._lock:
            phase = self._phase
            if phase is None:
                return
            before, phase.done = phase.done, phase.done + done
            now = time.monotonic()
            tenth = phase.done * 10 // max(phase.total, 1) > before * 10 // max(phase.total, 1)
            if phase.done < phase.total and (tenth or now - self._last_line >= self._interval):
                self._progress_line(phase, now)

    def finished(self, report: PhaseReport) -> None:
        with self._lock:
            self._phase = None
            rate = report.tiles / report.seconds if report.seconds > 0 else float("inf")
            self._line(f"{UNITS.get(report.kind, report.kind)} {report.name}: done in "
                       f"{report.seconds:.2f} s: {report.tiles}/{report.tiles} tiles (100 %), "
                       f"{rate:.3g} tiles/s, {report.megapixels_per_second:.1f} Mpx/s")

    def _progress_line(self, phase: PhaseCount, now: float) -> None:
        rate, left = phase.rate(now), phase.left(now)
        text = (f"{UNITS.get(phase.kind, phase.kind)} {phase.name}: {phase.done}/{phase.total} "
                f"tiles ({int(phase.percent)} %), ")
        text += f"{rate:.3g} tiles/s, " if rate is not None else "no tile done yet, "
        text += f"elapsed {duration_text(phase.elapsed(now))}, "
        text += f"about {duration_text(left)} left" if left is not None else "time left unknown"
        self._line(text)
        self._last_line = now

    def _tick(self) -> None:
        while not self._stop.wait(min(1.0, self._interval / 4)):
            with self._lock:
                now = time.monotonic()
                if self._phase is not None and now - self._last_line >= self._interval:
                    self._progress_line(self._phase, now)


def duration_text(seconds: float) -> str:
    """``12.3 s`` under a minute, ``4:05`` (minutes) under an hour, ``1:04:05`` beyond."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_seconds() -> float:
    """How often, at least, a phase prints a progress line off a terminal:
    :data:`PROGRESS_SECONDS`, or the environment's ``EOSCALE_PROGRESS_SECONDS``."""
    text = os.environ.get(PROGRESS_ENV)
    if text is None:
        return PROGRESS_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{PROGRESS_ENV}={text!r}: expected a number of seconds above 0")
    return seconds


class QuietProgress(NoProgress):
    def __enter__(self) -> QuietProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_for(out: Console) -> RichProgress | PlainProgress | QuietProgress:
    """Rich bars on a terminal, plain lines otherwise, nothing with --quiet."""
    if settings.quiet:
        return QuietProgress()
    return RichProgress(out) if out.is_terminal else PlainProgress(out, progress_seconds())


def summary_title(seconds: float, peak_bytes: int | None = None,
                  estimate_bytes: int | None = None, cluster: str | None = None) -> str:
    """A run's time, its measured peak memory (PSS of the process tree) and the plan's estimate
    of it, and the cluster it ran on (its address and workers), on one line."""
    title = f"done in {seconds:.2f} s"
    if cluster is not None:
        title += f" on cluster {cluster}"
    if peak_bytes is not None:
        title += f", peak memory {size_text(peak_bytes)}"
    if estimate_bytes is not None:
        title += f" (estimated {size_text(estimate_bytes)})"
    return title


def summary_table(reports: list[PhaseReport]) -> Table:
    """The phases of a run (its title, :func:`summary_title`, is printed on a line of its own:
    a table's title wraps at the console's width, which an address and the peak exceed)."""
    from rich.table import Table

    table = Table()
    for column in ("phase", "name", "tiles", "seconds", "Mpx/s"):
        table.add_column(column, justify="right" if column in ("tiles", "seconds", "Mpx/s") else "left")
    for r in reports:
        table.add_row(r.kind, r.name, str(r.tiles), f"{r.seconds:.2f}", f"{r.megapixels_per_second:.1f}")
    return table


def describe_estimate(plan: RunPlan) -> str:
    """One line: the estimated peak, where it is reached, what it is made of, what is available."""
    peak = plan.peak
    workers = plan.resources.workers
    text = (f"estimated peak memory {size_text(peak.total)}"
            f"{f' at step {plan.peak_step!r}' if plan.peak_step else ''} "
            f"({size_text(peak.images)} of images, {size_text(peak.tiles)} of tiles in {workers} "
            f"worker{'s' if workers > 1 else ''}, {size_text(peak.fixed)} for the processes)")
    if plan.resources.memory is not None:
        kind = "budget" if plan.resources.given else "default budget"
        text += (f"; {size_text(peak.held)} of it against the {kind} of "
                 f"{size_text(plan.resources.memory)}")
    return text


def _tiling_text(step: StepPlan, plan: RunPlan) -> str:
    if step.fused_into is not None:
        return f"fused into {plan.steps[step.fused_into].name}: computed inside its tiles"
    tiling = step.tiling
    size = f"{tiling.tile_size} px" if tiling.mode == "tiles" else f"{tiling.tile_size} rows"
    text = f"{tiling.tile_count} {tiling.mode} of {size}, {step.chunks} chunks"
    if step.chain:
        names = " > ".join(plan.steps[index].name for index in step.chain)
        text += (f"; runs the fused chain {names} (reads {step.tiling.margin} px around each tile, "
                 f"computes {step.recompute:.1%} more pixels than step by step)")
    return text + (f"; {step.feeding}" if step.feeding else "")


def _margin_text(step: StepPlan) -> str:
    if step.margin is None:
        return "from ${...} params, at run time"
    return f"{step.margin} ({step.margin_from})" if step.margin_from != "none" else "0"


def _image_text(image: ImagePlan) -> str:
    shape = f"{image.count} x {image.height} x {image.width} {image.dtype}"
    if not image.known:
        shape += " (assumed; the first tile tells)"
    return shape


def _written_text(image: ImagePlan) -> str:
    """Who encodes an image's file: the workers, or the main process and why ("": no file)."""
    if image.encoded is None:
        return ""
    assumed = "" if image.known else " (for the assumed dtype; the first tile tells)"
    overviews = ""
    if image.overviews_not_encoded == "":
        overviews = ", overviews too"
    elif image.overviews_not_encoded:
        overviews = f"; overviews made after it: {image.overviews_not_encoded}"
    if image.encoded:
        return f"encoded by the workers{overviews}{assumed}"
    return f"written by the main process: {image.not_encoded}{overviews}{assumed}"


def _when_text(plan: RunPlan, index: int) -> str:
    if index < 0:
        return "start"
    if index >= len(plan.steps):
        return "never"
    return plan.steps[index].name


def _workers_text(plan: RunPlan) -> str:
    text = f"{plan.resources.workers} worker(s)"
    cluster = plan.resources.cluster
    if cluster is not None:
        from eoscale.engine.cluster import parse_cluster

        try:
            asked = parse_cluster(cluster).local  # a local cluster's workers are this plan's
        except ValueError:
            asked = False
        text += f" of the Dask cluster {cluster}"
        if not asked:  # planned without asking the scheduler (as a dry run is)
            text += (" (assumed: the scheduler is not asked before the run, which plans again "
                     "for the workers it finds)")
    return text


def _asset_text(name: str, key: str) -> str:
    """An asset as an input names it, with its key when it is named otherwise: ``red (B04)``."""
    return name if name == key else f"{name} ({key})"


def stac_lines(plan: RunPlan) -> list[str]:
    """Each STAC input's Item, and the href of each asset it reads, in band order."""
    lines = []
    for stac in plan.stac_inputs:
        if stac.items:
            lines.append(f"input {stac.name}: mosaic of {len(stac.items)} STAC Item(s) of "
                         f"{stac.item}, bands "
                         + ", ".join(_asset_text(name, key) for name, key, _ in stac.assets))
            lines += [f"  item {number} {id_}" + (f" ({when})" if when else "")
                      + f": {', '.join(hrefs)}"
                      for number, (id_, when, hrefs) in enumerate(stac.items, start=1)]
        else:
            lines.append(f"input {stac.name}: STAC Item {stac.item_id} ({stac.item})")
            lines += [f"  band {number} {_asset_text(name, key)}: {href}"
                      for number, (name, key, href) in enumerate(stac.assets, start=1)]
        if stac.grid:
            lines.append(f"  grid {stac.grid}")
    return lines


def plan_tables(plan: RunPlan) -> list[Table]:
    """The plan as rich tables: its steps, its images, and the estimate in the caption."""
    from rich.table import Table

    steps = Table(title=f"run plan: {len(plan.steps)} step(s) on {_workers_text(plan)}",
                  title_justify="left", caption=describe_estimate(plan),
                  caption_justify="left")
    for column in ("#", "step", "kind", "callable", "margin", "tiling", "loads", "writes",
                   "releases", "memory"):
        steps.add_column(column, justify="right" if column in ("#", "memory") else "left")
    for step in plan.steps:
        steps.add_row(str(step.index + 1), step.name, step.kind, step.step.callable,
                      _margin_text(step), _tiling_text(step, plan), ", ".join(step.loads),
                      ", ".join(step.saves), ", ".join(step.releases),
                      size_text(step.memory.total))
    images = Table(title="images", title_justify="left")
    for column in ("image", "from", "shape", "size", "lives", "why", "from step", "released after",
                   "output", "written"):
        images.add_column(column, justify="right" if column == "size" else "left")
    for image in plan.images.values():
        images.add_row(image.name, image.made_by or "input", _image_text(image),
                       size_text(image.nbytes), image.lives.value, image.why,
                       _when_text(plan, image.arrives), _when_text(plan, image.released_after),
                       str(image.output) if image.output else "", _written_text(image))
    if not plan.stac_inputs:
        return [steps, images]
    grids = [f"{stac.name}: grid {stac.grid}" for stac in plan.stac_inputs if stac.grid]
    assets = Table(title="STAC inputs", title_justify="left",
                   caption="\n".join(grids) or None, caption_justify="left")
    for column in ("input", "item", "band", "asset", "href"):
        assets.add_column(column, justify="right" if column == "band" else "left")
    for stac in plan.stac_inputs:
        for id_, when, hrefs in stac.items or ((f"{stac.item_id} ({stac.item})", None,
                                                tuple(href for _, _, href in stac.assets)),):
            for number, ((name, key, _), href) in enumerate(zip(stac.assets, hrefs), start=1):
                assets.add_row(stac.name, id_ + (f" ({when})" if when else ""), str(number),
                               _asset_text(name, key), href)
    return [steps, images, assets]


def plan_text(plan: RunPlan) -> str:
    """The plan as plain lines, for logs and pipes."""
    lines = [f"run plan: {len(plan.steps)} step(s) on {_workers_text(plan)}"]
    for name in plan.copied:
        lines.append(f"  start: load {name}, write it to {plan.images[name].output}")
    for step in plan.steps:
        lines.append(f"  step {step.index + 1} {step.name} ({step.kind} {step.step.callable}): "
                     f"margin {_margin_text(step)}; {_tiling_text(step, plan)}; memory "
                     f"{size_text(step.memory.total)}")
        for label, names in (("loads", step.loads), ("writes", step.saves),
                             ("releases", step.releases)):
            if names:
                lines.append(f"    {label} {', '.join(names)}")
    lines.append("images:")
    for image in plan.images.values():
        lines.append(f"  {image.name}: {_image_text(image)}, {size_text(image.nbytes)}; lives "
                     f"{image.lives} ({image.why}); from {_when_text(plan, image.arrives)}, "
                     f"released after {_when_text(plan, image.released_after)}"
                     + (f"; output {image.output}" if image.output else "")
                     + (f"; {_written_text(image)}" if image.writes_file else ""))
    lines += stac_lines(plan)
    lines.append(describe_estimate(plan))
    return "\n".join(lines)
