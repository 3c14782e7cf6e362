"""Built-in operations, usable from YAML by dotted path (``eoscale.ops.mean_filter``).

Every operation follows the callable contract of :mod:`eoscale.engine.contract` and declares its
``margin`` and ``profile`` (maps) or ``combine`` and ``finalize`` (reductions). Params are checked
on every call and by the declared functions, with a :class:`~eoscale.errors.ConfigError` naming the
operation and the param. Keys starting with ``_`` are reserved for the pipeline runner, which
passes ``_inputs``, the names of the step's inputs in order (``band_math`` uses them as names).
"""

from eoscale.ops.bands import cast, select_bands, stack
from eoscale.ops.expressions import band_math, check_expression
from eoscale.ops.fill import fill_nodata
from eoscale.ops.filters import (convolve, gaussian_filter, max_filter, mean_filter, median_filter,
                                 min_filter)
from eoscale.ops.reductions import histogram, percentiles, stats, unique_counts
from eoscale.ops.terrain import aspect, hillshade, slope

__all__ = [
    "band_math", "check_expression",
    "mean_filter", "median_filter", "min_filter", "max_filter", "gaussian_filter", "convolve",
    "fill_nodata", "select_bands", "stack", "cast",
    "slope", "aspect", "hillshade",
    "stats", "histogram", "percentiles", "unique_counts",
]
