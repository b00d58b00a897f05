"""Compliance: is each workspace within its plan's limits? Reads rollups only.

The state is kept in ``compliance_state`` by ``collector.usage.rollups`` as
reports arrive (and by ``collector.accounts.plans`` when limits change), from the
workspace's latest daily snapshot. Per limit kind: ``value``, ``max``
(negative = unlimited, licence v3), ``percent`` (value / max x 100, one
decimal; null when unlimited, max 0 or value unknown), ``status`` and
``since`` (when the status last changed: the createdAt of the report that
changed it, or the time an operator changed the limits); in the
one-workspace answer also ``behavior`` (the licence behaviour, Rocket.Chat
``ee/packages/license``): the plan's for that kind, the same for every
workspace on the plan, so the listing leaves it out (``GET /api/v1/plans``).

Status: ``over`` value > max, ``at`` value == max, ``near`` value >= 90 % of
max, ``ok`` otherwise or unlimited, ``unknown`` value not reported. It lifts
as soon as a report shows usage back under the limit. A workspace's
``status`` is its worst limit status. ``stale`` (computed at read time):
no report for more than ``Settings.stale_after_s`` (48 h), counted from
registration when it never reported.

The listing is rendered by PostgreSQL (``collector.ops.sqljson``): the stored
``limits`` JSON is sent as it is, never parsed here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
import orjson

from collector.accounts import UnknownWorkspace
from collector.ops import sqljson

STATUSES = ("ok", "near", "at", "over", "unknown", "stale")

#: One workspace of the listing (``sqljson.text_sql`` spec).
_ITEM = {
    "workspace_id": ("uuid", "s.workspace_id"),
    "plan": ("text", "w.plan"),
    "status": ("text", "s.status"),
    "stale": ("bool", "coalesce(s.last_report_at, w.created_at) < $1"),
    "last_report_at": ("timestamptz", "s.last_report_at"),
    "limits": ("json", "s.limits"),
}
_FROM = " FROM compliance_state s JOIN workspaces w ON w.workspace_id = s.workspace_id"
_LIST_SQL = "SELECT " + sqljson.bytes_sql(_ITEM) + _FROM
_ONE_SQL = (
    "SELECT " + sqljson.text_sql(_ITEM) + " AS item,"
    " (SELECT json_object_agg(l.kind, l.behavior) FROM plan_limits l WHERE l.plan = w.plan)::text AS behaviors"
    + _FROM + " WHERE s.workspace_id = $2"
)


def _where(status: str | None) -> tuple[str, list]:
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    where = " WHERE w.revoked_at IS NULL"
    if status == "stale":
        return where + " AND coalesce(s.last_report_at, w.created_at) < $1", []
    if status is not None:
        return where + " AND s.status = $2", [status]
    return where, []


async def list_compliance_json(
    conn: asyncpg.Connection | asyncpg.Pool, *, now: datetime, stale_after_s: int, status: str | None = None
) -> bytes:
    """The compliance of every non-revoked workspace as the UTF-8 JSON body of
    ``GET /api/v1/compliance`` (rendered by PostgreSQL, never parsed here):
    ``{"workspaces": [{workspace_id, plan, status, stale, last_report_at,
    limits: {kind: {value, max, percent, status, since}}}]}``, by workspace_id.

    ``status``: keep only workspaces with that overall status, or with
    ``stale`` the stale ones. ``value``/``max``: counts (``max`` negative =
    unlimited); ``percent``: value / max x 100, one decimal, null when
    unlimited, max 0 or value unknown; ``last_report_at``/``since``: ISO 8601
    UTC (``+00:00``), ``last_report_at`` null when it never reported.
    Raises ValueError for an unknown status.
    """
    where, args = _where(status)
    cutoff = now - timedelta(seconds=stale_after_s)
    async with sqljson.reading(conn) as c:
        rows = await c.fetch(_LIST_SQL + where + " ORDER BY s.workspace_id", cutoff, *args)
    return sqljson.json_array([r[0] for r in rows], b'{"workspaces":', b"}")


async def list_compliance(
    conn: asyncpg.Connection | asyncpg.Pool, *, now: datetime, stale_after_s: int, status: str | None = None
) -> list[dict]:
    """The items of ``list_compliance_json``, parsed (for callers that read
    them; the HTTP answer uses ``list_compliance_json``). Raises ValueError
    for an unknown status."""
    body = await list_compliance_json(conn, now=now, stale_after_s=stale_after_s, status=status)
    return orjson.loads(body)["workspaces"]


async def workspace_compliance(
    conn: asyncpg.Connection | asyncpg.Pool, workspace_id: UUID, *, now: datetime, stale_after_s: int
) -> dict:
    """One workspace's compliance: an item of ``list_compliance`` whose every
    limit also has ``behavior`` (the plan's licence behaviour for that kind),
    ``{workspace_id, plan, status, stale, last_report_at, limits: {kind:
    {value, max, percent, status, since, behavior}}}``.

    Raises UnknownWorkspace.
    """
    async with sqljson.reading(conn) as c:
        row = await c.fetchrow(_ONE_SQL, now - timedelta(seconds=stale_after_s), workspace_id)
    if row is None:
        raise UnknownWorkspace(str(workspace_id))
    item = orjson.loads(row["item"])
    behaviors = orjson.loads(row["behaviors"] or "{}")
    for kind, limit in item["limits"].items():
        limit["behavior"] = behaviors.get(kind)
    return item
