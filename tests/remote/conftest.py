"""A local HTTP server with byte ranges, started in its own process for the session."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from remote_helpers import HERE, Served, make_files


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("served")
    make_files(folder)
    process = subprocess.Popen([sys.executable, str(HERE / "range_server.py"), str(folder)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline())
        yield Served(folder, f"http://127.0.0.1:{port}")
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


@pytest.fixture(autouse=True)
def no_curl_cache(served: Served, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """GDAL keeps what /vsicurl/ read for later opens in the same process, which would let a
    test pass on what an earlier one fetched: nothing from the test server is cached."""
    monkeypatch.setenv("CPL_VSIL_CURL_NON_CACHED", f"/vsicurl/{served.url}/")
    served.log()
    yield
