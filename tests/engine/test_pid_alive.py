"""A process that has exited is dead to eoscale's clean-ups and resumes, also while it is a zombie
that nothing reaps (a killed run whose parent is gone, in a container whose first process reaps
nothing): otherwise its segments, parts and journal would be taken for a live run's forever."""

from __future__ import annotations

import os
import sys
import time

import pytest

from eoscale.engine.shared import pid_alive


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_zombie_is_dead_and_a_running_process_alive() -> None:
    pid = os.fork()
    if pid == 0:  # the child exits at once; the parent does not reap it yet
        os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while open(f"/proc/{pid}/stat", "rb").read().rsplit(b")", 1)[1][1:2] != b"Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
        assert not pid_alive(pid)
    finally:
        os.waitpid(pid, 0)
    assert not pid_alive(pid)
    assert pid_alive(os.getpid())
