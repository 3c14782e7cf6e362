"""Fixtures for the command-line tests: a copy of the example pipelines in a temporary folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """The pipelines folder (pipelines, callables, sample data) copied into tmp_path."""
    target = tmp_path / "pipelines"
    shutil.copytree(REPO / "pipelines", target, ignore=shutil.ignore_patterns("out", "__pycache__"))
    return target


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str):
    """Run the click group in-process, mapping errors to exit codes as the console script does."""
    from eoscale.cli.main import main

    result = runner.invoke(main, list(args), catch_exceptions=False, standalone_mode=True)
    return result


def eoscale(*args: str, cwd: Path | None = None, timeout: float = 120, **kwargs):
    """Run the real console script (``python -m eoscale``) in a subprocess."""
    return subprocess.run([sys.executable, "-m", "eoscale", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, **kwargs)
