"""Nothing acknowledged is lost (issue 6): SIGKILL the server under load.

``collector serve --workers 2`` runs as a real subprocess on the test
database. Many workspaces post concurrently; once some reports were
acknowledged, the whole process group gets SIGKILL (no drain, no clean
shutdown). Then: every report answered 200 is in ``reports`` with the receipt
it was answered; after a restart every record is sent again and each ends
stored exactly once, an acknowledged one with the same recordId and receipt.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson

from tests.conftest import ADMIN_TOKEN, admin_headers, load_fixture

ROOT = Path(__file__).resolve().parent.parent
WORKSPACES = 12
SENDERS = 24
KILL_AFTER_ACKS = 150
MAX_PER_SENDER = 60  # bounded: the kill comes long before these run out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(database_url: str, data_dir: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "COLLECTOR_ADMIN_TOKEN": ADMIN_TOKEN,
        "COLLECTOR_DATA_DIR": str(data_dir),
        "COLLECTOR_LOG_LEVEL": "WARNING",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "collector", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        cwd=ROOT,
        start_new_session=True,  # its own process group: SIGKILL reaches every worker at once
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_ready(http: aiohttp.ClientSession, url: str, proc: subprocess.Popen) -> None:
    for _ in range(300):
        assert proc.poll() is None, "the server exited during start-up"
        try:
            async with http.get(url + "/readyz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the server did not become ready")


async def post(http: aiohttp.ClientSession, url: str, token: str, body: bytes) -> tuple[int, dict | None]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        async with http.post(url + "/", data=body, headers=headers) as r:
            return r.status, (await r.json() if r.status == 200 else None)
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return 0, None  # no answer: not acknowledged


async def test_sigkill_under_load_loses_no_acknowledged_report(database_url, db, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    template = load_fixture("report-8.7.0.json")
    proc = start_server(database_url, tmp_path, port)
    timeout = aiohttp.ClientTimeout(total=20)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await wait_ready(http, url, proc)
            tokens = {}
            for _ in range(WORKSPACES):
                async with http.post(url + "/api/v1/workspaces", json={"plan": "starter"}, headers=admin_headers()) as r:
                    assert r.status == 201
                    ws = await r.json()
                    tokens[ws["workspace_id"]] = ws["token"]
            ws_ids = list(tokens)

            attempted: list[tuple[str, str]] = []  # (workspace_id, record _id)
            acked: dict[tuple[str, str], dict] = {}
            killed = asyncio.Event()

            async def sender(n: int) -> None:
                for k in range(MAX_PER_SENDER):
                    if killed.is_set():
                        return
                    ws = ws_ids[(n + k) % WORKSPACES]
                    rid = f"durability-{n:03d}-{k:04d}"
                    attempted.append((ws, rid))
                    status, answer = await post(http, url, tokens[ws], orjson.dumps({**template, "_id": rid}))
                    if status == 200:
                        acked[(ws, rid)] = answer
                    if len(acked) >= KILL_AFTER_ACKS and not killed.is_set():
                        killed.set()
                        os.killpg(proc.pid, signal.SIGKILL)

            await asyncio.gather(*(sender(n) for n in range(SENDERS)))
            assert killed.is_set(), "the load ended before the kill"
            proc.wait()

        # Every acknowledged report is stored, with the receipt it was answered.
        rows = await db.fetch(
            "SELECT report_id::text AS id, receipt FROM reports WHERE report_id = ANY($1::uuid[])",
            [a["recordId"] for a in acked.values()],
        )
        assert {r["id"]: r["receipt"] for r in rows} == {a["recordId"]: a["statsToken"] for a in acked.values()}

        # Restart; resend every record attempted: stored once each, acknowledged ones unchanged.
        proc = start_server(database_url, tmp_path, port)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await wait_ready(http, url, proc)
            sem = asyncio.Semaphore(16)

            async def resend(ws: str, rid: str):
                async with sem:
                    return await post(http, url, tokens[ws], orjson.dumps({**template, "_id": rid}))

            answers = await asyncio.gather(*(resend(ws, rid) for ws, rid in attempted))
        assert [status for status, _ in answers] == [200] * len(attempted)
        for (key, (_, answer)) in zip(attempted, answers):
            if key in acked:
                assert answer["outcome"] == "duplicate"
                assert (answer["recordId"], answer["statsToken"]) == (acked[key]["recordId"], acked[key]["statsToken"])
        stored = await db.fetchval("SELECT count(*) FROM reports WHERE workspace_id = ANY($1::uuid[])", ws_ids)
        assert stored == len(set(attempted))
        data_rows = await db.fetchval(
            "SELECT count(*) FROM report_data WHERE workspace_id = ANY($1::uuid[])", ws_ids
        )
        assert data_rows == stored  # one data row per report
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
