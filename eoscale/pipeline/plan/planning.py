"""Planning a run, as a table of contents: import the callables, read the inputs, work out the
run's shape, fit a plan to the budget."""

from __future__ import annotations

import rasterio

from eoscale.engine.executors import default_workers
from eoscale.errors import PipelineError, Problem
from eoscale.pipeline.inputs import InputsOnGrid, inputs_on_grid
from eoscale.pipeline.plan.fitting import fit
from eoscale.pipeline.plan.resources import Resources
from eoscale.pipeline.plan.shapes import RunShape, run_shape, step_callables
from eoscale.pipeline.plan.values import RunPlan
from eoscale.pipeline.spec import PipelineSpec


def plan_run(spec: PipelineSpec, resources: Resources | None = None) -> RunPlan:
    """Plan a run of ``spec`` (already loaded, so its names and references are checked).

    Imports the callables, reads the inputs' profiles, checks that they are on one grid, calls
    profile and margin functions (not for steps whose params hold ``${...}``), and decides
    everything the run does. Raises :class:`PipelineError` with every problem found.
    """
    if resources is None:
        resources = _default_resources(spec)
    return fit(plan_shape(spec), resources)


def plan_shape(spec: PipelineSpec) -> RunShape:
    """The shape of a run of ``spec`` (:class:`RunShape`): what :func:`plan_run` fits to a
    budget, made once to fit it to many. Raises :class:`PipelineError` with every problem."""
    problems: list[Problem] = []
    callables = step_callables(spec, problems)
    read = _inputs_on_grid(spec, problems)
    shape = run_shape(spec, read.profiles, callables, problems, read.sources, read.stac)
    if shape is None:
        raise PipelineError(problems)
    return shape


def _default_resources(spec: PipelineSpec) -> Resources:
    """The resources of a plan made without a connection: for a remote cluster, as many
    workers as this machine's CPUs (the run plans again with the cluster's count)."""
    if spec.cluster is None:
        return Resources.detect(spec.workers, spec.memory)
    from eoscale.engine.cluster import parse_cluster

    return Resources.for_cluster(spec.cluster, parse_cluster(spec.cluster).workers
                                 or default_workers(), spec.memory)


def _inputs_on_grid(spec: PipelineSpec, problems: list[Problem]) -> InputsOnGrid:
    """Each input's source (on the working grid, warped where it is not on it), its profile
    there, and what each STAC input reads (:func:`~eoscale.pipeline.inputs.inputs_on_grid`);
    problems name the input's line."""
    with rasterio.Env(**spec.gdal):
        return inputs_on_grid(spec, problems)
