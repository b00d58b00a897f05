"""Benchmark: a month's billing report and the full compliance listing at scale.

Seeds 100,000 workspaces x 365 daily snapshots (2026-01-01 .. 2026-12-31)
directly into the rollup tables with generate_series, derives monthly_usage,
term_usage and compliance_state from them in SQL, then times, through the
functions the API uses (median of 5 runs each):
  - billing.consumption(period=2026-11)  (JSON shape; also the CSV)
  - compliance.list_compliance()          (every workspace)
and, for information, the orjson serialisation of each answer.

    uv run python bench/billing_bench.py [--workspaces 100000] [--days 365] [--keep]

Server: BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres);
the benchmark uses its own database ``collector_bench`` (dropped first, and at
the end unless --keep).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from datetime import date, datetime, timezone
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from collector import billing, compliance, db

DB_NAME = "collector_bench"


def with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


async def seed(conn: asyncpg.Connection, n_ws: int, n_days: int) -> None:
    steps = [
        ("workspaces", f"""
            INSERT INTO workspaces (workspace_id, plan, created_at)
            SELECT md5('ws' || i)::uuid, (ARRAY['community','starter','pro','enterprise'])[1 + i % 4],
                   '2025-12-31T00:00:00Z'
            FROM generate_series(1, {n_ws}) i"""),
        ("contracts", """
            INSERT INTO contracts (workspace_id, plan, term_start, term_end, seats, mac_packs)
            SELECT workspace_id, plan, '2026-01-01', '2026-12-31',
                   CASE WHEN plan IN ('pro', 'enterprise') THEN 100 END,
                   CASE WHEN plan = 'enterprise' THEN 1 ELSE 0 END
            FROM workspaces"""),
        ("daily_snapshots", f"""
            INSERT INTO daily_snapshots
            SELECT w.workspace_id, '2026-01-01'::date + k, '2026-01-01T12:00:00Z'::timestamptz + k * interval '1 day',
                   w.workspace_id, (w.i * 7 + k) % 130, (w.i + k) % 7, w.i % 4, (w.i + k / 30) % 7,
                   (w.i % 150) + k % 31, 50 + (w.i * 13 + k * 7) % 250
            FROM (SELECT workspace_id, row_number() OVER (ORDER BY workspace_id)::int AS i FROM workspaces) w,
                 generate_series(0, {n_days - 1}) k"""),
        ("monthly_usage", """
            INSERT INTO monthly_usage
            SELECT workspace_id, date_trunc('month', day)::date, max(active_users), max(active_guests), max(mac),
                   max(peak_connections), count(*), max(created_at)
            FROM daily_snapshots GROUP BY 1, 2"""),
        ("term_usage", """
            INSERT INTO term_usage
            SELECT DISTINCT ON (c.workspace_id) c.workspace_id, c.term_start, c.term_end, d.active_users, d.day
            FROM contracts c JOIN daily_snapshots d ON d.workspace_id = c.workspace_id
                 AND d.day BETWEEN c.term_start AND c.term_end
            ORDER BY c.workspace_id, d.active_users DESC, d.day"""),
        ("compliance_state", "SELECT refresh_compliance(NULL, NULL)"),
        ("analyze", "ANALYZE"),
    ]
    # bulk load: build the primary key once, after the rows
    await conn.execute("SET synchronous_commit = off; SET maintenance_work_mem = '1GB'")
    await conn.execute("ALTER TABLE daily_snapshots DROP CONSTRAINT daily_snapshots_pkey")
    steps.insert(3, ("  primary key", "ALTER TABLE daily_snapshots ADD PRIMARY KEY (workspace_id, day)"))
    for name, sql in steps:
        t = time.perf_counter()
        await conn.execute(sql)
        print(f"  seeded {name:<17} {time.perf_counter() - t:7.1f} s", flush=True)


async def timed(label: str, fn, runs: int = 5):
    times, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = await fn()
        times.append(time.perf_counter() - t)
    print(f"{label:<58} median {statistics.median(times) * 1000:8.0f} ms"
          f"  (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})", flush=True)
    return result


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspaces", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--keep", action="store_true", help="keep the bench database (reused next run with --reuse)")
    ap.add_argument("--reuse", action="store_true", help="reuse a kept bench database, do not seed")
    args = ap.parse_args()
    server = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    url = with_db(server, DB_NAME)
    if not args.reuse:
        admin = await asyncpg.connect(server)
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DB_NAME}"')
        await admin.close()
        conn = await asyncpg.connect(url)
        await db.migrate(conn)
        print(f"seeding {args.workspaces} workspaces x {args.days} days", flush=True)
        await seed(conn, args.workspaces, args.days)
        await conn.close()
    pool = await db.create_pool(url, 2, 4)
    now = datetime(2026, 12, 31, 23, 0, tzinfo=timezone.utc)
    start, end = date(2026, 11, 1), date(2026, 11, 30)
    kw = {"now": now, "stale_after_s": 48 * 3600}
    try:
        report = await timed("billing.consumption(period=2026-11)",
                             lambda: billing.consumption(pool, start, end, **kw))
        await timed("  + orjson serialisation of the answer", lambda: _async(orjson.dumps, report))
        await timed("billing.consumption_csv(period=2026-11)",
                    lambda: billing.consumption_csv(pool, start, end, **kw))
        listing = await timed("compliance.list_compliance() (all workspaces)",
                              lambda: compliance.list_compliance(pool, **kw))
        body = await timed("  + orjson serialisation of the answer",
                           lambda: _async(orjson.dumps, {"workspaces": listing}))
        await timed("compliance.list_compliance(status='over')",
                    lambda: compliance.list_compliance(pool, status="over", **kw))
        print(f"rows: billing {len(report['workspaces'])}, compliance {len(listing)}"
              f" ({len(body) / 1e6:.0f} MB of JSON)")
    finally:
        await pool.close()
        if not args.keep:
            admin = await asyncpg.connect(server)
            await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            await admin.close()


async def _async(fn, *a):
    return fn(*a)


if __name__ == "__main__":
    asyncio.run(main())
