"""Reading a pipeline's ``steps:``, each a map or a reduce step, with where its values were
written (:attr:`StepSpec.locations`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eoscale.pipeline import keys
from eoscale.pipeline.document import KeyPath
from eoscale.pipeline.spec import KINDS, FrozenMap, Location, StepKind, StepSpec, freeze
from eoscale.pipeline.values import ValueReader, describe

#: The step keys that belong to one kind of step only.
ONLY_FOR: dict[str, StepKind] = {"profile": "map", "outputs": "map",
                                 "combine": "reduce", "finalize": "reduce"}


def read_steps(r: ValueReader, value: Any) -> tuple[StepSpec, ...] | None:
    """The steps that could be read; None when ``steps:`` is not a non-empty list."""
    if not isinstance(value, (list, tuple)) or not value:
        r.report(("steps",), f"expected a non-empty list of steps, found {describe(value)}")
        return None
    marks: dict[Any, dict[str, Location]] = {}
    for path, where in r.document.values.items():
        if len(path) > 2 and path[0] == "steps":
            marks.setdefault(path[1], {})[" -> ".join(map(str, path[2:]))] = where
    read = (_step(r, index, item, marks.get(index, {})) for index, item in enumerate(value))
    return tuple(step for step in read if step is not None)


def _step(r: ValueReader, index: int, value: Any,
          locations: dict[str, Location]) -> StepSpec | None:
    path: KeyPath = ("steps", index)
    raw = r.mapping(value, path, None, "a step: a mapping with name, map or reduce, inputs")
    if raw is None:
        return None
    name = r.name(raw["name"], (*path, "name"), None) if "name" in raw else None
    if name is not None:
        r.step_names[index] = name
    r.check_keys(raw, path, keys.STEP, name)
    kinds = [kind for kind in KINDS if kind in raw]
    if len(kinds) != 1:
        found = " and ".join(f"'{kind}'" for kind in kinds) or "neither"
        r.report(path, f"a step has exactly one of 'map' or 'reduce', found {found}", name)
    kind: StepKind = kinds[0] if kinds else "map"
    for key, only in ONLY_FOR.items():
        if key in raw and only != kind and len(kinds) == 1:
            r.report((*path, key), f"'{key}' is for {only} steps only", name, key=True)

    def optional(key: str, read: Callable[..., Any], *args: Any) -> Any:
        return None if raw.get(key) is None else read(raw[key], (*path, key), name, *args)

    target = r.dotted(raw[kind], (*path, kind), name) if kinds else None
    inputs = r.names(raw["inputs"], (*path, "inputs"), name) if "inputs" in raw else None
    params = optional("params", r.mapping, "a mapping of parameter names to values")
    margin = optional("margin", r.integer, 0)
    writable_inputs = optional("writable_inputs", r.boolean)
    profile = optional("profile", r.dotted)
    outputs = optional("outputs", r.names)
    combine = optional("combine", r.dotted)
    finalize = optional("finalize", r.dotted)
    description = optional("description", r.text)
    if name is None:
        return None
    is_map = kind == "map"
    return StepSpec(
        name, kind, target or "", inputs or (), freeze(params or {}), margin,
        profile if is_map else None, (outputs or (name,)) if is_map else (),
        None if is_map else combine, None if is_map else finalize, description,
        writable_inputs, r.at(path), FrozenMap(locations))
