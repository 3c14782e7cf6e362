"""The run plan: every decision about a run, made before anything is computed, as one frozen value.

:func:`plan_run` turns a checked spec and the machine's resources into a :class:`RunPlan`: for each
step its callables (imported once), its margin, its tiling (the engine's own
:func:`~eoscale.engine.tiling.plan_step`) and chunks, the images it loads, saves and releases,
and the memory the run is estimated to hold at that step; for each image where it lives and why,
and the file it is written to as it is computed. ``eoscale validate`` reports its estimate,
``eoscale run --dry-run`` prints it, and the runner executes it without deciding anything of its
own.

Each module answers one question:

- :mod:`~eoscale.pipeline.plan.shapes`: what is known of the run before deciding (the images'
  band counts and dtypes, the grid, the callables and margins): a :class:`RunShape`;
- :mod:`~eoscale.pipeline.plan.resources`: what the run may use (:class:`Resources`) and what a
  moment of it holds (:class:`Memory`);
- :mod:`~eoscale.pipeline.plan.estimates`: what each moment is estimated to hold;
- :mod:`~eoscale.pipeline.plan.residence`: where each image lives (:class:`Residence`), and why;
- :mod:`~eoscale.pipeline.plan.fusion`: which steps are fused into their readers, at what cost;
- :mod:`~eoscale.pipeline.plan.files`: which file an image is written to as it is computed, laid
  out how, and whether the run's scratch files are where its workers can read them;
- :mod:`~eoscale.pipeline.plan.margins`: a step's margin, resolved in one place;
- :mod:`~eoscale.pipeline.plan.decide`: one plan from a shape and the budget's choices;
- :mod:`~eoscale.pipeline.plan.fitting`: the fastest plan that fits the budget, and the least
  budget that fits;
- :mod:`~eoscale.pipeline.plan.feeding`: which reduces are fed by their map's tiles, rather than
  reading its images back from their files, and why not;
- :mod:`~eoscale.pipeline.plan.values`: the plan's values and their JSON;
- :mod:`~eoscale.pipeline.plan.planning`: :func:`plan_run`, the table of contents.

The budget (:class:`Resources`) decides between the places an image may live: see
:func:`~eoscale.pipeline.plan.fitting.fit_plan`. On a Dask cluster (``executor`` "cluster") the
workers share no memory with the main process, so nothing is ``shared``: inputs are ``file``, map
images that only later map steps read are ``fused`` where that recomputes little, other step
images that later steps read are ``spilled`` (to their output file or to a scratch file every
worker must reach), the others ``written``; the budget then covers the main process only (the
workers' memory is the cluster's).

What is not known before the run is said so: a margin that a callable derives from ``${...}``
params (planned with margin 0, decided when the step runs, the same way), and the dtype and band
count of a map without a profile function (assumed like its first input; learnt from the first
tile).
"""

from eoscale.pipeline.plan.files import ImageFile
from eoscale.pipeline.plan.fitting import MIN_TILE_SIZE, fit, least_budget
from eoscale.pipeline.plan.fusion import FUSE_MAX_RECOMPUTE
from eoscale.pipeline.plan.planning import plan_run, plan_shape
from eoscale.pipeline.plan.residence import Residence
from eoscale.pipeline.plan.resources import (
    BUDGET_HEADROOM,
    DEFAULT_BASE_BYTES,
    KEEP_FREE_BYTES,
    MIB,
    MIN_GDAL_CACHE_BYTES,
    RUN_BYTES,
    TRACKER_BYTES,
    WORKER_BYTES,
    Memory,
    Resources,
    available_memory,
    default_budget,
)
from eoscale.pipeline.plan.shapes import (
    ImageShape,
    RunShape,
    params_problems,
    run_shape,
    step_callables,
)
from eoscale.pipeline.plan.values import ImagePlan, RunPlan, StacInputPlan, StepPlan

__all__ = [
    "BUDGET_HEADROOM", "DEFAULT_BASE_BYTES", "FUSE_MAX_RECOMPUTE", "KEEP_FREE_BYTES", "MIB",
    "MIN_GDAL_CACHE_BYTES", "MIN_TILE_SIZE", "RUN_BYTES", "TRACKER_BYTES", "WORKER_BYTES",
    "ImageFile", "ImagePlan", "ImageShape", "Memory", "Residence", "Resources", "RunPlan",
    "RunShape", "StacInputPlan", "StepPlan", "available_memory", "default_budget", "fit",
    "least_budget", "params_problems", "plan_run", "plan_shape", "run_shape", "step_callables",
]
