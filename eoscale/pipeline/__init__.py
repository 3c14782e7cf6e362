"""The pipeline layer: YAML (or a mapping) -> a frozen, checked :class:`PipelineSpec`.

``load_pipeline`` reads and checks the document and the references in it; ``validate`` adds the
checks that import callables and open files; ``resolve_callable`` and ``resolve_params`` are what
the runner uses to turn dotted paths and ``${...}`` references into values.
"""

from eoscale.pipeline.loader import load_pipeline
from eoscale.pipeline.resolve import ResolveError, resolve_callable, resolve_params
from eoscale.pipeline.spec import (
    FrozenMap, InputSpec, Location, OutputSpec, Overrides, PipelineSpec, Reference, StepSpec,
)
from eoscale.pipeline.validate import MemoryEstimate, check, check_graph, estimate_memory, validate

__all__ = [
    "FrozenMap", "InputSpec", "Location", "MemoryEstimate", "OutputSpec", "Overrides",
    "PipelineSpec", "Reference", "ResolveError", "StepSpec", "check", "check_graph",
    "estimate_memory", "load_pipeline", "resolve_callable", "resolve_params", "validate",
]
