"""Receipts as Rocket.Chat relies on them (issue 9, part 1).

A Rocket.Chat server stores the ``statsToken`` of ANY JSON answer and, when
unlicensed, verifies it with its own code: ``@rocket.chat/jwt`` ``verify``
(jose 4.15.9 ``importSPKI(key, 'RS256')`` then ``jwtVerify``) against
``PUBLIC_STATS_KEY_V2``, then counts whole days since the payload's
``timestamp`` (``ee/packages/license/src/AirGappedRestriction.ts``). These
tests run that code (``tests/js/verify_receipt.mjs``, jose from npm) on
receipts of the running service, with the key exactly as
``collector receipts public-key --rocketchat`` prints it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import pytest

from tests.conftest import make_settings, start_service, stop_service

JS = Path(__file__).parent / "js"


@pytest.fixture(scope="module")
def verifier() -> Path:
    """tests/js with jose@4.15.9 installed (``npm ci`` on first use; CI runs it in .ci/run)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are required in CI for the Rocket.Chat verifier tests")
        pytest.skip("node/npm not found: the Rocket.Chat verifier tests (jose@4.15.9) need Node.js")
    if not (JS / "node_modules" / "jose").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=JS, check=True, timeout=300)
    installed = orjson.loads((JS / "node_modules" / "jose" / "package.json").read_bytes())["version"]
    assert installed == "4.15.9"
    return JS / "verify_receipt.mjs"


