"""``collector serve``: one process, or N worker processes sharing the port.

With ``workers > 1`` the parent prepares what must happen once (the database
URL, so the embedded PostgreSQL is started once and by the parent; the
migrations; the receipt signing key), then starts N worker processes
(``multiprocessing`` spawn) that each run the aiohttp application on the same
address with ``SO_REUSEPORT`` (the kernel spreads connections across them).
Each worker has its own connection pool and group-commit writer.

Metrics: prometheus-client's multiprocess mode. The parent points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder (unless it is set), so
``/metrics`` on any worker reports the sum over all workers.

SIGTERM or Ctrl-C to the parent stops every worker gracefully (each drains its
write queue), then the parent exits and stops the embedded PostgreSQL. If a
worker dies, the parent stops the others and exits with status 1, for the
supervisor to restart the service.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable

from collector.config import Settings
from collector.ops import logs

#: Builds the aiohttp application of one worker: ``(settings, database_url) -> web.Application``
#: (``collector.http.make_app``; passed in by the CLI so that ``ops`` imports nothing above it).
AppFactory = Callable[[Settings, str], object]
#: What the parent does once before starting workers (migrations, signing key).
Prepare = Callable[[Settings, str], Awaitable[None]]

_PR_SET_PDEATHSIG = 1  # prctl(2)


def run_worker(settings: Settings, database_url: str, host: str, port: int, reuse_port: bool,
               make_app: AppFactory) -> None:
    """Run the application ``make_app`` builds in this process until SIGTERM/SIGINT."""
    from aiohttp import web

    logs.configure(settings.log_level, settings.log_json)
    try:
        import uvloop
    except ImportError:  # optional: the default asyncio loop works too
        uvloop = None
    web.run_app(
        make_app(settings, database_url),
        host=host,
        port=port,
        reuse_port=reuse_port or None,
        access_log=None,
        print=lambda _msg: logs.log.info("listening", url=f"http://{host}:{port}", pid=os.getpid()),
        loop=uvloop.new_event_loop() if uvloop else None,
    )
    logs.log.info("stopped", pid=os.getpid())


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

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
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
        for p in procs:
            p.join(60)
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
