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
Revocation: rotate, revoke and erasure NOTIFY ``collector_tokens`` with the
workspace id when they commit; every serving process LISTENs and drops that
workspace's cached tokens at once (other ``--workers`` and the ``collector
workspace revoke`` command included). The TTL is only the bound should a
process lose its listening connection unnoticed: when asyncpg reports the
connection lost, the process stops caching at once.
Operator tokens and unknown tokens are never cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from uuid import UUID

import asyncpg
from cachetools import TTLCache
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from collector.ops import log, metrics

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
    """Workspace principals by token hash, each kept at most ``ttl`` seconds (bounded in size).

    ``generation`` changes with every eviction, suspension and resumption: a
    lookup that began before one of them does not put its (maybe stale)
    answer in the cache (``put(..., since=generation)``).
    """

    def __init__(self, ttl: float, maxsize: int = 100_000):
        self._ttl, self._maxsize = ttl, maxsize
        self._cache: TTLCache | None = TTLCache(maxsize, ttl) if ttl > 0 else None
        self.generation = 0
        metrics.TOKEN_CACHE_ON.set(1 if self._cache is not None else 0)

    @property
    def configured(self) -> bool:
        """True when a TTL was given (the cache is on unless suspended)."""
        return self._ttl > 0

    @property
    def enabled(self) -> bool:
        return self._cache is not None

    def get(self, digest: bytes) -> "Principal | None":
        return self._cache.get(digest) if self._cache is not None else None

    def put(self, digest: bytes, principal: "Principal", since: int | None = None) -> None:
        """Keep ``principal``, unless the cache changed since generation ``since``."""
        if self._cache is not None and principal.kind == "workspace" and since in (None, self.generation):
            self._cache[digest] = principal

    def suspend(self) -> None:
        """Stop caching (and forget everything): revocations can no longer be heard."""
        self._cache = None
        self.generation += 1
        metrics.TOKEN_CACHE_ON.set(0)

    def resume(self) -> None:
        """Cache again, from empty (revocations are heard again)."""
        if self.configured:
            self._cache = TTLCache(self._maxsize, self._ttl)
            self.generation += 1
            metrics.TOKEN_CACHE_ON.set(1)

    def forget_workspace(self, workspace_id: UUID) -> None:
        """Drop every cached token of ``workspace_id`` (after a rotate or revoke here)."""
        self.generation += 1
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
    since = cache.generation if cache is not None else None
    metrics.TOKEN_LOOKUPS.inc()
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
        cache.put(digest, found, since)
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
    """A dedicated connection LISTENing on ``collector_tokens``: every rotate,
    revoke, erasure, data-key destruction or opt-out change (any process, the
    CLI included) NOTIFYs the workspace id on commit, and this process drops
    that workspace's cached tokens, and what the caches of ``also`` hold of
    it (objects with ``forget_workspace``, ``suspend`` and ``resume``, e.g.
    the ingest writer's ``datakeys.Keyring``).

    Should the connection be lost (a database restart, a terminated backend),
    the process stops caching at once and reconnects in the background with
    exponential backoff (tenacity: 0.1 s doubling to ``backoff_max_s``, with
    jitter, for as long as it takes); caching resumes, from an empty cache,
    only once it LISTENs again. Metrics: ``collector_token_cache_on`` (0 while
    suspended), ``collector_revocation_listener_reconnects_total``."""

    def __init__(self, principals: PrincipalCache, backoff_max_s: float = 5.0, also: tuple = ()):
        self._principals = principals
        self._also = also
        self._backoff_max_s = backoff_max_s
        self._url = ""
        self._conn: asyncpg.Connection | None = None
        self._reconnecting: asyncio.Task | None = None
        self._closing = False

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def start(self, database_url: str) -> None:
        """Listen (when the cache is configured). A first connection that fails
        does not fail the start: the cache stays suspended until a reconnect succeeds."""
        if not self._principals.configured and not self._also:
            return
        self._url = database_url
        try:
            await self._listen()
        except Exception as exc:  # noqa: BLE001 - any failure: suspended, retried in the background
            self._lost(type(exc).__name__)

    async def close(self) -> None:
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        if self._conn is not None:
            self._conn.remove_termination_listener(self._on_lost)
            await self._conn.close()

    async def _listen(self) -> None:
        """Connect, LISTEN, then resume caching. Raises what asyncpg raises."""
        conn = await asyncpg.connect(self._url, timeout=10,
                                     server_settings={"application_name": "collector-revocations"})
        try:
            await conn.add_listener(REVOCATION_CHANNEL, self._on_notify)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._on_lost)
        self._conn = conn
        self._principals.resume()  # after LISTEN: every later revocation is heard
        for cache in self._also:
            cache.resume()

    def _on_notify(self, _conn, _pid, _channel, payload: str) -> None:
        workspace_id = UUID(payload)
        self._principals.forget_workspace(workspace_id)
        for cache in self._also:
            cache.forget_workspace(workspace_id)

    def _on_lost(self, _conn) -> None:
        if not self._closing:
            self._lost("connection_lost")

    def _lost(self, why: str) -> None:
        # Revocations can no longer be heard: stop caching rather than serve a
        # revoked token for up to the TTL, and listen again as soon as we can.
        self._principals.suspend()
        for cache in self._also:
            cache.suspend()
        self._conn = None
        log.warning("revocation_listener_lost", token_cache="suspended", error=why)
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        async for attempt in AsyncRetrying(
            wait=wait_exponential_jitter(multiplier=0.1, jitter=0.1, max=self._backoff_max_s),
            retry=retry_if_exception_type(Exception),
        ):
            with attempt:
                metrics.LISTENER_RECONNECTS.inc()
                await self._listen()
        log.info("revocation_listener_restored", token_cache="on",
                 attempts=attempt.retry_state.attempt_number)
