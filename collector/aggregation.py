"""Rollups fed from storage (daily snapshots, per-period maxima).

``apply_reports`` is called by ``collector.storage`` inside the transaction
that stores the reports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

    from collector.storage import StoredReport


async def apply_reports(conn: "asyncpg.Connection", reports: "list[StoredReport]") -> None:
    """Fold newly stored reports into the rollups (same transaction as the insert)."""
    return None
