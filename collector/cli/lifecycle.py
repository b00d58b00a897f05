"""``collector retention run``, ``collector workspace export ID``, ``collector workspace erase ID``."""

from __future__ import annotations

import asyncio
import sys
from uuid import UUID

import asyncpg
import click

from collector.accounts import UnknownWorkspace
from collector.cli.common import database_url, main, now, run_with_conn, settings
from collector.cli.workspaces import workspace
from collector.lifecycle import erasure, export, retention
from collector.ops import database as db
from collector.ops import logs


@main.group("retention")
def retention_group() -> None:
    """Retention of raw report data, rollups and the quarantine (COLLECTOR_*RETENTION_DAYS)."""


@retention_group.command("run")
def retention_run() -> None:
    """Apply retention now; prints what it removed (counts and months, never a value)."""
    cfg = settings()
    run_with_conn(lambda conn: retention.run(conn, cfg, now()))


@workspace.command("export")
@click.argument("workspace_id", type=click.UUID)
def workspace_export(workspace_id: UUID) -> None:
    """Print everything held about the workspace: one JSON document, written as it is read."""
    cfg = settings()
    logs.configure(cfg.log_level, cfg.log_json)
    url = database_url(cfg)

    async def go() -> None:
        conn = await asyncpg.connect(url)
        try:
            await db.migrate(conn)
            out = sys.stdout.buffer
            async for chunk in export.stream(conn, workspace_id, now()):
                out.write(chunk)
            out.write(b"\n")
            out.flush()
        finally:
            await conn.close()

    try:
        asyncio.run(go())
    except UnknownWorkspace as exc:
        click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)


@workspace.command("erase")
@click.argument("workspace_id", type=click.UUID)
def workspace_erase(workspace_id: UUID) -> None:
    """Erase the workspace: every row of it but one audit line; its tokens stop working at once."""
    run_with_conn(lambda conn: erasure.erase(conn, workspace_id, "cli"))
