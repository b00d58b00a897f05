"""Benchmark: expiring a month of raw reports of 100,000 workspaces.

Seeds one UTC month (2025-01, 31 days) of daily reports of ``--workspaces``
workspaces into the partitioned report tables of ``sql/0007_lifecycle.sql``
(3.1 million reports at 100,000: ``reports`` rows with a real-size receipt,
``report_data`` rows holding the four categories of the real 8.7.0 fixture
sealed as the writer seals them, 3.9 KB, and their ``report_keys``), then
times what retention does to expire it, through the same function
(``collector.lifecycle.retention.expire_raw``: move the floor, drop the
month's partitions, delete its ``report_keys``), against deleting the same
rows from the same tables unpartitioned (the layout before 0007, without
the foreign key between them, so each is one set-based DELETE), and the
VACUUM those deletes then need before the space is reused.

    uv run python bench/retention_bench.py [--workspaces 100000] [--runs 3] [--keep | --reuse]
    uv run python bench/retention_bench.py --erasure-only   # erase one workspace among 100,000

``--erasure-only`` times instead what an erasure costs besides its own rows:
its transaction (SQL ``erase_workspace``) and the rewrite (``VACUUM FULL``)
of the small per-workspace tables after it (``erasure.REWRITTEN``: the data
keys, 400,000 at 100,000 workspaces, the registry, tokens, contracts, term
usage, compliance state, quarantine), each of which holds up the ingest
writers that need that table meanwhile.

Each run of the partitioned expiry re-seeds the month first (not timed);
the unpartitioned DELETEs run in a transaction rolled back, but the last,
committed and followed by a timed VACUUM. Figures: median of ``--runs``.

Server: BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres);
its own database ``collector_bench_retention`` (dropped first, and at the end
unless --keep; --reuse keeps a kept one's unpartitioned copy).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from collector.accounts import datakeys
from collector.gate import CATEGORIES, check_report
from collector.ingest import ReceiptSigner
from collector.lifecycle import erasure, retention
from collector.ops import database as db

DB_NAME = "collector_bench_retention"
FLOOR = datetime(2025, 2, 1, tzinfo=timezone.utc)  # everything of January 2025 expires
FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "report-8.7.0.json"


def with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def sample() -> tuple[list[bytes], str]:
    """The four sealed categories of the real fixture and a real receipt."""
    checked = check_report(orjson.loads(FIXTURE.read_bytes()))
    aead, rid = AESGCM(AESGCM.generate_key(256)), uuid.uuid4()
    blobs = [datakeys.seal(aead, rid, cat, checked.categories[cat]) for cat in CATEGORIES]
    signer = ReceiptSigner.from_file(Path("/tmp/collector-bench-receipt-key.pem"), "bench")
    receipt = signer.sign(uuid.uuid4(), rid, datetime.now(timezone.utc))
    return blobs, receipt


_ROWS = """
    SELECT md5('r' || w.i || '-' || d)::uuid AS report_id, w.workspace_id,
           sha256(('k' || w.i || '-' || d)::bytea) AS record_key,
           '2025-01-01T00:00:00Z'::timestamptz + d * interval '1 day' + (w.i % 86400) * interval '1 second'
               AS created_at
    FROM (SELECT workspace_id, row_number() OVER (ORDER BY workspace_id)::int AS i FROM workspaces) w,
         generate_series(0, 30) d
"""


async def seed_workspaces(conn, n: int) -> None:
    await conn.execute(f"""
        INSERT INTO workspaces (workspace_id, plan, created_at)
        SELECT md5('ws' || i)::uuid, 'pro', '2024-12-01T00:00:00Z' FROM generate_series(1, {n}) i""")


async def seed_month(conn, blobs: list[bytes], receipt: str, reports: str = "reports",
                     report_data: str = "report_data", keys: str | None = "report_keys") -> None:
    """The month's rows into ``reports`` / ``report_data`` (and ``keys``)."""
    await conn.execute(f"""
        INSERT INTO {reports} (report_id, workspace_id, record_key, created_at, received_at, rc_version,
                               catalogue_version, receipt)
        SELECT report_id, workspace_id, record_key, created_at, created_at, '8.7.0', 'bench', $1
        FROM ({_ROWS}) s""", receipt)
    await conn.execute(f"""
        INSERT INTO {report_data} (report_id, workspace_id, created_at, billing, compliance, operational,
                                   product_analytics)
        SELECT report_id, workspace_id, created_at, $1, $2, $3, $4 FROM ({_ROWS}) s""", *blobs)
    if keys:
        await conn.execute(f"INSERT INTO {keys} SELECT workspace_id, record_key, report_id, created_at FROM {reports}")
    await conn.execute("ANALYZE")


