"""Rollups fed from storage: daily snapshots, monthly usage, term maxima, compliance.

``apply_reports`` is called by ``collector.storage`` inside the transaction
that stores the reports, so a rollup never counts a report that is not
stored. It is set-based: one statement per table for the whole batch (up to
``batch_max`` = 256 reports), never one round trip per report.

Rules
-----
- Daily snapshot: one row per workspace and UTC day of the record's
  ``createdAt``. The latest ``createdAt`` of the day wins for the state counts
  (on equal ``createdAt``, the record received last)
  for seats, guests, apps; ``mac`` and ``peak_connections`` keep the highest
  value of all the day's records (both only grow within their window, and a
  peak is a peak). A resend never reaches here (``storage`` stores a record
  once); a late record for an earlier day updates that day only if it is the
  latest of that day, and its month and term are recomputed: idempotent.
- Monthly usage (``monthly_usage``): recomputed from the daily snapshots of
  each (workspace, month) the batch touched: max seats, max guests, MAC
  (highest value reported by records whose createdAt falls within the month;
  ``contactsCount`` is the current UTC month's MAC, ROCKETCHAT.md), peak
  connections, days reported.
- Term maximum (``term_usage``, the true-up): max daily seats within the
  contract term; raised with ``greatest`` as days arrive, recomputed from the
  snapshots when a day's seats went down (a later record of the same day).
- Compliance (``compliance_state``): re-evaluated for every touched
  workspace from its latest snapshot (SQL function ``refresh_compliance``).

Values (see ``FIELDS``): a missing, null, negative or non-numeric value is
stored as NULL = unknown (ignored by maxima; the limit's status is
``unknown``). The apps counts may be ``false`` (Rocket.Chat's apps engine is
not initialised, so no app runs): counted as 0.

Apps (Rocket.Chat licence): ``privateApps`` / ``marketplaceApps`` count the
ENABLED apps whose installation source is private / marketplace
(``apps/meteor/ee/app/license/server/lib/getAppCount.ts``, and the
``apps/count`` endpoint ``appsCountHandler.ts``: ``totalPrivateEnabled``,
``totalMarketplaceEnabled``). The statistics record has ``apps.totalActive``
(all enabled apps) and ``apps.totalPrivateAppsEnabled`` (enabled private
apps; older versions only ``apps.totalPrivateApps``, installed private apps),
hence: private = totalPrivateAppsEnabled (else totalPrivateApps), marketplace
= max(0, totalActive - private).

Concurrency: the rows of one workspace are written under a transaction-level
advisory lock on the workspace (taken in a sorted order), so two writers
never recompute the same month or term from different snapshots.
"""

from __future__ import annotations

from datetime import timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg

    from collector.storage import StoredReport

#: Every report value the rollups read: name -> (data category, flat catalogue path).
#: The ONE place to adjust when the field catalogue changes.
FIELDS: dict[str, tuple[str, str]] = {
    "activeUsers": ("billing", "activeUsers"),  # seats (guests, apps, bots, federated excluded)
    "guestUsers": ("billing", "activeGuests"),
    "monthlyActiveContacts": ("billing", "omnichannelContactsBySource.contactsCount"),
    "peakConnections": ("billing", "dailyPeakConnections"),
    "appsActive": ("compliance", "apps.totalActive"),
    "privateAppsEnabled": ("compliance", "apps.totalPrivateAppsEnabled"),
    "privateAppsInstalled": ("compliance", "apps.totalPrivateApps"),  # fallback for privateApps
}

#: Advisory lock namespace (pg_advisory_xact_lock(int, int)) for per-workspace rollup writes.
LOCK_NAMESPACE = 7_314_002


def _count(categories: dict[str, dict], name: str, false_is_zero: bool = False) -> int | None:
    """The non-negative integer value of FIELDS[name], or None when unknown."""
    category, path = FIELDS[name]
    value: Any = (categories.get(category) or {}).get(path)
    if value is False and false_is_zero:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return None
    return int(value)


def snapshot_values(categories: dict[str, dict]) -> dict[str, int | None]:
    """The rollup values of one report: ``{active_users, active_guests, mac,
    peak_connections, private_apps, marketplace_apps}`` (None = unknown)."""
    active = _count(categories, "appsActive", True)
    private = _count(categories, "privateAppsEnabled", True)
    if private is None:
        private = _count(categories, "privateAppsInstalled", True)
    marketplace = None if active is None else max(0, active - (private or 0))
    return {
        "active_users": _count(categories, "activeUsers"),
        "active_guests": _count(categories, "guestUsers"),
        "mac": _count(categories, "monthlyActiveContacts"),
        "peak_connections": _count(categories, "peakConnections"),
        "private_apps": private,
        "marketplace_apps": marketplace,
    }


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


_COLUMNS = ("active_users", "active_guests", "private_apps", "marketplace_apps", "mac", "peak_connections")


