"""The loader's keys for real-world inputs and outputs: addresses kept as written, the long form of
image outputs (format, overviews, resampling, quicklook) and ``gdal:`` options."""

from __future__ import annotations

from pathlib import Path

import pytest

from eoscale.errors import PipelineError
from eoscale.io.layout import ImageLayout
from eoscale.io.quicklook import QuicklookStyle
from eoscale.pipeline import load_pipeline
from eoscale.pipeline.spec import Overrides, QuicklookSpec

STEPS = [{"name": "ndvi", "map": "pipeline_callables.ndvi", "inputs": ["a"]}]


def pipeline(inputs=None, outputs=None, **top):
    return {"version": 1, "inputs": inputs or {"a": "a.tif"}, "steps": STEPS,
            "outputs": outputs or {}, **top}


@pytest.mark.parametrize("written", [
    "https://example.com/data/scene.tif",
    "http://127.0.0.1:8000/a%20b.tif?x=1",
    "s3://bucket/key/scene.tif",
    "gs://bucket/scene.tif",
    "az://container/scene.tif",
    "/vsizip/archive.zip/scene.tif",
    "/vsicurl/https://example.com/scene.tif",
])
def test_addresses_are_kept_exactly_as_written(tmp_path, written):
    spec = load_pipeline(pipeline({"a": written}), base_dir=tmp_path)
    assert spec.inputs["a"].path == written
    assert isinstance(spec.inputs["a"].path, str)


def test_local_inputs_still_resolve_against_the_base_and_expand_home(tmp_path):
    spec = load_pipeline(pipeline({"a": "data/a.tif", "b": "~/b.vrt"}), base_dir=tmp_path)
    assert spec.inputs["a"].path == tmp_path / "data" / "a.tif"
    assert spec.inputs["b"].path == Path.home() / "b.vrt"


def test_an_input_flag_may_be_an_address(tmp_path):
    spec = load_pipeline(pipeline(), base_dir=tmp_path,
                         overrides=Overrides(inputs={"a": "s3://bucket/other.tif"}))
    assert spec.inputs["a"].path == "s3://bucket/other.tif"


def test_long_form_of_an_image_output(tmp_path):
    spec = load_pipeline(pipeline(outputs={
        "ndvi": {"path": "out/ndvi.tif", "format": "COG", "options": {"blocksize": 256},
                 "overviews": [8, 2, 4], "resampling": "mode",
                 "quicklook": {"path": "pictures/ndvi.png", "colormap": "magma", "bands": [1],
                               "size": 300}}}), base_dir=tmp_path)
    output = spec.outputs["ndvi"]
    assert output.layout == ImageLayout("COG", (2, 4, 8), "mode")
    assert dict(output.options) == {"blocksize": 256}
    assert output.quicklook == QuicklookSpec(tmp_path / "pictures" / "ndvi.png",
                                             QuicklookStyle(300, "magma", (1,)))
    assert output.paths() == (tmp_path / "out" / "ndvi.tif", tmp_path / "pictures" / "ndvi.png")


@pytest.mark.parametrize("quicklook, expected", [
    (True, QuicklookSpec()),
    (False, None),
    ("look.png", QuicklookSpec(Path("look.png"))),
])
def test_short_forms_of_a_quicklook(tmp_path, quicklook, expected):
    spec = load_pipeline(pipeline(outputs={"ndvi": {"path": "ndvi.tif", "quicklook": quicklook}}),
                         base_dir=tmp_path)
    if expected is not None and expected.path is not None:
        expected = QuicklookSpec(tmp_path / expected.path)
    assert spec.outputs["ndvi"].quicklook == expected
    assert spec.outputs["ndvi"].layout == ImageLayout()


def test_a_default_quicklook_follows_its_output_when_a_flag_moves_it(tmp_path):
    spec = load_pipeline(
        pipeline(outputs={"ndvi": {"path": "ndvi.tif", "format": "COG", "quicklook": True}}),
        base_dir=tmp_path, overrides=Overrides(outputs={"ndvi": "elsewhere/other.tif"}))
    output = spec.outputs["ndvi"]
    assert output.layout.format == "COG"
    assert output.quicklook_path() == Path.cwd() / "elsewhere" / "other.png"


def test_a_quicklook_may_not_land_on_another_output(tmp_path):
    with pytest.raises(PipelineError) as caught:
        load_pipeline(pipeline(outputs={"ndvi": {"path": "ndvi.tif", "quicklook": "a.png"},
                                        "a": "a.png"}), base_dir=tmp_path)
    messages = [problem.message for problem in caught.value.problems]
    assert f"the quicklook {tmp_path / 'a.png'} is also the path of output 'a'" in messages


def test_gdal_options_become_text_as_gdal_reads_them(tmp_path):
    spec = load_pipeline(pipeline(gdal={"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
                                        "GDAL_HTTP_MAX_RETRY": 3, "VSI_CACHE": True,
                                        "CPL_VSIL_CURL_USE_HEAD": False}), base_dir=tmp_path)
    assert dict(spec.gdal) == {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
                               "GDAL_HTTP_MAX_RETRY": "3", "VSI_CACHE": "YES",
                               "CPL_VSIL_CURL_USE_HEAD": "NO"}


@pytest.mark.parametrize("key", ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GDAL_HTTP_USERPWD",
                                 "AZURE_STORAGE_CONNECTION_STRING", "GDAL_HTTP_HEADERS",
                                 "AZURE_STORAGE_SAS_TOKEN", "GS_SECRET_ACCESS_KEY"])
def test_credentials_are_refused_in_gdal_options(tmp_path, key):
    with pytest.raises(PipelineError) as caught:
        load_pipeline(pipeline(gdal={key: "value"}), base_dir=tmp_path)
    problem, = caught.value.problems
    assert problem.message == (f"'{key}' holds a credential: set it in the environment, never "
                               "in a pipeline")
    assert "value" not in str(caught.value)
