"""Forgotten means unreadable on disk (issue 14): the test reads PostgreSQL's
data files (``SHOW data_directory``, ``base/<database oid>/``,
``pg_relation_filepath``) after a CHECKPOINT, on the server the suite uses
(the embedded one, or TEST_DATABASE_URL's when its files are readable: as
root on this machine). Skipped, saying why, when they are not readable.

The bound (README "Data lifecycle"): when the forgetting call returns. Report
data is never on disk in plain (sealed per workspace and category); the
call destroys the keys and rewrites the table of keys, so after it returns
and a CHECKPOINT the key bytes are in no data file of the database.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import admin_headers, make_report, post_ok

ROOMS = 918273645519  # planted in product_analytics (optional)
USERS = 987123654321  # planted in billing (contract): rolled up, and in compliance_state's JSON text


async def data_files(db) -> list[Path]:
    """Every file of the test database's directory after a CHECKPOINT; skips the test when unreadable."""
    try:
        directory = Path(await db.fetchval("SHOW data_directory"))
        oid = await db.fetchval("SELECT oid FROM pg_database WHERE datname = current_database()")
    except Exception as exc:  # not a superuser: no data_directory
        pytest.skip(f"cannot locate PostgreSQL's data files ({type(exc).__name__}: {exc})")
    base = directory / "base" / str(oid)
    try:
        files = [p for p in base.iterdir() if p.is_file()]
        files[0].read_bytes()[:1]
    except (PermissionError, FileNotFoundError, IndexError) as exc:
        pytest.skip(f"PostgreSQL's data files at {base} are not readable here ({type(exc).__name__}); "
                    "run as a user who can read them (root, or the server's own user)")
    await db.execute("CHECKPOINT")
    return [p for p in base.iterdir() if p.is_file()]


async def holding(db, needle: bytes) -> list[str]:
    """The data files (names) of the test database that contain ``needle``, after a CHECKPOINT."""
    found = []
    for p in await data_files(db):
        try:
            if needle in p.read_bytes():
                found.append(p.name)
        except FileNotFoundError:  # unlinked meanwhile
            pass
    return found


async def file_of(db, relation: str) -> str:
    return Path(await db.fetchval("SELECT pg_relation_filepath($1::regclass)", relation)).name


async def keys_of(db, workspace_id: str) -> dict[str, bytes]:
    rows = await db.fetch("SELECT category, key FROM data_keys WHERE workspace_id = $1::uuid", workspace_id)
    return {r["category"]: r["key"] for r in rows}


def planted(report: dict, record_id: str, users: int = USERS - 1) -> dict:
    r = make_report(report, record_id, "2026-08-03T12:10:31.265Z", users=users)
    r["totalRooms"] = ROOMS
    return r


async def test_opt_out_forgetting_leaves_no_readable_value_on_disk(service, db, report_870):
    ws = await service.register("enterprise")
    await post_ok(service, ws["token"], planted(report_870, "disk-opt-out"))
    keys = await keys_of(db, ws["workspace_id"])
    assert sorted(keys) == ["billing", "compliance", "operational", "product_analytics"]
    # sealed: the planted value was never written in plain; the keys are in data_keys' file
    assert await holding(db, str(ROOMS).encode()) == []
    keys_file = await file_of(db, "data_keys")
    for key in keys.values():
        assert keys_file in await holding(db, key)

    async with service.http.put(f"{service.url}/api/v1/workspaces/{ws['workspace_id']}/opt-out",
                                json={"opt_out": True}, headers=admin_headers()) as r:
        assert r.status == 200
        assert (await r.json())["reports_affected"] == 1
    # returned: the optional categories' keys are in no file any more; the contract ones are
    for category in ("operational", "product_analytics"):
        assert await holding(db, keys[category]) == [], category
    keys_file = await file_of(db, "data_keys")
    for category in ("billing", "compliance"):
        assert await holding(db, keys[category]) == [keys_file]
    assert await holding(db, str(ROOMS).encode()) == []


async def test_erasure_leaves_no_readable_value_on_disk(service, db, report_870):
    ws = await service.register("enterprise")
    await post_ok(service, ws["token"], planted(report_870, "disk-erasure", USERS))
    keys = await keys_of(db, ws["workspace_id"])
    assert len(keys) == 4
    # the planted seats count is in the compliance state's JSON text, nowhere else in plain
    assert await holding(db, f'"value":{USERS}'.encode()) == [await file_of(db, "compliance_state")]
    async with service.http.delete(f"{service.url}/api/v1/workspaces/{ws['workspace_id']}",
                                   headers=admin_headers()) as r:
        assert r.status == 200
    for category, key in keys.items():
        assert await holding(db, key) == [], category
    assert await holding(db, str(USERS).encode()) == []
    assert await holding(db, str(ROOMS).encode()) == []
