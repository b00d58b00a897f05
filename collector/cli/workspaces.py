"""``collector workspace ...`` (registry, opt-out) and ``collector audit list``."""

from __future__ import annotations

from uuid import UUID

import click

from collector.accounts import optout, workspaces
from collector.cli.common import main, run_with_conn


@main.group()
def workspace() -> None:
    """Register and manage workspaces."""


@workspace.command("add")
@click.option("--plan", required=True, help="Plan name: community, starter, pro, enterprise, ...")
@click.option("--label", default=None, help="Your name for the account (customer name, CRM reference).")
def workspace_add(plan: str, label: str | None) -> None:
    """Register a workspace; prints its workspace_id, label and token (shown once)."""
    run_with_conn(lambda conn: workspaces.register(conn, plan, label))


@workspace.command("label")
@click.argument("workspace_id", type=click.UUID)
@click.argument("label", required=False)
@click.option("--clear", is_flag=True, help="Remove the label.")
def workspace_label(workspace_id: UUID, label: str | None, clear: bool) -> None:
    """Set the workspace's LABEL (or --clear it); prints its registry entry."""
    if (label is None) == (not clear):
        raise click.UsageError("give a LABEL or --clear")
    run_with_conn(lambda conn: workspaces.set_label(conn, workspace_id, None if clear else label))


@workspace.command("rotate")
@click.argument("workspace_id", type=click.UUID)
def workspace_rotate(workspace_id: UUID) -> None:
    """Revoke the workspace's tokens and print a new one."""
    run_with_conn(lambda conn: workspaces.rotate(conn, workspace_id))


@workspace.command("revoke")
@click.argument("workspace_id", type=click.UUID)
def workspace_revoke(workspace_id: UUID) -> None:
    """Revoke the workspace and all its tokens."""
    run_with_conn(lambda conn: workspaces.revoke(conn, workspace_id))


@workspace.command("show")
@click.argument("workspace_id", type=click.UUID)
def workspace_show(workspace_id: UUID) -> None:
    """Print the workspace's registry entry."""
    run_with_conn(lambda conn: workspaces.get(conn, workspace_id))


@workspace.command("opt-out")
@click.argument("workspace_id", type=click.UUID)
@click.option("--on/--off", "opt_out", required=True, help="Switch statistics opt-out on or off.")
def workspace_opt_out(workspace_id: UUID, opt_out: bool) -> None:
    """Switch the workspace's opt-out on (forgets its optional data) or off."""
    run_with_conn(lambda conn: optout.set_opt_out(conn, workspace_id, opt_out, "cli"))


@workspace.command("opt-out-policy")
@click.argument("workspace_id", type=click.UUID)
@click.option("--category", "categories", multiple=True, type=click.Choice(["operational", "product_analytics"]))
@click.option("--plan-default", is_flag=True, help="Drop the contract's own policy: the plan's applies.")
def workspace_opt_out_policy(workspace_id: UUID, categories: tuple[str, ...], plan_default: bool) -> None:
    """Set which categories this workspace's contract lets it switch off (none when no --category)."""
    cats = None if plan_default else list(categories)
    run_with_conn(lambda conn: optout.set_contract_policy(conn, workspace_id, cats, "cli"))


@workspace.command("status")
@click.argument("workspace_id", type=click.UUID)
def workspace_status(workspace_id: UUID) -> None:
    """Print the workspace's plan and opt-out status."""
    run_with_conn(lambda conn: optout.status(conn, workspace_id))


@main.group("audit")
def audit_group() -> None:
    """Audit trail of opt-outs, forgotten data and policy changes (no values)."""


@audit_group.command("list")
@click.option("--workspace", "workspace_id", type=click.UUID, default=None)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000))
def audit_list(workspace_id: UUID | None, limit: int) -> None:
    """List audit records, newest first."""
    run_with_conn(lambda conn: optout.audit_listing(conn, workspace_id=workspace_id, limit=limit))
