"""Run-time resolution: dotted paths to callables, and ``${...}`` params to reduce results.

A dotted path is ``package.module.function`` (the last part is the attribute), or, with a colon,
``package.module:function`` and ``package.module:Class.method``. The pipeline's folder is put at
the front of ``sys.path`` (once), so a module next to the pipeline file is found. Modules are
cached by Python under their name: two pipelines in one process cannot use two different modules
of the same name.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eoscale.engine.contract import declared
from eoscale.errors import EXIT_INVALID_PIPELINE, EOScaleError, PipelineError, Problem, did_you_mean
from eoscale.pipeline.spec import Location, StepSpec, parse_reference


class ResolveError(EOScaleError):
    """A dotted path leads to no callable: module missing, import failing, attribute missing."""

    exit_code = EXIT_INVALID_PIPELINE


def split_dotted(dotted: str) -> tuple[str, tuple[str, ...]] | None:
    """``(module, attributes)`` of a dotted path, or None if it is not one."""
    module, colon, attributes = dotted.partition(":")
    if not colon:
        module, _, attributes = dotted.rpartition(".")
    parts = module.split("."), attributes.split(".")
    if not all(name.isidentifier() for names in parts for name in names):
        return None
    return module, tuple(parts[1])


def _public_callables(owner: object) -> list[str]:
    return [name for name in dir(owner)
            if not name.startswith("_") and callable(getattr(owner, name, None))]


def _import(module: str, dotted: str) -> object:
    importlib.invalidate_caches()
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is not None and (module == error.name or module.startswith(error.name + ".")):
            raise ResolveError(f"'{dotted}': module '{error.name}' not found") from None
        raise ResolveError(f"'{dotted}': importing module '{module}' failed: "
                           f"ModuleNotFoundError: {error}") from None
    except (Exception, SystemExit) as error:
        raise ResolveError(f"'{dotted}': importing module '{module}' raised "
                           f"{type(error).__name__}: {error}") from None


def resolve_callable(dotted: str, base_dir: Path | None = None) -> Callable[..., Any]:
    """The callable a dotted path names, importing its module (from ``base_dir`` first).

    Raises :class:`ResolveError` with a message naming what is wrong.
    """
    split = split_dotted(dotted)
    if split is None:
        raise ResolveError(f"'{dotted}' is not a dotted path like 'module.function' "
                           "or 'package.module:Class.method'")
    module, attributes = split
    if base_dir is not None and str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    target = _import(module, dotted)
    owner_name = f"module '{module}'"
    for attribute in attributes:
        if not hasattr(target, attribute):
            hint = did_you_mean(attribute, _public_callables(target))
            raise ResolveError(f"'{dotted}': {owner_name} has no attribute '{attribute}'{hint}")
        target = getattr(target, attribute)
        owner_name = f"'{attribute}'"
    if not callable(target):
        raise ResolveError(f"'{dotted}' is {type(target).__name__} {target!r:.60}, not a callable")
    return target


def source_files(dotted: str, fn: Callable[..., Any]) -> list[str]:
    """The source files of the modules that define ``fn``, which ``dotted`` names: its dotted
    path's module and the function's own (those with no ``.py`` file are left out)."""
    files = []
    split = split_dotted(dotted)
    for module in (sys.modules.get(split[0]) if split else None,
                   sys.modules.get(getattr(fn, "__module__", "") or "")):
        source = getattr(module, "__file__", None)
        if source and source.endswith(".py"):
            files.append(source)
    try:
        source = inspect.getsourcefile(fn)
    except TypeError:
        source = None
    if source:
        files.append(source)
    return list(dict.fromkeys(files))


def resolve_params(params: Mapping[str, Any], results: Mapping[str, Any], *,
                   step: str | None = None,
                   locate: Callable[..., Location] | None = None) -> dict[str, Any]:
    """The params a callable receives: plain dicts and lists, ``${...}`` replaced by results.

    ``results`` holds the results of the reduce steps run so far, by step name (passed as they
    are, not copied). ``${name.key}`` indexes a mapping result by ``key``, or walks it dot by dot
    where ``key`` is a path: a name in a mapping, a position (from 0) in a list, as in
    ``${stats.0.max}`` (the first band's maximum). Raises :class:`PipelineError` naming ``step``,
    and the params' place where ``locate`` (a step's :meth:`~StepSpec.locate`) is given, when a
    result or key is missing.
    """

    def fail(message: str, keys: tuple[Any, ...]) -> PipelineError:
        if locate is None:
            return PipelineError(Problem(message, step=step))
        return PipelineError(locate("params", *keys).problem(message, step))

    def substitute(value: Any, keys: tuple[Any, ...]) -> Any:
        reference = parse_reference(value)
        if reference is None:
            if isinstance(value, Mapping):
                return {key: substitute(item, (*keys, key)) for key, item in value.items()}
            if isinstance(value, (list, tuple)):
                return [substitute(item, (*keys, index)) for index, item in enumerate(value)]
            return value
        if reference.result not in results:
            raise fail(f"'{reference}': reduce step '{reference.result}' has no result (yet)",
                       keys)
        result = results[reference.result]
        if reference.key is None:
            return result
        if isinstance(result, Mapping) and reference.key in result:
            return result[reference.key]
        try:
            return _walk(result, reference.key.split("."), reference.result)
        except LookupError as error:
            raise fail(f"'{reference}': {error.args[0]}", keys) from None

    resolved: dict[str, Any] = substitute(params, ())
    return resolved


def _walk(value: Any, path: list[str], name: str) -> Any:
    """``value`` indexed along ``path`` (names in mappings, positions in lists); LookupError
    saying where the path leaves ``value``."""
    where = f"the result of '{name}'"
    for depth, part in enumerate(path):
        if isinstance(value, Mapping):
            if part not in value:
                raise LookupError(f"{where} has no key '{part}'{did_you_mean(part, value)} "
                                  f"(keys: {', '.join(map(str, value))})")
            value = value[part]
        elif isinstance(value, (list, tuple)):
            if part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                message = (f"{where} is a list of {len(value)}, indexed by position (0 to "
                           f"{len(value) - 1}), not by '{part}'")
                if not part.isdigit() and value and isinstance(value[0], Mapping):
                    first = ".".join([name, *path[:depth], "0", *path[depth:]])
                    message += (f" (a reduce of several bands gives one result per band: "
                                f"'${{{first}}}' is the first band's)")
                raise LookupError(message)
        else:
            raise LookupError(f"{where} is {type(value).__name__}, not a mapping nor a list")
        where = f"{where} at '{part}'"
    return value


#: The params key through which a callable that asks for it (``wants_input_names = True``) learns
#: the names of its step's inputs, in order (band_math uses them as the expression's names).
INPUT_NAMES_KEY = "_inputs"


def callable_params(step: StepSpec, fn: Callable[..., Any],
                    results: Mapping[str, Any]) -> dict[str, Any]:
    """The params dict a step's callable receives: references resolved, input names if it asks."""
    params = resolve_params(step.params, results, step=step.name, locate=step.locate)
    if getattr(fn, "wants_input_names", False):
        params[INPUT_NAMES_KEY] = list(step.inputs)
    return params


