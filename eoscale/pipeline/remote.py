"""Planning on a cluster's worker: a run on a Dask cluster never imports the pipeline's modules
in this process.

A step's callables live in the user's modules, and importing them can cost more than the rest
of this process's work: a module that imports ``scipy.ndimage`` took 0.3 to 0.45 s of CPU here,
a third of the client's whole run of W1 on two workers (benchmarks/README.md). The workers
import them anyway, to compute the tiles. So a run on a cluster is planned on one of its
workers (:func:`plan_on_cluster`): it resolves the dotted paths, reads the inputs' profiles,
calls the margin, profile and ``check`` functions, fits the plan to this process's budget, and
sends the plan back with each of the user's functions replaced by a :class:`RemoteCallable`:
how a worker reaches it (a dotted path, then attributes: :class:`Reach`) and what the contract
asks of it (its margin, its ``writable_inputs``...), found on the worker. This also means that
what is checked is what the workers run (their modules, their files), and that a user's margin,
profile or ``check`` function never runs in this process, where a crash would end the command.

A :class:`RemoteCallable` pickles as its reach, so a job sent to the workers carries the real
function there. Called here, it runs on a worker of the cluster the run is open on
(:func:`calls_on`): a map's profile function, called again when the step runs; a margin
function of ``${...}`` params, decided when the step runs. Some are called here after all,
importing their module on their first call: a reduce's ``combine`` and ``finalize``, which merge
the tiles' partial results in this process (a round trip per partial would cost more than the
import); the functions of modules this process had imported (eoscale's own operations, a
library user's module), whose import costs nothing more; and any call made when no cluster is
open (a plan kept after its run). An attribute the contract does not name is looked up on the
imported function too. Every callable a step names is sent so, whatever its kind (a function,
an instance of a class with ``__call__``, a ``functools.partial``, a class's method): none is
pickled by reference to a module this process would have to import. A plan that cannot be sent
all the same (an attribute the contract reads whose value cannot be pickled) is made again
here, as before.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import pickle
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eoscale.errors import EOScaleError, PipelineError
from eoscale.pipeline.resolve import resolve_callable, source_files, split_dotted

if TYPE_CHECKING:
    from eoscale.pipeline.plan import Resources, RunPlan
    from eoscale.pipeline.spec import PipelineSpec

#: The attributes the callable contract reads (:mod:`eoscale.engine.contract`), with the names
#: of a function: what a worker tells of each of the user's functions in a plan.
CONTRACT = ("margin", "profile", "combine", "finalize", "check", "memory_factor",
            "writable_inputs", "wants_input_names")
_NAMES = ("__name__", "__qualname__", "__module__", "__doc__")


@dataclass(frozen=True)
class Reach:
    """How a worker reaches a callable: a dotted path resolved from ``base_dir``, then
    ``attributes`` (``("profile",)``: the profile function a callable declares)."""

    dotted: str
    base_dir: str | None = None
    attributes: tuple[str, ...] = ()

    def __str__(self) -> str:
        return ".".join((self.dotted, *self.attributes))


def reach(where: Reach) -> Callable[..., Any]:
    """The callable ``where`` names, its module imported here (a worker's, when a job is
    unpickled there)."""
    found: Any = resolve_callable(where.dotted, None if where.base_dir is None
                                  else Path(where.base_dir))
    for attribute in where.attributes:
        found = getattr(found, attribute)
    return found


def call_reached(where: Reach, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """Call the callable ``where`` names (on a worker)."""
    return reach(where)(*args, **kwargs)


class RemoteCallable:
    """A step's callable as a plan made on a worker holds it: its :class:`Reach` and ``facts``
    (its names, the contract's attributes it has, each a value or another RemoteCallable, and
    the source files of its module); ``absent``: the contract's attributes it does not have.
    ``local_calls``: called here, it is imported here (a reduce's combine and finalize, a
    callable of a module this process had imported)."""

    def __init__(self, where: Reach, facts: Mapping[str, Any], absent: frozenset[str],
                 local_calls: bool = False):
        self._where, self._facts, self._absent = where, dict(facts), absent
        self._local_calls = local_calls
        self._imported: Callable[..., Any] | None = None
        for name in _NAMES:  # over the class's own
            if name in self._facts:
                setattr(self, name, self._facts[name])

    @property
    def reach(self) -> Reach:
        return self._where

    @property
    def sources(self) -> tuple[str, ...]:
        """The source files of the modules that define it, as the worker found them."""
        return tuple(self._facts.get("sources", ()))

    def imported(self) -> Callable[..., Any]:
        """The callable itself, its module imported in this process (once)."""
        if self._imported is None:
            self._imported = reach(self._where)
        return self._imported

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") and name not in _NAMES:
            raise AttributeError(name)
        if name in self._facts:
            return self._facts[name]
        if name in self._absent or name in _NAMES:
            raise AttributeError(f"{self._where} has no attribute '{name}'")
        return getattr(self.imported(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._local_calls or _CALLER is None:
            return self.imported()(*args, **kwargs)
        return _CALLER(call_reached, self._where, args, kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return reach, (self._where,)  # the real function, wherever it is unpickled

    def __repr__(self) -> str:
        return f"<{self._where} (imported on the cluster's workers)>"


#: Runs a function on one of the open cluster's workers: ``caller(fn, *args)`` (None: no
#: cluster is open in this process, a RemoteCallable is called here).
_CALLER: Callable[..., Any] | None = None


@contextlib.contextmanager
def calls_on(caller: Callable[..., Any]) -> Iterator[None]:
    """While it lasts, a :class:`RemoteCallable` called in this process runs on a worker
    through ``caller(fn, *args)``."""
    global _CALLER
    before, _CALLER = _CALLER, caller
    try:
        yield
    finally:
        _CALLER = before


def _facts(fn: Any, where: Reach, local_calls: bool) -> tuple[dict[str, Any], frozenset[str]]:
    """What the contract asks of ``fn`` (on the worker), and the attributes it lacks."""
    facts: dict[str, Any] = {name: getattr(fn, name) for name in _NAMES if hasattr(fn, name)}
    absent = set()
    for name in CONTRACT:
        if not hasattr(fn, name):
            absent.add(name)
            continue
        value = getattr(fn, name)
        if callable(value):
            inner = Reach(where.dotted, where.base_dir, (*where.attributes, name))
            value = RemoteCallable(inner, *_facts(value, inner, local_calls), local_calls)
        facts[name] = value
    if not where.attributes:
        facts["sources"] = tuple(source_files(where.dotted, fn))
    return facts, frozenset(absent)


def _reaches(plan: RunPlan, imported: frozenset[str]) -> dict[int, tuple[Any, Reach, bool]]:
    """Each of the plan's callables by identity: the callable, its reach, whether it is called
    in the client (a reduce's combine and finalize, and the callables reached through a module
    the client has ``imported``)."""
    base_dir = str(plan.spec.base_dir)
    found: dict[int, tuple[Any, Reach, bool]] = {}
    for step_plan in plan.steps:
        step = step_plan.step
        for key, dotted, fn in step_plan.callables.named(step):
            if fn is None:
                continue
            where = (Reach(dotted, base_dir) if dotted is not None
                     else Reach(step.callable, base_dir, (key,)))
            # (a reduce's combine and finalize fold the partials in the client; a callable
            # reached through a module the client has costs it no more import)
            split = split_dotted(where.dotted)
            local_calls = key in ("combine", "finalize") or (
                split is not None and split[0] in imported)
            found[id(fn)] = (fn, where, local_calls)
    return found


class _PlanPickler(pickle.Pickler):
    """Pickles a plan with its steps' callables as :class:`RemoteCallable` s."""

    def __init__(self, file: io.BytesIO, reaches: Mapping[int, tuple[Any, Reach, bool]]):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._reaches = reaches

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, RemoteCallable):  # an attribute's, in another one's facts
            return RemoteCallable, (obj.reach, obj._facts, obj._absent, obj._local_calls)
        found = self._reaches.get(id(obj))
        if found is None or found[0] is not obj:
            return NotImplemented
        _, where, local_calls = found
        facts, absent = _facts(obj, where, local_calls)
        return RemoteCallable, (where, facts, absent, local_calls)


