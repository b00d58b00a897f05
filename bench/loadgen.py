"""Load generator for the collector: a reporting storm from many workspaces.

    uv run python -m bench.loadgen --spawn --duration 60                        # as fast as possible
    uv run python -m bench.loadgen --spawn --rate 500 --duration 30             # fixed rate (open loop)
    uv run python -m bench.loadgen --url http://127.0.0.1:8080 --server-pid PID ...
    uv run python -m bench.loadgen --spawn --anchor --duration 15                # vs the naive anchor
    uv run python -m bench.loadgen --spawn --anchor --rate half --duration 15    # latency at half its max
    uv run python -m bench.loadgen --spawn --storm 5000 --timeout 10             # 64 connections, then 5000
    uv run python -m bench.loadgen --spawn --profile --duration 15               # + server CPU by stage (py-spy)

It registers ``--workspaces`` workspaces through the operator API
(``COLLECTOR_ADMIN_TOKEN`` or ``--admin-token``), then posts real-size records
(the two fixtures ``tests/fixtures/report-*.json`` with distinct ``_id``s and
varied counts) over ``--connections`` keep-alive connections, only to
127.0.0.1, for ``--duration`` seconds and at most ``--max-requests`` requests,
then stops. ``--spawn`` starts ``collector serve`` itself in a fresh database
on ``--pg`` (dropped afterwards).

Printed: accepted reports/s, p50/p95/p99 latency (fixed rate: measured from the
scheduled send time, so queueing in the client counts), errors by status, the
server's CPU and peak RSS (all its processes, read with psutil), the CPU of the
PostgreSQL backends of its database, of the generator itself and of every other
process on the machine (a shared machine's noise shows there), the CPU per
accepted report, the floor (parse + validate the same bodies in this one
process) and the ratio between them; the last line is a JSON summary.

``--anchor`` also starts the naive anchor (``bench/anchor.py``) in a fresh
database on ``--pg`` and runs the same load against it first, then against the
collector (one server at a time); the summary adds its figures as
``anchor_*`` and ``ratio`` (collector reports/s / anchor reports/s). With
``--rate half`` the anchor's maximum rate is measured first (closed loop,
``anchor_max_reports_per_s``), then both run open loop at half of it
(``p99_ms`` vs ``anchor_p99_ms``, ``latency_target_met``). ``--storm N`` runs
the closed loop with ``--connections`` and then with N connections against the
same server (``storm_*``, ``storm_ratio`` = storm rate / first rate,
``storm_target_met`` at >= 0.8). CPU per accepted report is split into the
server, its PostgreSQL backends and the load generator
(``cpu_ms_per_report_server`` / ``_postgres`` / ``_loadgen``), plus
PostgreSQL's shared background processes (``postgres_aux_cpu_pct``: WAL
writer, checkpointer...; shared with every database on that server).

The HTTP client is a minimal HTTP/1.1 keep-alive client on asyncio protocols:
the bodies are pre-serialised, so the generator spends as little of the shared
2 CPUs as possible (aiohttp's client costs several times more per request).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import orjson
import psutil

from bench import stages

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = [ROOT / "tests/fixtures/report-8.7.0.json", ROOT / "tests/fixtures/report-6.8.0.json"]
ID_LEN = 24  # Rocket.Chat ids are 24 hex-like characters
MARK = "\x01" * ID_LEN


# --------------------------------------------------------------------------- bodies


class Bodies:
    """Pre-serialised report bodies; ``body(i)`` is variant ``i % n`` with a distinct ``_id``."""

    def __init__(self, run_id: str, variants: int = 16):
        self.run_id = run_id[:8]
        self.parts: list[tuple[bytes, bytes]] = []
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 60))
        for v in range(variants):
            doc = orjson.loads(FIXTURES[v % len(FIXTURES)].read_bytes())
            doc["_id"] = MARK
            doc["createdAt"] = now
            for k in ("activeUsers", "totalUsers", "onlineUsers", "totalMessages"):
                if isinstance(doc.get(k), int):
                    doc[k] = doc[k] + 7 * v
            head, tail = orjson.dumps(doc).split(MARK.encode().replace(b"\x01", b"\\u0001"))
            self.parts.append((head, tail))

    def record_id(self, i: int) -> bytes:
        return f"{self.run_id}{i:016x}".encode()

    def body(self, i: int) -> bytes:
        head, tail = self.parts[i % len(self.parts)]
        return head + self.record_id(i) + tail


def floor_rate(bodies: Bodies, n: int = 3000) -> float:
    """Reports/s to only parse and validate the same bodies in this one process."""
    from collector.gate.model import check_report
    from collector.ingest import decoding

    raw = [bodies.body(i) for i in range(n)]
    t = time.perf_counter()
    for b in raw:
        check_report(decoding.parse_json(b))
    return n / (time.perf_counter() - t)


# --------------------------------------------------------------------------- HTTP client


class Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request in flight at a time."""

    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.need = -1  # total bytes of the current response, when known
        self.keep_body = False
        self.body = b""

    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            i = head.find(b"content-length:")
            length = int(head[i + 15 : head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None]) if i >= 0 else 0
            self.need = end + 4 + length
        if len(self.buf) >= self.need:
            status = int(self.buf[9:12])
            if self.keep_body:
                self.body = bytes(self.buf[self.buf.find(b"\r\n\r\n") + 4 : self.need])
            del self.buf[: self.need]
            self.need = -1
            if self.waiter and not self.waiter.done():
                self.waiter.set_result(status)

    def connection_lost(self, exc):
        if self.waiter and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))
        self.transport = None

    async def request(self, data: bytes) -> int:
        if self.transport is None:  # reset between connect and send (a server closing its listener)
            raise ConnectionError("connection lost")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