async def make_flat(conn) -> None:
    """The same tables unpartitioned, as before 0007 (without the foreign key)."""
    await conn.execute("""
        CREATE TABLE reports_flat (LIKE reports INCLUDING DEFAULTS INCLUDING STORAGE);
        ALTER TABLE reports_flat ADD PRIMARY KEY (report_id), ADD UNIQUE (workspace_id, record_key);
        CREATE INDEX ON reports_flat (workspace_id, created_at);
        CREATE TABLE report_data_flat (LIKE report_data INCLUDING DEFAULTS INCLUDING STORAGE);
        ALTER TABLE report_data_flat ADD PRIMARY KEY (report_id);
        CREATE INDEX ON report_data_flat (workspace_id);""")


_LIMITS = orjson.dumps({k: {"value": 120, "max": 500, "percent": 24.0, "status": "ok",
                              "since": "2026-11-29T12:00:00.123456+00:00"}
                          for k in ("activeUsers", "guestUsers", "monthlyActiveContacts", "privateApps",
                                    "marketplaceApps", "peakConnections")}).decode()


async def erasure_at_scale(conn) -> dict:
    """Erase one workspace among all those seeded, each with its contract, term
    usage, compliance state, token and four data keys: the erasure's
    transaction, and the rewrite of the small tables after it (timed apart)."""
    await conn.execute("""
        INSERT INTO contracts (workspace_id, plan, term_start, term_end, seats)
        SELECT workspace_id, plan, '2025-01-01', '2025-12-31', 100 FROM workspaces ON CONFLICT DO NOTHING;
        INSERT INTO term_usage (workspace_id, term_start, term_end, max_seats, max_seats_day)
        SELECT workspace_id, term_start, term_end, 90, '2025-01-15' FROM contracts ON CONFLICT DO NOTHING;
        INSERT INTO tokens (token_hash, kind, workspace_id)
        SELECT sha256(('t' || workspace_id)::bytea), 'workspace', workspace_id FROM workspaces ON CONFLICT DO NOTHING;
        INSERT INTO data_keys (workspace_id, category, key)
        SELECT w.workspace_id, c, sha256((c || w.workspace_id)::bytea) FROM workspaces w,
               unnest(ARRAY['billing', 'compliance', 'operational', 'product_analytics']) c ON CONFLICT DO NOTHING;""")
    await conn.execute(
        "INSERT INTO compliance_state (workspace_id, last_report_at, status, limits, evaluated_at)"
        " SELECT workspace_id, now(), 'ok', $1::json, now() FROM workspaces ON CONFLICT DO NOTHING", _LIMITS)
    await conn.execute("VACUUM ANALYZE")
    victim = await conn.fetchval("SELECT workspace_id FROM workspaces ORDER BY workspace_id LIMIT 1")
    t = time.perf_counter()
    async with conn.transaction():  # erasure.erase's transaction, without the rewrite after it
        await conn.execute("SELECT 1 FROM workspaces WHERE workspace_id = $1 FOR UPDATE", victim)
        removed = orjson.loads(await conn.fetchval("SELECT erase_workspace($1)::text", victim))
        await datakeys.mark_rewrite(conn, *erasure.REWRITTEN)
    t_tx = time.perf_counter() - t
    timings = {}
    for table in erasure.REWRITTEN:
        t = time.perf_counter()
        await conn.execute(f"VACUUM FULL {table}")
        timings[table] = time.perf_counter() - t
    await conn.execute("DELETE FROM pending_rewrites")
    return {"transaction_s": t_tx, "rewrite_s": timings, "removed": removed,
            "data_keys_rows": await conn.fetchval("SELECT count(*) FROM data_keys")}


