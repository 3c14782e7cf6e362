"""Cluster addresses, and what ``--cluster`` says without the 'dask' extra (no Dask needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from eoscale.engine.cluster import ClusterAddress, parse_cluster


@pytest.mark.parametrize("text, expected", [
    ("local", ClusterAddress("local")),
    ("local:3", ClusterAddress("local:3", workers=3)),
    ("tcp://10.0.0.5:8786", ClusterAddress("tcp://10.0.0.5:8786", scheduler="tcp://10.0.0.5:8786")),
    ("head-node:8786", ClusterAddress("head-node:8786", scheduler="tcp://head-node:8786")),
    ("tls://[::1]:8786", ClusterAddress("tls://[::1]:8786", scheduler="tls://[::1]:8786")),
])
def test_cluster_addresses(text, expected):
    assert parse_cluster(text) == expected


@pytest.mark.parametrize("text", ["local:0", "local:x", "tcp://host", "host", "://host:1",
                                  "tcp://host:port"])
def test_bad_cluster_addresses_say_what_is_expected(text):
    with pytest.raises(ValueError, match="local|scheduler|worker"):
        parse_cluster(text)


def test_a_bad_cluster_in_the_pipeline_is_a_problem_at_its_line(tmp_path):
    from eoscale.errors import PipelineError
    from eoscale.pipeline import load_pipeline

    (tmp_path / "p.yaml").write_text("version: 1\ncluster: local:zero\ninputs: {a: a.tif}\n"
                                     "steps: [{name: s, map: m.f, inputs: [a]}]\n")
    with pytest.raises(PipelineError, match=r"p.yaml:2:10, cluster: expected local, local:N"):
        load_pipeline(tmp_path / "p.yaml")


@pytest.mark.parametrize("text, said", [
    ("foo", "expected local, local:N or a scheduler address like tcp://host:8786, found 'foo'"),
    ("local:0", "a local cluster needs at least 1 worker, found 'local:0'"),
    ("tcp://host:99999", "a port is 1 to 65535, found 99999 in 'tcp://host:99999'"),
])
def test_a_bad_cluster_option_is_a_usage_error_naming_it(tmp_path, text, said):
    """As every other option's bad value (exit 2), not a pipeline's problem (exit 3)."""
    from click.testing import CliRunner

    from eoscale.cli.main import cli
    from eoscale.errors import EXIT_USAGE

    (tmp_path / "p.yaml").write_text("version: 1\ninputs: {a: a.tif}\n"
                                     "steps: [{name: s, map: m.f, inputs: [a]}]\n")
    for args in (["run", str(tmp_path / "p.yaml"), "--cluster", text],
                 ["run", "--dry-run", str(tmp_path / "p.yaml"), "--cluster", text]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == EXIT_USAGE, result.output
        assert f"Invalid value for '--cluster': {said}" in result.output


def test_cluster_without_the_dask_extra_says_what_to_install(tmp_path: Path):
    with rasterio.open(tmp_path / "a.tif", "w", driver="GTiff", width=8, height=8, count=1,
                       dtype="uint8", crs="EPSG:32631",
                       transform=Affine(10, 0, 0, 0, -10, 0)) as dst:
        dst.write(np.ones((1, 8, 8), np.uint8))
    (tmp_path / "p.yaml").write_text(
        "version: 1\ninputs: {a: a.tif}\nsteps: [{name: s, map: eoscale.ops.mean_filter, "
        "inputs: [a], params: {size: 3}}]\noutputs: {s: out/s.tif}\n")
    hide_dask = ("import sys; sys.modules['distributed'] = None; "
                 "from eoscale.cli.main import main; main()")
    done = subprocess.run([sys.executable, "-c", hide_dask, "run", "p.yaml", "--cluster",
                           "local:2"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 1, done.stderr
    assert "pip install 'eoscale[dask]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


class _Client:
    """What a cluster executor asks its client when it describes its cluster."""

    def __init__(self, services: dict[str, int], link: str = "http://127.0.0.1:9/status",
                 workers: int = 2):
        self.scheduler = type("Scheduler", (), {"address": "tcp://10.0.0.5:8786"})()
        self.dashboard_link = link
        self._services = services
        self._workers = workers

    def nthreads(self) -> dict[str, int]:
        return {f"tcp://10.0.0.{6 + n}:1": 1 for n in range(self._workers)}

    def scheduler_info(self) -> dict:
        return {"services": self._services}


@pytest.mark.parametrize(("services", "said"), [
    # refused here (nothing listens on port 9): the user's browser may still reach it
    ({"dashboard": 8787}, "http://127.0.0.1:9/status"),
    # not "pip install bokeh": bokeh here would not give a scheduler running elsewhere one
    ({}, "none (the scheduler serves none)"),
])
def test_a_scheduler_s_dashboard_is_said_as_it_serves_it(services, said):
    from eoscale.engine.cluster import DaskExecutor

    executor = DaskExecutor(_Client(services))
    assert executor.describe() == f"tcp://10.0.0.5:8786, 2 workers, dashboard: {said}"


@pytest.mark.parametrize(("status", "served"), [(200, True), (405, True), (404, False)])
def test_a_scheduler_listing_a_dashboard_it_does_not_serve_is_said_to_serve_none(status, served):
    """``dask scheduler --no-dashboard`` still lists its HTTP server as "dashboard", whose
    /status page is then missing (404)."""
    import http.server
    import threading

    from eoscale.engine.cluster import DaskExecutor

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 - the standard library's name
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        link = f"http://127.0.0.1:{server.server_address[1]}/status"
        described = DaskExecutor(_Client({"dashboard": 1}, link)).describe()
    finally:
        server.shutdown()
        server.server_close()
    assert described.endswith(f"dashboard: {link if served else 'none (the scheduler serves none)'}")


def test_a_scheduler_without_workers_is_said_to_make_the_run_wait():
    from eoscale.engine.cluster import DaskExecutor

    assert DaskExecutor(_Client({}, workers=0)).describe() == (
        "tcp://10.0.0.5:8786, 0 workers, dashboard: none (the scheduler serves none); no worker "
        "has joined the scheduler yet: the run waits for one (Ctrl-C stops it)")


def test_a_port_beyond_the_range_is_a_bad_address():
    with pytest.raises(ValueError, match="a port is 1 to 65535, found 99999"):
        parse_cluster("tcp://127.0.0.1:99999")


def test_a_scheduler_address_not_knocked_at_is_not_said_to_have_answered():
    """Only tcp:// addresses are knocked at first; a tls:// one that fails (here: no TLS set
    up) did not necessarily answer."""
    pytest.importorskip("distributed")
    from eoscale.engine.cluster import ClusterError, DaskExecutor

    with pytest.raises(ClusterError) as raised:
        DaskExecutor.connect("tls://127.0.0.1:9", connect_seconds=2)
    assert str(raised.value).startswith("cannot connect to the Dask scheduler at "
                                        "tls://127.0.0.1:9 (")
    assert "answered" not in str(raised.value)
