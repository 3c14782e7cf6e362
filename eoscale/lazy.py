"""Public names loaded on first use (PEP 562), for the packages whose names would otherwise pull
heavy modules in with them: ``import eoscale``, as every command does for ``__version__``, costs
nothing of the engine or the pipeline layer."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any


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



class DeferredModule(types.ModuleType):
    """A module's stand-in in ``sys.modules`` (:func:`deferred_import`): ``import`` statements
    get it without running anything, and its first lookup of a name it lacks imports the real
    module (which takes its place in ``sys.modules``) and answers from it, as every later one.

    Not :class:`importlib.util.LazyLoader`: its module runs as soon as an ``import`` statement
    meets it (the statement looks at ``__spec__``, which that loader does not hold back)."""

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


def deferred_import(name: str) -> None:
    """Put a :class:`DeferredModule` for ``name`` in ``sys.modules``, if it is installed and
    not imported yet: its code runs when something first uses it, not when it is imported.

    For a third-party module that another library imports at its own import only to know that
    it is there: rasterio imports boto3 (and botocore: 0.15 s of CPU, 7 % of the main
    process's on a whole run) to know whether it can make AWS sessions, and uses it only when
    it makes one, for an s3:// path. A command that reads none never runs boto3's code; one
    that does runs it then, unchanged."""
    if name in sys.modules or importlib.util.find_spec(name) is None:
        return
    sys.modules[name] = DeferredModule(name)
