"""The PSS sampler of a run reads the PSS only when the resident pages say the tree may be above
its peak, and still finds the peak."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from eoscale.engine.memory import TreeSampler, own_pss, resident_pages

pytestmark = pytest.mark.skipif(own_pss() is None, reason="no /proc/PID/smaps_rollup here")

MiB = 2 ** 20


def test_resident_pages_follow_what_the_process_touches():
    before = resident_pages(os.getpid())
    block = np.ones(64 * MiB, dtype=np.uint8)  # touched: resident
    assert resident_pages(os.getpid()) - before >= 60 * MiB // os.sysconf("SC_PAGE_SIZE")
    del block
    assert resident_pages(2 ** 22 + 12345) is None  # no such process


def test_a_sample_is_needed_only_when_pages_were_gained():
    sampler = TreeSampler(os.getpid(), 0.05, share=0.02)
    sampler.sample()
    assert sampler.peak > 0 and not sampler.may_exceed_peak()
    block = np.ones(64 * MiB, dtype=np.uint8)
    assert sampler.may_exceed_peak()
    before = sampler.peak
    sampler.sample()
    assert sampler.peak >= before + 60 * MiB and not sampler.may_exceed_peak()
    del block
    assert not sampler.may_exceed_peak()  # pages given back: below the peak


def test_the_thread_samples_on_growth_and_not_while_idle():
    sampler = TreeSampler(os.getpid(), 0.02, share=0.5, floor_s=60.0)
    sampler.start()
    try:
        time.sleep(0.5)
        idle = sampler.samples
        assert 1 <= idle <= 5  # not one every 20 ms: the first, then only on pages gained
        baseline = sampler.peak
        block = np.ones(96 * MiB, dtype=np.uint8)
        deadline = time.monotonic() + 10
        while sampler.peak < baseline + 90 * MiB and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sampler.peak >= baseline + 90 * MiB
        del block
    finally:
        sampler.stop()
    assert sampler.cpu_s > 0


def test_a_short_run_is_sampled_at_least_every_eighth_of_its_time_even_idle():
    """No page gained, a floor of a minute: a run of two seconds still gets a few samples
    (its brief peak could hide from the resident counts), not one."""
    sampler = TreeSampler(os.getpid(), 0.02, share=0.5, floor_s=60.0)
    sampler.start()
    try:
        time.sleep(2.0)
    finally:
        sampler.stop()
    assert 3 <= sampler.samples <= 8