async def apply_reports(conn: "asyncpg.Connection", reports: "list[StoredReport]") -> None:
    """Fold newly stored reports into the rollups (same transaction as the insert).

    ``reports``: the reports stored by this batch (each stored once). Raises
    asyncpg errors only (the caller sheds the whole batch on them).
    """
    if not reports:
        return
    # Reduce the batch to one row per (workspace, UTC day): latest record wins,
    # mac and peak keep the day's highest value.
    days: dict[tuple, dict] = {}
    # Stable sort: on equal createdAt the report received later (later in the batch) wins.
    for r in sorted(reports, key=lambda r: r.created_at):
        key = (r.workspace_id, r.created_at.astimezone(timezone.utc).date())
        values = snapshot_values(r.categories)
        prev = days.get(key)
        row = {"created_at": r.created_at, "report_id": r.report_id, **values}
        if prev is not None:
            row["mac"] = _max(prev["mac"], values["mac"])
            row["peak_connections"] = _max(prev["peak_connections"], values["peak_connections"])
        days[key] = row
    keys = sorted(days, key=lambda k: (str(k[0]), k[1]))
    workspaces = sorted({k[0] for k in keys}, key=str)

    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(w::text))"
        " FROM (SELECT w FROM unnest($2::uuid[]) AS w ORDER BY hashtext(w::text)) s",
        LOCK_NAMESPACE,
        workspaces,
    )
    changed = await conn.fetch(
        "WITH i AS (SELECT * FROM unnest($1::uuid[], $2::date[], $3::timestamptz[], $4::uuid[], $5::bigint[],"
        "   $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[])"
        "   AS i(workspace_id, day, created_at, report_id, active_users, active_guests, private_apps,"
        "        marketplace_apps, mac, peak_connections)),"
        " old AS (SELECT d.workspace_id, d.day, d.active_users FROM daily_snapshots d"
        "   JOIN i ON d.workspace_id = i.workspace_id AND d.day = i.day),"
        " up AS (INSERT INTO daily_snapshots AS d SELECT * FROM i"
        "   ON CONFLICT (workspace_id, day) DO UPDATE SET"
        "   created_at = greatest(d.created_at, excluded.created_at),"
        "   report_id = CASE WHEN excluded.created_at >= d.created_at THEN excluded.report_id ELSE d.report_id END,"
        + ",".join(
            f" {c} = CASE WHEN excluded.created_at >= d.created_at THEN excluded.{c} ELSE d.{c} END"
            for c in ("active_users", "active_guests", "private_apps", "marketplace_apps")
        )
        + ", mac = CASE WHEN d.mac IS NULL OR excluded.mac > d.mac THEN excluded.mac ELSE d.mac END,"
        " peak_connections = CASE WHEN d.peak_connections IS NULL OR excluded.peak_connections > d.peak_connections"
        "   THEN excluded.peak_connections ELSE d.peak_connections END"
        "   RETURNING d.workspace_id, d.day, d.active_users)"
        " SELECT up.workspace_id, up.day, up.active_users, old.active_users AS old_active_users,"
        "   old.day IS NOT NULL AS existed"
        " FROM up LEFT JOIN old ON old.workspace_id = up.workspace_id AND old.day = up.day",
        [k[0] for k in keys],
        [k[1] for k in keys],
        *([days[k][c] for k in keys] for c in ("created_at", "report_id", *_COLUMNS)),
    )

    # Months touched: recompute from the daily snapshots (at most 31 rows each).
    months = sorted({(k[0], k[1].replace(day=1)) for k in keys}, key=lambda m: (str(m[0]), m[1]))
    await conn.execute(
        "INSERT INTO monthly_usage AS m (workspace_id, month, max_seats, max_guests, mac, peak_connections,"
        "   days_reported, last_report_at)"
        " SELECT t.ws, t.month, max(d.active_users), max(d.active_guests), max(d.mac), max(d.peak_connections),"
        "   count(*), max(d.created_at)"
        " FROM unnest($1::uuid[], $2::date[]) AS t(ws, month)"
        " JOIN daily_snapshots d ON d.workspace_id = t.ws"
        "   AND d.day >= t.month AND d.day < (t.month + interval '1 month')::date"
        " GROUP BY t.ws, t.month"
        " ON CONFLICT (month, workspace_id) DO UPDATE SET max_seats = excluded.max_seats,"
        "   max_guests = excluded.max_guests, mac = excluded.mac, peak_connections = excluded.peak_connections,"
        "   days_reported = excluded.days_reported, last_report_at = excluded.last_report_at",
        [m[0] for m in months],
        [m[1] for m in months],
    )

    # Term maxima: raise with the new days in the term; recompute a workspace
    # whose seats went down on some day (a later record of the same day).
    went_down = {
        r["workspace_id"]
        for r in changed
        if r["existed"] and r["old_active_users"] is not None
        and (r["active_users"] is None or r["active_users"] < r["old_active_users"])
    }
    if went_down:
        await conn.execute("SELECT refresh_term_usage($1::uuid[])", sorted(went_down, key=str))
    rest = [r for r in changed if r["workspace_id"] not in went_down and r["active_users"] is not None]
    if rest:
        await conn.execute(
            "UPDATE term_usage t SET max_seats = n.seats, max_seats_day = n.day"
            " FROM (SELECT DISTINCT ON (c.ws) c.ws, c.seats, c.day"
            "       FROM unnest($1::uuid[], $2::date[], $3::bigint[]) AS c(ws, day, seats)"
            "       JOIN term_usage t ON t.workspace_id = c.ws AND c.day BETWEEN t.term_start AND t.term_end"
            "       ORDER BY c.ws, c.seats DESC, c.day) n"
            " WHERE t.workspace_id = n.ws AND (t.max_seats IS NULL OR n.seats > t.max_seats)",
            [r["workspace_id"] for r in rest],
            [r["day"] for r in rest],
            [r["active_users"] for r in rest],
        )

    await conn.execute("SELECT refresh_compliance($1::uuid[], NULL)", workspaces)
