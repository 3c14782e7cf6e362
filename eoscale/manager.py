"""EOScale 1.0's module path ``eoscale.manager``: this name is :mod:`eoscale.compat.manager`.

The module replaces itself in ``sys.modules``, so both names give one module object: patching
``eoscale.manager.<name>`` patches what the layer uses (see :mod:`eoscale.compat`).
"""

import sys

from eoscale.compat import manager

sys.modules[__name__] = manager
