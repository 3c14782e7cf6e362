"""EOScale 1.0's module path ``eoscale.utils``: this name is :mod:`eoscale.compat.tiles`.

The module replaces itself in ``sys.modules``, so both names give one module object: patching
``eoscale.utils.<name>`` patches what the layer uses (see :mod:`eoscale.compat`).
"""

import sys

from eoscale.compat import tiles

sys.modules[__name__] = tiles
