"""Retention: raw report data, rollups and the quarantine leave on schedule.

Limits (``collector.config``): raw report data (``reports``, ``report_data``,
``report_keys``) is kept ``retention_days`` (400: a year plus a month to re-run
billing), the rollups ``daily_snapshots`` and ``monthly_usage``
``rollup_retention_days`` (3650: billing records), the quarantine
``quarantine_retention_days`` (90). ``term_usage`` and ``compliance_state``
are current state (one row per workspace) and stay; the audit trail stays.

Raw data is partitioned by the record's ``createdAt``, one partition per UTC
month (``sql/0007_lifecycle.sql``; made from the previous month to
``AHEAD_MONTHS`` ahead), and expires by whole months: a month is
dropped once all of it is older than ``retention_days`` (so a record is kept
at least ``retention_days`` and at most ``retention_days`` + 31 days, plus
the time to the next daily run). A DEFAULT partition holds records older
than the first month (late ones, or sent before the collector ran); those
older than the floor are deleted, and the partition rewritten. The floor F, ``retained_since('raw')``:
everything dated before F is gone, everything since is kept; F = the
horizon (now - retention_days), or the first day of the horizon's month when
that month has a partition. The ingest writer stores no raw data dated
before F (such a record is folded into the rollups only: its raw data has
expired already).

Order of a run (each step its own transaction, so ingest never waits behind
a long one): create the partitions ahead; move F forward; detach the
months before F (``lock_timeout`` 2 s, retried; ingest waits for at most
that, the detach itself takes milliseconds), then drop them (no lock ingest
needs);
delete the ``report_keys`` before F (the count of reports removed) and the
DEFAULT partitions' rows; delete rollups and quarantine rows past their
limits; rewrite what ``pending_rewrites`` holds (``datakeys.shred``).
Rollup and quarantine rows are deleted (then pruned by autovacuum): they
hold counts, dates, paths and reasons, not report values.

``serve`` runs it daily, once across all its workers and all instances
sharing the database (``collector.lifecycle.maintenance``);
``collector retention run`` runs it now.
"""

from __future__ import annotations

import asyncio
import time as time_module
from datetime import date, datetime, time, timedelta, timezone

import asyncpg
import orjson

from collector.accounts import datakeys
from collector.config import Settings
from collector.ops import log

AHEAD_MONTHS = 2  # partitions made ahead of the current month


def month_start(d: date) -> date:
    return d.replace(day=1)


def add_months(d: date, n: int) -> date:
    y, m = divmod(d.month - 1 + n, 12)
    return date(d.year + y, m + 1, 1)


def _midnight(d: date) -> datetime:
    return datetime.combine(d, time.min, timezone.utc)


async def ensure_partitions(conn: asyncpg.Connection, retention_days: int, now: datetime) -> list[str]:
    """Make the monthly partitions from the month before ``now``'s (or the
    horizon's or the raw floor's month, if later) to ``AHEAD_MONTHS`` after
    ``now``'s; returns the months made (``YYYY-MM``). Older months get no
    partition: their records (late ones, or sent before the collector ran)
    go to the DEFAULT partition. Retries a lock wait (2 s each) 5 times,
    then raises asyncpg.LockNotAvailableError."""
    floor = await conn.fetchval("SELECT since FROM retained_since WHERE kind = 'raw'")
    this_month = month_start(now.date())
    first = max(add_months(this_month, -1), month_start((now - timedelta(days=retention_days)).date()))
    if floor is not None and floor.date() > first:
        first = floor.date()
    last = add_months(this_month, AHEAD_MONTHS)
    for attempt in range(5):
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL lock_timeout = '2s'")
                made = await conn.fetchval("SELECT ensure_report_partitions($1, $2)", month_start(first), last)
            if made:
                log.info("partitions_created", months=made)
            return list(made)
        except asyncpg.LockNotAvailableError:
            if attempt == 4:
                raise
            await asyncio.sleep(1)
    return []


async def raw_floor(conn: asyncpg.Connection, retention_days: int, now: datetime) -> datetime:
    """The floor a run with ``retention_days`` moves ``retained_since('raw')`` to
    (see the module docstring)."""
    horizon = now - timedelta(days=retention_days)
    oldest = await conn.fetchval("SELECT oldest_report_partition()")
    start = _midnight(month_start(horizon.date()))
    return start if oldest is not None and _midnight(oldest) <= start else horizon


