"""A Ctrl-C whose exception Python loses still stops the run.

Python only prints an exception raised while the main thread runs a ``__del__`` (or a weakref
callback): a signal arriving then (a Dask future released, a file closed) used to be swallowed,
and the run went on to the end, renamed its outputs into place and exited 0. The handler records
the signal, and the run raises it again between chunks and before renaming outputs.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from eoscale.cli import main as cli_main
from eoscale.engine import Engine
from eoscale.errors import Interrupted, record_interrupt
from eoscale.io.raster import Staging

OPS = '''
import os
import signal


class SignalsWhileReleased:
    """Sends this process SIGINT from its __del__, and is still inside it when the handler runs."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10000):
            pass


def double(arrays, profiles, params):
    released = SignalsWhileReleased()
    del released
    return arrays[0] * 2
'''

PIPELINE = '''
version: 1
inputs: {a: a.tif}
steps:
  - {name: twice, map: lost_ops.double, inputs: [a]}
outputs: {twice: out/twice.tif}
'''


def test_a_signal_lost_in_a_del_stops_the_run_with_nothing_written(tmp_path: Path) -> None:
    (tmp_path / "lost_ops.py").write_text(OPS)
    (tmp_path / "p.yaml").write_text(PIPELINE)
    profile = dict(driver="GTiff", height=64, width=64, count=1, dtype="float32")
    with rasterio.open(tmp_path / "a.tif", "w", **profile) as dataset:
        dataset.write(np.ones((1, 64, 64), np.float32))
    done = subprocess.run([sys.executable, "-m", "eoscale", "run", "p.yaml", "-w", "1",
                           "--tile-size", "16"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 130, done.stderr
    assert "interrupted by SIGINT" in done.stderr
    assert not (tmp_path / "out" / "twice.tif").exists()


class _InterruptsWhileReleased:
    def __del__(self) -> None:
        cli_main._interrupt(signal.SIGINT, None)


@pytest.fixture
def lost_interrupt(monkeypatch):
    """The command line's handler run inside a __del__: its Interrupted is lost, as Python loses
    it; the signal handlers and the record are restored after the test."""
    lost: list[BaseException] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: lost.append(unraisable.exc_value))
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    record_interrupt(None)  # a new command's state, as main() starts it (no commit yet)
    try:
        released = _InterruptsWhileReleased()
        del released
        assert [type(error) for error in lost] == [Interrupted]
        yield
    finally:
        record_interrupt(None)
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])


def _double(arrays, profiles, params):
    return arrays[0] * 2


def test_the_engine_stops_at_its_next_chunk(lost_interrupt) -> None:
    with Engine(workers=1) as engine:
        image = engine.from_array(np.ones((32, 32), np.float32))
        with pytest.raises(Interrupted):
            engine.map(_double, [image], margin=0)


def test_nothing_is_renamed_into_place(lost_interrupt, tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(Interrupted), Staging(overwrite=False) as staging:
        staging.stage(target).write_text("finished")
        staging.commit()
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_new_run_starts_unstopped(lost_interrupt) -> None:
    record_interrupt(None)  # what the console script does when it starts
    with Engine(workers=1) as engine:
        image = engine.from_array(np.ones((8, 8), np.float32))
        [result] = engine.map(_double, [image], margin=0)
        assert np.array_equal(result.array, np.full((1, 8, 8), 2, np.float32))


LATE_OPS = '''
import os
import signal

_replace = os.replace


def _replace_then_signal(source, target, *args, **kwargs):
    """SIGTERM to this process as the output is renamed into place."""
    if str(target).endswith("twice.tif"):
        os.kill(os.getpid(), signal.SIGTERM)
    return _replace(source, target, *args, **kwargs)


os.replace = _replace_then_signal


def double(arrays, profiles, params):
    return arrays[0] * 2
'''


def test_a_signal_while_the_outputs_are_put_in_place_lets_the_run_finish(tmp_path: Path) -> None:
    """Once its outputs are being renamed into place the run has finished: a signal then does
    not report a stop with "nothing left behind" over a replaced output; the run ends as it
    would have (exit 0, the new output in place) and says that the signal came."""
    (tmp_path / "lost_ops.py").write_text(LATE_OPS)
    (tmp_path / "p.yaml").write_text(PIPELINE)
    profile = dict(driver="GTiff", height=64, width=64, count=1, dtype="float32")
    with rasterio.open(tmp_path / "a.tif", "w", **profile) as dataset:
        dataset.write(np.ones((1, 64, 64), np.float32))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "twice.tif").write_bytes(b"the previous result")
    done = subprocess.run([sys.executable, "-m", "eoscale", "run", "p.yaml", "-w", "1",
                           "--tile-size", "16", "--overwrite"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "SIGTERM came as the outputs were put in place: the run finished first" in done.stderr
    assert "interrupted" not in done.stderr
    with rasterio.open(tmp_path / "out" / "twice.tif") as written:
        assert np.array_equal(written.read(), np.full((1, 64, 64), 2, np.float32))
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["twice.tif"]
