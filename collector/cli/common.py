"""What every command shares: the ``main`` group, settings, the database
(``DATABASE_URL`` or the embedded server), running a service call on one
connection and printing its JSON.

CLI access is admin access: the commands talk to the database directly, with
no operator token and no role check.
"""

from __future__ import annotations

import asyncio
import sys

import click
import orjson

from collector.accounts import UnknownPlan, optout
from collector.config import Settings
from collector.ops import database as db
from collector.ops import logs


@click.group()
def main() -> None:
    """Workspace statistics collector."""


def settings() -> Settings:
    """The settings from the environment (``collector.config``)."""
    return Settings()


def database_url(settings: Settings) -> str:
    return settings.database_url or db.start_embedded(settings.data_dir)


def print_json(data: object) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def run_with_conn(fn, printer=None):
    """Run ``fn(conn)`` on a migrated database and print its result (JSON, or with ``printer``)."""
    cfg = settings()
    logs.configure(cfg.log_level, cfg.log_json)
    url = database_url(cfg)

    async def go():
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            await db.migrate(conn)
            return await fn(conn)
        finally:
            await conn.close()

    try:
        (printer or print_json)(asyncio.run(go()))
    except (LookupError, UnknownPlan, optout.OptOutNotAllowed, ValueError) as exc:
        click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)


def now():
    """The current time, UTC (aware)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)

