"""Ingest end to end: real HTTP server, real PostgreSQL (issue 2)."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta, timezone
import gzip
import zlib
from uuid import UUID

import brotli
import jwt
import orjson
import pytest
from backports import zstd
from jwt import PyJWKSet

from collector.accounts import datakeys
from tests.conftest import admin_headers, make_settings, start_service, stop_service


def identifying_values(report: dict) -> list[str]:
    """The identifying values of a real record that must never be stored."""
    values = [report["_id"], report["uniqueId"], report["installedAt"], report["statsToken"], report["host"]]
    values.append(report["os"]["release"])
    values += [cpu["model"] for cpu in report["os"]["cpus"]]
    values.append(report["host"].split("//")[1].strip("/"))
    return [v for v in values if isinstance(v, str) and v]


async def dump_all_tables(db) -> str:
    tables = await db.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    )
    out = []
    for t in tables:
        rows = await db.fetch(f'SELECT t::text AS row FROM "{t["table_name"]}" t')
        out += [r["row"] for r in rows]
    return "\n".join(out)


async def verify_receipt(service, token: str) -> dict:
    async with service.http.get(service.url + "/.well-known/jwks.json") as r:
        assert r.status == 200
        jwks = PyJWKSet.from_dict(await r.json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    return jwt.decode(token, key.key, algorithms=["ES256"])


@pytest.mark.parametrize("fixture", ["report_870", "report_680"])
async def test_real_record_is_accepted_stored_and_receipted(service, db, fixture, request):
    report = request.getfixturevalue(fixture)
    ws = await service.register("starter")
    before = datetime.now(timezone.utc)
    status, headers, body = await service.post_report(ws["token"], report)
    after = datetime.now(timezone.utc)
    assert status == 200, body
    answer = orjson.loads(body)
    assert answer["outcome"] == "accepted"
    claims = await verify_receipt(service, answer["statsToken"])
    assert claims["workspaceId"] == ws["workspace_id"]
    assert claims["recordId"] == answer["recordId"]
    # the acceptance time (RFC 3339, milliseconds), not the months-old createdAt
    stamped = datetime.fromisoformat(claims["timestamp"].replace("Z", "+00:00"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", claims["timestamp"])
    assert before - timedelta(milliseconds=1) <= stamped <= after
    assert stamped - datetime.fromisoformat(report["createdAt"].replace("Z", "+00:00")) > timedelta(days=30)
    row = await db.fetchrow("SELECT * FROM reports WHERE report_id = $1::uuid", answer["recordId"])
    assert str(row["workspace_id"]) == ws["workspace_id"]
    assert row["rc_version"] == report["version"]
    assert row["receipt"] == answer["statsToken"]
    data = await db.fetchrow("SELECT * FROM report_data WHERE report_id = $1::uuid", answer["recordId"])
    assert data["billing"] is not None and data["compliance"] is not None
    # stored sealed with the workspace's billing key (collector.accounts.datakeys)
    keys = await datakeys.load(db, UUID(ws["workspace_id"]))
    assert b"activeUsers" not in data["billing"]
    billing = datakeys.unseal(keys["billing"], row["report_id"], "billing", data["billing"])
    assert billing["activeUsers"] == report["activeUsers"]


async def test_no_identifying_value_is_stored_anywhere(service, db, report_870, report_680):
    for report in (report_870, report_680):
        ws = await service.register("pro")
        status, _, body = await service.post_report(ws["token"], report, path="/api/v1/statistics")
        assert status in (200,), body
    dump = await dump_all_tables(db)
    for report in (report_870, report_680):
        for value in identifying_values(report):
            assert value not in dump, "an identifying value reached the database"


async def test_resend_is_stored_once_with_the_same_receipt(service, db, report_870):
    ws = await service.register()
    first = await service.post_report(ws["token"], report_870)
    second = await service.post_report(ws["token"], report_870)
    assert first[0] == second[0] == 200
    a, b = orjson.loads(first[2]), orjson.loads(second[2])
    assert a["statsToken"] == b["statsToken"]
    assert (a["outcome"], b["outcome"]) == ("accepted", "duplicate")
    n = await db.fetchval("SELECT count(*) FROM reports WHERE workspace_id = $1::uuid", ws["workspace_id"])
    assert n == 1


async def test_concurrent_resends_are_stored_once(service, db, report_870):
    ws = await service.register()
    results = await asyncio.gather(*(service.post_report(ws["token"], report_870) for _ in range(20)))
    tokens = {orjson.loads(r[2])["statsToken"] for r in results}
    assert {r[0] for r in results} == {200}
    assert len(tokens) == 1
    n = await db.fetchval("SELECT count(*) FROM reports WHERE workspace_id = $1::uuid", ws["workspace_id"])
    assert n == 1


async def test_same_record_id_from_two_workspaces_is_two_reports(service, db, report_870):
    a = await service.register()
    b = await service.post_report((await service.register())["token"], report_870)
    s = await service.post_report(a["token"], report_870)
    assert orjson.loads(s[2])["outcome"] == orjson.loads(b[2])["outcome"] == "accepted"


@pytest.mark.parametrize(
    "encoding,compress",
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("br", brotli.compress), ("zstd", zstd.compress)],
)
async def test_compressed_bodies_are_accepted(service, report_870, encoding, compress):
    ws = await service.register()
    report_870["_id"] = "compressed-" + encoding
    status, _, body = await service.post_report(
        ws["token"], compress(orjson.dumps(report_870)), {"Content-Encoding": encoding}
    )
    assert status == 200, body


@pytest.mark.parametrize("auth", [None, "Bearer", "Bearer wsc_ws_unknown", "Basic abc", "Bearer " + "x" * 300])
async def test_missing_or_unknown_token_is_401(service, report_870, auth):
    headers = {"Authorization": auth} if auth else {}
    status, h, body = await service.post_report(None, report_870, headers)
    assert status == 401
    assert orjson.loads(body)["error"] == "unauthorized"


async def test_revoked_and_rotated_tokens_are_401_like_unknown(service, report_870):
    ws = await service.register()
    async with service.http.post(f"{service.url}/api/v1/workspaces/{ws['workspace_id']}/rotate", headers=admin_headers()) as r:
        assert r.status == 200
        new = await r.json()
    old = await service.post_report(ws["token"], report_870)
    unknown = await service.post_report("wsc_ws_nobody", report_870)
    assert old[0] == 401 and orjson.loads(old[2]) == orjson.loads(unknown[2])
    assert (await service.post_report(new["token"], report_870))[0] == 200
    async with service.http.post(f"{service.url}/api/v1/workspaces/{ws['workspace_id']}/revoke", headers=admin_headers()) as r:
        assert r.status == 200
    assert (await service.post_report(new["token"], report_870))[0] == 401


async def test_operator_token_cannot_post_reports(service, report_870):
    status, _, _ = await service.post_report(admin_headers()["Authorization"].split()[1], report_870)
    assert status == 401


async def test_too_large_body_is_413(service, report_870):
    ws = await service.register()
    report_870["padding"] = "x" * (1024 * 1024 + 10)
    status, _, body = await service.post_report(ws["token"], report_870)
    assert status == 413
    assert orjson.loads(body)["error"] == "too_large"


async def test_gzip_bomb_is_413_not_decompressed_whole(service):
    ws = await service.register()
    bomb = gzip.compress(b"[" + b"0," * (8 * 1024 * 1024) + b"0]")  # 16 MiB inflated, ~16 KiB sent
    assert len(bomb) < 100_000
    status, _, body = await service.post_report(ws["token"], bomb, {"Content-Encoding": "gzip"})
    assert status == 413


@pytest.mark.parametrize(
    "headers,status,error",
    [
        ({"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        ({"Content-Encoding": "compress"}, 415, "unsupported_encoding"),
        ({"Content-Encoding": "gzip, gzip"}, 415, "unsupported_encoding"),
        ({"Content-Encoding": "gzip"}, 400, "malformed_body"),  # the body is not gzip
    ],
)
async def test_bad_content_headers(service, report_870, headers, status, error):
    ws = await service.register()
    got, _, body = await service.post_report(ws["token"], report_870, headers)
    assert (got, orjson.loads(body)["error"]) == (status, error)


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe{}", b'{"a": 1} trailing'])
async def test_malformed_json_is_400(service, raw):
    ws = await service.register()
    status, _, body = await service.post_report(ws["token"], raw)
    assert status == 400
    assert orjson.loads(body)["error"] == "malformed_body"


async def test_schema_violation_is_422_with_paths_and_no_values(service, db, report_870):
    ws = await service.register()
    report_870["activeUsers"] = "12"
    report_870["activeGuests"] = True
    status, _, body = await service.post_report(ws["token"], report_870)
    assert status == 422
    answer = orjson.loads(body)
    assert answer["error"] == "schema_violation"
    paths = {v["path"] for v in answer["violations"]}
    assert {"activeUsers", "activeGuests"} <= paths
    assert "12" not in body.decode().replace("1024", "")
    row = await db.fetchrow(
        "SELECT reason, violations::text, body_size FROM quarantine WHERE workspace_id = $1::uuid", ws["workspace_id"]
    )
    assert row["reason"] == "schema_violation"
    assert "activeUsers" in row["violations"] and row["body_size"] > 1000
    assert await db.fetchval("SELECT count(*) FROM reports WHERE workspace_id = $1::uuid", ws["workspace_id"]) == 0


async def test_record_dated_more_than_an_hour_ahead_is_refused(service, report_870):
    from datetime import datetime, timedelta, timezone

    ws = await service.register()
    now = datetime.now(timezone.utc)
    report_870["createdAt"] = (now + timedelta(hours=1, minutes=5)).isoformat()
    status, _, body = await service.post_report(ws["token"], report_870)
    assert status == 422 and orjson.loads(body)["error"] == "future_record"
    assert orjson.loads(body)["violations"][0]["path"] == "createdAt"
    report_870["createdAt"] = (now + timedelta(minutes=50)).isoformat()
    status, _, body = await service.post_report(ws["token"], report_870)
    assert status == 200, body


async def test_metrics_count_outcomes_without_workspace_labels(service, report_870):
    ws = await service.register()
    await service.post_report(ws["token"], report_870)
    await service.post_report(None, report_870)
    async with service.http.get(service.url + "/metrics") as r:
        assert r.status == 200
        text = await r.text()
    assert 'collector_reports_total{outcome="accepted",reason=""}' in text
    assert 'collector_reports_total{outcome="refused",reason="unauthorized"}' in text
    assert "collector_http_request_duration_seconds_bucket" in text
    assert ws["workspace_id"] not in text


async def test_health_and_readiness(service):
    async with service.http.get(service.url + "/healthz") as r:
        assert r.status == 200
    async with service.http.get(service.url + "/readyz") as r:
        assert r.status == 200


async def test_workspace_token_cannot_use_operator_api(service):
    ws = await service.register()
    async with service.http.post(
        f"{service.url}/api/v1/workspaces", json={"plan": "pro"}, headers={"Authorization": f"Bearer {ws['token']}"}
    ) as r:
        assert r.status == 403


async def test_register_unknown_plan_is_422(service):
    async with service.http.post(f"{service.url}/api/v1/workspaces", json={"plan": "platinum"}, headers=admin_headers()) as r:
        assert r.status == 422
        assert (await r.json())["error"] == "unknown_plan"


async def test_operator_tokens_with_roles(service):
    async with service.http.post(
        f"{service.url}/api/v1/operator-tokens", json={"roles": ["billing"]}, headers=admin_headers()
    ) as r:
        assert r.status == 201
        billing = (await r.json())["token"]
    async with service.http.post(
        f"{service.url}/api/v1/workspaces", json={"plan": "pro"}, headers={"Authorization": f"Bearer {billing}"}
    ) as r:
        assert r.status == 403


class TcpProxy:
    """A TCP proxy in front of PostgreSQL that the test can cut, like a network partition."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)  # host may be a Unix socket folder (embedded PostgreSQL)
        self.server = None
        self.open = True
        self.conns: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader, writer):
        if not self.open:
            writer.close()
            return
        host, port = self.target
        if host.startswith("/"):
            up_r, up_w = await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        else:
            up_r, up_w = await asyncio.open_connection(host, port)
        self.conns += [writer, up_w]

        async def pipe(r, w):
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    def cut(self) -> None:
        self.open = False
        for w in self.conns:
            w.close()
        self.conns.clear()

    async def close(self) -> None:
        self.cut()
        self.server.close()


