"""The keys a pipeline may have, place by place, as the loader reads them from the JSON Schema.

The pipeline format's keys are written once, in ``schema.json`` (:mod:`eoscale.pipeline.schema`),
and the loader takes from it, for every mapping whose keys it checks, the keys allowed there and
those required. The schema is the source, and not a table in Python from which the schema would
be made, because:

- the schema is a file people use as it is: editors read it from the package (the example
  pipelines name it in their first line) and ``eoscale schema`` prints it; a schema made from a
  table would need a copy on disk for editors, kept equal to the table, which is the double
  writing this module ends;
- JSON Schema already says, per key, its type, range, choices and description, the things such a
  table would hold; restating them as Python data would be a second language for the same thing.

So a new key is its entry in ``schema.json`` (type, description), which makes the loader accept
it, plus the code in the loader that reads its value. What needs code, files or the whole
document (names defined, callables, grids) is checked by the loader and ``eoscale validate``
alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eoscale.pipeline.schema import pipeline_schema

#: A place in the document: the keys leading to a mapping ("*": any name or list index).
Place = tuple[str, ...]


@dataclass(frozen=True)
class KeyTable:
    """The keys a mapping may have (in the schema's order) and those it must have."""

    keys: tuple[str, ...]
    required: tuple[str, ...] = ()


def _branches(node: Any, schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The schemas ``node`` stands for, through ``$ref``, ``anyOf``, ``oneOf`` and ``allOf``."""
    if not isinstance(node, dict):
        return []
    if "$ref" in node:
        return _branches(schema["$defs"][node["$ref"].rsplit("/", 1)[-1]], schema)
    found = [node]
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in node.get(key, []):
            found += _branches(branch, schema)
    return found


def table_at(place: Place, schema: dict[str, Any]) -> KeyTable:
    """The key table of the one mapping the schema describes at ``place``."""
    nodes = _branches(schema, schema)
    for key in place:
        children = []
        for node in nodes:
            if key == "*":
                children += [node[part] for part in ("items", "additionalProperties")
                             if isinstance(node.get(part), dict)]
            elif key in node.get("properties", {}):
                children.append(node["properties"][key])
        nodes = [branch for child in children for branch in _branches(child, schema)]
    objects = [node for node in nodes if "properties" in node]
    if len(objects) != 1:
        raise LookupError(f"the schema has {len(objects)} mappings at {place}, expected one")
    return KeyTable(tuple(objects[0]["properties"]), tuple(objects[0].get("required", ())))


_SCHEMA = pipeline_schema()
TOP = table_at((), _SCHEMA)
GRID = table_at(("grid",), _SCHEMA)
INPUT = table_at(("inputs", "*"), _SCHEMA)
TILING = table_at(("tiling",), _SCHEMA)
STEP = table_at(("steps", "*"), _SCHEMA)
OUTPUT = table_at(("outputs", "*"), _SCHEMA)
QUICKLOOK = table_at(("outputs", "*", "quicklook"), _SCHEMA)
STAC_OUTPUT = table_at(("outputs", "*", "stac"), _SCHEMA)
del _SCHEMA

#: Every mapping whose keys the loader checks, by its place in the document, with its keys.
KEY_TABLES: dict[Place, tuple[str, ...]] = {
    (): TOP.keys,
    ("grid",): GRID.keys,
    ("inputs", "*"): INPUT.keys,
    ("tiling",): TILING.keys,
    ("steps", "*"): STEP.keys,
    ("outputs", "*"): OUTPUT.keys,
    ("outputs", "*", "quicklook"): QUICKLOOK.keys,
    ("outputs", "*", "stac"): STAC_OUTPUT.keys,
}
#: The keys of the document's top level and of a step, by themselves.
TOP_KEYS = TOP.keys
STEP_KEYS = STEP.keys
