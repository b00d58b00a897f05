"""``collector quarantine list``: refused reports (paths and reasons, never values);
``collector catalogue drift``: fields outside the catalogue that accepted reports carried."""

from __future__ import annotations

from uuid import UUID

import click

from collector.cli.common import main, run_with_conn
from collector.ingest import drift, quarantine


@main.group("quarantine")
def quarantine_group() -> None:
    """Refused reports (no values: paths, reasons, body hash and size)."""


@quarantine_group.command("list")
@click.option("--workspace", "workspace_id", type=click.UUID, default=None)
@click.option("--reason", default=None, help="e.g. schema_violation, malformed_body, too_large")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000))
def quarantine_list(workspace_id: UUID | None, reason: str | None, limit: int) -> None:
    """List quarantined reports, newest first."""
    run_with_conn(lambda conn: quarantine.listing(conn, workspace_id=workspace_id, reason=reason, limit=limit))


@main.group("catalogue")
def catalogue_group() -> None:
    """The field catalogue as reports meet it."""


@catalogue_group.command("drift")
def catalogue_drift() -> None:
    """Fields outside the catalogue that accepted reports carried, as GET /api/v1/catalogue/drift:
    path, JSON types, Rocket.Chat versions, reports, first and last seen (never a value)."""
    run_with_conn(drift.listing)
