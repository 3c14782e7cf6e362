"""Everything the command line draws: progress (rich on a terminal, plain lines otherwise), tables."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Console

from eoscale.engine.progress import NoProgress, PhaseReport
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
    return Console(highlight=False)


def error_console() -> Console:
    return Console(stderr=True, highlight=False)


UNITS = {"load": "read", "map": "map", "reduce": "reduce", "write": "write"}


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
    """One log line when a phase starts and one when it ends: for CI logs and batch jobs."""

    def __init__(self, out: Console):
        self._out = out

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _line(self, text: str) -> None:
        self._out.print(f"{time.strftime('%H:%M:%S')} {text}", markup=False, soft_wrap=True)

    def started(self, kind: str, name: str, total: int) -> None:
        self._line(f"{UNITS.get(kind, kind)} {name}: {total} tile(s)")

    def advance(self, done: int) -> None:
        pass

    def finished(self, report: PhaseReport) -> None:
        self._line(f"{UNITS.get(report.kind, report.kind)} {report.name}: done in "
                   f"{report.seconds:.2f} s ({report.megapixels_per_second:.1f} Mpx/s)")


class QuietProgress(NoProgress):
    def __enter__(self) -> QuietProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_for(out: Console) -> RichProgress | PlainProgress | QuietProgress:
    """Rich bars on a terminal, plain lines otherwise, nothing with --quiet."""
    if settings.quiet:
        return QuietProgress()
    return RichProgress(out) if out.is_terminal else PlainProgress(out)


def summary_table(reports: list[PhaseReport], seconds: float, peak_bytes: int | None = None,
                  estimate_bytes: int | None = None, cluster: str | None = None) -> Table:
    """The phases of a run, titled with its time, its measured peak memory (PSS of the process
    tree) and the plan's estimate of it, and the cluster it ran on (its address and workers)."""
    from rich.table import Table

    title = f"done in {seconds:.2f} s"
    if cluster is not None:
        title += f" on cluster {cluster}"
    if peak_bytes is not None:
        title += f", peak memory {size_text(peak_bytes)}"
    if estimate_bytes is not None:
        title += f" (estimated {size_text(estimate_bytes)})"
    table = Table(title=title, title_justify="left", min_width=len(title))  # title on one line
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


def _when_text(plan: RunPlan, index: int) -> str:
    if index < 0:
        return "start"
    if index >= len(plan.steps):
        return "never"
    return plan.steps[index].name


def _workers_text(plan: RunPlan) -> str:
    text = f"{plan.resources.workers} worker(s)"
    if plan.resources.cluster is not None:
        text += f" of the Dask cluster {plan.resources.cluster}"
    return text


def _asset_text(name: str, key: str) -> str:
    """An asset as an input names it, with its key when it is named otherwise: ``red (B04)``."""
    return name if name == key else f"{name} ({key})"


def stac_lines(plan: RunPlan) -> list[str]:
    """Each STAC input's Item, and the href of each asset it reads, in band order."""
    lines = []
    for stac in plan.stac_inputs:
        lines.append(f"input {stac.name}: STAC Item {stac.item_id} ({stac.item})")
        lines += [f"  band {number} {_asset_text(name, key)}: {href}"
                  for number, (name, key, href) in enumerate(stac.assets, start=1)]
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
                   "output"):
        images.add_column(column, justify="right" if column == "size" else "left")
    for image in plan.images.values():
        images.add_row(image.name, image.made_by or "input", _image_text(image),
                       size_text(image.nbytes), image.lives.value, image.why,
                       _when_text(plan, image.arrives), _when_text(plan, image.released_after),
                       str(image.output) if image.output else "")
    if not plan.stac_inputs:
        return [steps, images]
    assets = Table(title="STAC inputs", title_justify="left")
    for column in ("input", "item", "band", "asset", "href"):
        assets.add_column(column, justify="right" if column == "band" else "left")
    for stac in plan.stac_inputs:
        for number, (name, key, href) in enumerate(stac.assets, start=1):
            assets.add_row(stac.name, f"{stac.item_id} ({stac.item})", str(number),
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
                     + (f"; output {image.output}" if image.output else ""))
    lines += stac_lines(plan)
    lines.append(describe_estimate(plan))
    return "\n".join(lines)
