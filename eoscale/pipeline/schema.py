"""The JSON Schema of the pipeline format (``schema.json`` beside this module), for editors.

It is where the format's keys are written: the loader takes the keys it allows from it
(:mod:`eoscale.pipeline.keys`). Besides the keys it holds the values' types and ranges; what
needs files, imports or the whole graph (names defined, grids, callables) only the loader and
``eoscale validate`` check.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

SCHEMA_FILE = "schema.json"


def schema_text() -> str:
    """The schema as the JSON text shipped in the package."""
    return resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def pipeline_schema() -> dict[str, Any]:
    """The schema as a dict."""
    return json.loads(schema_text())
