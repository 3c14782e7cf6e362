"""Reading a pipeline's ``outputs:``: each result's file and, for an image, its format, GDAL
creation options, overviews, quicklook and STAC Item."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eoscale.errors import did_you_mean
from eoscale.io.layout import FORMATS, RESAMPLINGS, ImageLayout
from eoscale.io.paths import is_address
from eoscale.io.quicklook import COLORMAPS, QUICKLOOK_SIZE, QuicklookStyle
from eoscale.pipeline import keys
from eoscale.pipeline.document import KeyPath
from eoscale.pipeline.spec import FrozenMap, OutputItemSpec, OutputSpec, QuicklookSpec, StepSpec
from eoscale.pipeline.values import ValueReader, absolute, describe

#: The output keys that only an image output can have.
IMAGE_ONLY = ("format", "overviews", "resampling", "quicklook", "stac")


def read_outputs(r: ValueReader, value: Any, base: Path) -> dict[str, OutputSpec]:
    """The outputs by result name (none when ``outputs:`` is absent or empty)."""
    if value is None:
        return {}
    raw = r.mapping(value, ("outputs",), None, "a mapping of result names to files")
    outputs = {}
    for name, item in (raw or {}).items():
        path = ("outputs", name)
        output = _output(r, name, item, path, base)
        if r.name(name, path, None, key=True) is not None and output is not None:
            outputs[name] = output
    _companion_clashes(r, outputs)
    return outputs


def image_only(r: ValueReader, value: Any, outputs: Mapping[str, OutputSpec],
               steps: tuple[StepSpec, ...]) -> None:
    """Report image-only keys in the output of a reduce step's result (``value``: the
    document's ``outputs:``)."""
    reduced = {step.name for step in steps if step.kind == "reduce"}
    for name in outputs:
        entry = value[name]
        written = [key for key in entry if isinstance(key, str)] if isinstance(
            entry, Mapping) else []
        for key in (key for key in IMAGE_ONLY if key in written and name in reduced):
            r.report(("outputs", name, key), f"'{name}' is a reduce result, written as "
                                             f"JSON: '{key}' is for images only", key=True)


def _output(r: ValueReader, name: str, value: Any, path: KeyPath,
            base: Path) -> OutputSpec | None:
    """An output, written ``file`` or as a mapping with ``path`` and the keys of images."""
    if not isinstance(value, Mapping):
        file = _output_path(r, value, path, base)
        return None if file is None else OutputSpec(name, file, where=r.at(path))
    entry = r.mapping(value, path, None, "a mapping") or {}
    r.check_keys(entry, path, keys.OUTPUT, None)
    file = None
    if "path" in entry:
        file = _output_path(r, entry["path"], (*path, "path"), base)
    options: dict[str, Any] = {}
    if entry.get("options") is not None:
        options = r.mapping(entry["options"], (*path, "options"), None,
                            "a mapping of GDAL creation options") or {}
    for key, item in options.items():
        if not isinstance(item, (str, int, float)):
            r.report((*path, "options", key), f"expected text or a number, found "
                                              f"{describe(item)}")
    layout = ImageLayout(
        r.choice(entry.get("format", "GTiff"), (*path, "format"), FORMATS),
        _overviews(r, entry.get("overviews"), (*path, "overviews")),
        None if entry.get("resampling") is None else r.choice(
            entry["resampling"], (*path, "resampling"), RESAMPLINGS))
    quicklook = _quicklook(r, entry.get("quicklook"), (*path, "quicklook"), base)
    item = _item(r, entry.get("stac"), (*path, "stac"))
    if file is None:
        return None
    return OutputSpec(name, file, FrozenMap(options), r.at(path), layout, quicklook, item)


def _output_path(r: ValueReader, value: Any, path: KeyPath, base: Path) -> Path | None:
    text = r.text(value, path, None, "a file path")
    if text is not None and is_address(text):
        r.report(path, f"outputs are written to local files, found the address {text!r}")
        return None
    return None if text is None else absolute(text, base)


def _overviews(r: ValueReader, value: Any, path: KeyPath) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not value:
        r.report(path, f"expected a list of overview factors like [2, 4, 8], found "
                       f"{describe(value)}")
        return ()
    factors = [r.integer(item, (*path, index), None, 2) for index, item in enumerate(value)]
    kept = tuple(factor for factor in factors if factor is not None)
    if len(set(kept)) != len(kept):
        r.report(path, f"overview factors repeat: {list(kept)}")
    return tuple(sorted(set(kept)))


