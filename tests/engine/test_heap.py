"""A pool worker's heap: freed tile arrays serve the next tile without new page faults, and are
given back at a step's end. Measured in a fresh process (page faults from getrusage, resident
memory from /proc), so pytest's own heap is not touched."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="glibc's mallopt and malloc_trim: Linux only")

#: The tests' folder, where heap_probe.py lies, for the probe's fresh process.
TESTS = Path(__file__).resolve().parents[1]

_PROBE = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, sys.argv[2])
    from heap_probe import tile_faults
    from eoscale.engine import heap

    def resident_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    tile_faults(1, warm_up=0)                    # glibc's first large block: its own mapping
    kept = heap.keep_freed_memory() if sys.argv[1] == "keep" else None
    faults = tile_faults(8)
    held = resident_mib()
    heap.release_freed_memory()
    print(json.dumps({"kept": kept, "faults": faults, "held": held,
                      "released": resident_mib()}))
""")


def _probe(mode: str) -> dict:
    run = subprocess.run([sys.executable, "-c", _PROBE, mode, str(TESTS)], capture_output=True,
                         text=True, check=True, timeout=60)
    return json.loads(run.stdout)


def test_freed_tile_memory_serves_the_next_tile_and_is_given_back_at_the_step_end():
    default, kept = _probe("default"), _probe("keep")
    assert kept["kept"] is True
    # 8 tiles of 4 x 12 MiB: by default glibc gives back the top of its heap after each tile
    # (more than twice its adapted mmap threshold is free), and the next tile faults it in
    # again (12,288 pages of 4 KiB a tile, fewer with huge pages); kept, none
    assert default["faults"] > 8 * 100, default
    assert kept["faults"] < 100, kept
    # the last tile's 48 MiB stay resident until the step's end, then are given back
    assert kept["held"] - kept["released"] > 40, kept
