"""The Dask executor: the engine's chunks of tiles as tasks on a ``dask.distributed`` cluster.

A cluster is named by an address: ``local`` or ``local:N`` (a :class:`~distributed.LocalCluster`
of N worker processes on this machine, 127.0.0.1 only; default all CPUs), or a running
scheduler's address (``tcp://host:8786``); or it is given as a :class:`distributed.Client`.
``distributed`` is an optional dependency (``pip install 'eoscale[dask]'``), imported only here.

The workers share no memory with this process: every image a job reads is a file (the run plan
sees to it). They write files this process reads (:attr:`DaskExecutor.writes_files`: the run
checks that they see the output and scratch folders): a map output's blocks are encoded by the
worker that computed them, appended to its own part file in the output's staging folder, and
only their places come back here, which writes the file's header when the step ends; then any
worker copies blocks from the parts into the file (:mod:`eoscale.engine.assembly`: the client
reads no block); a spilled image's blocks are written by the workers straight into its scratch
file (:mod:`eoscale.engine.encoded`). A job is
pickled once per step and computed on the cluster as a task of its own, which every chunk's task
depends on: a task's input that Dask can compute again, unlike scattered data, which is lost
for good when every worker holding it dies (a callable that kills its workers), so that Dask's
retries of the chunks could not run. A task is a chunk of tiles, never one per block: the
engine's :func:`~eoscale.engine.executors.make_chunks` makes at most ``MAX_CHUNKS`` (256) up to
32 workers and up to 8 per worker beyond (4096 tiles on 128 workers: 1024 tasks, and 256 for
the copies), which the client hands out at a few milliseconds each (benchmarks/README.md,
"Estimate on N machines"); each worker thread unpickles a job once
(:mod:`eoscale.engine.cluster_worker`). Dask may run a task twice (a worker lost while it ran
it): only the records of the run that returned come back here, the lost run's blocks lie unused
in its part file (removed with the others), and a block written in place is written again with
the same bytes.

A step stopped before its end (a failed tile, a signal, a full disk) has its tasks cancelled,
but a cancel does not stop a task a worker runs: it would go on writing its tiles' blocks after
the run removed the step's files, leaving part files no one finds. So every worker is told that
the step ended, and this process waits (:data:`END_SECONDS` at most: a lost or hung worker must
not hold the stop) until each has marked it ended, from which moment its chunks write nothing
more (:mod:`eoscale.engine.encoded`); only then does the run remove the files.

While a cluster this executor started (or connected to) is open, ``distributed``'s own log lines
are silenced: the scheduler of a local cluster runs in this process, and what it logs when a
worker dies ("Removing worker ... caused the cluster to lose ...") would reach the user's
terminal before eoscale's message, which says what happened, naming the step and the tile. A
local cluster's worker processes share the terminal too: they log critical messages only, from
their start (``silence_logs``), not from the run's set-up on them, since a worker the nanny
starts again after a death, or one closing with the cluster, logs errors of its own
("ConnectionPool is closed") before any set-up or after it.

A local cluster is made for speed on one machine (:meth:`DaskExecutor._start_local`): workers
forked when that is safe, no compression, results fetched straight from the workers. Since the
workers read each tile's window from the files (margins included), their GDAL block cache is
larger than a pool worker's (:func:`~eoscale.engine.cluster_worker.worker_gdal_cache`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
import pickle
import re
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from eoscale.engine.executors import Executor, default_workers
from eoscale.engine.tasks import Job
from eoscale.errors import ConfigError, EOScaleError, StepError, WorkerDiedError, stopped_by
from eoscale.lazy import collector_paused

if TYPE_CHECKING:  # the workers' side imports distributed: only when a cluster is used
    from eoscale.engine.cluster_worker import WorkerSetup

#: How long to wait for a running scheduler to answer before giving up, in seconds.
CONNECT_SECONDS = 10.0
#: How much longer than ``CONNECT_SECONDS`` a scheduler that accepted the connection may take
#: to answer it, in seconds.
GRACE_SECONDS = 5.0
#: How long to wait for a local cluster's workers to start, in seconds.
START_SECONDS = 60.0
#: How long a lost task waits for the scheduler to name the task that killed the workers.
_CAUSE_SECONDS = 1.0
#: How long a step stopped before its end waits for its workers to know it ended (see
#: :meth:`DaskExecutor._end_step`), in seconds: within a stop's two seconds.
END_SECONDS = 1.0
#: Chunks per worker thread submitted and not yet handed on (see :meth:`DaskExecutor.run`).
IN_FLIGHT = 2
#: Dask settings of a local cluster: its processes share this machine's cores with the main
#: process, the one writer. Messages are not compressed (on loopback compressing costs more than
#: it saves); the workers do not sample their stacks every 10 ms for the dashboard's profile; the
#: periodic checks of every process (event-loop ticks every 20 ms, memory every 100 ms, system
#: every 500 ms, work stealing every 100 ms) run less often: idle, they took about 0.12 of a core
#: with 2 workers, 0.04 with these (measured on a 2-core machine under load).
LOCAL_SETTINGS: dict[str, Any] = {
    "distributed.comm.compression": False,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.scheduler.work-stealing-interval": "1s",
}
MISSING_EXTRA = ("the Dask executor needs the 'dask' extra: pip install 'eoscale[dask]' "
                 "(or pip install 'dask[distributed]')")

_LOCAL = re.compile(r"local(?::(\d+))?")


class ClusterError(EOScaleError):
    """The cluster cannot be used: the extra is missing, the scheduler does not answer."""


@dataclass(frozen=True)
class ClusterAddress:
    """Where a run's cluster is: ``local`` with ``workers`` processes (None: all CPUs), or the
    ``scheduler`` address of a running one."""

    text: str
    workers: int | None = None
    scheduler: str | None = None

    @property
    def local(self) -> bool:
        return self.scheduler is None


def parse_cluster(text: str) -> ClusterAddress:
    """``local``, ``local:N`` or a scheduler address (``tcp://host:8786``, ``host:8786``);
    a ValueError says what is expected."""
    text = text.strip()
    match = _LOCAL.fullmatch(text)
    if match:
        workers = int(match[1]) if match[1] else None
        if workers is not None and workers < 1:
            raise ValueError(f"a local cluster needs at least 1 worker, found {text!r}")
        return ClusterAddress(text, workers=workers)
    scheme, sep, rest = text.rpartition("://")
    host, colon, port = rest.rpartition(":")
    if (sep and not scheme.isalnum()) or not colon or not host or not port.isdigit():
        raise ValueError(f"expected local, local:N or a scheduler address like "
                         f"tcp://host:8786, found {text!r}")
    if not 0 < int(port) < 65536:
        raise ValueError(f"a port is 1 to 65535, found {port} in {text!r}")
    return ClusterAddress(text, scheduler=text if sep else f"tcp://{text}")


def distributed_module() -> Any:
    """``distributed``, or a :class:`ClusterError` saying what to install."""
    try:
        with collector_paused():
            import distributed
    except ImportError:
        raise ClusterError(MISSING_EXTRA) from None
    return distributed


class DaskExecutor(Executor):
    """Runs chunks as tasks on a Dask cluster; closes the cluster and client it made, not a
    client it was given."""

    shares_memory = False
    writes_files = True

    def __init__(self, client: Any, cluster: Any = None, *, owned: bool = False,
                 description: str = ""):
        self.client = client
        self._cluster = cluster
        self._owned = owned
        self._quiet = contextlib.ExitStack()
        if owned:
            self._quiet.enter_context(quiet_logs())
        self.description = description or str(client.scheduler.address)
        self._token = secrets.token_hex(4)
        self._steps = 0
        self._plugin: str | None = None
        self._setup: WorkerSetup | None = None
        self._visible: set[str] = set()
        self._pending: dict[int, Any] = {}
        self.workers = max(1, sum(self._threads().values()))  # tasks that can run at once
        # Workers this process started (a local cluster, a cluster object the caller made) may
        # be its children; a scheduler's address alone says they run apart.
        self.in_tree = (cluster or getattr(client, "cluster", None)) is not None

    @classmethod
    def connect(cls, cluster: str | ClusterAddress | Any, *,
                connect_seconds: float = CONNECT_SECONDS) -> DaskExecutor:
        """An executor on ``cluster``: an address (see :func:`parse_cluster`) or a Client.

        A local cluster is started here (worker processes on 127.0.0.1, one thread each); a
        running scheduler must answer within ``connect_seconds``, else a :class:`ClusterError`
        names its address, before anything is computed.
        """
        distributed = distributed_module()
        if isinstance(cluster, distributed.Client):
            return cls(cluster, description=str(cluster.scheduler.address))
        address = cluster if isinstance(cluster, ClusterAddress) else _parsed(str(cluster))
        if address.local:
            workers = address.workers or default_workers()
            return cls._start_local(distributed, workers)
        assert address.scheduler is not None
        try:
            _knock(address.scheduler, connect_seconds)
            client = _client_within(distributed, address.scheduler, connect_seconds)
        except (OSError, TimeoutError) as error:
            raise ClusterError(f"cannot reach the Dask scheduler at {address.scheduler} "
                               f"({type(error).__name__}: {error}); is it running, and is the "
                               "address right?") from None
        except Exception as error:  # noqa: BLE001 - something answered, not a scheduler
            detail = " ".join(str(error).split())[:300]
            if not address.scheduler.startswith("tcp://"):  # not knocked at: maybe no answer
                raise ClusterError(f"cannot connect to the Dask scheduler at "
                                   f"{address.scheduler} ({type(error).__name__}: {detail})"
                                   ) from None
            raise ClusterError(f"{address.scheduler} answered, but not as a Dask scheduler "
                               f"({type(error).__name__}: {detail})") from None
        return cls(client, owned=True, description=address.scheduler or address.text)

    @classmethod
    def _start_local(cls, distributed: Any, workers: int) -> DaskExecutor:
        """A LocalCluster of ``workers`` processes of one thread on 127.0.0.1, and its client.

        Its workers are forked from this process when that is safe (:func:`local_start_method`):
        no interpreter to start and no module to import again, where a spawned worker takes a
        second or more of CPU to start. The client fetches results from the workers directly,
        not through the scheduler (one trip over loopback instead of two), and
        :data:`LOCAL_SETTINGS` apply.
        """
        import dask

        method = local_start_method()
        settings = dict(LOCAL_SETTINGS)
        if method is not None:
            settings["distributed.worker.multiprocessing-method"] = method
        # A spawned worker (one Dask restarts) configures its logging when it imports
        # distributed, before silence_logs (which sets the nanny's logger only) could: its own
        # lines would reach the terminal ("Registered to", "ConnectionPool is closed" if the
        # cluster closes as it starts). The nanny sets these variables before each spawn.
        settings["distributed.nanny.pre-spawn-environ"] = {
            **dask.config.get("distributed.nanny.pre-spawn-environ", {}),
            "DASK_LOGGING__DISTRIBUTED": "critical"}
        # The settings reach the workers started now: a worker Dask restarts later (one lost
        # during the run) is spawned, as this process may no longer be safe to fork.
        with dask.config.set(settings), _signals_of_forked_workers(method == "fork"):
            local = distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=":0",
                silence_logs=logging.CRITICAL, timeout=START_SECONDS)
        try:
            client = distributed.Client(local, timeout=START_SECONDS, direct_to_workers=True)
        except BaseException:
            local.close()
            raise
        return cls(client, local, owned=True, description=f"local:{workers}")

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def writes_elsewhere(self) -> bool:
        """Whether a worker the scheduler knows now runs on another host than this client
        (each worker asked its host name); True when they cannot all be asked."""
        try:
            hosts = self.client.run(socket.gethostname)
        except Exception:  # noqa: BLE001 - a worker that does not answer: count it elsewhere
            return True
        return any(host != socket.gethostname() for host in hosts.values())

    def _threads(self) -> dict[str, int]:
        """Each worker the scheduler knows now, with its threads."""
        return dict(self.client.nthreads())

    @property
    def dashboard(self) -> str | None:
        """The dashboard's address, if the scheduler serves one (a local one needs bokeh)."""
        if self._cluster is not None and not _has_dashboard():
            return None
        with contextlib.suppress(Exception):
            if "dashboard" in self.client.scheduler_info().get("services", {}):
                link = str(self.client.dashboard_link)
                # a scheduler started with --no-dashboard still lists its HTTP server as one
                return link if self._cluster is not None or _served(link) else None
        return None

    def summary(self, threads: dict[str, int] | None = None) -> str:
        """``<address>, N workers`` (and their threads, when a worker has several)."""
        threads = self._threads() if threads is None else threads
        workers = len(threads)
        text = f"{self.description}, {workers} worker{'s' if workers != 1 else ''}"
        if sum(threads.values()) != workers:
            text += f" ({sum(threads.values())} threads)"
        return text

    def describe(self) -> str:
        """``<address>, N workers, dashboard: <link>`` for the start of a run; with no worker
        yet, that the run waits for one (a scheduler whose workers start on demand, or late)."""
        threads = self._threads()
        dashboard = self.dashboard
        if dashboard is None:  # a local one needs bokeh here; a scheduler may have been
            # started without one (--no-dashboard, or no bokeh where it runs)
            dashboard = ("none (pip install bokeh)" if self._cluster is not None
                         else "none (the scheduler serves none)")
        text = f"{self.summary(threads)}, dashboard: {dashboard}"
        if not threads:
            text += ("; no worker has joined the scheduler yet: the run waits for one "
                     "(Ctrl-C stops it)")
        return text

    def prepare(self, setup: WorkerSetup) -> None:
        """Set up every worker, those that join later (a lost one, restarted) included; asked
        again for the set-up the workers already have (a run opened by its caller, then by the
        runner), nothing is sent."""
        from eoscale.engine.cluster_worker import SetupPlugin

        if self._cluster is not None:
            setup = replace(setup, ignore_sigint=True, quiet_logs=True)
        setup = replace(setup, client_host=socket.gethostname())
        if setup == self._setup:
            return
        self._plugin = f"eoscale-setup-{self._token}"
        self.client.register_plugin(SetupPlugin(setup), name=self._plugin)
        self._setup = setup

    def check_visible(self, paths: Sequence[str]) -> None:
        """Refuse to start when a worker cannot see one of ``paths`` (input files, the scratch
        folder, output folders read back): they must be the same paths on every worker. Paths
        every worker was seen to see are not asked about again."""
        from eoscale.engine.cluster_worker import missing_paths

        paths = [path for path in paths if path not in self._visible]
        if not paths:
            return
        missing = {worker: found for worker, found in
                   self.client.run(missing_paths, list(paths)).items() if found}
        if missing:
            worker, found = min(missing.items())
            raise ClusterError(
                f"the Dask worker {worker} cannot see {', '.join(found)}"
                f"{f' (nor can {len(missing) - 1} other worker(s))' if len(missing) > 1 else ''}"
                ": inputs, the scratch folder and the outputs later steps read must be on a "
                "filesystem every worker mounts at the same path")
        self._visible.update(paths)

    def run(self, job: Job, chunks: Sequence[Sequence[int]]) -> Iterator[tuple[int, Any]]:
        from distributed import as_completed

        from eoscale.engine.cluster_worker import run_chunk

        self._steps += 1
        token = f"{self._token}-{self._steps}"
        try:
            payload = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - pickling raises many kinds of errors
            raise StepError(
                f"cannot send the step to the cluster's workers ({type(exc).__name__}: {exc}); "
                "callables and params must be picklable: define functions at module level",
                step=job.step) from None
        label = re.sub(r"[^\w.]+", "_", job.step)[:40] or "step"
        shared = self.client.submit(job_payload, payload, pure=False,
                                    key=f"eoscale-job-{label}-{token}")
        outstanding: dict[int, Any] = {}  # by position: submitted, not yet handed on
        position_of: dict[str, int] = {}
        self._pending = outstanding
        waiting = iter(range(len(chunks)))

        def submit(position: int) -> Any:
            future = self.client.submit(run_chunk, shared, token, list(chunks[position]),
                                        pure=False, key=f"eoscale-{label}-{token}-{position}")
            outstanding[position], position_of[future.key] = future, position
            return future

        # At most IN_FLIGHT chunks per worker thread are submitted and not yet handed on: the
        # next one is submitted when the caller has taken a result (written its tiles). So this
        # process holds the results of that many chunks per worker at most however slow its
        # writing, and a worker always has its next chunk waiting.
        completed = as_completed(
            [submit(position) for position in itertools.islice(waiting, IN_FLIGHT * self.workers)],
            loop=self.client.loop, with_results=True, raise_errors=False)
        try:
            # Results are fetched as their tasks finish: a result left on a worker would be lost
            # with it.
            for future, value in completed:
                position = position_of[future.key]
                error = _failure(value)
                if error is not None:
                    self._raise_failed(job, chunks, outstanding, position, error)
                del outstanding[position]  # its result is released once handed on
                yield position, value
                for following in itertools.islice(waiting, 1):
                    completed.add(submit(following))
        finally:
            pending = list(outstanding.values())
            self._pending = {}
            with contextlib.suppress(Exception):
                self.client.cancel([*pending, shared], force=True)
            self._end_step(token, running=bool(pending))

    def call(self, fn: Callable[..., Any], *args: Any, what: str = "a call") -> Any:
        """``fn(*args)`` run on one of the workers (the run's plan, a profile function), its
        result; what ``fn`` raises is raised here. A worker that dies running it (each time
        Dask retries it) or a lost task is a :class:`ClusterError` saying ``what`` it ran."""
        from distributed.scheduler import KilledWorker

        future = self.client.submit(fn, *args, pure=False)
        try:
            return future.result()
        except KilledWorker as error:
            raise ClusterError(f"a Dask worker died running {what}, each time Dask retried it "
                               f"({_first_sentence(error)}); a module that exits or crashes as "
                               "it is imported is the usual cause") from None
        except CancelledError as error:
            raise ClusterError(_lost(what, error)) from None
        finally:
            self.client.cancel([future], force=True)

    def _end_step(self, token: str, running: bool) -> None:
        """Tell every worker that the step ``token`` ended (its jobs closed, its chunks writing
        nothing more: :func:`~eoscale.engine.cluster_worker.forget`). With tasks that may be
        ``running`` (a step stopped before its end: the caller removes its files next), wait
        until every worker has, :data:`END_SECONDS` at most; a worker lost meanwhile is not
        waited for."""
        from eoscale.engine.cluster_worker import forget

        with contextlib.suppress(Exception):  # TimeoutError included: a worker that hangs
            if not running:
                self.client.run(forget, token, wait=False)
                return
            # Client.run has no timeout: its coroutine, bounded by the client's sync.
            self.client.sync(self.client._run, forget, token, on_error="ignore",
                             callback_timeout=END_SECONDS)

    def _raise_failed(self, job: Job, chunks: Sequence[Sequence[int]],
                      futures: Mapping[int, Any], position: int, error: BaseException) -> None:
        """Raise what a failed task means: a worker that died running it (Dask gave up after
        retries: KilledWorker), or a task lost with its worker or its data (cancelled), both a
        :class:`WorkerDiedError`; else a :class:`StepError`. A task lost because another one
        killed the workers is reported as that other one, the cause."""
        from distributed.scheduler import KilledWorker

        if not isinstance(error, KilledWorker):
            deadline = time.monotonic() + _CAUSE_SECONDS
            while time.monotonic() < deadline:
                killed = [(index, future) for index, future in sorted(futures.items())
                          if future.status == "error"
                          and isinstance(future.exception(timeout=_CAUSE_SECONDS), KilledWorker)]
                if killed:
                    position, future = killed[0]
                    error = future.exception()
                    break
                time.sleep(0.05)
        chunk = chunks[position]
        first, last = job.tiles[chunk[0]], job.tiles[chunk[-1]]
        where = first.describe() if first is last else f"{first.describe()} .. {last.describe()}"
        if isinstance(error, KilledWorker):
            said = _first_sentence(error)
            raise WorkerDiedError(
                "a Dask worker died while running this chunk, each time Dask retried it (Dask "
                "cannot tell which of the chunks a dying worker held killed it: it may be "
                f"another chunk of this step) ({said}); out of memory, a crash in C code or an "
                "exit in the callable are the usual causes: try a smaller tile size",
                step=job.step, tile=where)
        if isinstance(error, CancelledError):
            raise WorkerDiedError(_lost("this chunk's task", error), step=job.step, tile=where)
        raise StepError(f"the Dask cluster failed to run this chunk ({type(error).__name__}: "
                        f"{error})", step=job.step, tile=where)

    def close(self) -> None:
        """Cancel what still runs; close the client and the cluster if this executor made them."""
        if stopped_by() is not None:
            # The workers are killed, the process is about to exit: the local cluster's close
            # restores distributed's logging here (its silence_logs) while its event loop still
            # runs, which may then log the killed workers' comms closing ("Batched Comm Closed"
            # and a traceback). A filter on its handlers, which no level restored undoes.
            for handler in logging.getLogger("distributed").handlers:
                if isinstance(handler, logging.StreamHandler):
                    handler.addFilter(_only_critical)
        pending, self._pending = list(self._pending.values()), {}
        with contextlib.suppress(Exception):
            if pending:
                self.client.cancel(pending, force=True)
        if self._plugin is not None:
            with contextlib.suppress(Exception):
                self.client.unregister_worker_plugin(self._plugin)
            self._plugin = None
            self._setup = None
        try:
            if self._owned:
                self._owned = False
                if self._cluster is not None:  # (before the client goes: see the method)
                    self._stop_local_workers()
                with contextlib.suppress(Exception):
                    self.client.close()
                if self._cluster is not None:
                    with contextlib.suppress(Exception):
                        self._cluster.close()
        finally:
            if stopped_by() is None:
                self._quiet.close()

    def _stop_local_workers(self) -> None:
        """When a signal stopped the run, kill the local cluster's worker processes now: a
        worker still running a task (the stopped step's) would make Dask's own close wait 4 s
        for it (its nanny's default), beyond a stop's two seconds. Its step has ended already
        (:meth:`_end_step`): it writes nothing more. A kill, not a close in a hurry: a worker
        whose close outlasts a short timeout prints its traceback (``Process Dask Worker
        process``), cut where the nanny kills it. Each nanny is told first that its worker
        goes for good, so that it does not start another; any other end closes as Dask does.
        Called before the client closes: a worker still alive then logs its comm to the client
        closing."""
        if stopped_by() is None:
            return
        nannies = list(getattr(self._cluster, "workers", {}).values())

        async def kill_all() -> None:
            for nanny in nannies:
                with contextlib.suppress(Exception):
                    nanny.close_gracefully(reason="eoscale-stopped")
                    if nanny.pid:
                        os.kill(nanny.pid, signal.SIGKILL)

        with contextlib.suppress(Exception):
            self._cluster.sync(kill_all)


def _only_critical(record: logging.LogRecord) -> bool:
    """A logging filter letting through critical records only."""
    return record.levelno >= logging.CRITICAL


def job_payload(payload: bytes) -> bytes:
    """A step's pickled job, as a task's result (see the module's docstring)."""
    return payload


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Silence ``distributed``'s log handlers in this process (its scheduler's and nannies', for
    a local cluster) but for critical messages, until leaving."""
    from distributed.utils import silence_logging_cmgr

    with silence_logging_cmgr(logging.CRITICAL):
        yield


def _failure(value: Any) -> BaseException | None:
    """The error ``as_completed(..., raise_errors=False)`` gives in place of a failed task's
    result (an exception, or its ``(type, value, traceback)``); None for a result (a chunk's
    result is never either)."""
    if isinstance(value, BaseException):
        return value
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        return value[1]
    return None


def local_start_method() -> str | None:
    """``fork`` when a local cluster's workers may be forked from this process, else None (Dask's
    default, ``spawn``): on Linux, from a process running one Python thread (no lock held by
    another thread can be copied locked into a worker) and holding no socket (GDAL keeps its HTTP
    connections open: a forked worker would share them, see :mod:`eoscale.io.paths`). Native
    threads are not counted: BLAS's (numpy, scipy) handle a fork; GDAL's thread pool, started by
    compressing with several threads, does not, so a worker forked after it had better not decode
    with ``GDAL_NUM_THREADS`` (the command line forks before it writes anything; the process
    pool's workers are forked the same way)."""
    if sys.platform != "linux" or "fork" not in multiprocessing.get_all_start_methods():
        return None
    if threading.active_count() > 1:
        return None
    try:
        descriptors = os.listdir("/proc/self/fd")
    except OSError:
        return None
    for descriptor in descriptors:
        try:
            if os.readlink(f"/proc/self/fd/{descriptor}").startswith("socket:"):
                return None
        except OSError:  # closed meanwhile (the listing's own)
            continue
    return "fork"


@contextlib.contextmanager
def _signals_of_forked_workers(active: bool) -> Iterator[None]:
    """While active, a process forked by multiprocessing ignores SIGINT and takes SIGTERM's
    default action from its first instruction, as a spawned worker of a local cluster does
    once set up (else it would run this process's handlers: eoscale's raise Interrupted)."""
    if not active:
        yield
        return
    import multiprocessing.util

    marker = _ForkMarker()
    # A weak registration: it ends when ``marker`` goes, on leaving.
    multiprocessing.util.register_after_fork(marker, _worker_signals)
    try:
        yield
    finally:
        del marker


class _ForkMarker:
    """What keeps :func:`_worker_signals` registered for forked processes while it lives."""


def _worker_signals(_marker: _ForkMarker) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _parsed(text: str) -> ClusterAddress:
    try:
        return parse_cluster(text)
    except ValueError as error:
        raise ConfigError(f"cluster: {error}") from None


def _client_within(distributed: Any, scheduler: str, seconds: float) -> Any:
    """A Client of ``scheduler``, or TimeoutError after ``seconds`` and :data:`GRACE_SECONDS`:
    Dask's own timeout does not bound its handshake, and a peer that accepts the connection but
    never answers (not a scheduler, or one that hangs) would keep the run waiting for ever. The
    Client is made in a daemon thread, left behind if it never comes back."""
    made: dict[str, Any] = {}

    def connect() -> None:
        try:
            made["client"] = distributed.Client(scheduler, timeout=seconds)
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            made["error"] = error

    thread = threading.Thread(target=connect, name="eoscale-connect", daemon=True)
    thread.start()
    thread.join(seconds + GRACE_SECONDS)
    if "error" in made:
        raise made["error"]
    if "client" not in made:
        raise TimeoutError(f"it accepted the connection but did not answer in "
                           f"{seconds + GRACE_SECONDS:.0f} s")
    return made["client"]


def _knock(scheduler: str, seconds: float) -> None:
    """Open and close a TCP connection to a ``tcp://`` scheduler: a refused one fails at once
    (Dask's client would retry until its timeout)."""
    scheme, _, rest = scheduler.rpartition("://")
    if scheme != "tcp":
        return
    host, _, port = rest.rpartition(":")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=seconds):
        pass


def _first_sentence(error: BaseException) -> str:
    """Dask's first sentence of a KilledWorker: the task, and the workers it was lost with."""
    return str(error).partition(". ")[0]


def _lost(what: str, error: BaseException) -> str:
    """What a task lost by the cluster (a CancelledError) means; Dask's text on one line."""
    detail = " ".join(str(error).split())
    return (f"the cluster lost {what}: its workers or the scheduler died, or the connection to "
            f"the scheduler was lost ({type(error).__name__}: {detail})")


def _served(link: str) -> bool:
    """Whether ``link`` is not refused as missing (HTTP 404) within a second: one this process
    cannot reach may still be reached from the user's browser. Asked with HEAD, which makes a
    dashboard build no page (Bokeh answers 405, a scheduler without a dashboard 404)."""
    import urllib.error
    import urllib.request

    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy's 404
    try:
        with direct.open(urllib.request.Request(link, method="HEAD"), timeout=1.0):
            return True
    except urllib.error.HTTPError as error:
        return error.code != 404
    except Exception:  # noqa: BLE001 - unreachable from here: say the link anyway
        return True


def _has_dashboard() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True
