"""The ``collector`` command (click).

  collector serve [--host H] [--port P]        run the HTTP service
  collector workspace add --plan PLAN          register a workspace (prints JSON with its token)
  collector workspace rotate|revoke|show ID
  collector operator-token add --role R [...]  make an operator token (roles admin, billing, compliance)
  collector migrate                            apply the SQL migrations and exit

Database: ``DATABASE_URL`` when set, otherwise the embedded PostgreSQL under
``COLLECTOR_DATA_DIR`` (default ``.collector``), the same one ``serve`` uses.
Every command prints JSON on stdout; errors go to stderr with exit code 1.
"""

from __future__ import annotations

import asyncio
import sys
from uuid import UUID

import click
import orjson

from collector import auth, db, logs, workspaces
from collector.config import Settings


def _settings() -> Settings:
    return Settings()


def _database_url(settings: Settings) -> str:
    return settings.database_url or db.start_embedded(settings.data_dir)


def _print(data: object) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _run_with_conn(fn):
    """Run ``fn(conn)`` on a migrated database and print its JSON result."""
    settings = _settings()
    logs.configure(settings.log_level, settings.log_json)
    url = _database_url(settings)

    async def go():
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            await db.migrate(conn)
            return await fn(conn)
        finally:
            await conn.close()

    try:
        _print(asyncio.run(go()))
    except (workspaces.UnknownWorkspace, workspaces.UnknownPlan, ValueError) as exc:
        click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)


@click.group()
def main() -> None:
    """Workspace statistics collector."""


@main.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1, COLLECTOR_HOST).")
@click.option("--port", default=None, type=int, help="Port (default 8080, COLLECTOR_PORT).")
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(1, 64),
    help="Worker processes sharing the port (SO_REUSEPORT; default 1, COLLECTOR_WORKERS).",
)
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the collector's HTTP service until SIGTERM or Ctrl-C."""
    from collector import serving

    settings = _settings()
    logs.configure(settings.log_level, settings.log_json)
    url = _database_url(settings)
    logs.log.info("database", embedded=not settings.database_url)
    serving.serve(settings, url, host or settings.host, port or settings.port, workers or settings.workers)


@main.command()
def migrate() -> None:
    """Apply pending SQL migrations and exit."""
    _run_with_conn(lambda conn: _migrated(conn))


async def _migrated(conn):
    return {"migrations": [name for _, name, _ in db.migration_files()]}


@main.group()
def workspace() -> None:
    """Register and manage workspaces."""


@workspace.command("add")
@click.option("--plan", required=True, help="Plan name: community, starter, pro, enterprise, ...")
def workspace_add(plan: str) -> None:
    """Register a workspace; prints its workspace_id and token (shown once)."""
    _run_with_conn(lambda conn: workspaces.register(conn, plan))


@workspace.command("rotate")
@click.argument("workspace_id", type=click.UUID)
def workspace_rotate(workspace_id: UUID) -> None:
    """Revoke the workspace's tokens and print a new one."""
    _run_with_conn(lambda conn: workspaces.rotate(conn, workspace_id))


@workspace.command("revoke")
@click.argument("workspace_id", type=click.UUID)
def workspace_revoke(workspace_id: UUID) -> None:
    """Revoke the workspace and all its tokens."""
    _run_with_conn(lambda conn: workspaces.revoke(conn, workspace_id))


@workspace.command("show")
@click.argument("workspace_id", type=click.UUID)
def workspace_show(workspace_id: UUID) -> None:
    """Print the workspace's registry entry."""
    _run_with_conn(lambda conn: workspaces.get(conn, workspace_id))


@main.group("operator-token")
def operator_token() -> None:
    """Operator tokens."""


@operator_token.command("add")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(auth.ROLES))
@click.option("--label", default=None, help="A note for the operator (not a secret).")
def operator_token_add(roles: tuple[str, ...], label: str | None) -> None:
    """Make an operator token with the given roles; prints it once."""

    async def go(conn):
        return {"token": await auth.create_operator_token(conn, list(roles), label), "roles": sorted(set(roles))}

    _run_with_conn(go)


if __name__ == "__main__":
    main()
