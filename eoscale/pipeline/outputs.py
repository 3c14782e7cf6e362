"""Writing an image output as its spec says: GeoTIFF or COG, overviews, and its quicklook, each to
a staged temporary file that is renamed into place only when the whole run has succeeded."""

from __future__ import annotations

from eoscale.engine import Engine, SharedRaster
from eoscale.io.layout import image_file
from eoscale.io.quicklook import write_quicklook
from eoscale.io.raster import Staging
from eoscale.pipeline.spec import OutputSpec


def stage_image(engine: Engine, staging: Staging, raster: SharedRaster, output: OutputSpec,
                display: str) -> None:
    """Write ``raster`` for ``output`` to staged files: the image, then its quicklook from it."""
    staged = staging.stage(output.path)
    with image_file(staged, output.layout, output.options, dtype=raster.ref.dtype,
                    threads=engine.workers, display=display) as (tiff, options):
        engine.write_to(raster, tiff, options=options, display=display)
    quicklook = output.quicklook_path()
    if output.quicklook is not None and quicklook is not None:
        write_quicklook(staged, staging.stage(quicklook), output.quicklook.style,
                        display=f"{display} (quicklook)")
