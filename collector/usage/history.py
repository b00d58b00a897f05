"""A workspace's usage day by day, from the daily snapshots (never raw reports).

What the console's workspace chart draws: per UTC day of the records'
``createdAt``, the day's seats (``activeUsers`` of its latest record), guests,
monthly active contacts and peak connections (the day's highest), as
``collector.usage.rollups`` keeps them.
"""

from __future__ import annotations

from datetime import date
from uuid import UUID

import asyncpg

#: The series of ``daily``, in drawing order: key -> what it counts.
SERIES = {
    "seats": "seats (activeUsers)",
    "guests": "guests (activeGuests)",
    "monthly_active_contacts": "monthly active contacts",
    "peak_connections": "peak connections",
}


async def daily(conn: asyncpg.Connection | asyncpg.Pool, workspace_id: UUID, first: date, last: date) -> list[dict]:
    """The days from ``first`` to ``last`` (inclusive UTC dates) with a
    snapshot, in order: ``[{"day": date, "seats", "guests",
    "monthly_active_contacts", "peak_connections"}]`` (counts; None:
    not reported). A day without a report is absent."""
    rows = await conn.fetch(
        "SELECT day, active_users, active_guests, mac, peak_connections FROM daily_snapshots"
        " WHERE workspace_id = $1 AND day BETWEEN $2 AND $3 ORDER BY day",
        workspace_id, first, last,
    )
    return [{"day": r["day"], "seats": r["active_users"], "guests": r["active_guests"],
             "monthly_active_contacts": r["mac"], "peak_connections": r["peak_connections"]} for r in rows]
