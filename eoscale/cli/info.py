"""``eoscale info IMAGE``: size, bands, dtype, CRS, resolution, bounds, nodata, layout; --stats;
--quicklook writes a PNG picture of it. IMAGE is a file, a URL or a GDAL ``/vsi...`` path; a
STAC Item (``.json``) is described by its assets and their grids."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import click
from rich.table import Table

from eoscale.cli.options import json_opt, overwrite_opt, quiet_opt, verbose_opt, workers_opt
from eoscale.cli.render import console
from eoscale.io.info import ItemInfo, RasterInfo, is_stac_item, item_info, json_safe, raster_info
from eoscale.io.paths import RasterLocation, is_address, worker_start_method
from eoscale.io.quicklook import COLORMAPS, QUICKLOOK_SIZE, QuicklookStyle, save_quicklook


def band_statistics(path: RasterLocation, workers: int | None) -> tuple[dict, ...]:
    """Per-band count, min, max, mean and std of valid pixels, computed through the engine."""
    from eoscale import ops
    from eoscale.engine import Engine

    with Engine(workers, start_method=worker_start_method([path], None)) as engine:
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


def _grid_text(meta: RasterInfo) -> str:
    crs = meta.crs_name or "no CRS"
    if meta.epsg:
        crs = f"EPSG:{meta.epsg}"
    return (f"{meta.width} x {meta.height} px of {_number(meta.resolution[0])} x "
            f"{_number(meta.resolution[1])} in {crs}")


def render_item(item: ItemInfo) -> Table:
    """A STAC Item's assets: each one's common names, grid, bands and href."""
    title = f"STAC Item {item.id} ({item.path})" + (f", {item.datetime}" if item.datetime else "")
    table = Table(title=title, title_justify="left")
    for column in ("asset", "common names", "grid", "bands", "nodata", "href"):
        table.add_column(column)
    for asset in item.assets:
        meta = asset.raster
        if meta is None:
            grid, bands, nodata = f"not a raster: {asset.error}", "-", "-"
        else:
            grid = _grid_text(meta)
            bands = f"{meta.count} {', '.join(sorted(set(meta.dtypes)))}"
            nodata = _number(meta.nodata)
        table.add_row(asset.key, ", ".join(asset.common_names) or "-", grid, bands, nodata,
                      asset.href)
    return table


def _png_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None and value.suffix.lower() != ".png":
        raise click.BadParameter(f"a quicklook is a PNG: expected a .png path, got '{value}'")
    return value


def _bands(ctx: click.Context, param: click.Parameter, value: str | None
           ) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        bands = tuple(int(part) for part in value.split(","))
    except ValueError:
        bands = ()
    if len(bands) not in (1, 3) or min(bands) < 1:
        raise click.BadParameter(f"expected one band or three like 3,2,1, got {value!r}")
    return bands


@click.command()
@click.argument("image")
@json_opt
@click.option("--stats", is_flag=True, help="Compute per-band statistics through the engine.")
@click.option("--quicklook", type=click.Path(path_type=Path, dir_okay=False), default=None,
              callback=_png_path, metavar="PNG",
              help=f"Write a PNG picture of the raster, at most {QUICKLOOK_SIZE} px wide or high.")
@click.option("--colormap", type=click.Choice(COLORMAPS), default="viridis", show_default=True,
              help="The quicklook's colour map for one band.")
@click.option("--bands", callback=_bands, default=None, metavar="B[,G,R]",
              help="The quicklook's bands: one, or three for red,green,blue (default 1,2,3 or 1).")
@click.option("--size", type=click.IntRange(min=1), default=QUICKLOOK_SIZE, show_default=True,
              help="The quicklook's longest side in pixels.")
@overwrite_opt
@workers_opt
@quiet_opt
@verbose_opt
def info(image: str, as_json: bool, stats: bool, quicklook: Path | None, colormap: str,
         bands: tuple[int, ...] | None, size: int, overwrite: bool, workers: int | None) -> None:
    """Describe a raster: size, bands, dtype, CRS, resolution, bounds, nodata, layout.

    A STAC Item (IMAGE ending in .json) is described by its assets and their grids."""
    location: RasterLocation = image if is_address(image) else Path(image)
    if is_stac_item(location):
        if stats or quicklook is not None:
            raise click.UsageError("--stats and --quicklook describe a raster: give one of the "
                                   "Item's asset hrefs")
        item = item_info(location)
        if as_json:
            click.echo(json.dumps(json_safe(item.to_json()), indent=2, allow_nan=False))
        else:
            console().print(render_item(item))
        return
    meta = raster_info(location)
    if stats:
        meta = dataclasses.replace(meta, stats=band_statistics(location, workers))
    if quicklook is not None:
        save_quicklook(location, quicklook, QuicklookStyle(size, colormap, bands),
                       overwrite=overwrite)
    if as_json:
        click.echo(json.dumps(meta.to_json(), indent=2, allow_nan=False))
    else:
        console().print(render(meta))
