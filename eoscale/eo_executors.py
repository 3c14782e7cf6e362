"""EOScale 1.0's module path ``eoscale.eo_executors``: this name is :mod:`eoscale.compat.executors`.

The module replaces itself in ``sys.modules``, so both names give one module object: patching
``eoscale.eo_executors.<name>`` patches what the layer uses (see :mod:`eoscale.compat`).
"""

import sys

from eoscale.compat import executors

sys.modules[__name__] = executors
