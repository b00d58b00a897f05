"""The token cache's revocation listener comes back after a loss (issue 11, item 7).

The service talks to PostgreSQL through a TCP proxy the test can close to new
connections; its listening connection is then terminated in PostgreSQL.
Observed through behaviour and the metric ``collector_token_lookups_total``
(bearer tokens looked up in the database): while the listener is gone every
request is looked up and a revocation written without NOTIFY holds at once;
once it listens again tokens are served from the cache again and a rotation
(NOTIFY) still evicts at once.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import parse_qs, urlsplit, urlunsplit

from tests.conftest import admin_headers, make_settings, start_service, stop_service
from tests.test_ingest import TcpProxy

#: The listening connections opened since $1: this test's service's (the session's
#: service listens too, since before).
OURS = ("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_start >= $1"
        " AND query LIKE 'LISTEN %collector_tokens%' AND state = 'idle'")


async def metric(svc, name: str) -> float:
    async with svc.http.get(svc.url + "/metrics") as r:
        text = await r.text()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def lookups_of(svc, token: str, report: dict, n: int = 1, status: int = 200) -> int:
    """Post ``n`` reports (each expected ``status``); how many token lookups they cost."""
    before = await metric(svc, "collector_token_lookups_total")
    for _ in range(n):
        report["_id"] = f"r-{asyncio.get_running_loop().time()}"
        got = (await svc.post_report(token, report))[0]
        assert got == status
    return int(await metric(svc, "collector_token_lookups_total") - before)


async def until(predicate, what: str, tries: int = 200):
    for _ in range(tries):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


async def test_listener_reconnects_and_caching_resumes_only_then(database_url, tmp_path, db, report_870):
    parts = urlsplit(database_url)
    host = parts.hostname or parse_qs(parts.query)["host"][0]
    proxy = TcpProxy(host, parts.port or 5432)
    port = await proxy.start()
    proxied = urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{port}", query=""))
    started = await db.fetchval("SELECT clock_timestamp()")
    svc = await start_service(make_settings(tmp_path), proxied)
    try:
        ws = await svc.register()
        token, ws_id = ws["token"], ws["workspace_id"]
        assert await lookups_of(svc, token, report_870) == 1
        assert await lookups_of(svc, token, report_870, 3) == 0  # cached

        proxy.open = False  # existing connections (the pool's) go on; new ones are refused
        killed = await db.fetchval(f"SELECT count(pg_terminate_backend(pid)) FROM ({OURS}) l", started)
        assert killed == 1  # this service's listener, not the session service's
        await until(lambda: _costs_a_lookup(svc, token, report_870), "the loss reaches the process")
        # suspended: every request is looked up, a revocation without NOTIFY holds at once
        assert await lookups_of(svc, token, report_870, 3) == 3
        await db.execute("UPDATE tokens SET revoked_at = now() WHERE workspace_id = $1::uuid", ws_id)
        assert await lookups_of(svc, token, report_870, 1, status=401) == 1
        await db.execute("UPDATE tokens SET revoked_at = NULL WHERE workspace_id = $1::uuid", ws_id)
        assert await metric(svc, "collector_revocation_listener_reconnects_total") >= 1  # it keeps trying
        assert await lookups_of(svc, token, report_870, 2) == 2  # still suspended: the proxy refuses it

        proxy.open = True
        await until(lambda: _listening(db, started), "the listener listens again")
        await until(lambda: _cached(svc, token, report_870), "caching resumes")
        assert await lookups_of(svc, token, report_870, 3) == 0  # cached again
        await db.execute("UPDATE tokens SET revoked_at = now() WHERE workspace_id = $1::uuid", ws_id)
        assert await lookups_of(svc, token, report_870, 1) == 0  # served from the cache: no NOTIFY was sent
        await db.execute("UPDATE tokens SET revoked_at = NULL WHERE workspace_id = $1::uuid", ws_id)
        async with svc.http.post(f"{svc.url}/api/v1/workspaces/{ws_id}/rotate", headers=admin_headers()) as r:
            assert r.status == 200
            new_token = (await r.json())["token"]
        # the rotation's NOTIFY arrives through the new listener (asynchronously, on commit)
        await until(lambda: _rejected(svc, token, report_870), "the rotation evicts the old token")
        assert await lookups_of(svc, new_token, report_870, 2) == 1
    finally:
        await stop_service(svc)
        await proxy.close()


async def _costs_a_lookup(svc, token: str, report: dict) -> bool:
    return await lookups_of(svc, token, report) == 1


async def _cached(svc, token: str, report: dict) -> bool:
    await lookups_of(svc, token, report)
    return await lookups_of(svc, token, report) == 0


async def _listening(db, started) -> bool:
    return await db.fetchval(f"SELECT count(*) FROM ({OURS}) l", started) == 1


async def _rejected(svc, token: str, report: dict) -> bool:
    report["_id"] = "after-rotation"
    return (await svc.post_report(token, report))[0] == 401
