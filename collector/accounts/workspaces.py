"""The workspace registry: register, revoke, rotate a workspace's token.

A workspace is known by its ``workspace_id`` (UUID, made by the collector) and
its plan; nothing that names it (site URL, organisation) is kept.
"""

from __future__ import annotations

import uuid
from uuid import UUID

import asyncpg

from collector.accounts import plans
from collector.accounts.errors import UnknownPlan, UnknownWorkspace
from collector.accounts.tokens import REVOCATION_CHANNEL, WORKSPACE_PREFIX, new_token


async def register(conn: asyncpg.Connection, plan: str) -> dict:
    """Register a workspace on ``plan``; return ``{"workspace_id", "plan", "token"}``.

    The workspace gets a contract on ``plan`` (``collector.accounts.plans``): term from
    the registration's UTC date, 12 months, nothing purchased. The token is returned once and stored only as a hash. Raises UnknownPlan
    when the plan is not in the plan catalogue.
    """
    workspace_id = uuid.uuid4()
    token, digest = new_token(WORKSPACE_PREFIX)
    async with conn.transaction():
        try:
            await conn.execute(
                "INSERT INTO workspaces (workspace_id, plan) VALUES ($1, $2)", workspace_id, plan
            )
        except asyncpg.ForeignKeyViolationError as exc:
            raise UnknownPlan(plan) from exc
        await conn.execute(
            "INSERT INTO tokens (token_hash, kind, workspace_id) VALUES ($1, 'workspace', $2)",
            digest,
            workspace_id,
        )
        await plans.create_default_contract(conn, workspace_id, plan)
    return {"workspace_id": str(workspace_id), "plan": plan, "token": token}


async def rotate(conn: asyncpg.Connection, workspace_id: UUID) -> dict:
    """Revoke the workspace's tokens and issue a new one; return ``{"workspace_id", "token"}``.

    Raises UnknownWorkspace when it does not exist or is revoked.
    """
    token, digest = new_token(WORKSPACE_PREFIX)
    async with conn.transaction():
        ok = await conn.fetchval(
            "SELECT 1 FROM workspaces WHERE workspace_id = $1 AND revoked_at IS NULL FOR UPDATE",
            workspace_id,
        )
        if not ok:
            raise UnknownWorkspace(str(workspace_id))
        await conn.execute(
            "UPDATE tokens SET revoked_at = now() WHERE workspace_id = $1 AND revoked_at IS NULL",
            workspace_id,
        )
        await conn.execute("SELECT pg_notify($1, $2)", REVOCATION_CHANNEL, str(workspace_id))
        await conn.execute(
            "INSERT INTO tokens (token_hash, kind, workspace_id) VALUES ($1, 'workspace', $2)",
            digest,
            workspace_id,
        )
    return {"workspace_id": str(workspace_id), "token": token}


async def revoke(conn: asyncpg.Connection, workspace_id: UUID) -> dict:
    """Revoke a workspace and all its tokens (its stored data stays for billing).

    Returns ``{"workspace_id", "revoked_at"}``; raises UnknownWorkspace.
    """
    async with conn.transaction():
        revoked_at = await conn.fetchval(
            "UPDATE workspaces SET revoked_at = coalesce(revoked_at, now())"
            " WHERE workspace_id = $1 RETURNING revoked_at",
            workspace_id,
        )
        if revoked_at is None:
            raise UnknownWorkspace(str(workspace_id))
        await conn.execute(
            "UPDATE tokens SET revoked_at = now() WHERE workspace_id = $1 AND revoked_at IS NULL",
            workspace_id,
        )
        await conn.execute("SELECT pg_notify($1, $2)", REVOCATION_CHANNEL, str(workspace_id))
    return {"workspace_id": str(workspace_id), "revoked_at": revoked_at.isoformat()}


async def get(conn, workspace_id: UUID) -> dict:
    """The workspace's registry row as a dict; raises UnknownWorkspace."""
    row = await conn.fetchrow(
        "SELECT workspace_id, plan, created_at, revoked_at FROM workspaces WHERE workspace_id = $1",
        workspace_id,
    )
    if row is None:
        raise UnknownWorkspace(str(workspace_id))
    return {
        "workspace_id": str(row["workspace_id"]),
        "plan": row["plan"],
        "created_at": row["created_at"].isoformat(),
        "revoked_at": row["revoked_at"].isoformat() if row["revoked_at"] else None,
    }
