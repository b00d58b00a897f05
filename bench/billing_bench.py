"""Benchmark: a month's billing report and the full compliance listing at scale.

Seeds 100,000 workspaces x 365 daily snapshots (2026-01-01 .. 2026-12-31)
directly into the rollup tables with generate_series, derives monthly_usage,
term_usage and compliance_state from them in SQL, then times (median of 5
runs each) what the API endpoints do to produce their answer, up to the
``web.Response`` holding the body, through the same functions:
  - GET /api/v1/billing/consumption?period=2026-11   billing.consumption_json
  - the same with Accept: text/csv                   billing.consumption_csv
  - GET /api/v1/compliance (every workspace)         compliance.list_compliance_json
  - GET /api/v1/compliance?status=over               (the same, filtered)
  - the console's compliance board (first page of 200, worst first, with the
    status counts) and billing page (totals + first page of 200, by label)
The bodies are bytes rendered by PostgreSQL, sent as they are: there is no
separate serialisation step to add.

    uv run python bench/billing_bench.py [--workspaces 100000] [--days 365] [--keep | --reuse]

Target (issue 4): under 1 s each for the month's billing report and the full
compliance listing, on the 2-core machine.

Server: BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres);
the benchmark uses its own database ``collector_bench`` (dropped first, and at
the end unless --keep; --reuse skips the ~4 min seeding of a kept one, after
applying any new migration to it).
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
from aiohttp import web

from collector.http.common import json_body
from collector.ops import database as db
from collector.usage import billing, compliance

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
    else:
        conn = await asyncpg.connect(url)
        if await db.migrate(conn):  # a migration may have rewritten rows: clear the dead ones
            await conn.execute("VACUUM ANALYZE")
        await conn.close()
    pool = await db.create_pool(url, 2, 4)
    now = datetime(2026, 12, 31, 23, 0, tzinfo=timezone.utc)
    start, end = date(2026, 11, 1), date(2026, 11, 30)
    kw = {"now": now, "stale_after_s": 48 * 3600}

    # Exactly what the handlers in collector/http/{billing,compliance}.py do.
    async def billing_json() -> web.Response:
        return json_body(await billing.consumption_json(pool, start, end, **kw))

    async def billing_csv() -> web.Response:
        body = await billing.consumption_csv(pool, start, end, **kw)
        return web.Response(body=body, content_type="text/csv", charset="utf-8")

    async def compliance_json(status: str | None = None) -> web.Response:
        return json_body(await compliance.list_compliance_json(pool, statuses=[status] if status else (), **kw))

    async def console_board() -> web.Response:
        board = await compliance.board(pool, **kw, limit=200)
        await compliance.status_counts(pool, **kw)
        return web.Response(body=orjson.dumps(board))

    async def console_billing() -> web.Response:
        totals = await billing.consumption_totals(pool, start, end, **kw)
        rows = await billing.consumption_page(pool, start, end, **kw, limit=200)
        return web.Response(body=orjson.dumps({"totals": totals, "rows": rows}))

    try:
        report = await timed("GET billing/consumption?period=2026-11 (JSON)", billing_json)
        csv = await timed("GET billing/consumption?period=2026-11 (CSV)", billing_csv)
        listing = await timed("GET compliance (all workspaces)", compliance_json)
        await timed("GET compliance?status=over", lambda: compliance_json("over"))
        if hasattr(compliance, "board"):  # the console's queries (absent before issue 13)
            await timed("console: compliance board, first page + counts", console_board)
            await timed("console: billing totals + first page", console_billing)
        n_report = len(orjson.loads(report.body)["workspaces"])  # valid JSON, one item a workspace
        n_listing = len(orjson.loads(listing.body)["workspaces"])
        print(f"rows: billing {n_report}, compliance {n_listing}; bodies: billing JSON"
              f" {len(report.body) / 1e6:.1f} MB, CSV {len(csv.body) / 1e6:.1f} MB, compliance"
              f" {len(listing.body) / 1e6:.1f} MB ({len(listing.body) / max(1, n_listing):.0f} bytes a workspace)")
    finally:
        await pool.close()
        if not args.keep:
            admin = await asyncpg.connect(server)
            await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
