"""EOScale 1.0's package path ``eoscale.filters``: it *is* :mod:`eoscale.compat.filters`, and
``eoscale.filters.<module>`` is ``eoscale.compat.filters.<module>`` (see :mod:`eoscale.compat`)."""

import sys

from eoscale.compat import filters
from eoscale.compat.filters import concatenate_images, generic_kernel, stats_minmax

for _module in (concatenate_images, generic_kernel, stats_minmax):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module
sys.modules[__name__] = filters