def _quicklook(r: ValueReader, value: Any, path: KeyPath, base: Path) -> QuicklookSpec | None:
    """``true``, a PNG path, or a mapping with path, colormap, bands and size."""
    if value is None or value is False:
        return None
    if value is True:
        return QuicklookSpec()
    entry = {"path": value} if not isinstance(value, Mapping) else (
        r.mapping(value, path, None, "a mapping") or {})
    if isinstance(value, Mapping):
        r.check_keys(entry, path, keys.QUICKLOOK, None)
    file = None
    if entry.get("path") is not None:
        at = (*path, "path") if isinstance(value, Mapping) else path
        file = _output_path(r, entry["path"], at, base)
        if file is not None and file.suffix.lower() != ".png":
            r.report(at, f"a quicklook is a PNG: expected a .png path, found '{file.name}'")
    colormap = r.choice(entry.get("colormap", "viridis"), (*path, "colormap"), COLORMAPS)
    bands = None
    if entry.get("bands") is not None:
        bands = _bands(r, entry["bands"], (*path, "bands"))
    size = QUICKLOOK_SIZE
    if entry.get("size") is not None:
        size = r.integer(entry["size"], (*path, "size"), None, 1) or QUICKLOOK_SIZE
    return QuicklookSpec(file, QuicklookStyle(size, colormap, bands))


def _item(r: ValueReader, value: Any, path: KeyPath) -> OutputItemSpec | None:
    """``true``, or a mapping naming the reduce step whose result gives the ``statistics``."""
    if value is None or value is False:
        return None
    if value is True:
        return OutputItemSpec(where=r.at(path))
    entry = r.mapping(value, path, None, "true, or a mapping with key statistics") or {}
    r.check_keys(entry, path, keys.STAC_OUTPUT, None)
    statistics = None
    if entry.get("statistics") is not None:
        statistics = r.text(entry["statistics"], (*path, "statistics"), None,
                            "the name of a reduce step")
    return OutputItemSpec(statistics, r.at((*path, "statistics") if statistics else path))


def item_statistics(r: ValueReader, outputs: Mapping[str, OutputSpec],
                    steps: tuple[StepSpec, ...]) -> None:
    """Report an Item's ``statistics`` that name no reduce step, or one that is not of the
    output's own image (statistics of another image would describe the wrong pixels)."""
    by_name = {step.name: step for step in steps}
    for name, output in outputs.items():
        wanted = output.item.statistics if output.item is not None else None
        if wanted is None:
            continue
        at = ("outputs", name, "stac", "statistics")
        step = by_name.get(wanted)
        if step is None or step.kind != "reduce":
            reduces = [step.name for step in steps if step.kind == "reduce"]
            what = "no step" if step is None else f"a {step.kind} step"
            r.report(at, f"the statistics of '{name}' come from a reduce step's result, and "
                         f"'{wanted}' is {what}{did_you_mean(wanted, reduces)}; reduce steps: "
                         f"{', '.join(reduces) or 'none'}")
        elif step.callable.startswith("eoscale.ops.") and not step.callable.endswith(".stats"):
            r.report(at, f"reduce step '{wanted}' ({step.callable}) gives no statistics of "
                         f"'{name}' (min, max, mean, std per band): eoscale.ops.stats does")
        elif step.inputs != (name,):
            r.report(at, f"the statistics of '{name}' must be computed on '{name}' alone: reduce "
                         f"step '{wanted}' reads {', '.join(step.inputs)}")


def _bands(r: ValueReader, value: Any, path: KeyPath) -> tuple[int, ...] | None:
    if not isinstance(value, (list, tuple)) or len(value) not in (1, 3):
        r.report(path, f"expected one band or three (red, green, blue) like [4, 1, 2], "
                       f"found {describe(value)}")
        return None
    bands = [r.integer(item, (*path, index), None, 1) for index, item in enumerate(value)]
    return None if None in bands else tuple(int(band) for band in bands if band is not None)


def _companion_clashes(r: ValueReader, outputs: Mapping[str, OutputSpec]) -> None:
    """Report a quicklook or STAC Item written where an output, or another quicklook or Item,
    is written."""
    written: dict[Path, str] = {output.path: f"output '{name}'"
                                for name, output in outputs.items()}
    for name, output in outputs.items():
        for key, what, path in (("quicklook", "quicklook", output.quicklook_path()),
                                ("stac", "STAC Item", output.item_path())):
            if path is None:
                continue
            if path in written:
                r.report(("outputs", name, key),
                         f"the {what} {path} is also the path of {written[path]}")
            else:
                written[path] = f"the {what} of output '{name}'"
