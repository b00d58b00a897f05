"""Access, portability and erasure (issue 14): real server, real database."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import datetime, timezone

import orjson

from collector.http.common import STATE
from tests.conftest import (
    admin_headers,
    get_json,
    make_report,
    make_settings,
    post_ok,
    put_contract,
    start_service,
    stop_service,
)
from tests.test_cli import run_cli
from tests.test_ingest import identifying_values


async def fetch_export(service, path: str, headers: dict) -> tuple[int, dict, bytes]:
    async with service.http.get(service.url + path, headers=headers) as r:
        return r.status, dict(r.headers), await r.read()


def without_time(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "generated_at"}


async def test_export_holds_everything_and_no_identifier_or_token_hash(service, db, report_870, report_680):
    ws = await service.register("enterprise")
    wid, token = ws["workspace_id"], ws["token"]
    me = {"Authorization": f"Bearer {token}"}
    a = await post_ok(service, token, report_870)
    b = await post_ok(service, token, report_680)
    assert (await service.post_report(token, dict(report_870, activeUsers="many")))[0] == 422
    await put_contract(service, wid, plan="enterprise", term_start="2026-01-01", term_end="2026-12-31", seats=80)
    other = await service.register("starter")
    await post_ok(service, other["token"], make_report(report_870, "someone-else", "2026-08-04T10:00:00.000Z"))

    status, headers, body = await fetch_export(service, "/api/v1/workspaces/self/export", me)
    assert status == 200, body
    assert headers["Transfer-Encoding"] == "chunked"  # streamed, not built whole
    assert headers["Content-Disposition"] == f'attachment; filename="workspace-{wid}.json"'
    doc = orjson.loads(body)
    assert (doc["format"], doc["workspace_id"], doc["registry"]["plan"]) == (
        "collector-workspace-export/1", wid, "enterprise")
    assert doc["opt_out"]["allowed"] == ["operational", "product_analytics"]
    assert [sorted(t) for t in doc["tokens"]] == [["created_at", "kind", "revoked_at"]]
    # every stored report, with its receipt and its kept data unsealed
    reports = {r["report_id"]: r for r in doc["reports"]}
    assert set(reports) == {a["recordId"], b["recordId"]}
    assert reports[a["recordId"]]["receipt"] == a["statsToken"]
    assert reports[a["recordId"]]["data"]["billing"]["activeUsers"] == report_870["activeUsers"]
    assert reports[b["recordId"]]["data"]["billing"]["activeUsers"] == report_680["activeUsers"]
    assert reports[a["recordId"]]["rc_version"] == report_870["version"]
    assert all(r["data"]["product_analytics"] for r in reports.values())
    tables = doc["tables"]
    assert [c["seats"] for c in tables["contracts"]] == [80]
    assert sorted(d["day"] for d in tables["daily_snapshots"]) == ["2024-07-02", "2026-08-03"]
    assert len(tables["monthly_usage"]) == 2 and len(tables["term_usage"]) == 1
    assert len(tables["compliance_state"]) == 1
    assert [(q["reason"], len(q["body_sha256"])) for q in tables["quarantine"]] == [("schema_violation", 66)]
    assert tables["audit_log"] == []
    # nothing of another workspace, no identifier, no token, hash, reference or record key
    text = body.decode()
    assert other["workspace_id"] not in text
    digest = hashlib.sha256(token.encode()).digest()
    record_keys = [r[0] for r in await db.fetch("SELECT record_key FROM report_keys WHERE workspace_id = $1::uuid", wid)]
    data_keys = [r[0] for r in await db.fetch("SELECT key FROM data_keys WHERE workspace_id = $1::uuid", wid)]
    assert len(record_keys) == 2 and len(data_keys) == 4
    for secret in [token, digest.hex(), digest[:6].hex(), *(k.hex() for k in record_keys + data_keys)]:
        assert secret not in text
    for report in (report_870, report_680):
        for value in identifying_values(report):
            assert value not in text, "an identifying value in the export"

    # the operator's export and the CLI's are the same document
    status, _, by_admin = await fetch_export(service, f"/api/v1/workspaces/{wid}/export", admin_headers())
    assert status == 200 and without_time(orjson.loads(by_admin)) == without_time(doc)
    out = run_cli(service.database_url, "workspace", "export", wid)
    assert out.returncode == 0, out.stderr
    assert without_time(orjson.loads(out.stdout)) == without_time(doc)
    # a workspace token reaches only its own export
    assert (await fetch_export(service, f"/api/v1/workspaces/{wid}/export", me))[0] == 403
    status, _, theirs = await fetch_export(service, "/api/v1/workspaces/self/export",
                                           {"Authorization": f"Bearer {other['token']}"})
    assert status == 200 and orjson.loads(theirs)["workspace_id"] == other["workspace_id"]


async def test_forgotten_categories_are_null_in_the_export(service, report_870):
    ws = await service.register("enterprise")
    me = {"Authorization": f"Bearer {ws['token']}"}
    await post_ok(service, ws["token"], report_870)
    async with service.http.put(service.url + "/api/v1/workspaces/self/opt-out", json={"opt_out": True},
                                headers=me) as r:
        assert r.status == 200
    doc = orjson.loads((await fetch_export(service, "/api/v1/workspaces/self/export", me))[2])
    [report] = doc["reports"]
    assert report["data"]["operational"] is None and report["data"]["product_analytics"] is None
    assert report["data"]["billing"]["activeUsers"] == report_870["activeUsers"]
    assert [e["action"] for e in doc["tables"]["audit_log"]] == ["opt_out_set"]


async def until(condition, attempts: int = 100) -> None:
    """Wait for ``condition()`` (a NOTIFY reaches a process asynchronously); fail after ``attempts`` x 20 ms."""
    for _ in range(attempts):
        if condition():
            return
        await asyncio.sleep(0.02)
    assert condition()


async def rows_naming(db, workspace_id: str) -> dict[str, int]:
    """{table: rows whose text holds the workspace id}, over every table of the schema."""
    tables = await db.fetch(
        "SELECT c.relname FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace"
        " AND c.relkind = 'r'")
    found = {}
    for (name,) in tables:
        n = await db.fetchval(f'SELECT count(*) FROM "{name}" t WHERE t::text LIKE $1', f"%{workspace_id}%")
        if n:
            found[name] = n
    return found


async def test_erasure_removes_every_row_but_one_audit_line_and_tokens_stop_at_once(
        service, db, database_url, tmp_path, report_870, report_680):
    ws = await service.register("enterprise")
    wid, token = ws["workspace_id"], ws["token"]
    me = {"Authorization": f"Bearer {token}"}
    # a second collector process on the same database, which caches the token
    other = await start_service(make_settings(tmp_path), database_url)
    try:
        await post_ok(other, token, report_870)
        await post_ok(service, token, report_680)
        assert (await service.post_report(token, dict(report_870, activeUsers="many")))[0] == 422
        async with service.http.put(service.url + "/api/v1/workspaces/self/opt-out", json={"opt_out": True},
                                    headers=me) as r:
            assert r.status == 200  # forgets 2 reports' optional data and destroys 2 of the 4 keys
        digest = hashlib.sha256(token.encode()).digest()
        cached = other.server.app[STATE].principals
        await until(lambda: cached.get(digest) is None)  # the opt-out's NOTIFY evicted it there too
        await get_json(other, "/api/v1/workspaces/self", me)
        assert cached.get(digest) is not None  # the other process holds the token now

        async with service.http.delete(f"{service.url}/api/v1/workspaces/{wid}", headers=admin_headers()) as r:
            assert r.status == 200, await r.text()
            erased = await r.json()
        assert erased["removed"] == {
            "reports": 2, "report_data": 2, "report_keys": 2, "data_keys": 2, "tokens": 1,
            "daily_snapshots": 2, "monthly_usage": 2, "term_usage": 1, "contracts": 1, "compliance_state": 1,
            "quarantine": 1, "audit_log": 1, "workspaces": 1,
        }
        assert "data_keys" in erased["rewritten"] and "compliance_state" in erased["rewritten"]
        # nothing of it is left but the audit line
        assert await rows_naming(db, wid) == {"audit_log": 1}
        [line] = (await get_json(service, f"/api/v1/audit?workspace_id={wid}", admin_headers()))["items"]
        assert (line["action"], line["actor"], line["counts"]) == (
            "workspace_erased", "operator:admin-env", erased["removed"])
        # the other process dropped the cached token as the NOTIFY arrived
        await until(lambda: cached.get(digest) is None)
        for svc in (service, other):
            status, _, _ = await svc.post_report(token, make_report(report_870, "after-erasure", "2026-08-05T00:00:00.000Z"))
            assert status == 401
            assert (await fetch_export(svc, "/api/v1/workspaces/self/export", me))[0] == 401
        assert await rows_naming(db, wid) == {"audit_log": 1}
        for method in ("get", "delete"):
            async with service.http.request(method, f"{service.url}/api/v1/workspaces/{wid}",
                                            headers=admin_headers()) as r:
                assert r.status == 404
    finally:
        await stop_service(other)


async def test_cli_erase(service, db, report_870):
    ws = await service.register("starter")
    await post_ok(service, ws["token"], report_870)
    out = run_cli(service.database_url, "workspace", "erase", ws["workspace_id"])
    assert out.returncode == 0, out.stderr
    erased = orjson.loads(out.stdout)
    assert erased["removed"]["reports"] == 1 and erased["removed"]["data_keys"] == 4
    assert await rows_naming(db, ws["workspace_id"]) == {"audit_log": 1}
    assert (await service.post_report(ws["token"], report_870))[0] == 401
    again = run_cli(service.database_url, "workspace", "erase", ws["workspace_id"])
    assert again.returncode == 1 and "UnknownWorkspace" in again.stderr


async def test_a_report_waiting_while_its_workspace_is_erased_is_not_stored(service, db, report_870):
    """write_batch (sql/0007) after the erasure committed: the element answers
    report_id NULL (the writer refuses it ``unauthorized``) and nothing of the
    workspace is written; the other workspace of the same batch is stored."""
    gone, kept = await service.register("starter"), await service.register("starter")
    async with service.http.delete(f"{service.url}/api/v1/workspaces/{gone['workspace_id']}",
                                   headers=admin_headers()) as r:
        assert r.status == 200
    ids = [uuid.uuid4(), uuid.uuid4()]
    rows = await db.fetch(
        "SELECT report_id, receipt, accepted FROM write_batch(now(), 'test', 7314002, $1::uuid[], $2::uuid[],"
        " $3::bytea[], $4::timestamptz[], '{8.7.0,8.7.0}', '{r1,r2}', '{NULL,NULL}', '{NULL,NULL}',"
        " '{NULL,NULL}', '{NULL,NULL}', '{1,1}', '{0,0}', '{0,0}', '{0,0}', '{0,0}', '{1,1}')",
        ids, [uuid.UUID(gone["workspace_id"]), uuid.UUID(kept["workspace_id"])], [b"k1", b"k2"],
        [datetime(2026, 8, 1, tzinfo=timezone.utc)] * 2,
    )
    assert [(r["report_id"], r["receipt"], r["accepted"]) for r in rows] == [(None, None, False), (ids[1], "r2", True)]
    assert await rows_naming(db, gone["workspace_id"]) == {"audit_log": 1}
    assert await db.fetchval("SELECT count(*) FROM reports WHERE workspace_id = $1::uuid", kept["workspace_id"]) == 1


async def test_opt_out_on_then_off_keeps_optional_data_again(service, db, report_870):
    """The writer's cached keys follow the switch: dropped while opted out, a
    new key (and stored data) once the opt-out is off again."""
    ws = await service.register("enterprise")
    me = {"Authorization": f"Bearer {ws['token']}"}
    for n, on in enumerate((None, True, False)):
        if on is not None:
            async with service.http.put(service.url + "/api/v1/workspaces/self/opt-out", json={"opt_out": on},
                                        headers=me) as r:
                assert r.status == 200
        await post_ok(service, ws["token"], make_report(report_870, f"switch-{n}", f"2026-08-0{n + 1}T10:00:00.000Z"))
    doc = orjson.loads((await fetch_export(service, "/api/v1/workspaces/self/export", me))[2])
    kept = [sorted(c for c, v in r["data"].items() if v is not None) for r in doc["reports"]]
    assert kept == [["billing", "compliance"], ["billing", "compliance"],
                    ["billing", "compliance", "operational", "product_analytics"]]
