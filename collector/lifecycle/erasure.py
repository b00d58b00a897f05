"""Erasure: a workspace removed completely, but for one audit line.

``erase`` in ONE transaction: locks the registry row (FOR UPDATE: waits for
the ingest batches holding it FOR SHARE, and holds off the next ones, which
then find no workspace and store nothing) and the workspace's rollup lock;
deletes every row of the workspace from every table with a ``workspace_id``
column (SQL ``erase_workspace``: tokens, data keys, reports, report data,
record keys, rollups, term usage, contract, compliance state, quarantine,
earlier audit lines, and any table added later), then the registry row;
writes one audit line (``workspace_erased``: when, by whom, ``counts``: rows
removed per table; never a value); NOTIFYs ``collector_tokens``, so every
process drops the workspace's cached tokens and keys at the commit.

What remains, and why: that audit line (the workspace id, the time, the
actor, the counts), because the operator must be able to show that and when
the erasure was done. Physically: the reports' sealed data (their keys are
destroyed, so it cannot be read) and, until autovacuum prunes them and the
space is reused, the bytes of the deleted rows of the large tables
(``reports`` metadata, ``report_keys``, ``daily_snapshots``, ``monthly_usage``:
ids, times, versions, receipts, counts). The small per-workspace tables that
hold the registry, tokens' hashes, contract, compliance state (with its
counts) and the quarantine are rewritten right after the commit
(``datakeys.shred``), with ``data_keys``.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg
import orjson

from collector.accounts import UnknownWorkspace, datakeys
from collector.ops import ROLLUP_LOCK_NAMESPACE

#: Rewritten after an erasure (each holds one or a few rows per workspace).
REWRITTEN = ("data_keys", "workspaces", "tokens", "contracts", "term_usage", "compliance_state", "quarantine")


async def erase(conn: asyncpg.Connection, workspace_id: UUID, actor: str) -> dict:
    """Erase ``workspace_id`` (see the module docstring), then rewrite the
    tables of ``REWRITTEN`` when ``conn`` is not in a transaction.

    Returns ``{"workspace_id", "erased_at" (ISO 8601), "removed": {table:
    rows}, "rewritten": [tables]}``. Raises UnknownWorkspace (revoked
    workspaces are erased too)."""
    async with conn.transaction():
        if not await conn.fetchval(
            "SELECT 1 FROM workspaces WHERE workspace_id = $1 FOR UPDATE", workspace_id
        ):
            raise UnknownWorkspace(str(workspace_id))
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))",
                           ROLLUP_LOCK_NAMESPACE, workspace_id)
        removed = orjson.loads(await conn.fetchval("SELECT erase_workspace($1)::text", workspace_id))
        erased_at = await conn.fetchval(
            "INSERT INTO audit_log (actor, workspace_id, action, counts) VALUES ($1, $2, 'workspace_erased', $3::jsonb)"
            " RETURNING at",
            actor, workspace_id, orjson.dumps(removed).decode(),
        )
        await datakeys.mark_rewrite(conn, *REWRITTEN)
        await datakeys.notify(conn, workspace_id)
    rewritten = await datakeys.settle(conn)
    return {"workspace_id": str(workspace_id), "erased_at": erased_at.isoformat(), "removed": removed,
            "rewritten": rewritten}