class Client:
    """Keep-alive connections to 127.0.0.1:port, re-opened when the server closes one."""

    def __init__(self, port: int, timeout: float):
        self.port = port
        self.timeout = timeout

    async def open(self) -> Conn:
        _, proto = await asyncio.get_running_loop().create_connection(Conn, "127.0.0.1", self.port)
        return proto

    async def send(self, conn: Conn | None, data: bytes) -> tuple[Conn | None, int]:
        """Send one request; return (connection to reuse or None, status or 0 for a failure)."""
        try:
            if conn is None or conn.transport is None:
                conn = await self.open()
            return conn, await asyncio.wait_for(conn.request(data), self.timeout)
        except (OSError, asyncio.TimeoutError):
            if conn is not None and conn.transport is not None:
                conn.transport.close()
            return None, 0


def request_bytes(path: str, token: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


# --------------------------------------------------------------------------- server side


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_workers() -> int:
    """The worker count ``collector serve`` picks without ``--workers`` (``Settings.resolved_workers``)."""
    from collector.config import Settings

    return Settings().resolved_workers


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


class Spawned:
    """``collector serve`` in a fresh database on ``pg``; ``stop()`` ends it and drops the database."""

    def __init__(self, pg: str, workers: int | None, admin_token: str, extra_env: dict[str, str]):
        import asyncpg  # noqa: F401  (fail early when missing)

        self.pg = pg
        self.db = "collector_bench_" + secrets.token_hex(4)
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="collector-bench-", dir="/tmp")
        env = {
            **os.environ,
            "DATABASE_URL": with_database(pg, self.db),
            "COLLECTOR_ADMIN_TOKEN": admin_token,
            "COLLECTOR_DATA_DIR": self.dir,
            **extra_env,
        }
        self._sql(f'CREATE DATABASE "{self.db}"')
        self.log = open(Path(self.dir) / "server.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "collector", "serve", "--port", str(self.port),
             *(["--workers", str(workers)] if workers is not None else [])],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def _sql(self, sql: str) -> None:
        import asyncpg

        async def go():
            conn = await asyncpg.connect(self.pg)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(go())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self._sql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        if self.proc.returncode == 0:
            shutil.rmtree(self.dir, ignore_errors=True)  # kept (with server.log) when the server failed


