"""Progress off a terminal (a batch job's log): the real ``eoscale run`` with its output in a pipe
prints a line at every tenth of a step's tiles and at least every EOSCALE_PROGRESS_SECONDS
(30 s unless set; a fraction of a second here), each with tiles done of total, the rate, the
time elapsed and the time left, and a last line at 100 %."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

REPO = Path(__file__).resolve().parents[2]

OPS = '''
import time

import numpy as np


def slow(arrays, profiles, params):
    time.sleep(params["seconds"])
    return arrays[0].astype(np.float32)
'''

START = re.compile(r"^\d\d:\d\d:\d\d map slow: (?P<total>\d+) tile\(s\)$")
LINE = re.compile(r"^\d\d:\d\d:\d\d map slow: (?P<done>\d+)/(?P<total>\d+) tiles "
                  r"\((?P<percent>\d+) %\), (?:(?P<rate>[0-9.e+]+) tiles/s|no tile done yet), "
                  r"elapsed (?P<elapsed>[0-9.]+) s, "
                  r"(?:about (?P<left>[0-9.]+) s left|time left unknown)$")
END = re.compile(r"^\d\d:\d\d:\d\d map slow: done in (?P<seconds>[0-9.]+) s: (?P<done>\d+)/"
                 r"(?P<total>\d+) tiles \(100 %\), [0-9.e+]+ tiles/s, [0-9.]+ Mpx/s$")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A 256 x 256 float32 image and the callable ``ops.slow``, which sleeps on every tile."""
    (tmp_path / "ops.py").write_text(OPS)
    with rasterio.open(tmp_path / "image.tif", "w", driver="GTiff", width=256, height=256,
                       count=1, dtype="float32", crs="EPSG:32631",
                       transform=Affine(10, 0, 600000, 0, -10, 4800000)) as dataset:
        dataset.write(np.ones((1, 256, 256), np.float32))
    return tmp_path


def run_logged(folder: Path, tile_size: int, seconds: float, interval: str
               ) -> subprocess.CompletedProcess:
    """``eoscale run`` of one slow map step, its output piped as a batch system's log is."""
    (folder / "p.yaml").write_text(
        f"version: 1\ntiling: {{tile_size: {tile_size}}}\ninputs: {{image: image.tif}}\n"
        f"steps:\n  - {{name: slow, map: ops.slow, inputs: [image], "
        f"params: {{seconds: {seconds}}}}}\noutputs: {{slow: out.tif}}\n")
    env = dict(os.environ, EOSCALE_PROGRESS_SECONDS=interval,
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "eoscale", "run", "p.yaml", "-w", "2"],
                          cwd=folder, capture_output=True, text=True, timeout=120, env=env,
                          check=False)


def progress_lines(stdout: str) -> tuple[int, list[re.Match], re.Match]:
    """The step's announced total, its progress lines and its last line; every line about the
    step must be one of the three forms."""
    lines = [line for line in stdout.splitlines() if " map slow: " in line]
    start = START.match(lines[0])
    assert start, lines
    middle = [LINE.match(line) for line in lines[1:-1]]
    assert all(middle), [line for line, match in zip(lines[1:-1], middle) if not match]
    end = END.match(lines[-1])
    assert end, lines[-1]
    return int(start["total"]), middle, end


def test_a_line_at_every_tenth_of_the_tiles_and_a_last_one_at_100_percent(folder):
    done = run_logged(folder, tile_size=16, seconds=0.01, interval="3600")  # tenths alone
    assert done.returncode == 0, done.stderr
    total, lines, end = progress_lines(done.stdout)
    assert total == 256 and int(end["done"]) == int(end["total"]) == 256
    counts = [int(line["done"]) for line in lines]
    assert counts == sorted(set(counts)) and counts[-1] < 256  # monotonic, 100 % only at the end
    # one line for each tenth crossed (tiles finish by chunks: a chunk may cross two at once)
    tenths = [count * 10 // total for count in counts]
    assert tenths == sorted(set(tenths)) and set(tenths) <= set(range(1, 10))
    assert len(lines) >= 5
    for line in lines:
        assert int(line["total"]) == 256
        assert int(line["percent"]) == int(line["done"]) * 100 // 256
        assert float(line["rate"]) > 0 and float(line["left"]) >= 0
    elapsed = [float(line["elapsed"]) for line in lines]
    assert elapsed == sorted(elapsed) and elapsed[-1] <= float(end["seconds"]) + 0.05


def test_a_line_at_least_every_interval_while_tiles_are_slow(folder):
    # 4 tiles of 1.5 s on 2 workers: 3 s with 2 tenths crossed; lines every 0.25 s meanwhile
    done = run_logged(folder, tile_size=128, seconds=1.5, interval="0.25")
    assert done.returncode == 0, done.stderr
    total, lines, end = progress_lines(done.stdout)
    assert total == 4 and int(end["done"]) == 4
    assert len(lines) >= 8, done.stdout
    counts = [int(line["done"]) for line in lines]
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] < 4
    assert lines[0]["rate"] is None and lines[0]["left"] is None  # nothing to estimate from yet
    elapsed = [0.0] + [float(line["elapsed"]) for line in lines] + [float(end["seconds"])]
    gaps = [later - earlier for earlier, later in itertools.pairwise(elapsed)]
    assert max(gaps) < 0.25 + 1.0, gaps  # the interval, and room for a busy machine


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan"])
def test_a_bad_interval_is_refused(folder, value):
    done = run_logged(folder, tile_size=128, seconds=0, interval=value)
    assert done.returncode == 2, done.stderr
    assert f"error: EOSCALE_PROGRESS_SECONDS='{value}': expected a number of seconds above 0" in (
        done.stderr)
    assert "Traceback" not in done.stderr and not (folder / "out.tif").exists()


def test_a_signal_inside_the_ticker_s_start_is_what_the_progress_raises(monkeypatch):
    """SIGTERM handled while the progress lines' ticker thread starts: the thread never
    started, and leaving the progress raises the signal's Interrupted (the command's exit 143),
    not join()'s RuntimeError (an "internal error", exit 1: a failure test caught it once)."""
    import io
    import signal
    import threading

    from rich.console import Console

    from eoscale.cli import render
    from eoscale.errors import Interrupted

    class SignalledThread(threading.Thread):
        def start(self) -> None:
            raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(render.threading, "Thread", SignalledThread)
    progress = render.PlainProgress(Console(file=io.StringIO()))
    with pytest.raises(Interrupted):
        with progress:
            progress.started("map", "copy", 4)
