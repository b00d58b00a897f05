"""``collector serve``: one process, or N worker processes sharing the port.

With ``workers > 1`` the parent prepares what must happen once (the database
URL, so the embedded PostgreSQL is started once and by the parent; the
migrations; the receipt signing key), then starts N worker processes
(``multiprocessing`` spawn) that each run the aiohttp application on the same
address with ``SO_REUSEPORT`` (the kernel spreads connections across them,
evenly: one shared socket would let whichever worker wakes first take a burst
of new connections). A stopping worker accepts what its socket has queued
before closing it (``listening.Listener.stop_accepting``): measured, 64
keep-alive senders in a closed loop and SIGTERM reset no request (16 runs);
closing it as aiohttp's sites do reset 3-29 in 5 runs of 8.
Each worker has its own connection pool and group-commit writer.

Metrics: prometheus-client's multiprocess mode. The parent points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder (unless it is set), so
``/metrics`` on any worker reports the sum over all workers.

SIGTERM, SIGHUP or Ctrl-C to the parent stops every worker gracefully (each
stops accepting, answers its requests in flight within
``COLLECTOR_SHUTDOWN_GRACE_S`` and drains its write queue: ``run_worker``),
then the parent exits and stops the embedded PostgreSQL. If a
worker dies, the parent stops the others and exits with status 1, for the
supervisor to restart the service.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from collector.config import Settings
from collector.ops import listening, logs

#: Builds the aiohttp application of one worker: ``(settings, database_url) -> web.Application``
#: (``collector.http.make_app``; passed in by the CLI so that ``ops`` imports nothing above it).
AppFactory = Callable[[Settings, str], object]
#: What the parent does once before starting workers (migrations, signing key).
Prepare = Callable[[Settings, str], Awaitable[None]]

_PR_SET_PDEATHSIG = 1  # prctl(2)
_M_MMAP_THRESHOLD = -3  # mallopt(3)
#: Allocations from this size on get their own mapping, returned to the system
#: when freed (``pin_mmap_threshold``). Bytes.
MMAP_THRESHOLD = 64 * 1024


#: Signals that stop ``serve`` gracefully (SIGHUP: the terminal closed).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: After the listening socket is closed, connections already open may still
#: send requests (each answered ``Connection: close``); idle ones are closed
#: once no request has begun for this long. Seconds.
QUIET_S = 1.0


class Stopping:
    """Whether this worker is stopping: set on a stop signal. While set, every
    answer says ``Connection: close`` and ``/readyz`` answers 503 (the HTTP
    layer reads it from the application, ``app[STOPPING]``, and calls
    ``request_began`` / ``request_ended`` around every request)."""

    def __init__(self) -> None:
        self.is_set = False
        self.last_request = 0.0  # loop time of the latest request begun while stopping
        self.in_flight = 0  # requests whose handler has begun and not yet answered

    def request_began(self) -> None:
        self.in_flight += 1
        if self.is_set:
            self.last_request = asyncio.get_running_loop().time()

    def request_ended(self) -> None:
        self.in_flight -= 1

    async def quiet(self, period_s: float, limit_s: float) -> None:
        """Return once no request has begun for ``period_s`` and none is in flight
        (a body still arriving included: aiohttp's own shutdown would drop its
        bytes), at most ``limit_s`` from now."""
        loop = asyncio.get_running_loop()
        self.last_request = start = loop.time()
        while (((now := loop.time()) - self.last_request < period_s or self.in_flight > 0)
               and now - start < limit_s):
            await asyncio.sleep(0.05)


STOPPING = web.AppKey("stopping", Stopping)


def pin_mmap_threshold() -> bool:
    """Pin glibc's mmap threshold at ``MMAP_THRESHOLD`` (what ``MALLOC_MMAP_THRESHOLD_``
    does; left alone when that is set, or off glibc). Returns whether it was pinned.

    glibc starts at 128 KiB and, each time a mapped block is freed, raises the
    threshold to that block's size (up to 32 MiB): after the first large body
    freed, the connections' read chunks (up to 256,000 bytes each, uvloop) and
    the bodies (up to ``COLLECTOR_MAX_BODY_BYTES``) come from the heap, whose
    free space stays with the process. Measured (tests/test_memory_bound.py,
    700 connections posting 1 MiB reports at once to one worker, 94 MiB idle):
    3 s after the burst +8-10 MiB pinned at 64 KiB, +150-360 MiB not pinned,
    +60-95 MiB pinned at 128 KiB (the 64 KiB chunks a client's writes arrive
    in); the peak is about the same; the burst ran ~10-15 % longer (a mapping
    and its page faults per buffer). A real report (~12-16 KiB) is read and
    parsed in buffers below the threshold: not affected."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to pin
        return False
    return mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1


