"""The workspace registry: register, revoke, rotate a workspace's token.

A workspace is known by its ``workspace_id`` (UUID, made by the collector) and
its plan; nothing the workspace sends that names it (site URL, organisation)
is kept. An operator may give it a ``label`` (customer name, CRM reference:
account data entered by the operator, never taken from a report; shown by the
console, carried in the billing and compliance answers).
"""

from __future__ import annotations

import unicodedata
import uuid
from uuid import UUID

import asyncpg

from collector.accounts import plans
from collector.accounts.errors import UnknownPlan, UnknownWorkspace
from collector.accounts.plans import Invalid
from collector.accounts.tokens import REVOCATION_CHANNEL, WORKSPACE_PREFIX, new_token


LABEL_MAX = 200  # characters


def clean_label(label: str | None) -> str | None:
    """A label as stored: surrounding white space removed; None or blank: no label.

    Raises Invalid (path ``label``) for more than LABEL_MAX characters or a
    control character (tab, newline, ...).
    """
    if label is None:
        return None
    label = label.strip()
    if not label:
        return None
    if len(label) > LABEL_MAX:
        raise Invalid("label", f"label must be at most {LABEL_MAX} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in label):
        raise Invalid("label", "label must not contain control characters")
    return label


async def register(conn: asyncpg.Connection, plan: str, label: str | None = None) -> dict:
    """Register a workspace on ``plan`` with an optional operator ``label``;
    return ``{"workspace_id", "plan", "label", "token"}``.

    The workspace gets a contract on ``plan`` (``collector.accounts.plans``): term from
    the registration's UTC date, 12 months, nothing purchased. The token is
    returned once and stored only as a hash. Raises UnknownPlan when the plan
    is not in the plan catalogue, Invalid for a label that does not fit
    (``clean_label``).
    """
    label = clean_label(label)
    workspace_id = uuid.uuid4()
    token, digest = new_token(WORKSPACE_PREFIX)
    async with conn.transaction():
        try:
            await conn.execute(
                "INSERT INTO workspaces (workspace_id, plan, label) VALUES ($1, $2, $3)", workspace_id, plan, label
            )
        except asyncpg.ForeignKeyViolationError as exc:
            raise UnknownPlan(plan) from exc
        await conn.execute(
            "INSERT INTO tokens (token_hash, kind, workspace_id) VALUES ($1, 'workspace', $2)",
            digest,
            workspace_id,
        )
        await plans.create_default_contract(conn, workspace_id, plan)
    return {"workspace_id": str(workspace_id), "plan": plan, "label": label, "token": token}


async def set_label(conn: asyncpg.Connection, workspace_id: UUID, label: str | None) -> dict:
    """Set (or, with None or a blank one, clear) the workspace's label; return
    its registry entry (``get``). Raises UnknownWorkspace, Invalid (``clean_label``).
    A revoked workspace keeps its label and may be relabelled (billing shows it)."""
    label = clean_label(label)
    if not await conn.fetchval(
        "UPDATE workspaces SET label = $2 WHERE workspace_id = $1 RETURNING 1", workspace_id, label
    ):
        raise UnknownWorkspace(str(workspace_id))
    return await get(conn, workspace_id)


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
    """The workspace's registry entry: ``{"workspace_id", "plan", "label" (None:
    none), "created_at", "revoked_at" (ISO 8601, None: active)}``; raises UnknownWorkspace."""
    row = await conn.fetchrow(
        "SELECT workspace_id, plan, label, created_at, revoked_at FROM workspaces WHERE workspace_id = $1",
        workspace_id,
    )
    if row is None:
        raise UnknownWorkspace(str(workspace_id))
    return {
        "workspace_id": str(row["workspace_id"]),
        "plan": row["plan"],
        "label": row["label"],
        "created_at": row["created_at"].isoformat(),
        "revoked_at": row["revoked_at"].isoformat() if row["revoked_at"] else None,
    }
