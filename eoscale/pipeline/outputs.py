"""Writing an image output as its spec says: GeoTIFF or COG, overviews, and its quicklook, each to
a staged temporary file that is renamed into place only when the whole run has succeeded."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from eoscale.engine import Engine, SharedRaster
from eoscale.engine.filed import FileRaster, OutputFile
from eoscale.engine.overviews import EncodedPyramid
from eoscale.io.layout import Apart, image_file
from eoscale.io.quicklook import write_quicklook
from eoscale.io.raster import Staging, TileWriter
from eoscale.pipeline.spec import OutputSpec


@contextlib.contextmanager
def image_target(staging: Staging, output: OutputSpec, threads: int,
                 display: str, apart: Apart | None = None) -> Iterator[OutputFile]:
    """Where to write ``output``'s pixels, inside the block: a map whose workers encode it
    writes the whole file there, overviews included (the target's ``pyramid``); else a plain
    GeoTIFF, staged, whose overviews are built or COG made on leaving the block. Then its
    quicklook is drawn from the file (from its coarsest overview that is large enough). The
    overviews' default resampling follows the dtype the file really has (a plan may learn it
    only from the first tile), so no dtype is asked for here. ``apart`` runs GDAL's passes
    over the file (:func:`~eoscale.io.layout.image_file`)."""
    staged = staging.stage(output.path)
    with image_file(staged, output.layout, output.options, threads=threads,
                    display=display, apart=apart) as target:
        pyramid = EncodedPyramid(target.pyramid) if target.pyramid is not None else None
        yield OutputFile(target.path, target.options, display, pyramid)
    quicklook = output.quicklook_path()
    if output.quicklook is not None and quicklook is not None:
        write_quicklook(staged, staging.stage(quicklook), output.quicklook.style,
                        display=f"{display} (quicklook)")


def stage_image(engine: Engine, staging: Staging, raster: SharedRaster, output: OutputSpec,
                display: str) -> None:
    """Write ``raster`` for ``output`` to staged files: the image, then its quicklook from it."""
    with image_target(staging, output, engine.workers, display, engine.apart) as target:
        engine.write_to(raster, target.path, options=target.options, display=display)


#: Rows of an input copied to its output at a time, in the main process.
COPY_ROWS = 512


def copy_image(engine: Engine, staging: Staging, raster: FileRaster, output: OutputSpec,
               display: str) -> None:
    """Copy an input read from its file to staged files for ``output``, strip by strip in this
    process (on a cluster, whose workers hold nothing, an input that is also an output)."""
    from rasterio.windows import Window

    profile = raster.profile
    height, width = int(profile["height"]), int(profile["width"])
    with image_target(staging, output, engine.workers, display, engine.apart) as target:
        writer = TileWriter(profile, target.path, options=target.options, threads=engine.workers,
                            display=display)
        try:
            for row in range(0, height, COPY_ROWS):
                window = Window(0, row, width, min(COPY_ROWS, height - row))
                writer.write(window, raster.read(window))
        finally:
            writer.close()
