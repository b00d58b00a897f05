"""Compliance: is each workspace within its plan's limits? Reads rollups only.

The state is kept in ``compliance_state`` by ``collector.usage.rollups`` as
reports arrive (and by ``collector.accounts.plans`` when limits change), from the
workspace's latest daily snapshot. Per limit kind: ``value``, ``max``
(negative = unlimited, licence v3), ``percent`` (value / max x 100, one
decimal; null when unlimited, max 0 or value unknown), ``status`` and
``since`` (when the collector first saw the current status: the time it
evaluated the report or the limit edit that changed it, never the report's
own createdAt, so a status computed today from an old record says today); in the
one-workspace answer also ``behavior`` (the licence behaviour, Rocket.Chat
``ee/packages/license``): the plan's for that kind, the same for every
workspace on the plan, so the listing leaves it out (``GET /api/v1/plans``).

Status: ``over`` value > max, ``at`` value == max, ``near`` value >= 90 % of
max, ``ok`` otherwise or unlimited, ``unknown`` value not reported. It lifts
as soon as a report shows usage back under the limit. A workspace's
``status`` is its worst limit status. ``stale`` (computed at read time,
SQL ``is_stale``, the definition billing uses): the last report up to now is
more than ``Settings.stale_after_s`` (48 h) old, counted from registration
when it never reported.

The listing is rendered by PostgreSQL (``collector.ops.sqljson``): the stored
``limits`` JSON is sent as it is, never parsed here.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg
import orjson

from collector.accounts import UnknownWorkspace
from collector.ops import sqljson

STATUSES = ("ok", "near", "at", "over", "unknown", "stale")
#: Worst first: the order of the console's board (``board``).
WORST_FIRST = ("over", "at", "near", "unknown", "ok")

#: Stale at $1 (now) after $2 seconds: SQL is_stale / last_report_up_to (sql/0006_console.sql), as billing.
_STALE = "is_stale(last_report_up_to(s.workspace_id, $1, s.last_report_at, NULL), w.created_at, $1, $2)"

#: One workspace of the listing (``sqljson.text_sql`` spec).
_ITEM = {
    "workspace_id": ("uuid", "s.workspace_id"),
    "label": ("text", "w.label"),
    "plan": ("text", "w.plan"),
    "status": ("text", "s.status"),
    "stale": ("bool", _STALE),
    "last_report_at": ("timestamptz", "s.last_report_at"),
    "limits": ("json", "s.limits"),
}
_FROM = " FROM compliance_state s JOIN workspaces w ON w.workspace_id = s.workspace_id"
_LIST_SQL = "SELECT " + sqljson.bytes_sql(_ITEM) + _FROM
_ONE_SQL = (
    "SELECT " + sqljson.text_sql(_ITEM) + " AS item,"
    " (SELECT json_object_agg(l.kind, l.behavior) FROM plan_limits l WHERE l.plan = w.plan)::text AS behaviors"
    + _FROM + " WHERE s.workspace_id = $3"
)
_WORST_ORDER = (
    " ORDER BY array_position(ARRAY['over', 'at', 'near', 'unknown', 'ok'], s.status), " + _STALE + " DESC,"
    " s.worst_percent DESC NULLS LAST, w.label NULLS LAST, s.workspace_id"
)


def check_statuses(statuses) -> list[str]:
    """The statuses of a filter, each once, in STATUSES order. ``statuses``: an
    iterable of names, or a comma-separated string (``over,near``); empty:
    no filter. Raises ValueError naming the allowed ones for an unknown name."""
    if isinstance(statuses, str):
        statuses = statuses.split(",")
    wanted = {x.strip() for x in statuses or () if x.strip()}
    if wanted - set(STATUSES):
        raise ValueError(f"status must be one of {', '.join(STATUSES)} (several: comma-separated)")
    return [x for x in STATUSES if x in wanted]


def _where(statuses, label: str | None) -> tuple[str, list]:
    """The WHERE clause of a listing (parameters from $3; $1 now, $2 stale_after_s)."""
    wanted = check_statuses(statuses)
    where, args = " WHERE w.revoked_at IS NULL", []
    if wanted:
        plain = [x for x in wanted if x != "stale"]
        terms = []
        if plain:
            args.append(plain)
            terms.append(f"s.status = ANY (${len(args) + 2}::text[])")
        if "stale" in wanted:
            terms.append(_STALE)
        where += " AND (" + " OR ".join(terms) + ")"
    if label is not None and label.strip():
        args.append(label.strip().lower())
        where += f" AND strpos(lower(w.label), ${len(args) + 2}) > 0"
    return where, args


async def list_compliance_json(
    conn: asyncpg.Connection | asyncpg.Pool, *, now: datetime, stale_after_s: int, statuses=(), label: str | None = None
) -> bytes:
    """The compliance of every non-revoked workspace as the UTF-8 JSON body of
    ``GET /api/v1/compliance`` (rendered by PostgreSQL, never parsed here):
    ``{"workspaces": [{workspace_id, label, plan, status, stale, last_report_at,
    limits: {kind: {value, max, percent, status, since}}}]}``, by workspace_id.

    ``statuses`` (``check_statuses``): keep only workspaces whose overall
    status is one of them, or, with ``stale``, that are stale (either
    matches). ``label``: keep only workspaces whose label contains it (case
    ignored). ``value``/``max``: counts (``max`` negative = unlimited);
    ``percent``: value / max x 100, one decimal, null when unlimited, max 0
    or value unknown; ``since``: when the collector first saw the limit's
    current status; ``last_report_at``: createdAt of the latest report, null
    when it never reported; both ISO 8601 UTC (``+00:00``). ``stale``: SQL
    ``is_stale`` at ``now`` (the definition billing uses).
    Raises ValueError for an unknown status.
    """
    where, args = _where(statuses, label)
    async with sqljson.reading(conn) as c:
        rows = await c.fetch(_LIST_SQL + where + " ORDER BY s.workspace_id", now, stale_after_s, *args)
    return sqljson.json_array([r[0] for r in rows], b'{"workspaces":', b"}")


async def list_compliance(
    conn: asyncpg.Connection | asyncpg.Pool, *, now: datetime, stale_after_s: int, statuses=(), label: str | None = None
) -> list[dict]:
    """The items of ``list_compliance_json``, parsed (for callers that read
    them; the HTTP answer uses ``list_compliance_json``). Raises ValueError
    for an unknown status."""
    body = await list_compliance_json(conn, now=now, stale_after_s=stale_after_s, statuses=statuses, label=label)
    return orjson.loads(body)["workspaces"]


async def board(
    conn: asyncpg.Connection | asyncpg.Pool, *, now: datetime, stale_after_s: int, statuses=(),
    label: str | None = None, limit: int = 200, offset: int = 0,
) -> dict:
    """The console's compliance board: ``{"total": matching workspaces,
    "workspaces": [items of list_compliance]}``, worst first (status over,
    at, near, unknown, ok; then stale ones; then the highest percent of any
    limit; then by label, unlabelled last), ``limit`` items from ``offset``.
    Filters as ``list_compliance_json``. Raises ValueError for an unknown status."""
    where, args = _where(statuses, label)
    async with sqljson.reading(conn) as c:
        # $1 and $2 are named in every count query (typed), even when no filter uses them
        total = await c.fetchval("SELECT count(*)" + _FROM + where + " AND $1::timestamptz IS NOT NULL"
                                 " AND $2::int IS NOT NULL", now, stale_after_s, *args)
        n = len(args) + 2
        rows = await c.fetch(_LIST_SQL + where + _WORST_ORDER + f" LIMIT ${n + 1} OFFSET ${n + 2}",
                             now, stale_after_s, *args, max(1, min(limit, 1000)), max(0, offset))
    return {"total": total, "workspaces": [orjson.loads(r[0]) for r in rows]}


async def workspace_compliance(
    conn: asyncpg.Connection | asyncpg.Pool, workspace_id: UUID, *, now: datetime, stale_after_s: int
) -> dict:
    """One workspace's compliance: an item of ``list_compliance`` whose every
    limit also has ``behavior`` (the plan's licence behaviour for that kind),
    ``{workspace_id, label, plan, status, stale, last_report_at, limits: {kind:
    {value, max, percent, status, since, behavior}}}``.

    Raises UnknownWorkspace.
    """
    async with sqljson.reading(conn) as c:
        row = await c.fetchrow(_ONE_SQL, now, stale_after_s, workspace_id)
    if row is None:
        raise UnknownWorkspace(str(workspace_id))
    item = orjson.loads(row["item"])
    behaviors = orjson.loads(row["behaviors"] or "{}")
    for kind, limit in item["limits"].items():
        limit["behavior"] = behaviors.get(kind)
    return item


async def status_counts(conn: asyncpg.Connection | asyncpg.Pool, *, now: datetime, stale_after_s: int) -> dict[str, int]:
    """How many non-revoked workspaces have each overall status, and how many
    are stale: ``{status: n for every name of STATUSES}`` (the board's summary)."""
    async with sqljson.reading(conn) as c:
        rows = await c.fetch(
            "SELECT s.status, count(*) AS n, count(*) FILTER (WHERE " + _STALE + ") AS stale"
            + _FROM + " WHERE w.revoked_at IS NULL GROUP BY s.status", now, stale_after_s)
    counts = dict.fromkeys(STATUSES, 0)
    for r in rows:
        counts[r["status"]] = r["n"]
        counts["stale"] += r["stale"]
    return counts
