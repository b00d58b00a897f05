"""Retention (issue 14): monthly partitions made ahead and dropped, raw data
gone at its limit, rollups kept until theirs, the quarantine at its own;
billing says when a period's data expired; the daily run happens once.

Its own database: retention moves floors that the rest of the suite (records
dated from 2024) must not see. Runs are given their ``now``, so the dates
below are fixed and the figures hand-computed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import orjson
import pytest

from collector.lifecycle import maintenance, retention
from tests.conftest import (
    _with_database,
    get_json,
    make_report,
    make_settings,
    operator_headers,
    post_ok,
    start_service,
    stop_service,
)


@pytest.fixture(scope="module")
async def own(pg_server_url, tmp_path_factory):
    """(service, connection, data dir) on a fresh database of its own."""
    name = "collector_retention_" + secrets.token_hex(6)
    admin = await asyncpg.connect(pg_server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = _with_database(pg_server_url, name)
    data_dir = tmp_path_factory.mktemp("retention")
    svc = await start_service(make_settings(data_dir), url)
    conn = await asyncpg.connect(url)
    yield svc, conn, data_dir
    await conn.close()
    await stop_service(svc)
    admin = await asyncpg.connect(pg_server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def limits(data_dir, raw: int, rollups: int, quarantine: int = 30):
    return make_settings(data_dir, retention_days=raw, rollup_retention_days=rollups,
                         quarantine_retention_days=quarantine)


async def months(conn, parent: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = $1::regclass ORDER BY 1", parent)
    return [r[0].removeprefix(parent + "_") for r in rows]


def month_names(first: str, last: str) -> list[str]:
    """['y2026m11', ...] from YYYY-MM to YYYY-MM inclusive."""
    y, m = map(int, first.split("-"))
    out = []
    while f"{y:04d}-{m:02d}" <= last:
        out.append(f"y{y:04d}m{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def shift(ym: str, n: int) -> str:
    y, m = map(int, ym.split("-"))
    y, m = divmod(y * 12 + m - 1 + n, 12)
    return f"{y:04d}-{m + 1:02d}"


async def relation_files(conn, *relations: str) -> list[Path] | None:
    """The data files (main fork and TOAST) of ``relations``; None when PostgreSQL's
    data directory cannot be read here (the file checks are then left out)."""
    try:
        directory = Path(await conn.fetchval("SHOW data_directory"))
        paths = await conn.fetch(
            "SELECT pg_relation_filepath(c.oid) AS main, pg_relation_filepath(nullif(c.reltoastrelid, 0)) AS toast"
            " FROM pg_class c WHERE c.relname = ANY($1::text[])", list(relations))
        files = [directory / p for r in paths for p in (r["main"], r["toast"]) if p]
        files[0].stat()
        (directory / "base").iterdir().__next__()
    except (asyncpg.PostgresError, OSError, IndexError):
        return None
    return files


async def test_partitions_are_made_ahead_at_start(own):
    _, conn, _ = own
    this = datetime.now(timezone.utc).strftime("%Y-%m")
    expected = month_names(shift(this, -1), shift(this, 2))  # the month before .. two ahead
    for parent in ("reports", "report_data"):
        have = await months(conn, parent)
        assert set(expected) <= set(have), (parent, have)
        assert "default" in have
    # a later "now" makes the next month ahead, and nothing else
    later = datetime.now(timezone.utc) + timedelta(days=62)
    made = await retention.ensure_partitions(conn, 36500, later)
    assert made == [m for m in [shift(later.strftime("%Y-%m"), k) for k in (-1, 0, 1, 2)]
                    if "y{}m{}".format(*m.split("-")) not in expected]
    assert set(month_names(shift(later.strftime("%Y-%m"), -1), shift(later.strftime("%Y-%m"), 2))) <= set(
        await months(conn, "reports"))


async def test_maintenance_runs_retention_once_across_processes(own):
    svc, conn, data_dir = own
    cfg = limits(data_dir, 36500, 36500, 36500)  # nothing to remove: only who runs, and when
    for _ in range(250):  # the service ran it at start, in the background
        if await conn.fetchval("SELECT finished_at FROM maintenance_runs WHERE task = 'retention'"):
            break
        await asyncio.sleep(0.02)
    assert await conn.fetchval("SELECT finished_at FROM maintenance_runs WHERE task = 'retention'") is not None
    other = await asyncpg.connect(svc.database_url)
    try:
        # another process holds the maintenance lock: this one skips the check
        await other.execute("SELECT pg_advisory_lock($1)", maintenance.MAINTENANCE_LOCK)
        assert await maintenance.check(conn, cfg) is None
        await other.execute("SELECT pg_advisory_unlock($1)", maintenance.MAINTENANCE_LOCK)
        # two processes at once: the retention runs once
        now = datetime.now(timezone.utc) + timedelta(days=2)
        results = await asyncio.gather(maintenance.check(conn, cfg, now), maintenance.check(other, cfg, now))
        assert sum(1 for r in results if r is not None and r["retention"] is not None) == 1
        # within a day of that run: no retention; a day later: again
        assert (await maintenance.check(conn, cfg, now + timedelta(hours=23)))["retention"] is None
        assert (await maintenance.check(conn, cfg, now + timedelta(hours=25)))["retention"] is not None
    finally:
        await other.close()


async def test_raw_data_expires_by_month_rollups_and_quarantine_at_their_own_limits(own, report_870):
    svc, conn, data_dir = own
    await conn.fetchval("SELECT ensure_report_partitions('2026-06-01', '2026-10-01')")
    ws = await svc.register("pro")
    wid, token = ws["workspace_id"], ws["token"]
    dates = ["2026-06-15", "2026-07-15", "2026-08-15", "2026-09-15", "2026-10-15"]
    answers = [await post_ok(svc, token, make_report(report_870, f"ret-{i}", f"{d}T12:00:00.000Z", users=11 + i))
               for i, d in enumerate(dates)]
    # older than the first month: in the DEFAULT partition
    await post_ok(svc, token, make_report(report_870, "ret-old", "2026-03-15T12:00:00.000Z", users=10))
    assert await conn.fetchval("SELECT count(*) FROM reports_default WHERE workspace_id = $1::uuid", wid) == 1
    bad = dict(report_870, activeUsers="many")
    for _ in range(2):
        assert (await svc.post_report(token, bad))[0] == 422
    billing = await operator_headers(svc, "billing")

    async def count(table: str) -> int:
        return await conn.fetchval(f"SELECT count(*) FROM {table} WHERE workspace_id = $1::uuid", wid)

    async def period(p: str) -> tuple[bool, bool, int | None]:
        body = await get_json(svc, f"/api/v1/billing/consumption?period={p}", billing)
        row = [w for w in body["workspaces"] if w["workspace_id"] == wid]
        return body["raw_data_expired"], body["rollups_expired"], row[0]["seats"] if row else None

    assert await period("2026-07") == (False, False, 12)

    files = await relation_files(conn, "reports_y2026m06", "report_data_y2026m06", "reports_default",
                                 "report_data_default")

    # Run 1 at 2026-10-20, raw 60 days: horizon 2026-08-21, its month has a
    # partition, so the floor is 2026-08-01: June and July are dropped, the
    # March record deleted from the DEFAULT partition (3 reports). Rollups
    # 120 days: days before 2026-06-22 (March 15, June 15), months wholly
    # before it (March). Quarantine 30 days: floor 2026-09-20, rows are newer.
    first = await retention.run(conn, limits(data_dir, 60, 120), datetime(2026, 10, 20, tzinfo=timezone.utc))
    assert first["raw"] == {"floor": "2026-08-01T00:00:00+00:00", "partitions_dropped": ["2026-06", "2026-07"],
                            "reports": 3}
    assert (first["rollups"]["floor"], first["rollups"]["daily_snapshots"], first["rollups"]["monthly_usage"]) == (
        "2026-06-22", 2, 1)
    assert first["quarantine"]["rows"] == 0
    assert {"reports_default", "report_data_default"} <= set(first["rewritten"])
    if files is not None:  # the dropped months' and the rewritten partitions' old files are gone
        await conn.execute("CHECKPOINT")
        assert [f for f in files if f.exists() and f.stat().st_size > 0] == []
    assert not {"y2026m06", "y2026m07"} & set(await months(conn, "reports"))
    assert not {"y2026m06", "y2026m07"} & set(await months(conn, "report_data"))
    assert [await count(t) for t in ("reports", "report_data", "report_keys")] == [3, 3, 3]
    assert [await count(t) for t in ("daily_snapshots", "monthly_usage", "quarantine")] == [4, 5, 2]
    # billing still answers July from the rollups, and says its raw data expired
    assert await period("2026-07") == (True, False, 12)
    assert await period("2026-09") == (False, False, 14)

    # A resend of a kept record is a duplicate with its receipt, even when its
    # createdAt now names another partition; one of an expired record is
    # folded into the rollups but no longer stored.
    again = await post_ok(svc, token, make_report(report_870, "ret-3", "2026-10-01T00:00:00.000Z", users=14))
    assert (again["outcome"], again["recordId"], again["statsToken"]) == (
        "duplicate", answers[3]["recordId"], answers[3]["statsToken"])
    late = await post_ok(svc, token, make_report(report_870, "ret-0", "2026-06-15T12:00:00.000Z", users=11))
    assert late["outcome"] == "accepted"
    assert await count("reports") == 3

    # Run 2 at 2027-01-10: raw floor 2026-11-01 (August to October dropped);
    # rollups before 2026-09-12: the July and August days (and the June day the
    # late record put back), June, July and August months; quarantine floor
    # 2026-12-11: both rows.
    second = await retention.run(conn, limits(data_dir, 60, 120), datetime(2027, 1, 10, tzinfo=timezone.utc))
    assert second["raw"] == {"floor": "2026-11-01T00:00:00+00:00",
                             "partitions_dropped": ["2026-08", "2026-09", "2026-10"], "reports": 3}
    assert (second["rollups"]["floor"], second["rollups"]["daily_snapshots"], second["rollups"]["monthly_usage"]) == (
        "2026-09-12", 3, 3)
    assert second["quarantine"]["rows"] == 2
    assert set(month_names("2026-12", "2027-03")) <= set(await months(conn, "reports"))
    assert [await count(t) for t in ("reports", "report_data", "report_keys")] == [0, 0, 0]
    assert [await count(t) for t in ("daily_snapshots", "monthly_usage", "quarantine")] == [2, 2, 0]
    assert await period("2026-10") == (True, False, 15)
    assert (await period("2026-07"))[:2] == (True, True)  # says so, rather than zeros
    # what each run removed is recorded (no value in it)
    removed = orjson.loads(await conn.fetchval("SELECT removed::text FROM maintenance_runs WHERE task = 'retention'"))
    assert removed["raw"] == second["raw"]


def test_cli_retention_run_prints_what_it_removed(own):
    svc, _, _ = own
    env = {**os.environ, "DATABASE_URL": svc.database_url, "COLLECTOR_LOG_LEVEL": "WARNING",
           "COLLECTOR_RETENTION_DAYS": "36500", "COLLECTOR_ROLLUP_RETENTION_DAYS": "36500",
           "COLLECTOR_QUARANTINE_RETENTION_DAYS": "36500"}
    out = subprocess.run([sys.executable, "-m", "collector", "retention", "run"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    done = orjson.loads(out.stdout)
    assert sorted(done) == ["partitions_created", "quarantine", "ran_at", "raw", "rewritten", "rollups"]
    # the floors only move forward: the earlier runs' stay
    assert (done["raw"]["floor"], done["raw"]["reports"], done["raw"]["partitions_dropped"]) == (
        "2026-11-01T00:00:00+00:00", 0, [])
    assert (done["rollups"]["daily_snapshots"], done["quarantine"]["rows"]) == (0, 0)
