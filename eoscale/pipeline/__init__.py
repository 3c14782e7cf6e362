"""The pipeline layer: YAML (or a mapping) -> a frozen, checked :class:`PipelineSpec`.

``load_pipeline`` reads and checks the document and the references in it; ``plan_run`` decides
everything a run does (:class:`RunPlan`); ``validate`` adds to the loader's checks those that
import callables and open files, by planning the run; ``checked_plan`` is the plan of a valid
pipeline, which ``run_pipeline`` executes.
"""

from eoscale.pipeline.loader import load_pipeline
from eoscale.pipeline.resolve import ResolveError, resolve_callable, resolve_params
from eoscale.pipeline.spec import (
    FrozenMap, InputSpec, Location, OutputSpec, Overrides, PipelineSpec, Reference, StepSpec,
)
from eoscale.pipeline.plan import ImagePlan, Memory, Resources, RunPlan, StepPlan, plan_run
from eoscale.pipeline.validate import check, check_graph, checked_plan, validate

__all__ = [
    "FrozenMap", "ImagePlan", "InputSpec", "Location", "Memory", "OutputSpec", "Overrides",
    "PipelineSpec", "Reference", "ResolveError", "Resources", "RunPlan", "StepPlan", "StepSpec",
    "check", "check_graph", "checked_plan", "load_pipeline", "plan_run", "resolve_callable",
    "resolve_params", "validate",
]