async def drop_expired(conn: asyncpg.Connection) -> list[str]:
    """Drop the months wholly before ``retained_since('raw')``; returns the
    months (``YYYY-MM``). First detached (SQL ``detach_report_partitions``:
    the parents' lock for milliseconds; not granted in 2 s: retried 5 times,
    then left to the next call; nothing dated before the floor is read or
    written meanwhile), then each detached table dropped in a transaction of
    its own, so the time the file system takes to free them (proportional to
    their size) holds no lock ingest needs. Tables a failed run left detached
    are dropped too."""
    floor = await conn.fetchval("SELECT since FROM retained_since WHERE kind = 'raw'")
    months: list[str] = []
    if floor is not None:
        for attempt in range(5):
            try:
                async with conn.transaction():
                    await conn.execute("SET LOCAL lock_timeout = '2s'")
                    months = list(await conn.fetchval("SELECT detach_report_partitions($1)", floor))
                break
            except asyncpg.LockNotAvailableError:
                if attempt == 4:
                    log.warning("partitions_not_dropped", why="lock not granted; next maintenance check")
                else:
                    await asyncio.sleep(1 + attempt)
    for (name,) in await conn.fetch("SELECT detached_report_partitions()"):  # ^(reports|report_data)_y....m..$
        # its foreign key first (a moment's lock on workspaces), so the drop
        # locks nothing but the table itself while its files are freed
        for (fk,) in await conn.fetch(
                "SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'f'", name):
            await conn.execute(f'ALTER TABLE "{name}" DROP CONSTRAINT "{fk}"')
        await conn.execute(f'DROP TABLE "{name}"')
    return months


async def _advance(conn, kind: str, since: datetime) -> datetime:
    """Move ``retained_since(kind)`` forward to ``since`` (never back); the value now."""
    return await conn.fetchval(
        "INSERT INTO retained_since (kind, since) VALUES ($1, $2) ON CONFLICT (kind) DO UPDATE"
        " SET since = greatest(retained_since.since, excluded.since) RETURNING since",
        kind, since,
    )


async def expire_raw(conn: asyncpg.Connection, floor: datetime) -> tuple[datetime, list[str], int]:
    """Raw data dated before ``floor`` leaves: the floor moves (``retained_since``),
    the months wholly before it are dropped, then their ``report_keys`` and
    the DEFAULT partitions' rows before it are deleted (those partitions
    noted for a rewrite). Returns (the floor now, months dropped, reports
    removed). Outside a transaction; also what ``bench/retention_bench.py`` times."""
    floor = await _advance(conn, "raw", floor)
    dropped = await drop_expired(conn)
    async with conn.transaction():
        reports = _count(await conn.execute("DELETE FROM report_keys WHERE created_at < $1", floor))
        in_default = _count(await conn.execute("DELETE FROM reports_default WHERE created_at < $1", floor))
        in_default += _count(await conn.execute("DELETE FROM report_data_default WHERE created_at < $1", floor))
        if in_default:  # a DELETE leaves the bytes in the file: rewrite these (small) partitions
            await datakeys.mark_rewrite(conn, "reports_default", "report_data_default")
    return floor, dropped, reports


def _count(status: str) -> int:
    return int(status.split()[-1])


async def run(conn: asyncpg.Connection, settings: Settings, now: datetime) -> dict:
    """Apply retention now (outside a transaction). Returns what it did, never a value:

    ``{"ran_at", "partitions_created": [YYYY-MM], "raw": {"floor",
    "partitions_dropped": [YYYY-MM], "reports": n}, "rollups": {"floor",
    "daily_snapshots": n, "monthly_usage": n}, "quarantine": {"floor", "rows": n},
    "rewritten": [tables]}`` (floors ISO 8601: everything before is gone;
    ``reports``: reports removed with their data). Records the run in
    ``maintenance_runs`` (task ``retention``)."""
    started = time_module.monotonic()
    await conn.execute(
        "INSERT INTO maintenance_runs (task, started_at) VALUES ('retention', $1)"
        " ON CONFLICT (task) DO UPDATE SET started_at = excluded.started_at", now,
    )
    created = await ensure_partitions(conn, settings.retention_days, now)
    floor, dropped, reports = await expire_raw(conn, await raw_floor(conn, settings.retention_days, now))

    rollup_day = (now - timedelta(days=settings.rollup_retention_days)).date()
    async with conn.transaction():
        rollup_floor = await _advance(conn, "rollups", _midnight(rollup_day))
        daily = _count(await conn.execute("DELETE FROM daily_snapshots WHERE day < $1", rollup_floor.date()))
        monthly = _count(await conn.execute(
            "DELETE FROM monthly_usage WHERE (month + interval '1 month')::date <= $1", rollup_floor.date()))
    async with conn.transaction():
        q_floor = await _advance(conn, "quarantine", now - timedelta(days=settings.quarantine_retention_days))
        quarantined = _count(await conn.execute("DELETE FROM quarantine WHERE received_at < $1", q_floor))

    rewritten = await datakeys.shred(conn)
    removed = {
        "ran_at": now.isoformat(),
        "partitions_created": created,
        "raw": {"floor": floor.isoformat(), "partitions_dropped": dropped, "reports": reports},
        "rollups": {"floor": rollup_floor.date().isoformat(), "daily_snapshots": daily, "monthly_usage": monthly},
        "quarantine": {"floor": q_floor.isoformat(), "rows": quarantined},
        "rewritten": rewritten,
    }
    # finished: ``now`` plus the time the run took (the schedule's clock is ``now``)
    await conn.execute(
        "UPDATE maintenance_runs SET finished_at = $1, removed = $2::jsonb WHERE task = 'retention'",
        now + timedelta(seconds=time_module.monotonic() - started), orjson.dumps(removed).decode(),
    )
    log.info("retention_applied", **{k: v for k, v in removed.items() if k != "ran_at"})
    return removed
