"""Compliance: is each workspace within its plan's limits? Reads rollups only.

The state is kept in ``compliance_state`` by ``collector.aggregation`` as
reports arrive (and by ``collector.plans`` when limits change), from the
workspace's latest daily snapshot. Per limit kind: ``value``, ``max``
(negative = unlimited, licence v3), ``percent`` (value / max x 100, one
decimal; null when unlimited, max 0 or value unknown), ``status`` and
``since`` (when the status last changed: the createdAt of the report that
changed it, or the time an operator changed the limits), ``behavior`` (the
licence behaviour, Rocket.Chat ``ee/packages/license``).

Status: ``over`` value > max, ``at`` value == max, ``near`` value >= 90 % of
max, ``ok`` otherwise or unlimited, ``unknown`` value not reported. It lifts
as soon as a report shows usage back under the limit. A workspace's
``status`` is its worst limit status. ``stale`` (computed at read time):
no report for more than ``Settings.stale_after_s`` (48 h), counted from
registration when it never reported.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
import orjson

from collector.workspaces import UnknownWorkspace

STATUSES = ("ok", "near", "at", "over", "unknown", "stale")

_SQL = (
    "SELECT s.workspace_id, w.plan, s.status, s.last_report_at,"
    " coalesce(s.last_report_at, w.created_at) < $1 AS stale, s.limits::text AS limits"
    " FROM compliance_state s JOIN workspaces w ON w.workspace_id = s.workspace_id"
)


def _row(r: asyncpg.Record) -> dict:
    return {
        "workspace_id": str(r["workspace_id"]),
        "plan": r["plan"],
        "status": r["status"],
        "stale": r["stale"],
        "last_report_at": r["last_report_at"].isoformat() if r["last_report_at"] else None,
        # already JSON: passed through to orjson.dumps as is (orjson.loads to read it in Python)
        "limits": orjson.Fragment(r["limits"]),
    }


async def list_compliance(
    conn: asyncpg.Connection | asyncpg.Pool, *, now: datetime, stale_after_s: int, status: str | None = None
) -> list[dict]:
    """The compliance of every non-revoked workspace, by workspace_id.

    ``status``: keep only workspaces with that overall status, or with
    ``stale`` the stale ones. Each item: ``{workspace_id, plan, status, stale,
    last_report_at, limits: {kind: {value, max, percent, status, since,
    behavior}}}``; ``limits`` is an ``orjson.Fragment`` (serialised JSON).
    Raises ValueError for an unknown status.
    """
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    cutoff = now - timedelta(seconds=stale_after_s)
    where = " WHERE w.revoked_at IS NULL"
    args: list = [cutoff]
    if status == "stale":
        where += " AND coalesce(s.last_report_at, w.created_at) < $1"
    elif status is not None:
        where += " AND s.status = $2"
        args.append(status)
    rows = await conn.fetch(_SQL + where + " ORDER BY s.workspace_id", *args)
    return [_row(r) for r in rows]


async def workspace_compliance(
    conn: asyncpg.Connection | asyncpg.Pool, workspace_id: UUID, *, now: datetime, stale_after_s: int
) -> dict:
    """One workspace's compliance (shape of an item of ``list_compliance``).

    Raises UnknownWorkspace.
    """
    row = await conn.fetchrow(
        _SQL + " WHERE s.workspace_id = $2", now - timedelta(seconds=stale_after_s), workspace_id
    )
    if row is None:
        raise UnknownWorkspace(str(workspace_id))
    return _row(row)
