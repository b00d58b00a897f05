"""``collector plan ...`` and ``collector contract ...``."""

from __future__ import annotations

from uuid import UUID

import click

from collector.accounts import plans
from collector.cli.common import main, run_with_conn


@main.group()
def plan() -> None:
    """The plan catalogue: limits, billing model, MAC pack size, opt-out policy."""


@plan.command("list")
def plan_list() -> None:
    """Print every plan."""
    run_with_conn(plans.list_plans)


@plan.command("show")
@click.argument("name")
def plan_show(name: str) -> None:
    """Print one plan."""
    run_with_conn(lambda conn: plans.get_plan(conn, name))


@plan.command("set-limit")
@click.argument("name")
@click.argument("kind", type=click.Choice(plans.LIMIT_KINDS))
@click.argument("max_", metavar="MAX", type=int)
@click.option("--behavior", type=click.Choice(plans.BEHAVIORS), default=None, help="Licence behaviour at the limit.")
def plan_set_limit(name: str, kind: str, max_: int, behavior: str | None) -> None:
    """Set a plan's limit KIND to MAX (negative: unlimited); re-evaluates compliance."""
    run_with_conn(lambda conn: plans.set_limit(conn, name, kind, max_, behavior))


@plan.command("set")
@click.argument("name")
@click.option("--billing-model", type=click.Choice(plans.BILLING_MODELS), default=None)
@click.option("--mac-pack-size", type=click.IntRange(min=0), default=None)
@click.option("--opt-out", "opt_out", multiple=True, type=click.Choice(plans.CATEGORIES),
              help="A category workspaces on the plan may switch off (repeat; replaces the list).")
@click.option("--no-opt-out", is_flag=True, help="No category may be switched off.")
def plan_set(name: str, billing_model: str | None, mac_pack_size: int | None, opt_out: tuple[str, ...],
             no_opt_out: bool) -> None:
    """Change a plan's billing model, MAC pack size or opt-out categories."""
    categories = [] if no_opt_out else (list(opt_out) if opt_out else None)
    run_with_conn(lambda conn: plans.update_plan(
        conn, name, billing_model=billing_model, mac_pack_size=mac_pack_size, opt_out_categories=categories,
        actor="cli"))


@main.group()
def contract() -> None:
    """Workspace contracts: plan, term, purchased seats and MAC packs, custom limits."""


def _limit(_ctx, _param, values: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for v in values:
        kind, sep, n = v.partition("=")
        if not sep or kind not in plans.LIMIT_KINDS:
            raise click.BadParameter(f"expected kind=N with kind in {', '.join(plans.LIMIT_KINDS)}")
        try:
            out[kind] = int(n)
        except ValueError:
            raise click.BadParameter(f"{v}: N must be an integer") from None
    return out


@contract.command("set")
@click.argument("workspace_id", type=click.UUID)
@click.option("--plan", "plan_name", default=None)
@click.option("--term-start", default=None, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--term-end", default=None, type=click.DateTime(["%Y-%m-%d"]), help="Last day of the term (inclusive).")
@click.option("--seats", type=click.IntRange(min=0), default=None, help="Purchased seats.")
@click.option("--no-seats", is_flag=True, help="No purchased seats (the plan's limit applies).")
@click.option("--mac-packs", type=click.IntRange(min=0), default=None, help="Purchased MAC packs.")
@click.option("--limit", "limits", multiple=True, callback=_limit,
              help="Custom limit kind=N (repeat; replaces the custom limits).")
@click.option("--no-limits", is_flag=True, help="Remove every custom limit.")
def contract_set(workspace_id: UUID, plan_name, term_start, term_end, seats, no_seats, mac_packs, limits,
                 no_limits) -> None:
    """Change the workspace's contract: only the options given (as PATCH .../contract)."""
    if seats is not None and no_seats or limits and no_limits:
        raise click.UsageError("--seats with --no-seats, or --limit with --no-limits: choose one")
    changes: dict = {}
    for name, value in (("plan", plan_name), ("term_start", term_start and term_start.date()),
                        ("term_end", term_end and term_end.date()), ("seats", seats), ("mac_packs", mac_packs)):
        if value is not None:
            changes[name] = value
    if no_seats:
        changes["seats"] = None
    if limits or no_limits:
        changes["limits"] = limits
    if not changes:
        raise click.UsageError("nothing to change: give at least one option (see --help)")
    run_with_conn(lambda conn: plans.update_contract(conn, workspace_id, changes, actor="cli"))


@contract.command("show")
@click.argument("workspace_id", type=click.UUID)
def contract_show(workspace_id: UUID) -> None:
    """Print the workspace's contract."""
    run_with_conn(lambda conn: plans.get_contract(conn, workspace_id))
