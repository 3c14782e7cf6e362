"""A step's margin, resolved in one place: when the run is planned, or, when the callable derives
it from params that hold ``${...}``, when the step runs, from the resolved params, the same way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from eoscale.engine.contract import step_margin
from eoscale.errors import ConfigError
from eoscale.pipeline.resolve import StepCallables, callable_params
from eoscale.pipeline.spec import StepSpec

MarginFrom = Literal["stated", "declared", "none", "params"]


def deferred(step: StepSpec, found: StepCallables) -> bool:
    """Whether the margin is only known when the step runs: a margin function of ``${...}``
    params."""
    return any(step.references()) and callable(getattr(found.fn, "margin", None))


def resolve_margin(step: StepSpec, found: StepCallables, params: Mapping[str, Any]) -> int:
    """The margin the step runs with, for its ``params`` (:func:`step_margin`); a
    :class:`ConfigError` says what is wrong with it."""
    return step_margin(found.fn, params, step.margin, label=f"'{step.callable}'")


def planned_margin(step: StepSpec, found: StepCallables) -> int | None:
    """The margin known before the run (None: :func:`deferred`), from the params as written."""
    if deferred(step, found):
        return None
    params = {} if any(step.references()) else callable_params(step, found.fn, {})
    return resolve_margin(step, found, params)


def margin_from(step: StepSpec, margin: int | None, found: StepCallables) -> MarginFrom:
    """Where the planned ``margin`` comes from, as the plan shows it."""
    return ("params" if margin is None else "stated" if step.margin is not None
            else "declared" if hasattr(found.fn, "margin") else "none")


def runtime_margin(step: StepSpec, found: StepCallables, params: Mapping[str, Any]) -> int:
    """A deferred margin, resolved from the step's resolved ``params`` when it runs; the error
    names the step."""
    try:
        return resolve_margin(step, found, params)
    except ConfigError as error:
        raise ConfigError(f"step '{step.name}': {error}") from None
