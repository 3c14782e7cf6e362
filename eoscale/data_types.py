"""EOScale 1.0's module path ``eoscale.data_types``: this name is :mod:`eoscale.compat.types`.

The module replaces itself in ``sys.modules``, so both names give one module object: patching
``eoscale.data_types.<name>`` patches what the layer uses (see :mod:`eoscale.compat`).
"""

import sys

from eoscale.compat import types

sys.modules[__name__] = types
