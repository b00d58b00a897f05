"""Fields outside the catalogue (issue 9, part 3): dropped unread, the rest stored,
listed in the answer and in the catalogue drift report; ``COLLECTOR_UNKNOWN_FIELDS=refuse``
keeps the strict 422. Gate-level checks first, then the real service and database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import string
import subprocess
import sys

import orjson
import pytest
import structlog
from catalogue_helpers import load, maximal_record
from conftest import admin_headers, get_json, make_settings, operator_headers, start_service, stop_service

from collector.accounts import datakeys
from collector.gate import SchemaViolation, check_report
from collector.gate.fastpath import MAX_NAMED_UNKNOWN

#: Values planted under unknown keys: none may reach a table, a log line or an answer.
SECRETS = ("SECRETV1", "SECRETV2", "SECRETV3", "llm.acme-corp.example", "jane.doe@acme-corp.example",
           "987654321", "987654322", "Jane Doe", "promptsByUserZq", "innerSettingZq")


@contextlib.contextmanager
def captured_logs():
    """Every log event of the block (whatever level an earlier test configured)."""
    old = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with structlog.testing.capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(**old)


def _suffix() -> str:
    return "".join(random.choice(string.ascii_letters) for _ in range(8))


def newer_record(s: str, *, record_id: str = "6c0000000000000000000001", version: str = "8.9.0") -> tuple[dict, dict]:
    """The real 8.7.0 record as a release newer than the catalogue would send it, and
    the expected ``{path: [JSON types]}`` of its unknown keys (``s``: a name suffix)."""
    doc = load("report-8.7.0.json")
    doc["_id"], doc["version"] = record_id, version
    doc[f"aiAssistant{s}"] = {"provider": "acme-llm-SECRETV1", "endpoint": "https://llm.acme-corp.example/v1",
                              "promptsByUserZq": {"jane.doe@acme-corp.example": 987654321}}
    doc[f"totalAiPrompts{s}"] = 987654322
    doc["os"]["cpus"][0][f"vendor{s}"] = "AuthenticAMD-SECRETV2"
    doc["Jane Doe Workspace"] = "jane.doe@acme-corp.example"  # a key that is not a code identifier
    doc["settings"][f"newSetting{s}"] = None
    doc["settings"][f"newGroup{s}"] = {"innerSettingZq": True}
    doc["wizard"][f"newWizardField{s}"] = "Acme Corp SECRETV3"  # inside an identifying object
    expected = {f"aiAssistant{s}": ["object"], f"totalAiPrompts{s}": ["integer"], f"os.cpus[].vendor{s}": ["string"],
                "{}": ["string"], f"settings.newSetting{s}": ["null"], f"settings.newGroup{s}": ["object"],
                f"wizard.newWizardField{s}": ["string"]}
    return doc, expected


# --- the gate ------------------------------------------------------------------------------------

def test_unknown_keys_are_dropped_unread_and_listed():
    doc, expected = newer_record("Ab")
    report = check_report(doc)
    assert dict((p, list(t)) for p, t in report.unknown_fields) == expected
    assert [p for p, _t in report.unknown_fields] == sorted(expected)
    clean = check_report(load("report-8.7.0.json"))
    assert report.categories["billing"] == clean.categories["billing"]
    assert set(report.categories["product_analytics"]) == set(clean.categories["product_analytics"])
    text = orjson.dumps([report.categories, report.unknown_fields, report.dropped]).decode()
    for secret in SECRETS:
        assert secret not in text


def test_a_path_ends_at_the_outermost_unknown_key():
    doc = load("report-8.7.0.json")
    doc["brandNewGroup"] = {"nested": {"deeper": {"Jane Doe": 1}}, "list": [{"x": 1}]}
    doc["services"]["oauth"]["custom"] = {"Acme SSO": {"enabled": True, "users": 2, "clientSecretName": "x"}}
    paths = [p for p, _t in check_report(doc).unknown_fields]
    assert paths == ["brandNewGroup", "services.oauth.custom.{}.clientSecretName"]


def test_names_that_are_not_code_identifiers_appear_as_braces():
    doc = load("report-8.7.0.json")
    for key in ("Jane Doe", "jane.doe@acme-corp.example", "5f8d0d55b54764421b7156c9", "x7Gh2kLmQ9pRt5Vw", "a" * 65):
        doc[key] = 1
    doc["totalE2EEncryptedRooms"] = 3  # digits in a field name are fine
    assert check_report(doc).unknown_fields == (("totalE2EEncryptedRooms", ("integer",)), ("{}", ("integer",)))


def test_unknown_names_are_bounded_per_record():
    doc = load("report-8.7.0.json")
    for i in range(MAX_NAMED_UNKNOWN * 3):
        doc[f"field{''.join(random.choice(string.ascii_lowercase) for _ in range(6))}{i}"] = i
    unknown = check_report(doc).unknown_fields
    assert len(unknown) == MAX_NAMED_UNKNOWN + 1 and unknown[-1] == ("{}", ("integer",))


def test_strict_mode_refuses_unknown_keys_and_shows_only_catalogue_names():
    doc, _ = newer_record("Ab")
    doc["apps"]["activeUsers"] = 1  # a Rocket.Chat field name in the wrong place
    with pytest.raises(SchemaViolation) as info:
        check_report(doc, unknown="refuse")
    found = {(v.path, v.reason) for v in info.value.violations}
    assert ("{}", "unknown_field") in found and ("apps.activeUsers", "unknown_field") in found
    assert ("os.cpus[0].{}", "unknown_field") in found
    assert all(secret not in str(info.value) for secret in SECRETS + ("aiAssistantAb",))


def test_a_known_field_with_a_bad_value_is_still_refused_among_unknown_keys():
    doc, _ = newer_record("Ab")
    doc["activeUsers"] = "many"
    with pytest.raises(SchemaViolation) as info:
        check_report(doc)
    assert [(v.path, v.reason) for v in info.value.violations] == [("activeUsers", "expected_integer")]


def test_unknown_keys_in_long_lists_are_found():
    doc = maximal_record()
    doc["os"]["cpus"] = [dict(doc["os"]["cpus"][0]) for _ in range(100)]
    doc["os"]["cpus"][77]["vendorZ"] = "x"
    assert check_report(doc).unknown_fields == (("os.cpus[].vendorZ", ("string",)),)
    with pytest.raises(SchemaViolation) as info:  # strict: named past the first chunk of items too
        check_report(doc, unknown="refuse")
    assert [(v.path, v.reason) for v in info.value.violations] == [("os.cpus[77].{}", "unknown_field")]


# --- the service -----------------------------------------------------------------------------------

async def _all_tables_text(db) -> str:
    """Every row of every table of the database, as text (what pg_dump would hold)."""
    tables = await db.fetch("SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS t"
                            " FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
                            " AND table_schema NOT IN ('pg_catalog', 'information_schema')")
    parts = []
    for row in tables:
        parts.append(await db.fetchval(f"SELECT coalesce(string_agg(x::text, E'\\n'), '') FROM {row['t']} x"))
    return "\n".join(parts)


async def _drift(service, suffix: str) -> dict[str, dict]:
    items = (await get_json(service, "/api/v1/catalogue/drift", admin_headers()))["items"]
    return {i["path"]: i for i in items if suffix in i["path"] or i["path"] == "{}"}


async def test_a_record_of_a_newer_release_is_accepted_without_its_unknown_values(service, db):
    s = _suffix()
    doc, expected = newer_record(s)
    ws = await service.register()
    with captured_logs() as logs:
        status, _, body = await service.post_report(ws["token"], doc)
    assert status == 200, body
    answer = orjson.loads(body)
    assert answer["outcome"] == "accepted" and answer["statsToken"]
    assert answer["unknown_fields_dropped"] == sorted(expected)
    line = next(e for e in logs if e["event"] == "report_unknown_fields_dropped")
    assert line["paths"] == sorted(expected) and line["rc_version"] == "8.9.0"
    stored = await _all_tables_text(db)
    for secret in SECRETS:
        assert secret not in body.decode(), secret
        assert secret not in repr(logs), secret
        assert secret not in stored, secret
    # the rest is stored as usual (report data is sealed: read its rollup)
    assert await db.fetchval("SELECT count(*) FROM report_data WHERE report_id = $1::uuid", answer["recordId"]) == 1
    assert await db.fetchval("SELECT active_users FROM daily_snapshots WHERE workspace_id = $1::uuid",
                             ws["workspace_id"]) == doc["activeUsers"]

    drift = await _drift(service, s)
    for path, types in expected.items():
        item = drift[path]
        if path == "{}":  # shared by every test that sends such a key
            assert "string" in item["json_types"] and item["reports"] >= 1
            continue
        assert item["json_types"] == types and item["rc_versions"] == ["8.9.0"] and item["reports"] == 1, item
        assert item["first_seen"] == item["last_seen"] and item["in_catalogue"] is False
    assert not any("promptsByUserZq" in p or "innerSettingZq" in p for p in drift)  # never below an unknown key

    # the same record again: a duplicate, not counted twice
    status, _, body = await service.post_report(ws["token"], doc)
    assert status == 200 and orjson.loads(body)["outcome"] == "duplicate"
    assert orjson.loads(body)["unknown_fields_dropped"] == sorted(expected)
    assert (await _drift(service, s))[f"aiAssistant{s}"]["reports"] == 1

    # another record of a later patch, the counter now a float
    later, _ = newer_record(s, record_id="6c0000000000000000000002", version="8.9.1")
    later[f"totalAiPrompts{s}"] = 1.5
    assert (await service.post_report(ws["token"], later))[0] == 200
    drift = await _drift(service, s)
    item = drift[f"totalAiPrompts{s}"]
    assert item["json_types"] == ["integer", "number"] and item["rc_versions"] == ["8.9.0", "8.9.1"]
    assert item["reports"] == 2 and item["first_seen"] < item["last_seen"]
    rows = await db.fetch("SELECT rc_version, reports FROM catalogue_drift WHERE path = $1 ORDER BY 1",
                          f"totalAiPrompts{s}")
    assert [(r["rc_version"], r["reports"]) for r in rows] == [("8.9.0", 1), ("8.9.1", 1)]


async def test_concurrent_batches_with_and_without_drift(service, db, report_870):
    s = _suffix()
    ws = await service.register()
    docs = []
    for i in range(24):
        doc = dict(report_870, _id=f"drift-batch-{s}-{i}")
        if i % 2:
            doc[f"batchField{s}"] = i
        docs.append(doc)
    results = await asyncio.gather(*(service.post_report(ws["token"], d) for d in docs))
    assert [r[0] for r in results] == [200] * 24
    assert all(orjson.loads(r[2])["unknown_fields_dropped"] == ([f"batchField{s}"] if i % 2 else [])
               for i, r in enumerate(results))
    assert (await _drift(service, s))[f"batchField{s}"]["reports"] == 12
    stored = await db.fetchval("SELECT count(*) FROM reports WHERE workspace_id = $1::uuid", ws["workspace_id"])
    assert stored == 24


async def test_drift_report_needs_the_admin_role(service):
    async with service.http.get(service.url + "/api/v1/catalogue/drift") as r:
        assert r.status == 401
    await get_json(service, "/api/v1/catalogue/drift", await operator_headers(service, "billing"), status=403)


async def test_catalogue_drift_command(database_url, service):
    s = _suffix()
    doc, _ = newer_record(s, record_id=f"cli-{s}")
    ws = await service.register()
    assert (await service.post_report(ws["token"], doc))[0] == 200
    env = {**os.environ, "DATABASE_URL": database_url, "COLLECTOR_LOG_LEVEL": "WARNING"}
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "collector", "catalogue", "drift"],
                                  env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    items = {i["path"]: i for i in orjson.loads(out.stdout)}
    assert items[f"totalAiPrompts{s}"]["json_types"] == ["integer"]
    assert items[f"totalAiPrompts{s}"]["rc_versions"] == ["8.9.0"]
    for secret in SECRETS:
        assert secret not in out.stdout


async def test_strict_setting_refuses_unknown_fields(database_url, tmp_path, db):
    svc = await start_service(make_settings(tmp_path, unknown_fields="refuse"), database_url)
    try:
        s = _suffix()
        doc, _ = newer_record(s, record_id=f"strict-{s}")
        doc["apps"]["activeUsers"] = 1  # a Rocket.Chat field name in the wrong place
        ws = await svc.register()
        status, _, body = await svc.post_report(ws["token"], doc)
        assert status == 422 and b"statsToken" not in body
        answer = orjson.loads(body)
        assert answer["error"] == "schema_violation"
        paths = {v["path"] for v in answer["violations"] if v["reason"] == "unknown_field"}
        assert paths == {"{}", "apps.activeUsers", "os.cpus[0].{}", "settings.{}", "wizard.{}"}
        for secret in SECRETS + (s,):
            assert secret not in body.decode()
        row = await db.fetchval("SELECT violations::text FROM quarantine WHERE workspace_id = $1::uuid",
                                ws["workspace_id"])
        assert "apps.activeUsers" in row and s not in row and "Jane" not in row
        assert await db.fetchval("SELECT count(*) FROM catalogue_drift WHERE path LIKE '%' || $1 || '%'", s) == 0
        assert await db.fetchval("SELECT count(*) FROM reports WHERE workspace_id = $1::uuid", ws["workspace_id"]) == 0
    finally:
        await stop_service(svc)


async def test_resent_record_with_nulls_and_folded_enumerations_is_stored(service, db, report_870):
    """A resent record carries null for keys a fresh one omits; free-text enumerations fold."""
    ws = await service.register()
    report_870["abacEnabled"] = None
    report_870["totalOTR"] = None
    report_870["activeGuests"] = None
    report_870["deploy"]["method"] = "my-own-installer"
    report_870["deploy"]["platform"] = "Acme Corp production cluster"
    report_870["enterprise"] = {"modules": ["auditing", "acme-external-module"], "tags": []}
    status, _, body = await service.post_report(ws["token"], report_870)
    assert status == 200, body
    answer = orjson.loads(body)
    assert answer["unknown_fields_dropped"] == []
    data = await _stored(db, ws["workspace_id"], answer["recordId"])
    operational, compliance = data["operational"], data["compliance"]
    assert operational["deploy.method"] == "other" and operational["deploy.platform"] == "other"
    assert compliance["enterprise.modules"] == ["auditing", "other"]
    assert data["billing"]["activeGuests"] is None
    snapshot = await db.fetchrow("SELECT * FROM daily_snapshots WHERE workspace_id = $1::uuid", ws["workspace_id"])
    assert snapshot["active_users"] == report_870["activeUsers"] and snapshot["active_guests"] is None
    stored = await _all_tables_text(db)
    assert "my-own-installer" not in stored and "Acme Corp production" not in stored and "acme-external" not in stored


async def _stored(db, workspace_id: str, report_id: str) -> dict:
    """A stored report's kept categories, unsealed with the workspace's data keys."""
    from uuid import UUID

    row = await db.fetchrow("SELECT * FROM report_data WHERE report_id = $1::uuid", report_id)
    keys = await datakeys.load(db, UUID(workspace_id))
    return {cat: datakeys.unseal(keys.get(cat), UUID(report_id), cat, row[cat])
            for cat in ("billing", "compliance", "operational", "product_analytics")}


async def test_an_8_8_record_with_the_abac_fields_is_stored(service, db):
    ws = await service.register()
    status, _, body = await service.post_report(ws["token"], load("abac-8.8.1.json"))
    assert status == 200, body
    answer = orjson.loads(body)
    assert answer["outcome"] == "accepted" and answer["unknown_fields_dropped"] == []
    pa = (await _stored(db, ws["workspace_id"], answer["recordId"]))["product_analytics"]
    assert (pa["abacEnabled"], pa["abacTotalAttributes"], pa["abacTotalAttributeValues"], pa["abacRoomsEnrolled"]) == (
        True, 4, 17, 9)
    assert await db.fetchval("SELECT rc_version FROM reports WHERE report_id = $1::uuid", answer["recordId"]) == "8.8.1"
