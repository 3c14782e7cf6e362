"""``eoscale schema``: print the JSON Schema of the pipeline format, for editors and checkers."""

from __future__ import annotations

import click

from eoscale.pipeline.schema import schema_text


@click.command()
def schema() -> None:
    """Print the JSON Schema of pipeline files (save it and point your editor at it)."""
    click.echo(schema_text(), nl=False)