async def test_database_unreachable_is_503_with_retry_after(database_url, tmp_path, report_870):
    from urllib.parse import parse_qs, urlsplit, urlunsplit

    parts = urlsplit(database_url)
    host = parts.hostname or parse_qs(parts.query)["host"][0]
    proxy = TcpProxy(host, parts.port or 5432)
    port = await proxy.start()
    proxied = urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{port}", query=""))
    svc = await start_service(make_settings(tmp_path), proxied)
    try:
        ws = await svc.register()
        assert (await svc.post_report(ws["token"], report_870))[0] == 200
        proxy.cut()
        report_870["_id"] = "after-the-cut"
        status, headers, body = await svc.post_report(ws["token"], report_870)
        assert status == 503, body
        assert int(headers["Retry-After"]) > 0
        assert orjson.loads(body)["error"] == "database_unavailable"
        assert "statsToken" not in orjson.loads(body)
        async with svc.http.get(svc.url + "/readyz") as r:
            assert r.status == 503
        proxy.open = True
        status, _, body = await svc.post_report(ws["token"], report_870)
        assert status == 200, body
    finally:
        await stop_service(svc)
        await proxy.close()


async def test_quarantine_listing_shows_paths_and_reasons_only(service, report_870):
    ws = await service.register()
    report_870["activeUsers"] = -3
    status, _, _ = await service.post_report(ws["token"], report_870)
    assert status == 422
    await service.post_report(ws["token"], b"{not json")
    async with service.http.get(
        f"{service.url}/api/v1/quarantine", params={"workspace_id": ws["workspace_id"]}, headers=admin_headers()
    ) as r:
        assert r.status == 200
        items = (await r.json())["items"]
    assert [i["reason"] for i in items] == ["malformed_body", "schema_violation"]
    assert items[1]["violations"][0]["path"] == "activeUsers"
    assert set(items[1]["violations"][0]) == {"path", "reason"}
    assert len(items[1]["body_sha256"]) == 64
    async with service.http.get(
        f"{service.url}/api/v1/quarantine", params={"limit": "0"}, headers=admin_headers()
    ) as r:
        assert r.status == 400
        assert (await r.json())["violations"][0]["path"] == "limit"
    async with service.http.get(f"{service.url}/api/v1/quarantine", headers={"Authorization": f"Bearer {ws['token']}"}) as r:
        assert r.status == 403


