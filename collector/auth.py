"""Bearer tokens for workspaces and operators.

Tokens are 256-bit random values (``secrets.token_urlsafe(32)``) with a
readable prefix (``wsc_ws_`` for a workspace, ``wsc_op_`` for an operator).
Only their SHA-256 is stored (a fast hash is right for high-entropy random
tokens; a password hash would add nothing but latency). A token is shown once,
when it is made.

Operator roles: ``admin`` (workspaces, plans, tokens), ``billing`` (billing
reads), ``compliance`` (compliance reads). The bootstrap operator token comes
from ``COLLECTOR_ADMIN_TOKEN`` and holds every role.

Every failure to authenticate raises the same ``Unauthorized``: missing,
malformed, unknown and revoked tokens are not told apart.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from uuid import UUID

import asyncpg

ROLES = ("admin", "billing", "compliance")
WORKSPACE_PREFIX = "wsc_ws_"
OPERATOR_PREFIX = "wsc_op_"


class Unauthorized(Exception):
    """No valid token (the one answer for missing, unknown or revoked)."""


class Forbidden(Exception):
    """A valid token without the role or scope this call needs."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Principal:
    """Who is calling: a workspace (``workspace_id`` set) or an operator (``roles``)."""

    kind: str  # "workspace" | "operator"
    workspace_id: UUID | None = None
    roles: frozenset[str] = frozenset()

    def require_role(self, role: str) -> None:
        """Raise Forbidden unless this is an operator holding ``role`` (or admin)."""
        if self.kind != "operator" or not ({role, "admin"} & self.roles):
            raise Forbidden(f"this call needs an operator token with the '{role}' role")


def new_token(prefix: str) -> tuple[str, bytes]:
    """Make a token; return (token, sha256 digest to store)."""
    token = prefix + secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; Unauthorized otherwise."""
    if not header:
        raise Unauthorized()
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200:
        raise Unauthorized()
    return token


async def authenticate(conn: asyncpg.Connection | asyncpg.Pool, token: str, admin_token: str) -> Principal:
    """Resolve a bearer token to a Principal.

    Raises Unauthorized for an unknown or revoked token, or one whose
    workspace was revoked.
    """
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return Principal("operator", roles=frozenset(ROLES))
    row = await conn.fetchrow(
        "SELECT t.kind, t.workspace_id, t.roles FROM tokens t"
        " LEFT JOIN workspaces w ON w.workspace_id = t.workspace_id"
        " WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND w.revoked_at IS NULL",
        token_hash(token),
    )
    if row is None:
        raise Unauthorized()
    return Principal(row["kind"], row["workspace_id"], frozenset(row["roles"]))


async def create_operator_token(conn, roles: list[str], label: str | None = None) -> str:
    """Create an operator token with ``roles`` (subset of ROLES); return it (shown once).

    Raises ValueError for an unknown role.
    """
    bad = sorted(set(roles) - set(ROLES))
    if bad or not roles:
        raise ValueError(f"roles must be a non-empty subset of {', '.join(ROLES)}")
    token, digest = new_token(OPERATOR_PREFIX)
    await conn.execute(
        "INSERT INTO tokens (token_hash, kind, roles, label) VALUES ($1, 'operator', $2, $3)",
        digest,
        sorted(set(roles)),
        label,
    )
    return token
