"""``fill_nodata``: GDAL's inverse-distance hole filling (rasterio.fill.fillnodata), tile-exact."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rasterio.fill import fillnodata

from eoscale.ops._common import Params, declare, nodata_of, single_input, valid_mask

OP = "fill_nodata"


def _settings(params: Mapping[str, Any]) -> tuple[float, int]:
    p = Params(OP, params, ("max_distance", "smoothing_iterations"))
    return (p.number("max_distance", 100.0, positive=True),
            p.integer("smoothing_iterations", 0, minimum=0))


def _margin(params: Mapping[str, Any]) -> int:
    """A filled pixel uses valid pixels up to ``max_distance`` away, then one more per smoothing."""
    max_distance, smoothing = _settings(params)
    return math.ceil(max_distance) + smoothing


def _profile(profiles: Sequence[dict], params: Mapping[str, Any]) -> dict:
    _settings(params)
    return dict(profiles[0])


@declare(margin=_margin, profile=_profile)
def fill_nodata(arrays: Sequence[np.ndarray], profiles: Sequence[dict],
                params: Mapping[str, Any]) -> np.ndarray:
    """Fill nodata pixels by inverse-distance interpolation from valid pixels (GDAL FillNodata).

    ``max_distance`` (pixels, default 100) bounds the search; ``smoothing_iterations`` (default 0)
    3x3 smoothing passes are run over the filled pixels. Pixels farther than ``max_distance`` from
    any valid pixel stay nodata; valid pixels are unchanged; the dtype is kept.
    """
    max_distance, smoothing = _settings(params)
    single_input(OP, arrays)
    valid = valid_mask(arrays[0], nodata_of(profiles[0])).astype(np.uint8)
    return np.stack([
        fillnodata(np.array(band), mask=mask, max_search_distance=max_distance,
                   smoothing_iterations=smoothing)
        for band, mask in zip(arrays[0], valid)
    ])
