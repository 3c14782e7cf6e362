"""Public names loaded on first use (PEP 562), for the packages whose names would otherwise pull
heavy modules in with them: ``import eoscale``, as every command does for ``__version__``, costs
nothing of the engine or the pipeline layer."""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The block runs without Python's cyclic garbage collector, resumed after if it ran: for
    imports, which make many objects and few cycles, while each collection they trigger looks
    at the objects made so far (0.04 s of a command's start, measured on 2 cores, across the
    imports of the command and of ``distributed``). Not for a user's module: the cycles it
    makes as it imports are its own to collect (3 million of them held 670 MB until the end of
    the pause, in a helper's test)."""
    running = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if running:
            gc.enable()


def lazy_exports(package: str, namespace: dict[str, Any], exports: Mapping[str, tuple[str, str]],
                 public: Iterable[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose globals are ``namespace``:
    ``exports`` maps a public name to its module and its name there. A name is imported at its
    first use and kept in the package (later lookups do not come back here); a submodule is
    reachable as an attribute, as when the package imported it."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            module, attribute = exports[name]
            value = getattr(importlib.import_module(module), attribute)
            namespace[name] = value
            return value
        if importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    names = tuple(public)

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
