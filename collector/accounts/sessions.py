"""Console sessions: an operator signed in to the console with a token.

A session is a random id (``secrets.token_urlsafe(32)``, 256 bits) that the
console keeps in a cookie; the table ``console_sessions``
(``sql/0006_console.sql``) stores only its SHA-256, the SHA-256 of the
operator token that signed in, and when it expires. A session is valid while

- it has not expired (``expires_at``, fixed at sign-in: ``ttl_s`` seconds), and
- its token is: an operator token in ``tokens`` that is not revoked (looked
  up on every request, never cached, so revoking the token ends its sessions
  at once; the roles are the token's as they are now), or the bootstrap
  ``COLLECTOR_ADMIN_TOKEN`` while it is still the configured one.

Signing out deletes the row; expired rows are deleted when a session is made.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import asyncpg

from collector.accounts.tokens import ROLES, Principal, token_hash, token_ref


@dataclass(frozen=True)
class ConsoleSession:
    """A valid session: who (the operator ``Principal``, roles as they are now)
    and until when (``expires_at``, aware UTC)."""

    principal: Principal
    expires_at: datetime


def session_hash(session_id: str) -> bytes:
    """What the table stores of a session id: its SHA-256."""
    return token_hash(session_id)


async def create(conn: asyncpg.Connection | asyncpg.Pool, principal_token: str, ttl_s: int) -> tuple[str, datetime]:
    """Make a session for the operator token ``principal_token`` (already
    authenticated by the caller) valid for ``ttl_s`` seconds; return
    ``(session id, expires_at)``. The id is shown once (the cookie)."""
    session_id = secrets.token_urlsafe(32)
    expires_at = datetime.now(timezone.utc) + timedelta(seconds=ttl_s)
    await conn.execute("DELETE FROM console_sessions WHERE expires_at < now()")
    await conn.execute(
        "INSERT INTO console_sessions (session_hash, token_hash, expires_at) VALUES ($1, $2, $3)",
        session_hash(session_id), token_hash(principal_token), expires_at,
    )
    return session_id, expires_at


async def lookup(conn: asyncpg.Connection | asyncpg.Pool, session_id: str, admin_token: str) -> ConsoleSession | None:
    """The valid session with id ``session_id``, or None (unknown, expired,
    signed out, or its token revoked or no longer the admin token)."""
    if not session_id or len(session_id) > 100:
        return None
    row = await conn.fetchrow(
        "SELECT s.token_hash, s.expires_at, t.roles FROM console_sessions s"
        " LEFT JOIN tokens t ON t.token_hash = s.token_hash AND t.kind = 'operator' AND t.revoked_at IS NULL"
        " WHERE s.session_hash = $1 AND s.expires_at > now()",
        session_hash(session_id),
    )
    if row is None:
        return None
    if row["roles"] is not None:
        return ConsoleSession(Principal("operator", roles=frozenset(row["roles"]), ref=token_ref(row["token_hash"])),
                              row["expires_at"])
    if admin_token and hmac.compare_digest(row["token_hash"], token_hash(admin_token)):
        return ConsoleSession(Principal("operator", roles=frozenset(ROLES), ref="admin-env"), row["expires_at"])
    return None


async def end(conn: asyncpg.Connection | asyncpg.Pool, session_id: str) -> None:
    """Sign out: delete the session (nothing happens for an unknown one)."""
    await conn.execute("DELETE FROM console_sessions WHERE session_hash = $1", session_hash(session_id))