def rocketchat_key(data_dir: Path) -> str:
    """``collector receipts public-key --rocketchat`` for the service's data directory."""
    env = {**os.environ, "COLLECTOR_DATA_DIR": str(data_dir), "COLLECTOR_LOG_LEVEL": "WARNING"}
    out = subprocess.run([sys.executable, "-m", "collector", "receipts", "public-key", "--rocketchat"],
                         env=env, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def rocketchat_verify(script: Path, key: str, token: str, now: datetime | None = None) -> tuple[int, dict]:
    env = {**os.environ, "PUBLIC_STATS_KEY_V2": key, "TZ": "UTC"}
    args = ["node", str(script), token] + (["--now", now.isoformat()] if now else [])
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    return out.returncode, orjson.loads(out.stdout)


async def test_receipt_verifies_with_rocketchats_own_verifier(service, data_dir, verifier, report_870):
    ws = await service.register()
    before = datetime.now(timezone.utc)
    status, _, body = await service.post_report(ws["token"], report_870)
    assert status == 200, body
    token = orjson.loads(body)["statsToken"]
    key = rocketchat_key(data_dir)
    code, out = rocketchat_verify(verifier, key, token)
    assert code == 0, out
    # the months-old record's receipt reads as accepted today: nothing restricted
    assert out["days"] == 0 and out["restricted"] is False and out["remainingDays"] == 10
    stamped = datetime.fromisoformat(out["payload"]["timestamp"].replace("Z", "+00:00"))
    assert before - timedelta(milliseconds=1) <= stamped <= datetime.now(timezone.utc)
    assert out["payload"]["workspaceId"] == ws["workspace_id"]
    # Rocket.Chat's day count on that receipt: 3 days a warning, 10 days read-only
    code, out = rocketchat_verify(verifier, key, token, now=stamped + timedelta(days=3))
    assert (code, out["days"], out["restricted"]) == (0, 3, False)
    code, out = rocketchat_verify(verifier, key, token, now=stamped + timedelta(days=10))
    assert (code, out["days"], out["restricted"]) == (0, 10, True)


async def test_a_resend_gets_the_byte_identical_receipt_stamped_at_first_acceptance(service, data_dir, verifier,
                                                                                     report_870):
    ws = await service.register()
    first = orjson.loads((await service.post_report(ws["token"], report_870))[2])
    await asyncio.sleep(0.05)
    again = orjson.loads((await service.post_report(ws["token"], report_870))[2])
    assert again["outcome"] == "duplicate" and again["statsToken"] == first["statsToken"]
    code, out = rocketchat_verify(verifier, rocketchat_key(data_dir), again["statsToken"])
    assert code == 0 and out["days"] == 0


async def test_a_receipt_of_another_key_is_refused_by_rocketchat(service, tmp_path, verifier, report_870):
    ws = await service.register()
    token = orjson.loads((await service.post_report(ws["token"], report_870))[2])["statsToken"]
    code, out = rocketchat_verify(verifier, rocketchat_key(tmp_path / "other"), token)
    assert code == 1 and out["restricted"] is True and out["error"]["code"] == "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"


def _error_cases(report: dict) -> list[tuple[str, bytes, dict, int, str]]:
    big = dict(report, padding="x" * (1024 * 1024 + 10))
    bad = dict(report, activeUsers="12")
    future = dict(report, createdAt=(datetime.now(timezone.utc) + timedelta(hours=2)).isoformat())
    j = orjson.dumps
    return [
        ("no token", j(report), {"Authorization": ""}, 401, "unauthorized"),
        ("too large", j(big), {}, 413, "too_large"),
        ("not json media type", j(report), {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ("unknown encoding", j(report), {"Content-Encoding": "compress"}, 415, "unsupported_encoding"),
        ("not gzip", j(report), {"Content-Encoding": "gzip"}, 400, "malformed_body"),
        ("not json", b"{", {}, 400, "malformed_body"),
        ("schema", j(bad), {}, 422, "schema_violation"),
        ("future", j(future), {}, 422, "future_record"),
    ]


async def test_no_error_answer_carries_a_stats_token(service, report_870):
    """Rocket.Chat stores statsToken from any JSON answer, whatever the status."""
    ws = await service.register()
    for name, body, headers, status, error in _error_cases(report_870):
        h = {"Authorization": f"Bearer {ws['token']}", **headers}
        if not h["Authorization"]:
            del h["Authorization"]
        h.setdefault("Content-Type", "application/json")
        # a new connection per case: an answer sent before the body is read closes its connection
        async with aiohttp.ClientSession() as http, http.post(service.url + "/", data=body, headers=h) as r:
            got, answer = r.status, await r.read()
        parsed = orjson.loads(answer)
        assert (got, parsed["error"]) == (status, error), name
        assert "statsToken" not in parsed, name


async def _blocked_in_the_writer(svc, locker, ws, report_870) -> asyncio.Task:
    """A report posted while its workspace's registry row is locked: it holds
    its slot, waiting in the writer, until ``locker`` rolls back."""
    await locker.execute("BEGIN")
    await locker.execute("SELECT 1 FROM workspaces WHERE workspace_id = $1::uuid FOR UPDATE", ws["workspace_id"])
    first = asyncio.create_task(svc.post_report(ws["token"], dict(report_870, _id="overload-1")))
    for _ in range(250):
        await asyncio.sleep(0.02)
        if await locker.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"):
            return first
    raise AssertionError("the first report never reached the writer")


async def test_an_overloaded_answer_carries_no_stats_token(database_url, tmp_path, report_870):
    """503 overloaded: the one slot (COLLECTOR_CONCURRENT_REPORTS=1) is held by a
    report blocked in the writer; the next waits its admission_wait_s, then is shed."""
    svc = await start_service(make_settings(tmp_path, concurrent_reports=1, admission_wait_s=0.3), database_url)
    locker = await asyncpg.connect(database_url)
    try:
        ws = await svc.register()
        first = await _blocked_in_the_writer(svc, locker, ws, report_870)
        started = time.monotonic()
        status, headers, body = await svc.post_report(ws["token"], dict(report_870, _id="overload-2"))
        assert status == 503 and int(headers["Retry-After"]) > 0
        assert time.monotonic() - started >= 0.3  # it waited for a slot first
        assert orjson.loads(body)["error"] == "overloaded" and "statsToken" not in orjson.loads(body)
        await locker.execute("ROLLBACK")
        assert (await first)[0] == 200
        assert await locker.fetchval("SELECT count(*) FROM reports WHERE workspace_id = $1::uuid", ws["workspace_id"]) == 1  # the shed one was not stored
    finally:
        await locker.close()
        await stop_service(svc)


async def test_a_report_waits_for_a_slot_and_is_served_when_one_frees(database_url, tmp_path, report_870):
    """Admission control: with every slot taken, a report waits (up to
    admission_wait_s) rather than being answered 503, and is served in turn."""
    svc = await start_service(make_settings(tmp_path, concurrent_reports=1, admission_wait_s=30), database_url)
    locker = await asyncpg.connect(database_url)
    try:
        ws = await svc.register()
        first = await _blocked_in_the_writer(svc, locker, ws, report_870)
        waiting = [asyncio.create_task(svc.post_report(ws["token"], dict(report_870, _id=f"wait-{i}")))
                   for i in range(3)]
        await asyncio.sleep(0.5)
        assert not any(t.done() for t in waiting)  # none answered 503: they wait
        await locker.execute("ROLLBACK")
        answers = [await first] + [await t for t in waiting]
        assert [a[0] for a in answers] == [200, 200, 200, 200]
        assert all(orjson.loads(a[2])["outcome"] == "accepted" for a in answers)
        assert await locker.fetchval("SELECT count(*) FROM reports WHERE workspace_id = $1::uuid", ws["workspace_id"]) == 4
    finally:
        await locker.close()
        await stop_service(svc)
