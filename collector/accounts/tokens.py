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

Workspace tokens are looked up in the database once and then kept in a small
per-process cache (``PrincipalCache``, keyed by the token's SHA-256) for at
most ``COLLECTOR_AUTH_CACHE_TTL_S`` seconds (default 60; 0 turns it off).
Revocation: rotate and revoke NOTIFY ``collector_tokens`` with the
workspace id when they commit; every serving process LISTENs and drops that
workspace's cached tokens at once (other ``--workers`` and the ``collector
workspace revoke`` command included). The TTL is only the bound should a
process lose its listening connection unnoticed: when asyncpg reports the
connection lost, the process stops caching at once.
Operator tokens and unknown tokens are never cached.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from uuid import UUID

import asyncpg
from cachetools import TTLCache

ROLES = ("admin", "billing", "compliance")
REVOCATION_CHANNEL = "collector_tokens"  # NOTIFY payload: the workspace id
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
    ref: str = ""  # operator: the token's reference (``token_ref``), "admin-env" for COLLECTOR_ADMIN_TOKEN

    @property
    def actor(self) -> str:
        """Who acted, for audit records: ``workspace`` or ``operator:<ref>`` (never a token)."""
        return "workspace" if self.kind == "workspace" else f"operator:{self.ref}"

    def require_role(self, role: str) -> None:
        """Raise Forbidden unless this is an operator holding ``role`` (or admin)."""
        if self.kind != "operator" or not ({role, "admin"} & self.roles):
            raise Forbidden(f"this call needs an operator token with the '{role}' role")


class PrincipalCache:
    """Workspace principals by token hash, each kept at most ``ttl`` seconds (bounded in size)."""

    def __init__(self, ttl: float, maxsize: int = 100_000):
        self._cache: TTLCache | None = TTLCache(maxsize, ttl) if ttl > 0 else None

    @property
    def enabled(self) -> bool:
        return self._cache is not None

    def get(self, digest: bytes) -> "Principal | None":
        return self._cache.get(digest) if self._cache is not None else None

    def put(self, digest: bytes, principal: "Principal") -> None:
        if self._cache is not None and principal.kind == "workspace":
            self._cache[digest] = principal

    def suspend(self) -> None:
        """Stop caching (and forget everything): revocations can no longer be heard."""
        self._cache = None

    def forget_workspace(self, workspace_id: UUID) -> None:
        """Drop every cached token of ``workspace_id`` (after a rotate or revoke here)."""
        if self._cache is not None:
            for digest in [d for d, p in self._cache.items() if p.workspace_id == workspace_id]:
                self._cache.pop(digest, None)


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


async def authenticate(
    conn: asyncpg.Connection | asyncpg.Pool, token: str, admin_token: str, cache: PrincipalCache | None = None
) -> Principal:
    """Resolve a bearer token to a Principal (through ``cache`` for workspace tokens).

    Raises Unauthorized for an unknown or revoked token, or one whose
    workspace was revoked (subject to the cache's TTL, see the module docstring).
    """
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return Principal("operator", roles=frozenset(ROLES), ref="admin-env")
    digest = token_hash(token)
    if cache is not None and (cached := cache.get(digest)) is not None:
        return cached
    row = await conn.fetchrow(
        "SELECT t.kind, t.workspace_id, t.roles FROM tokens t"
        " LEFT JOIN workspaces w ON w.workspace_id = t.workspace_id"
        " WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND w.revoked_at IS NULL",
        digest,
    )
    if row is None:
        raise Unauthorized()
    found = Principal(row["kind"], row["workspace_id"], frozenset(row["roles"]), token_ref(digest))
    if cache is not None:
        cache.put(digest, found)
    return found


def token_ref(digest: bytes) -> str:
    """A token's public reference: the first 12 hex digits of its SHA-256
    (names it in listings and audit records; reveals nothing of the token)."""
    return digest[:6].hex()


async def create_operator_token(conn, roles: list[str], label: str | None = None) -> dict:
    """Create an operator token with ``roles`` (subset of ROLES).

    Returns ``{"token" (shown once), "ref", "roles", "label"}``. Raises
    ValueError for an empty or unknown role list.
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
    return {"token": token, "ref": token_ref(digest), "roles": sorted(set(roles)), "label": label}


async def list_operator_tokens(conn) -> list[dict]:
    """Operator tokens, newest first: ``{"ref", "roles", "label", "created_at", "revoked_at"}``
    (ISO 8601; never the token)."""
    rows = await conn.fetch(
        "SELECT token_hash, roles, label, created_at, revoked_at FROM tokens WHERE kind = 'operator'"
        " ORDER BY created_at DESC"
    )
    return [
        {
            "ref": token_ref(r["token_hash"]),
            "roles": list(r["roles"]),
            "label": r["label"],
            "created_at": r["created_at"].isoformat(),
            "revoked_at": r["revoked_at"].isoformat() if r["revoked_at"] else None,
        }
        for r in rows
    ]


async def revoke_operator_token(conn, ref: str) -> dict:
    """Revoke the operator token with reference ``ref`` (effective at once: operator
    tokens are never cached). Returns ``{"ref", "revoked_at"}``; raises LookupError."""
    if not re.fullmatch(r"[0-9a-f]{12}", ref):
        raise LookupError(ref)
    revoked_at = await conn.fetchval(
        "UPDATE tokens SET revoked_at = coalesce(revoked_at, now())"
        " WHERE kind = 'operator' AND substring(token_hash from 1 for 6) = decode($1, 'hex')"
        " RETURNING revoked_at",
        ref,
    )
    if revoked_at is None:
        raise LookupError(ref)
    return {"ref": ref, "revoked_at": revoked_at.isoformat()}


class RevocationListener:
    """A dedicated connection LISTENing on ``collector_tokens``: every rotate or
    revoke (any process, the CLI included) NOTIFYs the workspace id on commit,
    and this process drops that workspace's cached tokens. Should the
    connection be lost, the process stops caching tokens."""

    def __init__(self, principals: PrincipalCache):
        self._principals = principals
        self._conn: asyncpg.Connection | None = None

    async def start(self, database_url: str) -> None:
        if not self._principals.enabled:
            return
        self._conn = await asyncpg.connect(database_url)
        await self._conn.add_listener(REVOCATION_CHANNEL, self._on_notify)
        self._conn.add_termination_listener(self._on_lost)

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.remove_termination_listener(self._on_lost)
            await self._conn.close()

    def _on_notify(self, _conn, _pid, _channel, payload: str) -> None:
        self._principals.forget_workspace(UUID(payload))

    def _on_lost(self, _conn) -> None:
        # Revocations can no longer be heard: stop caching rather than serve a
        # revoked token for up to the TTL.
        self._principals.suspend()
        log.warning("revocation_listener_lost", token_cache="suspended")