async def test_published_schema_and_catalogue(service, report_870):
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    async with service.http.get(service.url + "/api/v1/schema") as r:
        assert r.status == 200
        served = await r.json()
    assert served == orjson.loads((root / "schemas" / "report.schema.json").read_bytes())
    async with service.http.get(service.url + "/api/v1/schema/fields") as r:
        assert r.status == 200
        catalogue = await r.json()
    paths = {f["path"]: f for f in catalogue["fields"]}
    assert paths["activeUsers"]["category"] == "billing"
    assert paths["uniqueId"]["class"] == "identifying"


async def test_counts_up_to_2_pow_53_are_stored_and_rolled_up(service, db, report_870):
    ws = await service.register()
    report_870["activeUsers"] = 2**31  # beyond a PostgreSQL integer: the rollups are bigint
    status, _, body = await service.post_report(ws["token"], report_870)
    assert status == 200, body
    seats = await db.fetchval("SELECT active_users FROM daily_snapshots WHERE workspace_id = $1::uuid", ws["workspace_id"])
    assert seats == 2147483648
    report_870["_id"] = "too-big"
    report_870["activeUsers"] = 2**53  # more than a JavaScript number holds exactly
    status, _, body = await service.post_report(ws["token"], report_870)
    assert status == 422
    assert {"path": "activeUsers", "reason": "number_too_large"} in [
        {k: v[k] for k in ("path", "reason")} for v in orjson.loads(body)["violations"]]


