"""``collector compliance`` and ``collector billing``: what the usage rollups say."""

from __future__ import annotations

from uuid import UUID

import click

from collector.accounts import plans
from collector.cli.common import main, now, run_with_conn, settings
from collector.usage import billing as billing_mod
from collector.usage import compliance as compliance_mod


@main.command()
@click.option("--status", "statuses", multiple=True, type=click.Choice(compliance_mod.STATUSES),
              help="Keep workspaces with this status (repeat: any of them).")
@click.option("--label", default=None, help="Keep workspaces whose label contains this (case ignored).")
@click.option("--workspace", "workspace_id", type=click.UUID, default=None, help="One workspace only.")
def compliance(statuses: tuple[str, ...], label: str | None, workspace_id: UUID | None) -> None:
    """Print the compliance of the workspaces (as GET /api/v1/compliance)."""
    stale = settings().stale_after_s
    if workspace_id is not None:
        run_with_conn(lambda conn: compliance_mod.workspace_compliance(
            conn, workspace_id, now=now(), stale_after_s=stale))
        return

    async def go(conn):
        return {"workspaces": await compliance_mod.list_compliance(conn, now=now(), stale_after_s=stale,
                                                                   statuses=statuses, label=label)}

    run_with_conn(go)


@main.command()
@click.option("--period", default=None, help="A UTC month, YYYY-MM (default: the current month).")
@click.option("--from", "from_", default=None, help="First day, YYYY-MM-DD (with --to).")
@click.option("--to", default=None, help="Last day (inclusive), YYYY-MM-DD.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of JSON.")
def billing(period: str | None, from_: str | None, to: str | None, as_csv: bool) -> None:
    """Print the consumption billing report (as GET /api/v1/billing/consumption)."""
    try:
        start, end = billing_mod.parse_period(period, from_, to, today=now().date())
    except plans.Invalid as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.path}") from None
    stale = settings().stale_after_s
    if as_csv:
        run_with_conn(lambda conn: billing_mod.consumption_csv(conn, start, end, now=now(), stale_after_s=stale),
                       printer=lambda text: click.echo(text, nl=False))
    else:
        run_with_conn(lambda conn: billing_mod.consumption(conn, start, end, now=now(), stale_after_s=stale))
