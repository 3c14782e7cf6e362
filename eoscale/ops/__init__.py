"""Built-in operations, usable from YAML by dotted path (``eoscale.ops.mean_filter``).

Every operation follows the callable contract of :mod:`eoscale.engine.contract` and declares its
``margin`` and ``profile`` (maps) or ``combine`` and ``finalize`` (reductions), and its
``memory_factor`` (:data:`MEMORY_FACTORS`). Params are checked
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


#: The peak memory of each operation on a tile, beyond its inputs (its temporaries and its
#: results), as a multiple of its inputs' bytes over the read window: measured (VmHWM after
#: clearing it) on a float32 band of 1044 x 1044 with NaN holes, rounded up. The run plan's
#: memory estimate multiplies by it.
MEMORY_FACTORS = {
    "band_math": 8, "mean_filter": 10, "median_filter": 14, "min_filter": 4, "max_filter": 4,
    "gaussian_filter": 10, "convolve": 11, "fill_nodata": 4, "select_bands": 1, "stack": 3,
    "cast": 6, "slope": 17, "aspect": 17, "hillshade": 21, "stats": 6, "histogram": 4,
    "percentiles": 4, "unique_counts": 3,
}
for _name, _factor in MEMORY_FACTORS.items():
    setattr(globals()[_name], "memory_factor", _factor)
