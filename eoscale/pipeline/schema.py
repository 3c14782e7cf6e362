"""The JSON Schema of the pipeline format (``schema.json`` beside this module), for editors.

It allows exactly the keys the loader knows (:data:`eoscale.pipeline.loader.KEY_TABLES`; a test
keeps the two equal) and the values' types and ranges; what needs files, imports or the whole
graph (names defined, grids, callables) only ``eoscale validate`` checks.
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