async def size(conn, *tables: str) -> int:
    return sum([await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", t) for t in tables])


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspaces", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--reuse", action="store_true", help="reuse a kept database's unpartitioned copy")
    ap.add_argument("--erasure-only", action="store_true",
                    help="only the erasure of one workspace among --workspaces (no month seeded)")
    args = ap.parse_args()
    server = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    admin = await asyncpg.connect(server)
    exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB_NAME)
    if not (args.reuse and exists):
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    conn = await asyncpg.connect(with_db(server, DB_NAME), command_timeout=3600)
    version = await conn.fetchval("SHOW server_version")
    blobs, receipt = sample()
    try:
        await db.migrate(conn)
        if args.erasure_only:
            if not await conn.fetchval("SELECT count(*) FROM workspaces"):
                await seed_workspaces(conn, args.workspaces)
            done = await erasure_at_scale(conn)
            print(f"\nPostgreSQL {version}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
                  f"erase one workspace among {args.workspaces:,}: transaction {done['transaction_s']:.3f} s, "
                  "then VACUUM FULL " + ", ".join(f"{k} {v:.2f} s" for k, v in done["rewrite_s"].items())
                  + f" (total {sum(done['rewrite_s'].values()):.2f} s; {done['data_keys_rows']:,} keys left)")
            print(orjson.dumps(done).decode())
            return
        if not await conn.fetchval("SELECT count(*) FROM workspaces"):
            t = time.perf_counter()
            await seed_workspaces(conn, args.workspaces)
            await make_flat(conn)
            await seed_month(conn, blobs, receipt, "reports_flat", "report_data_flat", keys=None)
            print(f"seeded the unpartitioned copy in {time.perf_counter() - t:.0f} s")
        n_rows = await conn.fetchval("SELECT count(*) FROM reports_flat")
        flat_bytes = await size(conn, "reports_flat", "report_data_flat")

        detaching, dropping, keys_part = [], [], []
        for run in range(args.runs):
            await conn.execute("DELETE FROM retained_since")
            await conn.fetchval("SELECT ensure_report_partitions('2025-01-01', '2025-01-01')")
            t = time.perf_counter()
            await seed_month(conn, blobs, receipt)
            month_bytes = await size(conn, "reports_y2025m01", "report_data_y2025m01")
            keys_bytes = await size(conn, "report_keys")
            print(f"run {run + 1}: seeded the partitioned month in {time.perf_counter() - t:.0f} s")
            await conn.execute("CHECKPOINT")
            # the steps of retention.expire_raw, each timed
            await conn.execute("INSERT INTO retained_since (kind, since) VALUES ('raw', $1)", FLOOR)
            t = time.perf_counter()
            async with conn.transaction():  # what drop_expired does first: the parents' lock is held this long
                detached = await conn.fetchval("SELECT detach_report_partitions($1)", FLOOR)
            t_detach = time.perf_counter() - t
            assert await retention.drop_expired(conn) == []  # nothing left to detach: drops the detached tables
            t_drop = time.perf_counter() - t - t_detach
            status = await conn.execute("DELETE FROM report_keys WHERE created_at < $1", FLOOR)
            t_keys = time.perf_counter() - t - t_detach - t_drop
            assert detached == ["2025-01"] and int(status.split()[-1]) == n_rows, (detached, status)
            assert not await conn.fetch("SELECT detached_report_partitions()")
            detaching.append(t_detach)
            dropping.append(t_drop)
            keys_part.append(t_keys)
            await conn.execute("VACUUM report_keys")

        deleting = []
        for run in range(args.runs):
            await conn.execute("CHECKPOINT")
            last = run == args.runs - 1
            tx = conn.transaction()
            await tx.start()
            t = time.perf_counter()
            await conn.execute("DELETE FROM report_data_flat WHERE created_at < $1", FLOOR)
            await conn.execute("DELETE FROM reports_flat WHERE created_at < $1", FLOOR)
            if last:
                await tx.commit()
            deleting.append(time.perf_counter() - t)
            if not last:
                await tx.rollback()
        t = time.perf_counter()
        await conn.execute("VACUUM reports_flat, report_data_flat")
        vacuum = time.perf_counter() - t

        med_detach, med_drop, med_keys = (statistics.median(x) for x in (detaching, dropping, keys_part))
        med_total = statistics.median([a + b + c for a, b, c in zip(detaching, dropping, keys_part)])
        med_delete = statistics.median(deleting)
        print(f"\nPostgreSQL {version}, {os.cpu_count()} cores, {platform.machine()}, load average "
              f"{os.getloadavg()[0]:.2f} at the end; {args.workspaces:,} workspaces x 31 days = {n_rows:,} reports")
        print(f"month partitions {month_bytes / 1e9:.2f} GB (report_keys {keys_bytes / 1e6:.0f} MB),"
              f" unpartitioned copy {flat_bytes / 1e9:.2f} GB")
        runs = ", ".join(f"{a:.3f} + {b:.2f} + {c:.2f}" for a, b, c in zip(detaching, dropping, keys_part))
        print(f"expire by partitions (retention.expire_raw): median {med_total:.2f} s = detach the month"
              f" {med_detach:.3f} s (the only time ingest waits) + drop the detached tables {med_drop:.2f} s"
              f" + DELETE its report_keys {med_keys:.2f} s (runs: {runs})")
        print(f"DELETE the same rows, unpartitioned: median {med_delete:.2f} s "
              f"(runs: {', '.join(f'{x:.2f}' for x in deleting)}), then VACUUM {vacuum:.2f} s")
        print(f"ratio DELETE / expiry by partitions: {med_delete / med_total:.1f}x (with its VACUUM"
              f" {(med_delete + vacuum) / med_total:.1f}x); DELETE / the detach {med_delete / med_detach:.0f}x")
        print(orjson.dumps({"reports": n_rows, "expire_s": med_total, "detach_s": med_detach, "drop_s": med_drop,
                            "keys_s": med_keys,
                            "delete_s": med_delete, "vacuum_s": vacuum, "ratio": med_delete / med_total}).decode())
    finally:
        await conn.close()
        if not args.keep:
            await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