async def test_operator_tokens_are_listed_by_reference_and_revoked(service):
    async with service.http.post(
        f"{service.url}/api/v1/operator-tokens", json={"roles": ["compliance"], "label": "night shift"},
        headers=admin_headers(),
    ) as r:
        created = await r.json()
    headers = {"Authorization": f"Bearer {created['token']}"}
    async with service.http.get(f"{service.url}/api/v1/compliance", headers=headers) as r:
        assert r.status == 200
    async with service.http.get(f"{service.url}/api/v1/operator-tokens", headers=admin_headers()) as r:
        listed = {t["ref"]: t for t in (await r.json())["items"]}
    assert listed[created["ref"]]["label"] == "night shift" and "token" not in listed[created["ref"]]
    async with service.http.post(
        f"{service.url}/api/v1/operator-tokens/{created['ref']}/revoke", headers=admin_headers()
    ) as r:
        assert r.status == 200
    async with service.http.get(f"{service.url}/api/v1/compliance", headers=headers) as r:
        assert r.status == 401
    async with service.http.post(f"{service.url}/api/v1/operator-tokens/000000000000/revoke", headers=admin_headers()) as r:
        assert r.status == 404


async def test_token_cache_stops_when_revocations_can_no_longer_be_heard(database_url, tmp_path, db, report_870):
    """A revocation written without NOTIFY (as if the notification were lost) is
    served from the cache while the listener lives; once the listener connection
    is gone the process stops caching and the revocation holds at once."""
    svc = await start_service(make_settings(tmp_path), database_url)
    try:
        ws = await svc.register()
        assert (await svc.post_report(ws["token"], report_870))[0] == 200  # now cached
        await db.execute("UPDATE tokens SET revoked_at = now() WHERE workspace_id = $1::uuid", ws["workspace_id"])
        report_870["_id"] = "cached-1"
        assert (await svc.post_report(ws["token"], report_870))[0] == 200  # cached: no NOTIFY was sent
        killed = await db.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN %collector_tokens%' AND pid <> pg_backend_pid()"
        )
        assert killed >= 1
        for _ in range(50):  # the loss reaches the process asynchronously
            report_870["_id"] = f"after-loss-{_}"
            status = (await svc.post_report(ws["token"], report_870))[0]
            if status == 401:
                break
            await asyncio.sleep(0.05)
        assert status == 401
    finally:
        await stop_service(svc)
