"""The quarantine: one row per refused report, with no value of the report.

A row holds the workspace (when authenticated), the time, the refusal reason
(``collector.ingest.outcomes.Reason``), the field catalogue version, the SHA-256 and
size of the body, and the list of ``{path, reason}`` violations. Operators
read it with ``collector quarantine list`` and ``GET /api/v1/quarantine``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from uuid import UUID

import asyncpg
import orjson

from collector.ops import UNAVAILABLE_ERRORS, log


async def record(
    pool: asyncpg.Pool,
    *,
    workspace_id: UUID | None,
    reason: str,
    catalogue_version: str,
    body: bytes | None,
    violations: list[dict],
) -> None:
    """Record a refused report: who, when, why and where, the body's SHA-256 and size.

    ``violations`` keeps only ``path`` and ``reason`` of each. Never raises for
    an unreachable database (the refusal is still answered; a warning is logged),
    nor for a workspace erased meanwhile (nothing of it is kept then).
    """
    try:
        await pool.execute(
            "INSERT INTO quarantine (workspace_id, reason, catalogue_version, body_sha256, body_size, violations)"
            " VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
            workspace_id,
            reason,
            catalogue_version,
            hashlib.sha256(body).digest() if body is not None else None,
            len(body) if body is not None else None,
            orjson.dumps([{"path": v["path"], "reason": v["reason"]} for v in violations]).decode(),
        )
    except UNAVAILABLE_ERRORS as exc:
        log.warning("quarantine_not_written", reason=reason, error=type(exc).__name__)
    except asyncpg.ForeignKeyViolationError:
        log.info("quarantine_not_written", reason=reason, why="workspace erased")


async def listing(
    conn,
    *,
    workspace_id: UUID | None = None,
    reason: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[dict]:
    """Quarantined reports, newest first, at most ``limit`` (1..1000).

    Each: ``{"quarantine_id", "workspace_id", "received_at" (ISO 8601),
    "reason", "catalogue_version", "body_sha256" (hex), "body_size" (bytes),
    "violations": [{"path", "reason"}]}``.
    """
    rows = await conn.fetch(
        "SELECT quarantine_id, workspace_id, received_at, reason, catalogue_version,"
        " body_sha256, body_size, violations::text AS violations FROM quarantine"
        " WHERE ($1::uuid IS NULL OR workspace_id = $1) AND ($2::text IS NULL OR reason = $2)"
        " AND ($3::timestamptz IS NULL OR received_at >= $3)"
        " ORDER BY received_at DESC, quarantine_id DESC LIMIT $4",
        workspace_id,
        reason,
        since,
        max(1, min(limit, 1000)),
    )
    return [
        {
            "quarantine_id": r["quarantine_id"],
            "workspace_id": str(r["workspace_id"]) if r["workspace_id"] else None,
            "received_at": r["received_at"].isoformat(),
            "reason": r["reason"],
            "catalogue_version": r["catalogue_version"],
            "body_sha256": r["body_sha256"].hex() if r["body_sha256"] else None,
            "body_size": r["body_size"],
            "violations": orjson.loads(r["violations"]),
        }
        for r in rows
    ]


async def summary(conn, *, since: datetime, reason: str | None = None, workspace_id: UUID | None = None,
                  paths: int = 50, violation: str | None = None) -> dict:
    """Refusals since ``since`` by reason and by path (the console's quarantine
    page), optionally of one ``reason`` or workspace. Returns
    ``{"by_reason": [{reason, reports, first, last}], "by_day": [{day (date),
    reason, reports}], "by_path": [{path, reason, reports, first, last}]}``:
    counts of quarantined reports (a report counts once per path and
    violation reason it names), ``first``/``last`` aware datetimes; the
    ``paths`` most frequent (path, reason) pairs, only of the violation
    reason ``violation`` when given (``unknown_field``: fields not in the
    catalogue). Paths and reasons only, never a value."""
    where = ("WHERE q.received_at >= $1 AND ($2::text IS NULL OR q.reason = $2)"
             " AND ($3::uuid IS NULL OR q.workspace_id = $3)")
    args = (since, reason, workspace_id)
    by_reason = await conn.fetch(
        "SELECT q.reason, count(*) AS reports, min(q.received_at) AS first, max(q.received_at) AS last"
        f" FROM quarantine q {where} GROUP BY q.reason ORDER BY reports DESC, q.reason", *args)
    by_day = await conn.fetch(
        "SELECT (q.received_at AT TIME ZONE 'UTC')::date AS day, q.reason, count(*) AS reports"
        f" FROM quarantine q {where} GROUP BY 1, 2 ORDER BY 1, 2", *args)
    by_path = await conn.fetch(
        "SELECT v ->> 'path' AS path, v ->> 'reason' AS reason, count(DISTINCT q.quarantine_id) AS reports,"
        " min(q.received_at) AS first, max(q.received_at) AS last"
        f" FROM quarantine q CROSS JOIN LATERAL jsonb_array_elements(q.violations) v {where}"
        " AND ($5::text IS NULL OR v ->> 'reason' = $5)"
        " GROUP BY 1, 2 ORDER BY reports DESC, path, reason LIMIT $4", *args, max(1, min(paths, 500)), violation)
    return {"by_reason": [dict(r) for r in by_reason], "by_day": [dict(r) for r in by_day],
            "by_path": [dict(r) for r in by_path]}