def plan_on_worker(spec: PipelineSpec, resources: Resources, imported: frozenset[str]) -> bytes:
    """On a worker: the checked plan of ``spec`` for ``resources`` (the client's budget, the
    cluster's workers), pickled with its steps' callables as :class:`RemoteCallable` s (called
    in the client itself when reached through a module it has ``imported``); or what stops it:
    a pipeline's problems, or another of eoscale's errors."""
    from eoscale.pipeline.validate import checked_plan

    # What the modules, checks, margins and profiles warn is said by the client, as when it
    # planned itself (a remote worker's warnings reach only its log).
    with warnings.catch_warnings(record=True) as caught:
        try:
            plan = checked_plan(spec, resources)
        except PipelineError as error:
            return pickle.dumps(("problems", type(error), error.problems, _said(caught)))
        except EOScaleError as error:
            try:
                return pickle.dumps(("error", type(error), (str(error), vars(error)),
                                     _said(caught)))
            except Exception:  # noqa: BLE001 - an attribute that cannot be sent: the message is
                return pickle.dumps(("error", EOScaleError, (str(error), {}), _said(caught)))
    file = io.BytesIO()
    try:
        _PlanPickler(file, _reaches(plan, imported)).dump(("plan", plan, None, _said(caught)))
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        # an attribute the contract reads whose value cannot be sent: planned again by the
        # client, which imports the modules (and warns itself)
        return pickle.dumps(("unsent", None, f"{type(error).__name__}: {error}", []))
    return file.getvalue()


def _said(caught: list[warnings.WarningMessage]) -> list[tuple[str, str, str, int]]:
    """The warnings caught: their category's name, message, file and line."""
    return [(found.category.__name__, str(found.message), found.filename, found.lineno)
            for found in caught]


def _warn_again(said: list[tuple[str, str, str, int]]) -> None:
    """Warn here what a worker caught, each under its category (one of Python's, else a
    warning class of the same name: the user's module is not imported for it)."""
    for name, message, filename, lineno in said:
        category = getattr(builtins, name, None)
        if not (isinstance(category, type) and issubclass(category, Warning)):
            category = type(name, (UserWarning,), {})
        warnings.warn_explicit(message, category, filename, lineno)


def plan_on_cluster(spec: PipelineSpec, resources: Resources,
                    caller: Callable[..., Any]) -> RunPlan:
    """The checked plan of ``spec`` for ``resources``, made on a worker of the cluster that
    ``caller(fn, *args)`` runs functions on (:func:`plan_on_worker`). Raises what the worker
    found, as it would have been raised here."""
    imported = frozenset(name for name, module in list(sys.modules.items()) if module is not None)
    kind, found, detail, said = pickle.loads(caller(plan_on_worker, spec, resources, imported))
    _warn_again(said)
    if kind == "unsent":
        from eoscale.pipeline.validate import checked_plan

        return checked_plan(spec, resources)
    if kind == "problems":
        raise found(detail)
    if kind == "error":
        error = found.__new__(found)  # as it was: its message made, its attributes set
        error.args = (detail[0],)
        error.__dict__.update(detail[1])
        raise error
    return found