class SpawnedAnchor(Spawned):
    """The naive anchor (``bench/anchor.py``) in a fresh database on ``pg``; ``stop()`` as ``Spawned``."""

    def __init__(self, pg: str):  # noqa: super().__init__ would start the collector
        self.pg = pg
        self.db = "anchor_bench_" + secrets.token_hex(4)
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="anchor-bench-", dir="/tmp")
        self._sql(f'CREATE DATABASE "{self.db}"')
        self.log = open(Path(self.dir) / "server.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.anchor", "--port", str(self.port), "--database-url", with_database(pg, self.db)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self.url = f"http://127.0.0.1:{self.port}"


PG_AUX = ("walwriter", "checkpointer", "background writer", "autovacuum launcher", "logical replication launcher")


class ProcWatch:
    """CPU seconds and peak RSS of a process tree (the server) and of PostgreSQL, sampled in a thread."""

    def __init__(self, pid: int | None, database: str | None = None):
        self.root = psutil.Process(pid) if pid else None
        self.database = database  # count only the PostgreSQL backends of this database
        self.peak_rss = 0
        self._stop = threading.Event()
        self._cpu: dict[int, float] = {}
        self._pg0: dict[int, float] = {}
        self._aux0: dict[int, float] = {}
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def procs(self) -> list[psutil.Process]:
        if self.root is None:
            return []
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _pg_cpu(self, aux: bool = False) -> dict[int, float]:
        """CPU s of the PostgreSQL backends of the database (``aux``: of its shared background processes)."""
        out = {}
        for p in psutil.process_iter(["name", "cpu_times", "cmdline"]):
            if p.info["name"] in ("postgres", "postmaster") and p.info["cpu_times"]:
                cmdline = " ".join(p.info["cmdline"] or ())
                if aux != any(a in cmdline for a in PG_AUX):
                    continue
                if not aux and self.database and self.database not in cmdline:
                    continue
                out[p.pid] = sum(p.info["cpu_times"][:2])
        return out

    def _sample(self) -> None:
        rss = 0
        for p in self.procs():
            try:
                with p.oneshot():
                    rss += p.memory_info().rss
                    self._cpu[p.pid] = sum(p.cpu_times()[:2])
            except psutil.NoSuchProcess:
                pass
        self.peak_rss = max(self.peak_rss, rss)

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def start(self) -> None:
        self._sample()
        self._cpu0 = dict(self._cpu)
        self._pg0 = self._pg_cpu()
        self._aux0 = self._pg_cpu(aux=True)
        self._self0 = sum(psutil.Process().cpu_times()[:2])
        self._sys0 = psutil.cpu_times()
        self._t0 = time.monotonic()
        self._thread.start()

    def finish(self) -> dict:
        self._stop.set()
        self._thread.join()
        self._sample()
        wall = time.monotonic() - self._t0
        server = sum(v - self._cpu0.get(pid, 0.0) for pid, v in self._cpu.items())
        pg1 = self._pg_cpu()
        pg = sum(v - self._pg0.get(pid, 0.0) for pid, v in pg1.items())
        aux = sum(v - self._aux0.get(pid, 0.0) for pid, v in self._pg_cpu(aux=True).items())
        own = sum(psutil.Process().cpu_times()[:2]) - self._self0
        sys1 = psutil.cpu_times()
        busy = sum(getattr(sys1, f) - getattr(self._sys0, f) for f in ("user", "nice", "system", "irq", "softirq", "steal"))
        return {
            "machine_cpu_pct": round(100 * busy / wall, 1),
            "other_cpu_pct": round(100 * (busy - server - pg - aux - own) / wall, 1),
            "server_cpu_pct": round(100 * server / wall, 1) if self.root else None,
            "postgres_cpu_pct": round(100 * pg / wall, 1),
            "postgres_aux_cpu_pct": round(100 * aux / wall, 1),
            "loadgen_cpu_pct": round(100 * own / wall, 1),
            "server_peak_rss_mb": round(self.peak_rss / 2**20, 1) if self.root else None,
        }


# --------------------------------------------------------------------------- the run


async def register(port: int, admin_token: str, n: int) -> list[str]:
    """Register ``n`` workspaces through the operator API; return their tokens."""
    conn = await Client(port, 30).open()
    conn.keep_body = True
    tokens = []
    for _ in range(n):
        status = await conn.request(request_bytes("/api/v1/workspaces", admin_token, b'{"plan": "starter"}'))
        if status != 201:
            raise SystemExit(f"registering a workspace failed: HTTP {status}: {conn.body[:300]!r}")
        tokens.append(orjson.loads(conn.body)["token"])
    conn.transport.close()
    return tokens


async def wait_ready(port: int, proc: subprocess.Popen | None, timeout: float = 60) -> None:
    client = Client(port, 5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        conn, status = await client.send(None, b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        if conn is not None:
            conn.transport.close()
        if status == 200:
            return
        await asyncio.sleep(0.2)
    raise SystemExit("the server did not become ready")


async def run_load(args, port: int, tokens: list[str], bodies: Bodies) -> tuple[list[float], Counter, float, int, int]:
    """Post for ``args.duration`` s; return (latencies of 200s, status counts, elapsed s, sent,
    200s answered within the ``args.duration`` s)."""
    client = Client(port, args.timeout)
    paths = ["/", "/api/v1/statistics"]
    heads = [
        [(f"POST {p} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {t}\r\n"
          f"Content-Type: application/json\r\nContent-Length: ").encode() for t in tokens]
        for p in paths
    ]

    def data(i: int) -> bytes:
        body = bodies.body(i)
        return heads[i % 2][i % len(tokens)] + str(len(body)).encode() + b"\r\n\r\n" + body

    latencies: list[float] = []
    statuses: Counter = Counter()
    loop = asyncio.get_running_loop()
    t0, p0 = loop.time(), time.perf_counter()  # the schedule runs on loop time; latencies on perf_counter
    end = t0 + args.duration
    counter = iter(range(args.max_requests))
    in_window = 0

    def accepted_at(t: float) -> None:
        nonlocal in_window
        if t <= end:
            in_window += 1

    async def closed_loop():
        conn = None
        for i in counter:
            if loop.time() >= end:
                return
            started = time.perf_counter()
            conn, status = await client.send(conn, data(i))
            statuses[status] += 1
            if status == 200:
                latencies.append(time.perf_counter() - started)
                accepted_at(loop.time())

    async def open_loop():
        idle: asyncio.Queue = asyncio.Queue()
        for _ in range(args.connections):
            idle.put_nowait(None)
        tasks: set[asyncio.Task] = set()

        async def one(i: int, scheduled: float):
            conn = await idle.get()
            try:
                conn, status = await client.send(conn, data(i))
            finally:
                idle.put_nowait(conn)
            statuses[status] += 1
            if status == 200:
                latencies.append(time.perf_counter() - (scheduled - t0 + p0))
                accepted_at(loop.time())

        interval = 1.0 / args.rate
        for i in counter:
            scheduled = t0 + i * interval
            if scheduled >= end:
                break
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif len(tasks) > 2 * args.connections:
                # every connection busy and a backlog already: the client cannot offer more
                statuses["client_backlog"] += 1
                continue
            t = asyncio.create_task(one(i, scheduled))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=args.timeout)
            for t in pending:
                t.cancel()
            statuses["unfinished"] += len(pending)

    if args.rate > 0:
        await open_loop()
    else:
        await asyncio.gather(*(closed_loop() for _ in range(args.connections)))
    elapsed = loop.time() - t0
    return latencies, statuses, elapsed, sum(v for k, v in statuses.items() if k != "client_backlog"), in_window


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k] * 1000


def run_phase(args, port: int, pid: int | None, database: str | None, tokens: list[str],
              connections: int, rate: float) -> dict:
    """One load run against one server: its figures (the keys of the JSON summary)."""
    bodies = Bodies(secrets.token_hex(4))  # fresh record ids: a second run on a server sends no duplicates
    run_args = argparse.Namespace(**{**vars(args), "connections": connections, "rate": rate})
    watch = ProcWatch(pid, database)
    watch.start()
    latencies, statuses, elapsed, sent, in_window = asyncio.run(run_load(run_args, port, tokens, bodies))
    usage = watch.finish()
    latencies.sort()
    accepted = statuses.get(200, 0)
    rate_ok = accepted / elapsed

    def per_report(*pcts) -> float | None:  # CPU ms per accepted report from % of one core
        return round(10 * sum(x or 0 for x in pcts) / rate_ok, 3) if rate_ok else None

    return {
        "mode": f"rate {rate:g}/s" if rate > 0 else "max",
        "connections": connections,
        "duration_s": round(elapsed, 1),
        "sent": sent,
        "offered_per_s": round(sent / elapsed, 1),
        "accepted": accepted,
        "reports_per_s": round(rate_ok, 1),
        # 200s answered within --duration, per s of it: under a storm the closed loop's drain (requests
        # already sent, up to --timeout) would otherwise count at a time nothing new is offered
        "window_reports_per_s": round(in_window / min(elapsed, args.duration), 1),
        "p50_ms": round(pct(latencies, 50), 2),
        "p95_ms": round(pct(latencies, 95), 2),
        "p99_ms": round(pct(latencies, 99), 2),
        "errors": {str(k if k else "connection"): v for k, v in sorted(statuses.items(), key=str) if k != 200 and v},
        **usage,
        # CPU per accepted report (server + PostgreSQL): robust to other load on the machine
        "cpu_ms_per_report": per_report(usage["server_cpu_pct"], usage["postgres_cpu_pct"]),
        "cpu_ms_per_report_server": per_report(usage["server_cpu_pct"]),
        "cpu_ms_per_report_postgres": per_report(usage["postgres_cpu_pct"]),
        "cpu_ms_per_report_postgres_aux": per_report(usage["postgres_aux_cpu_pct"]),
        "cpu_ms_per_report_loadgen": per_report(usage["loadgen_cpu_pct"]),
    }


def print_phase(label: str, r: dict) -> None:
    print(f"[{label}] accepted: {r['accepted']} in {r['duration_s']:.1f} s = {r['reports_per_s']:.1f} reports/s"
          f" ({r['window_reports_per_s']:.1f}/s within the window; {r['mode']}, {r['connections']} connections,"
          f" {r['sent']} sent)")
    print(f"[{label}] latency of 200s: p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, p99 {r['p99_ms']} ms")
    print(f"[{label}] errors by status: {r['errors'] or 'none'}")
    print(f"[{label}] server: CPU {r['server_cpu_pct']}% of one core, peak RSS {r['server_peak_rss_mb']} MB;"
          f" PostgreSQL CPU {r['postgres_cpu_pct']}% (+ shared background {r['postgres_aux_cpu_pct']}%);"
          f" load generator CPU {r['loadgen_cpu_pct']}%;"
          f" whole machine {r['machine_cpu_pct']}% of {psutil.cpu_count()} cores (other processes {r['other_cpu_pct']}%)")
    print(f"[{label}] CPU ms per accepted report: server {r['cpu_ms_per_report_server']},"
          f" PostgreSQL {r['cpu_ms_per_report_postgres']} (+ {r['cpu_ms_per_report_postgres_aux']} shared),"
          f" load generator {r['cpu_ms_per_report_loadgen']}")


def prefixed(prefix: str, r: dict) -> dict:
    return {prefix + k: v for k, v in r.items()}


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    target = ap.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a running collector on 127.0.0.1 (e.g. http://127.0.0.1:8080)")
    target.add_argument("--spawn", action="store_true", help="start `collector serve` in a fresh database on --pg")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres", help="PostgreSQL for --spawn and --anchor")
    ap.add_argument("--workers", type=int, default=None,
                    help="--spawn: server worker processes (default: none given, the server's default, as the README starts it)")
    ap.add_argument("--server-pid", type=int, help="--url: the server's PID, for its CPU and RSS")
    ap.add_argument("--pg-database", help="--url: count the CPU of this database's PostgreSQL backends only")
    ap.add_argument("--admin-token", default=os.environ.get("COLLECTOR_ADMIN_TOKEN", ""))
    ap.add_argument("--rate", default="0",
                    help="reports/s (open loop); 0: as fast as possible; 'half' (with --anchor): half the anchor's max")
    ap.add_argument("--duration", type=float, default=20, help="seconds of load (max 600), each run")
    ap.add_argument("--max-requests", type=int, default=2_000_000, help="stop after this many requests")
    ap.add_argument("--connections", type=int, default=64, help="keep-alive connections")
    ap.add_argument("--workspaces", type=int, default=500, help="workspaces to register")
    ap.add_argument("--timeout", type=float, default=30, help="per-request timeout, s")
    ap.add_argument("--server-env", action="append", default=[], help="KEY=VALUE for the spawned server")
    ap.add_argument("--anchor", action="store_true",
                    help="run the same load against the naive anchor (bench/anchor.py) first; summary: anchor_*, ratio")
    ap.add_argument("--profile", action="store_true",
                    help="py-spy the server during its first run: CPU by stage (bench/stages.py), summary server_stages_pct")
    ap.add_argument("--storm", type=int, default=0, metavar="N",
                    help="closed loop with --connections, then with N connections (same server); summary: storm_*, storm_ratio")
    args = ap.parse_args(argv)
    args.duration = min(args.duration, 600)
    args.max_requests = min(args.max_requests, 10_000_000)
    half = args.rate == "half"
    if half and not args.anchor:
        ap.error("--rate half needs --anchor")
    try:
        rate = 0.0 if half else float(args.rate)
    except ValueError:
        ap.error("--rate: a number of reports/s, or 'half'")
    if args.storm and (rate > 0 or half):
        ap.error("--storm runs closed loop: no --rate")
    if args.storm:  # a connection per file descriptor, on both sides
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.storm + 1024)), hard))

    # the runs of each server: (summary prefix, connections, rate); rate None: half the anchor's max
    phases: list[tuple[str, int, float | None]] = [("", args.connections, None if half else rate)]
    if args.storm:
        phases.append(("storm_", args.storm, 0.0))

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the spawned servers and drop their databases
    results: dict[str, dict] = {}
    if args.anchor:
        anchor = SpawnedAnchor(args.pg)
        try:
            port = urlsplit(anchor.url).port
            asyncio.run(wait_ready(port, anchor.proc))
            print(f"anchor: pid {anchor.proc.pid}, {anchor.url}, database {anchor.db}", file=sys.stderr, flush=True)
            tokens = [f"wsc_ws_{secrets.token_urlsafe(32)}" for _ in range(args.workspaces)]  # same size; never checked
            if half:
                results["anchor_max_"] = run_phase(args, port, anchor.proc.pid, anchor.db, tokens, args.connections, 0)
                print_phase("anchor max", results["anchor_max_"])
                rate = results["anchor_max_"]["reports_per_s"] / 2
            for prefix, conns, r in phases:
                results["anchor_" + prefix] = run_phase(args, port, anchor.proc.pid, anchor.db, tokens, conns,
                                                        rate if r is None else r)
                print_phase("anchor " + (prefix.rstrip("_") or "run"), results["anchor_" + prefix])
        finally:
            anchor.stop()

    profile_raw = Path(tempfile.gettempdir()) / f"collector-profile-{os.getpid()}.raw"
    spawned = None
    if args.spawn:
        args.admin_token = args.admin_token or "wsc_op_bench_" + secrets.token_urlsafe(16)
        env = dict(kv.split("=", 1) for kv in args.server_env)
        env.setdefault("COLLECTOR_LOG_LEVEL", "INFO")
        spawned = Spawned(args.pg, args.workers, args.admin_token, env)
        url, pid = spawned.url, spawned.proc.pid
    else:
        url, pid = args.url, args.server_pid
        if not args.admin_token:
            ap.error("--url needs --admin-token or COLLECTOR_ADMIN_TOKEN")
    parts = urlsplit(url)
    if parts.hostname != "127.0.0.1":
        ap.error("the load generator only sends to 127.0.0.1")
    port = parts.port or 80

    try:
        asyncio.run(wait_ready(port, spawned.proc if spawned else None))
        if spawned:
            print(f"collector: pid {pid}, {url}, database {spawned.db}", file=sys.stderr, flush=True)
        tokens = asyncio.run(register(port, args.admin_token, args.workspaces))
        database = spawned.db if spawned else args.pg_database
        for prefix, conns, r in phases:
            spy = stages.record(pid, args.duration, profile_raw) if args.profile and not prefix and pid else None
            results[prefix] = run_phase(args, port, pid, database, tokens, conns, rate if r is None else r)
            print_phase(prefix.rstrip("_") or "collector", results[prefix])
            if spy is not None:
                spy.wait()
                if profile_raw.exists():
                    results[prefix]["server_stages_pct"] = stages.summarise(profile_raw)
                    print("[collector] server CPU by stage (py-spy, % of busy samples): " + ", ".join(
                        f"{k} {v}" for k, v in results[prefix]["server_stages_pct"].items()), file=sys.stderr)
    finally:
        if spawned:
            spawned.stop()
    floor = floor_rate(Bodies(secrets.token_hex(4)))

    main_run = results[""]
    summary = {
        **main_run,
        "floor_parse_validate_per_s": round(floor, 1),
        "floor_ratio": ratio(floor, main_run["reports_per_s"]),
        "workers": (args.workers if args.workers is not None else default_workers()) if spawned else None,
    }
    for prefix, r in results.items():
        if prefix:
            summary.update(prefixed(prefix, r))
    if args.anchor:
        a = results["anchor_"]
        summary["ratio"] = ratio(main_run["reports_per_s"], a["reports_per_s"])
        summary["cpu_ratio"] = ratio(a["cpu_ms_per_report"], main_run["cpu_ms_per_report"])  # >1: we use less
        if half:
            summary["rate"] = round(rate, 1)
            summary["p99_ratio"] = ratio(main_run["p99_ms"], a["p99_ms"])
            summary["latency_target_met"] = main_run["p99_ms"] <= a["p99_ms"]
    if args.storm:
        # within the window: the storm's drain (up to --timeout) is not the storm
        summary["storm_ratio"] = ratio(results["storm_"]["window_reports_per_s"], main_run["window_reports_per_s"])
        summary["storm_target_met"] = (summary["storm_ratio"] or 0) >= 0.8
        if args.anchor:
            summary["anchor_storm_ratio"] = ratio(results["anchor_storm_"]["window_reports_per_s"],
                                                  results["anchor_"]["window_reports_per_s"])
    print(f"floor (parse + validate only, one process): {floor:.0f} reports/s; ratio floor/served {summary['floor_ratio']}")
    if args.anchor:
        print(f"ratio collector/anchor: {summary['ratio']} reports/s, {summary['cpu_ratio']} CPU per report (anchor/collector)"
              + (f"; at {rate:.0f}/s p99 {main_run['p99_ms']} ms vs anchor {results['anchor_']['p99_ms']} ms" if half else ""))
    if args.storm:
        print(f"storm: {results['storm_']['window_reports_per_s']} reports/s at {args.storm} connections vs"
              f" {main_run['window_reports_per_s']} at {args.connections} (within {args.duration:g} s):"
              f" ratio {summary['storm_ratio']}")
    print(orjson.dumps(summary).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
