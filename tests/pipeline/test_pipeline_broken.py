"""The corpus of broken pipelines: each file says, in ``# expect:`` lines, every problem it has.

``# expect: line 7: fragment`` wants a problem on line 7 whose message holds the fragment;
``# expect: fragment`` one anywhere. A file has exactly the problems it expects, no more.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from eoscale.errors import PipelineError, Problem
from eoscale.pipeline import load_pipeline, validate

CORPUS = Path(__file__).parent / "broken"
EXPECT = re.compile(r"# expect: (?:line (\d+): )?(.*)")


def expectations(path: Path) -> list[tuple[int | None, str]]:
    header = path.read_bytes().decode("latin-1").splitlines()
    found = [EXPECT.fullmatch(line) for line in header if line.startswith("# expect:")]
    return [(int(match[1]) if match[1] else None, match[2]) for match in found if match]


def problems_of(path: Path, data: Path) -> list[Problem]:
    try:
        spec = load_pipeline(path, base_dir=data)
    except PipelineError as error:
        return error.problems
    return validate(spec)


def test_corpus_is_large() -> None:
    assert len(list(CORPUS.glob("*.yaml"))) >= 20


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.yaml")), ids=lambda path: path.stem)
def test_broken_pipeline(path: Path, corpus_data: Path) -> None:
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect:' line"
    problems = problems_of(path, corpus_data)
    shown = "\n".join(map(str, problems))
    for line, fragment in expected:
        assert any(fragment in problem.message and (line is None or problem.line == line)
                   for problem in problems), f"no problem {fragment!r} at line {line}:\n{shown}"
    assert len(problems) == len(expected), f"more problems than expected:\n{shown}"
    for problem in problems:
        assert problem.file == str(path)
        assert problem.line is not None


def test_problems_name_the_step(corpus_data: Path) -> None:
    problem, = problems_of(CORPUS / "margin_too_small.yaml", corpus_data)
    assert problem.step == "s"
    assert problem.path == "steps -> 0 -> margin"
    assert str(problem).startswith(f"{CORPUS / 'margin_too_small.yaml'}:11:13, step 's', ")


def test_alias_bomb_is_refused_at_once(corpus_data: Path) -> None:
    start = time.process_time()  # this process's time: other processes do not count
    with pytest.raises(PipelineError, match="once aliases are expanded"):
        load_pipeline(CORPUS / "alias_bomb.yaml")
    assert time.process_time() - start < 0.5
