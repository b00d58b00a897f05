"""Rollups fed from storage: daily snapshots, monthly usage, term maxima, compliance.

The rollups are written in the transaction that stores the reports, so a
rollup never counts a report that is not stored. The rollup values of each
report are read here (``FIELDS``, ``snapshot_values``, ``rollup_arrays``);
the plpgsql function ``apply_rollups`` (``sql/0002_plans_and_rollups.sql``)
takes them as parallel arrays, one element per report (a batch is up to
``batch_max`` = 256), reduces them per (workspace, UTC day) and writes every
rollup with one set-based statement per table: one call, plans cached per
connection. The ingest writer (``collector.ingest.writer``) reaches it through
``write_batch`` (``sql/0004_write_batch.sql``), in the same statement as the
insert; ``apply_reports`` makes the call for any other caller (the tests).

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
- Compliance (``compliance_state``): re-evaluated from the latest snapshot
  (SQL function ``refresh_compliance``) for every workspace whose latest
  snapshot the batch wrote; a late record for an earlier day leaves it.

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

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from collector.ops import ROLLUP_LOCK_NAMESPACE as LOCK_NAMESPACE

if TYPE_CHECKING:
    import asyncpg


@dataclass(frozen=True)
class StoredReport:
    """A stored report as the rollups take it (``apply_reports``): its id,
    workspace, ``createdAt`` (aware) and kept categories ``{category: {path: value}}``."""

    report_id: UUID
    workspace_id: UUID
    created_at: datetime
    categories: dict[str, dict]

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


#: The rollup values of a report, in ``apply_rollups``' argument order.
ROLLUP_COLUMNS = ("active_users", "active_guests", "private_apps", "marketplace_apps", "mac", "peak_connections")

#: The SQL call folding a batch into the rollups: $1 lock namespace, $2 workspace
#: ids, $3 createdAt, $4 report ids, $5..$10 the ROLLUP_COLUMNS (one element per report).
APPLY_ROLLUPS_SQL = (
    "SELECT apply_rollups($1, $2::uuid[], $3::timestamptz[], $4::uuid[], $5::bigint[], $6::bigint[],"
    " $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[])"
)


def rollup_arrays(categories: "list[dict[str, dict]]") -> list[list[int | None]]:
    """The ROLLUP_COLUMNS of each report as parallel arrays (``apply_rollups``' $5..$10):
    ``categories`` is one report's kept categories per element; None = unknown."""
    return rollup_columns([snapshot_values(c) for c in categories])


def rollup_columns(values: "list[dict[str, int | None]]") -> list[list[int | None]]:
    """``rollup_arrays`` of reports whose ``snapshot_values`` were taken already
    (the ingest writer's pending reports carry theirs, not their categories)."""
    return [[v[col] for v in values] for col in ROLLUP_COLUMNS]


async def apply_reports(conn: "asyncpg.Connection", reports: list[StoredReport]) -> None:
    """Fold newly stored reports into the rollups (same transaction as the insert).

    ``reports``: the reports stored, each once, in the order received (on
    equal createdAt the later one wins its day). One call of the SQL function
    ``apply_rollups``, which reduces them per (workspace, UTC day) and writes
    every rollup. The ingest writer makes the same call from ``write_batch``.
    Raises asyncpg errors only (the caller sheds the whole batch on them).
    """
    if not reports:
        return
    await conn.execute(
        APPLY_ROLLUPS_SQL,
        LOCK_NAMESPACE,
        [r.workspace_id for r in reports],
        [r.created_at for r in reports],
        [r.report_id for r in reports],
        *rollup_arrays([r.categories for r in reports]),
    )
