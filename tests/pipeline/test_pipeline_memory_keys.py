"""The memory budget and the scratch folder: sizes as people write them, in YAML and as flags."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from eoscale.errors import PipelineError
from eoscale.pipeline import Overrides, load_pipeline
from eoscale.sizes import parse_size, size_text

Writer = Callable[..., Path]

PIPELINE = """
    version: 1
    MEMORY
    inputs: {scene: scene.tif}
    steps:
      - {name: ndvi, map: pipeline_callables.ndvi, inputs: [scene]}
    """


@pytest.mark.parametrize("text, expected", [
    ("4GiB", 4 * 2 ** 30), ("512MiB", 512 * 2 ** 20), ("512 MB", 512 * 10 ** 6),
    ("1.5GB", 1_500_000_000), ("64kib", 64 * 1024), ("100B", 100), ("2TiB", 2 * 2 ** 40),
    (4096, 4096), ("4096", 4096), ("1e9", 10 ** 9), (1e9, 10 ** 9), ("2.5e3 MiB", 2500 * 2 ** 20),
])
def test_sizes(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "4GX", "-1GiB", "0", 0, True, "", "GiB", [1], 1.5,
                                  "1e", "e9"])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_size_text_reads_back() -> None:
    assert size_text(1536 * 2 ** 20) == "1.5 GiB" and size_text(12) == "12 bytes"


def test_memory_and_scratch_in_the_pipeline(write_pipeline: Writer, tmp_path: Path) -> None:
    spec = load_pipeline(write_pipeline(PIPELINE.replace("MEMORY", "memory: 4GiB\n    "
                                                                   "scratch: spill")))
    assert spec.memory == 4 * 2 ** 30
    assert spec.scratch == tmp_path / "spill"
    flagged = load_pipeline(write_pipeline(PIPELINE.replace("MEMORY", "memory: 4GiB")),
                            overrides=Overrides(memory="512MiB", scratch="elsewhere"))
    assert flagged.memory == 512 * 2 ** 20
    assert flagged.scratch == Path.cwd() / "elsewhere"


def test_a_bad_budget_names_its_line(write_pipeline: Writer) -> None:
    with pytest.raises(PipelineError) as raised:
        load_pipeline(write_pipeline(PIPELINE.replace("MEMORY", "memory: plenty")))
    problem, = raised.value.problems
    assert (problem.line, problem.path) == (2, "memory")
    assert problem.message.startswith("expected a size like 4GiB or 512MB")
    with pytest.raises(PipelineError) as raised:
        load_pipeline(write_pipeline(PIPELINE.replace("MEMORY", "")),
                      overrides=Overrides(memory="4 gigs"))
    assert raised.value.problems[0].path == "--memory"
