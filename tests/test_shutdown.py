"""A graceful stop (issue 11): on SIGTERM ``collector serve`` stops accepting,
answers every request in flight within ``COLLECTOR_SHUTDOWN_GRACE_S``, then
exits; nothing in flight is reset and every acknowledged report is stored.

Real processes: ``collector serve`` as a subprocess on the test database. The
requests are held in flight deterministically: the test locks ``reports``
(the writer's one statement waits for the lock), sends them, sees them all
queued (``collector_write_queue_depth``), sends SIGTERM, sees new connections
refused, and only then lets the writer go.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import subprocess
import sys

import aiohttp
import asyncpg
import orjson
import pytest

from tests.conftest import ADMIN_TOKEN, admin_headers, load_fixture
from tests.test_durability import ROOT, free_port, wait_ready

IN_FLIGHT = 40  # requests held in flight on fresh connections
IDLE = 8  # keep-alive connections idle at SIGTERM, used right after it


def start(database_url: str, data_dir, port: int, workers: int, **env) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url, "COLLECTOR_ADMIN_TOKEN": ADMIN_TOKEN,
           "COLLECTOR_DATA_DIR": str(data_dir), "COLLECTOR_LOG_LEVEL": "WARNING", **env}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "collector", "serve", "--port", str(port), "--workers", str(workers)],
        env=env, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def queue_depth(http, url: str) -> float:
    async with http.get(url + "/metrics") as r:
        m = re.search(r"^collector_write_queue_depth (\S+)$", await r.text(), re.M)
    return float(m.group(1)) if m else 0.0


async def until(predicate, what: str, tries: int = 400):
    for _ in range(tries):
        if await predicate():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"never: {what}")


async def refused(port: int) -> bool:
    try:
        _, w = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    w.close()
    return False


WRITER_WAITS = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND query LIKE '%write_batch(%' AND wait_event_type = 'Lock'")


async def post(session: aiohttp.ClientSession, url: str, token: str, body: bytes):
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        async with session.post(url + "/", data=body, headers=headers) as r:
            return r.status, await r.json(), r.headers.get("Connection", "")
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return type(exc).__name__, None, ""


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_answers_every_request_in_flight(database_url, db, tmp_path, workers):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    template = load_fixture("report-8.7.0.json")
    proc = start(database_url, tmp_path, port, workers, COLLECTOR_SHUTDOWN_GRACE_S="30")
    fresh = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                  timeout=aiohttp.ClientTimeout(total=60))
    idle = [aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) for _ in range(IDLE)]
    sent: list[asyncio.Task] = []

    def send(name: str, session=fresh) -> None:
        sent.append(asyncio.create_task(post(session, url, token, orjson.dumps({**template, "_id": name}))))

    async def held() -> int:
        """Reports held: one per writer waiting for the lock (each sent alone), plus the queued."""
        return int(await queue_depth(fresh, url)) + await db.fetchval(WRITER_WAITS)

    try:
        await wait_ready(fresh, url, proc)
        async with fresh.post(url + "/api/v1/workspaces", json={"plan": "starter"}, headers=admin_headers()) as r:
            token = (await r.json())["token"]
        for s in idle:  # one keep-alive connection each, idle from now on
            async with s.get(url + "/healthz") as r:
                assert r.status == 200

        locker = await asyncpg.connect(database_url)
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE reports IN EXCLUSIVE MODE")  # write_batch waits for it
        try:
            while await db.fetchval(WRITER_WAITS) < workers:  # every worker's writer holds one, waiting
                assert len(sent) < 50, "the kernel never picked the other worker"
                send(f"sd-{len(sent)}")
                n = len(sent)
                await until(lambda: _equals(held(), n), "the report is held")
            while len(sent) < IN_FLIGHT:
                send(f"sd-{len(sent)}")
            await until(lambda: _equals(held(), IN_FLIGHT), "every request is in flight")

            proc.send_signal(signal.SIGTERM)
            await until(lambda: refused(port), "new connections are refused")
            for i, s in enumerate(idle):  # open before SIGTERM, used after: answered, then closed
                send(f"sd-late-{i}", s)
            assert proc.poll() is None
        finally:
            await tx.commit()
            await locker.close()
        answers = await asyncio.gather(*sent)
        assert proc.wait(60) == 0, proc.stderr.read().decode()[-2000:]
    finally:
        await fresh.close()
        for s in idle:
            await s.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert [a[0] for a in answers] == [200] * (IN_FLIGHT + IDLE)
    assert all(a[2].lower() == "close" for a in answers[IN_FLIGHT:])  # answered while stopping
    ids = [a[1]["recordId"] for a in answers]
    assert await db.fetchval("SELECT count(*) FROM reports WHERE report_id = ANY($1::uuid[])", ids) == len(ids)


async def _equals(awaitable, n: int) -> bool:
    return (await awaitable) == n


async def test_past_the_grace_period_it_stops_and_acknowledges_nothing_unstored(database_url, db, tmp_path):
    """The database never lets the writer go: the worker still stops, after the
    grace period (1 s here) and the writer's as long again; nothing answered 200."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    template = load_fixture("report-8.7.0.json")
    proc = start(database_url, tmp_path, port, 1, COLLECTOR_SHUTDOWN_GRACE_S="1")
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                    timeout=aiohttp.ClientTimeout(total=60))
    try:
        await wait_ready(session, url, proc)
        async with session.post(url + "/api/v1/workspaces", json={"plan": "starter"}, headers=admin_headers()) as r:
            token = (await r.json())["token"]
        locker = await asyncpg.connect(database_url)
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE reports IN EXCLUSIVE MODE")
        try:
            def send(i: int) -> asyncio.Task:
                return asyncio.create_task(post(session, url, token, orjson.dumps({**template, "_id": f"late-{i}"})))

            sent = [send(0)]  # alone: the writer's batch holds exactly it, waiting for the lock
            await until(lambda: _equals(db.fetchval(WRITER_WAITS), 1), "the writer waits for the lock")
            sent += [send(i) for i in range(1, 10)]
            await until(lambda: _equals(queue_depth(session, url), 9), "every request is in flight")
            proc.send_signal(signal.SIGTERM)
            answers = await asyncio.gather(*sent)
            assert proc.wait(30) == 0  # stopped while the lock is still held
        finally:
            await tx.commit()
            await locker.close()
    finally:
        await session.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert 200 not in [a[0] for a in answers]  # cut unanswered: not acknowledged, and not stored
    assert await db.fetchval(
        "SELECT count(*) FROM reports r JOIN tokens t USING (workspace_id) WHERE t.token_hash = $1",
        hashlib.sha256(token.encode()).digest()) == 0
