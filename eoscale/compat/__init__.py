"""The EOScale 1.0 compatibility layer: code written for CNES's EOScale 1.0 runs unchanged.

Its modules are 1.0's, under 1.0's names too:

- :mod:`eoscale.compat.manager` is ``eoscale.manager`` (``EOContextManager``);
- :mod:`eoscale.compat.executors` is ``eoscale.eo_executors`` (``n_images_to_m_images_filter``,
  ``n_images_to_m_scalars``, ``compute_mp_tiles``);
- :mod:`eoscale.compat.tiles` is ``eoscale.utils`` (``MpTile``, and 1.0's tile plan);
- :mod:`eoscale.compat.types` is ``eoscale.data_types`` (``VirtualPath``, ``DataType``);
- :mod:`eoscale.compat.filters` is ``eoscale.filters`` (``generic_kernel``, ``stats_minmax``,
  ``concatenate_images``).

Each 1.0 name is a module that puts the compat module in its place in ``sys.modules`` when
imported, so the two names give one module object, not a copy: what a test or a client patches
under the 1.0 name (``eoscale.eo_executors.compute_mp_tiles``) is what the layer calls. The layer
reaches the engine through its public API only.
"""
