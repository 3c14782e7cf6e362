"""Options shared by several commands, each defined once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from eoscale.cli.render import settings
from eoscale.sizes import parse_size


def _set_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    settings.verbose = settings.verbose or value
    return value


def _set_quiet(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    settings.quiet = settings.quiet or value
    return value


verbose_opt = click.option("-v", "--verbose", is_flag=True, expose_value=False, is_eager=True,
                           callback=_set_verbose,
                           help="Show full Python tracebacks and more detail.")
quiet_opt = click.option("-q", "--quiet", is_flag=True, expose_value=False, is_eager=True,
                         callback=_set_quiet, help="Print nothing but errors.")
workers_opt = click.option("-w", "--workers", type=click.IntRange(min=1), default=None,
                           help="Worker processes (default: the pipeline's, else all CPUs).")
json_opt = click.option("--json", "as_json", is_flag=True, help="Print strict JSON.")
overwrite_opt = click.option("--overwrite", is_flag=True, help="Replace outputs that exist.")


def pairs(option: str) -> Callable[[click.Context, click.Parameter, Any], dict[str, str]]:
    """A callback turning repeated NAME=VALUE options into a dict, refusing malformed ones."""
    def parse(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
        parsed: dict[str, str] = {}
        for value in values:
            name, sep, rest = value.partition("=")
            if not sep or not name.strip() or not rest:
                raise click.BadParameter(f"expected {option}, got {value!r}")
            parsed[name.strip()] = rest
        return parsed
    return parse


def cluster_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A cluster's address (``local``, ``local:N``, ``tcp://host:8786``); a bad one is a usage
    error naming the option, as for the other options (not a pipeline's problem)."""
    if value is None:
        return None
    from eoscale.engine.cluster import parse_cluster

    try:
        parse_cluster(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    return value


def size_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A size option (``4GiB``, ``512MB``) in bytes; a bad one is a usage error naming it."""
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
