"""The shape of the package: no import circle between its modules, and no layer importing one
above it.

Every module of ``eoscale/`` is read with :mod:`ast` (nothing is imported): every import counts,
at any depth (inside functions too), relative ones resolved. ``from package import name`` is an
import of the submodule ``package.name`` when there is one, else of the package's
``__init__``. Importing a submodule is not counted as importing its packages' ``__init__``
files: a package's ``__init__`` importing its own submodules is no circle by itself, while a
submodule naming its package's ``__init__`` that imports it back is one.

Layers, low to high: Base (errors, sizes, sample, lazy) < IO (io/) < Engine (engine/) < Pipeline
(pipeline/) < API (api, __init__) < Commands (cli/, __main__). Compat (compat/, filters/,
manager, eo_executors, utils, data_types) sits on Engine, IO and Base; Ops (ops/) on Base and the
engine's tile context.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import eoscale

PACKAGE = Path(eoscale.__file__).parent

BASE, IO, ENGINE, PIPELINE, API, COMMANDS, COMPAT, OPS = (
    "Base", "IO", "Engine", "Pipeline", "API", "Commands", "Compat", "Ops")

#: The layers each layer may not import (besides itself, any may import Base).
FORBIDDEN: dict[str, set[str]] = {
    BASE: {IO, ENGINE, PIPELINE, API, COMMANDS, COMPAT, OPS},
    IO: {ENGINE, PIPELINE, API, COMMANDS, COMPAT, OPS},
    ENGINE: {PIPELINE, API, COMMANDS, COMPAT},
    PIPELINE: {API, COMMANDS, COMPAT},
    OPS: {PIPELINE, API, COMMANDS, COMPAT},
    COMPAT: {PIPELINE, API, COMMANDS},
    API: {COMMANDS},
    COMMANDS: set(),
}


@dataclass(frozen=True)
class Import:
    """One import statement's arrow: from ``module`` (its ``file``, ``line``) to ``target``."""

    module: str
    file: str
    line: int
    target: str


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top in ("errors", "sizes", "sample", "lazy"):
        return BASE
    if top in ("api", "__init__"):
        return API
    if top in ("cli", "__main__"):
        return COMMANDS
    if top in ("compat", "filters", "manager", "eo_executors", "utils", "data_types"):
        return COMPAT
    by_package = {"io": IO, "engine": ENGINE, "pipeline": PIPELINE, "ops": OPS}
    if top not in by_package:
        raise AssertionError(f"{module}: no layer for it; say where it belongs in this test")
    return by_package[top]


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(module: str, path: Path, known: set[str]) -> Iterator[Import]:
    """Every import of ``eoscale`` modules in ``path``, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    here = module.split(".") if is_package else module.split(".")[:-1]
    file = str(path.relative_to(PACKAGE.parent))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield Import(module, file, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "eoscale":
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                target = submodule if submodule in known else source
                if target in known:
                    yield Import(module, file, node.lineno, target)


def import_graph() -> dict[str, list[Import]]:
    found = modules()
    known = set(found)
    return {module: [arrow for arrow in imports_of(module, path, known)
                     if arrow.target != module]
            for module, path in found.items()}


def find_circle(graph: dict[str, list[Import]]) -> list[Import] | None:
    """One circle of imports, as its arrows in order, or None (a depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[Import] = []

    def visit(module: str) -> list[Import] | None:
        state[module] = 1
        for arrow in graph.get(module, []):
            if state.get(arrow.target) == 1:
                start = next((i for i, step in enumerate(path) if step.module == arrow.target),
                             len(path))
                return [*path[start:], arrow]
            if arrow.target not in state:
                path.append(arrow)
                circle = visit(arrow.target)
                if circle is not None:
                    return circle
                path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            circle = visit(module)
            if circle is not None:
                return circle
    return None


def describe(arrows: list[Import]) -> str:
    return "\n".join(f"  {a.module} -> {a.target}  ({a.file}:{a.line})" for a in arrows)


def test_the_graph_sees_imports_at_any_depth_and_relative_ones() -> None:
    """The oracle of the checks below: arrows known to be there are found."""
    graph = import_graph()
    targets = {module: {arrow.target for arrow in arrows} for module, arrows in graph.items()}
    assert "eoscale.engine.tasks" in targets["eoscale.engine.core"]
    assert "eoscale.engine.core" in targets["eoscale.engine"]  # the package's own submodule
    assert "eoscale.compat.executors" in targets["eoscale.eo_executors"]  # from pkg import mod
    # inside a method: the Dask executor sets its workers up with what runs there
    assert "eoscale.engine.cluster_worker" in targets["eoscale.engine.cluster"]


def made_up(module: str, target: str) -> Import:
    return Import(module, f"{module}.py", 1, target)


def test_a_circle_is_found_and_named() -> None:
    graph = {"a": [made_up("a", "b")], "b": [made_up("b", "c")], "c": [made_up("c", "a")],
             "d": [made_up("d", "a")]}
    circle = find_circle(graph)
    assert circle is not None
    assert [(a.module, a.target) for a in circle] == [("a", "b"), ("b", "c"), ("c", "a")]
    assert find_circle({"a": [made_up("a", "b")], "b": [], "c": [made_up("c", "b")]}) is None


def test_no_import_circle() -> None:
    circle = find_circle(import_graph())
    assert circle is None, f"an import circle:\n{describe(circle or [])}"


def test_no_layer_imports_one_above_it() -> None:
    wrong = [arrow for arrows in import_graph().values() for arrow in arrows
             if layer_of(arrow.target) in FORBIDDEN[layer_of(arrow.module)]]
    assert not wrong, "imports from a lower layer to a higher one:\n" + "\n".join(
        f"  {a.file}:{a.line} ({layer_of(a.module)}) imports {a.target} ({layer_of(a.target)})"
        for a in wrong)


def test_ops_use_only_base_and_the_tile_context() -> None:
    wrong = [arrow for module, arrows in import_graph().items() if layer_of(module) == OPS
             for arrow in arrows
             if layer_of(arrow.target) not in (BASE, OPS)
             and arrow.target != "eoscale.engine.tasks"]
    assert not wrong, "\n".join(f"  {a.file}:{a.line} imports {a.target}" for a in wrong)
