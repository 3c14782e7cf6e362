"""A run's fingerprint names what changed since another run: params, inputs, callables' code."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from eoscale.pipeline import load_pipeline
from eoscale.pipeline.fingerprint import REMOTE, Fingerprint, file_identity, fingerprint
from eoscale.pipeline.spec import Overrides

PIPELINE = """
    version: 1
    inputs: {dsm: dsm.tif}
    steps:
      - {name: median, map: fp_ops.median, inputs: [dsm], params: {size: 3}}
      - {name: stats, reduce: fp_ops.stats, inputs: [median]}
    outputs: {median: out/median.tif}
    """

OPS = """
    import numpy as np

    def median(inputs, context, size=3):
        return [inputs[0]]

    def stats(inputs, context):
        return float(np.nansum(inputs[0]))
    """


@pytest.fixture
def folder(tmp_path: Path, make_raster, monkeypatch: pytest.MonkeyPatch) -> Path:
    make_raster("dsm.tif", width=40, height=30, dtype="float32")
    (tmp_path / "pipeline.yaml").write_text(textwrap.dedent(PIPELINE))
    (tmp_path / "fp_ops.py").write_text(textwrap.dedent(OPS))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fp_ops", raising=False)  # another test's folder's
    return tmp_path


def _fingerprint(folder: Path, **overrides) -> Fingerprint:
    spec = load_pipeline(folder / "pipeline.yaml", overrides=Overrides(**overrides)
                         if overrides else None)
    return fingerprint(spec, version="1.0", plan={"step 'median' tiles": "4 of 512 x 512"})


def test_the_same_run_has_the_same_fingerprint_and_it_survives_json(folder: Path) -> None:
    first = _fingerprint(folder)
    assert first.changes(_fingerprint(folder)) == []
    assert Fingerprint.from_json(first.as_json()) == first
    assert first.subjects["step 'median'"]["params.size"] == "3"
    assert first.subjects["plan"] == {"step 'median' tiles": "4 of 512 x 512"}


def test_a_changed_param_is_named_with_both_values(folder: Path) -> None:
    before = _fingerprint(folder)
    after = _fingerprint(folder, params={("median", "size"): 5})
    assert after.changes(before) == ["step 'median': params.size 3 -> 5"]


def test_a_modified_input_is_named(folder: Path) -> None:
    before = _fingerprint(folder)
    path = folder / "dsm.tif"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # a pixel's byte: the size stays, the hash of the start may not
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))  # and the modification time moves
    assert _fingerprint(folder).changes(before) == ["input 'dsm': modified since the killed run"]


def test_an_input_replaced_by_another_file_names_both_paths(folder: Path, make_raster) -> None:
    make_raster("other.tif", width=40, height=30, dtype="float32")
    before = _fingerprint(folder)
    changes = _fingerprint(folder, inputs={"dsm": str(folder / "other.tif")}).changes(before)
    assert changes[0] == f"input 'dsm': path {folder / 'dsm.tif'} -> {folder / 'other.tif'}"


def test_changed_code_of_a_callable_is_named_with_its_module(folder: Path) -> None:
    before = _fingerprint(folder)
    ops = folder / "fp_ops.py"
    ops.write_text(ops.read_text().replace("return [inputs[0]]", "return [inputs[0] + 1]"))
    changes = _fingerprint(folder).changes(before)
    assert changes == ["step 'median': the code of its callables changed (fp_ops.py)",
                       "step 'stats': the code of its callables changed (fp_ops.py)"]


def test_a_new_eoscale_version_and_a_changed_plan_are_named(folder: Path) -> None:
    spec = load_pipeline(folder / "pipeline.yaml")
    before = fingerprint(spec, version="1.0", plan={"step 'median' tiles": "4 of 512 x 512"})
    after = fingerprint(spec, version="1.1", plan={"step 'median' tiles": "16 of 256 x 256"})
    assert after.changes(before) == [
        "eoscale: version 1.0 -> 1.1",
        "plan: step 'median' tiles 4 of 512 x 512 -> 16 of 256 x 256"]


def test_identity_of_missing_and_remote_files(tmp_path: Path) -> None:
    assert file_identity(tmp_path / "nothing.tif") == {"size": "missing"}
    assert file_identity("https://example.invalid/a.tif") == {"address": REMOTE}


def test_a_stac_input_s_asset_files_and_selection_are_fingerprinted(tmp_path: Path) -> None:
    """An asset file of the Item changed, or the selection keys changed, are named."""
    import shutil

    data = Path(__file__).parents[2] / "pipelines" / "data"
    shutil.copytree(data / "bands", tmp_path / "bands")
    shutil.copy(data / "item.json", tmp_path / "item.json")
    text = """
        version: 1
        inputs: {s2: {stac: item.json, assets: [red, nir]}}
        steps: [{name: ndvi, map: eoscale.ops.stack, inputs: [s2]}]
        outputs: {ndvi: out/ndvi.tif}
        """
    (tmp_path / "pipeline.yaml").write_text(textwrap.dedent(text))
    spec = load_pipeline(tmp_path / "pipeline.yaml")
    before = fingerprint(spec, version="1")
    assert any(aspect.startswith("asset ") and aspect.endswith("B08.tif head")
               for aspect in before.subjects["input 's2'"])
    band = next((tmp_path / "bands").glob("B08*.tif"))
    os.utime(band, ns=(5, 5))
    assert fingerprint(spec, version="1").changes(before) == [
        "input 's2': modified since the killed run"]
    (tmp_path / "pipeline.yaml").write_text(textwrap.dedent(text).replace(
        "assets: [red, nir]", "assets: [red, nir], order: oldest"))
    changes = fingerprint(load_pipeline(tmp_path / "pipeline.yaml"), version="1").changes(before)
    assert 'input \'s2\': order "oldest" added' in changes
