"""``eoscale info IMAGE``: size, bands, dtype, CRS, resolution, bounds, nodata, layout; --stats."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import click
from rich.table import Table

from eoscale.cli.options import json_opt, quiet_opt, verbose_opt, workers_opt
from eoscale.cli.render import console
from eoscale.io.info import RasterInfo, json_safe, raster_info


def band_statistics(path: Path, workers: int | None) -> tuple[dict, ...]:
    """Per-band count, min, max, mean and std of valid pixels, computed through the engine."""
    from eoscale import ops
    from eoscale.engine import Engine

    with Engine(workers) as engine:
        result = engine.reduce(ops.stats, [engine.open(path)], name="stats")
    return tuple(json_safe(result))


def _number(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.10g}"
    return "-" if value is None else str(value)


def render(meta: RasterInfo) -> Table:
    table = Table(show_header=False, title=meta.path, title_justify="left", box=None)
    table.add_column(style="bold")
    table.add_column()
    dtypes = sorted(set(meta.dtypes))
    crs = meta.crs_name or "none"
    if meta.crs_name:
        crs += f" (EPSG:{meta.epsg})" if meta.epsg else " (no EPSG code)"
        crs += ", geographic" if meta.geographic else ""
    rows = [
        ("size", f"{meta.width} x {meta.height} pixels, {meta.count} band(s)"),
        ("dtype", ", ".join(dtypes)),
        ("crs", crs),
        ("resolution", f"{_number(meta.resolution[0])} x {_number(meta.resolution[1])}"),
        ("bounds", "left {} bottom {} right {} top {}".format(*map(_number, meta.bounds))),
        ("nodata", _number(meta.nodata)),
        ("blocks", f"{meta.block_shape[0]} x {meta.block_shape[1]} (rows x cols)"),
        ("compression", meta.compression or "none"),
        ("interleave", meta.interleave or "-"),
        ("overviews", ", ".join(map(str, meta.overviews)) or "none"),
        ("driver", meta.driver),
    ]
    for key, value in rows:
        table.add_row(key, value)
    for number, band in enumerate(meta.stats or (), start=1):
        table.add_row(f"band {number}", "  ".join(f"{k} {_number(v)}" for k, v in band.items()))
    return table


@click.command()
@click.argument("image", type=click.Path(path_type=Path, dir_okay=False))
@json_opt
@click.option("--stats", is_flag=True, help="Compute per-band statistics through the engine.")
@workers_opt
@quiet_opt
@verbose_opt
def info(image: Path, as_json: bool, stats: bool, workers: int | None) -> None:
    """Describe a raster: size, bands, dtype, CRS, resolution, bounds, nodata, layout."""
    meta = raster_info(image)
    if stats:
        meta = dataclasses.replace(meta, stats=band_statistics(image, workers))
    if as_json:
        click.echo(json.dumps(meta.to_json(), indent=2, allow_nan=False))
    else:
        console().print(render(meta))