def run_worker(settings: Settings, database_url: str, host: str, port: int, reuse_port: bool,
               make_app: AppFactory) -> None:
    """Run the application ``make_app`` builds in this process until SIGTERM, SIGINT or SIGHUP.

    Served by ``listening.Listener`` (the header read deadline, the idle
    keep-alive bound). Graceful stop: at the signal, accept what the kernel
    already queued and close the listening socket in one step
    (``Listener.stop_accepting``: nothing queued is reset; new connections are
    refused; with SO_REUSEPORT the kernel sends them to the workers still
    accepting), answer what open connections still
    send (``Connection: close``) until none has begun for ``QUIET_S``, close
    idle connections, wait up to
    ``COLLECTOR_SHUTDOWN_GRACE_S`` for the requests in flight (aiohttp's
    ``shutdown_timeout``; still running then: cancelled, unanswered, so not
    acknowledged), then the application's cleanup (the writer drains, for at
    most the grace period again; the pool closes).
    """
    logs.configure(settings.log_level, settings.log_json)
    pin_mmap_threshold()
    try:
        import uvloop
    except ImportError:  # optional: the default asyncio loop works too
        uvloop = None
    app = make_app(settings, database_url)
    stopping = Stopping()
    app[STOPPING] = stopping  # type: ignore[index]
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop else None) as runner:
            runner.run(_serve(app, host, port, reuse_port, settings, stopping))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logs.log.info("stopped", pid=os.getpid())


async def _serve(app: web.Application, host: str, port: int, reuse_port: bool, settings: Settings,
                 stopping: Stopping) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    grace_s = settings.shutdown_grace_s
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=grace_s)
    await runner.setup()
    listener = None
    try:
        sockets = listening.bind(host, port, reuse_port=reuse_port, recv_buffer=settings.recv_buffer_bytes)
        listener = listening.Listener(runner, sockets, settings)
        await listener.start()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stop.set)
        # What start-up made (modules, catalogue, pydantic models, ~100k objects)
        # lives as long as the process: out of the collector's sight, a full
        # collection scans only what requests made (~21 ms -> ~0 ms; it stalled
        # every request in flight: bench/loadgen.py p99).
        gc.freeze()
        logs.log.info("listening", url=f"http://{host}:{port}", pid=os.getpid())
        await stop.wait()
        stopping.is_set = True
        queued = await listener.stop_accepting()  # new connections are refused from here on
        logs.log.info("stopping", pid=os.getpid(), grace_s=grace_s, queued_connections=queued)
        await stopping.quiet(QUIET_S, grace_s)
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        if listener is not None:
            await listener.stop_accepting()  # no-op when stopped already
        await runner.cleanup()


def _worker_main(settings: Settings, database_url: str, host: str, port: int, make_app: AppFactory) -> None:
    # The parent handles Ctrl-C for the group: a worker stops on the SIGTERM it
    # sends, in its own process group; and on SIGTERM should the parent die.
    os.setpgrp()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:
        return
    run_worker(settings, database_url, host, port, True, make_app)


class PortInUse(OSError):
    """Another process listens on the address already."""


def check_port_free(host: str, port: int) -> None:
    """Raise PortInUse when ``host:port`` cannot be bound WITHOUT SO_REUSEPORT.

    The workers bind with SO_REUSEPORT, which would otherwise let a second
    collector (or anything else using SO_REUSEPORT) silently share the port
    and split the traffic between two databases.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR as aiohttp sets it: a port with only TIME_WAIT connections
        # left (a restart) is free; one with a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUse(exc.errno, f"{host}:{port} is in use by another process") from None


def serve(settings: Settings, database_url: str, host: str, port: int, workers: int, *,
          make_app: AppFactory, prepare: Prepare) -> None:
    """Serve on host:port with ``workers`` processes, each running ``make_app``'s
    application; with several, ``prepare`` runs once in the parent first.
    Returns after a clean stop. Call ``check_port_free`` first."""
    if workers <= 1:
        run_worker(settings, database_url, host, port, False, make_app)
        return
    asyncio.run(prepare(settings, database_url))
    own_metrics_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_metrics_dir = tempfile.mkdtemp(prefix="collector-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_metrics_dir
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker_main, args=(settings, database_url, host, port, make_app), name=f"collector-worker-{i}")
        for i in range(workers)
    ]
    stopping = False

    def stop(signum, _frame):
        nonlocal stopping
        stopping = True

    old = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    try:
        for p in procs:
            p.start()
        logs.log.info("workers_started", workers=workers, pids=[p.pid for p in procs])
        while not stopping and all(p.is_alive() for p in procs):
            time.sleep(0.2)
        failed = not stopping
        if failed:
            logs.log.error("worker_died", pids=[p.pid for p in procs if not p.is_alive()])
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:  # a worker waits up to the grace period twice (requests, then the writer)
            p.join(2 * settings.shutdown_grace_s + 10)
            if p.is_alive():
                p.kill()
                p.join()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if own_metrics_dir:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)
    logs.log.info("stopped", workers=workers)
    if failed:
        raise SystemExit(1)