@dataclass(frozen=True)
class StepCallables:
    """A step's callables, imported once: the map or reduce function, and the profile, combine
    and finalize functions the step names or, failing that, the function declares."""

    fn: Callable[..., Any]
    profile: Callable[..., Any] | None = None
    combine: Callable[..., Any] | None = None
    finalize: Callable[..., Any] | None = None

    def named(self, step: StepSpec) -> list[tuple[str, str | None, Callable[..., Any] | None]]:
        """Each of ``step``'s callables with its key (the step's kind for the main one) and the
        dotted path the step gives it (None: declared by the main callable, or none)."""
        return [(key, dotted, getattr(self, field)) for key, dotted, field in _keyed(step)]


def _keyed(step: StepSpec) -> list[tuple[str, str | None, str]]:
    """A step's callables: each one's key, dotted path (None: not given) and field of
    :class:`StepCallables`."""
    return [(step.kind, step.callable, "fn"), ("profile", step.profile, "profile"),
            ("combine", step.combine, "combine"), ("finalize", step.finalize, "finalize")]


def resolve_step(step: StepSpec, base_dir: Path | None) -> tuple[StepCallables | None, list[Problem]]:
    """Import a step's callables; the problems name the step and the line of each dotted path."""
    found: dict[str, Callable[..., Any]] = {}
    problems = []
    for key, dotted, _ in _keyed(step):
        if dotted is not None:
            try:
                found[key] = resolve_callable(dotted, base_dir)
            except ResolveError as error:
                problems.append(step.locate(key).problem(str(error), step.name))
    fn = found.get(step.kind)
    if fn is None:
        return None, problems
    if step.kind == "map":
        return StepCallables(fn, found.get("profile") or declared(fn, "profile")), problems
    combine = found.get("combine") or declared(fn, "combine")
    if combine is None and step.combine is None:
        problems.append(step.locate(step.kind).problem(
            f"a reduce step needs a combine function: add 'combine: module.function' or give "
            f"'{step.callable}' a 'combine' attribute", step.name))
    return StepCallables(fn, None, combine, found.get("finalize") or declared(fn, "finalize")), \
        problems
