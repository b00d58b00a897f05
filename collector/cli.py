"""The ``collector`` command (click).

  collector serve [--host H] [--port P]        run the HTTP service
  collector workspace add --plan PLAN          register a workspace (prints JSON with its token)
  collector workspace rotate|revoke|show ID
  collector operator-token add --role R [...]  make an operator token (roles admin, billing, compliance)
  collector migrate                            apply the SQL migrations and exit
  collector plan list|show PLAN                the plan catalogue
  collector plan set-limit PLAN KIND MAX [--behavior B]   (negative MAX = unlimited)
  collector plan set PLAN [--billing-model M] [--mac-pack-size N] [--opt-out CATEGORY ...]
  collector contract set WORKSPACE_ID --plan P --term-start D --term-end D [--seats N] [--mac-packs N] [--limit kind=N ...]
  collector contract show WORKSPACE_ID
  collector compliance [--status S] [--workspace ID]     compliance, as GET /api/v1/compliance
  collector billing --period YYYY-MM | --from D --to D [--csv]   as GET /api/v1/billing/consumption

Database: ``DATABASE_URL`` when set, otherwise the embedded PostgreSQL under
``COLLECTOR_DATA_DIR`` (default ``.collector``), the same one ``serve`` uses.
Every command prints JSON on stdout (``billing --csv``: CSV); errors go to stderr with exit code 1.
"""

from __future__ import annotations

import asyncio
import sys
from uuid import UUID

import click
import orjson

from collector import auth, billing as billing_mod, compliance as compliance_mod, db, logs, optout, plans, quarantine, workspaces
from collector.config import Settings


def _settings() -> Settings:
    return Settings()


def _database_url(settings: Settings) -> str:
    return settings.database_url or db.start_embedded(settings.data_dir)


def _print(data: object) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _run_with_conn(fn, printer=None):
    """Run ``fn(conn)`` on a migrated database and print its result (JSON, or with ``printer``)."""
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
        (printer or _print)(asyncio.run(go()))
    except (LookupError, workspaces.UnknownPlan, optout.OptOutNotAllowed, ValueError) as exc:
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
    host, port = host or settings.host, port or settings.port
    logs.configure(settings.log_level, settings.log_json)
    try:
        serving.check_port_free(host, port)
    except serving.PortInUse as exc:
        click.echo(f"error: {exc.strerror}", err=True)
        sys.exit(1)
    url = _database_url(settings)
    logs.log.info("database", embedded=not settings.database_url)
    serving.serve(settings, url, host, port, workers or settings.workers)


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
        return await auth.create_operator_token(conn, list(roles), label)

    _run_with_conn(go)


@workspace.command("opt-out")
@click.argument("workspace_id", type=click.UUID)
@click.option("--on/--off", "opt_out", required=True, help="Switch statistics opt-out on or off.")
def workspace_opt_out(workspace_id: UUID, opt_out: bool) -> None:
    """Switch the workspace's opt-out on (forgets its optional data) or off."""
    _run_with_conn(lambda conn: optout.set_opt_out(conn, workspace_id, opt_out, "cli"))


@workspace.command("opt-out-policy")
@click.argument("workspace_id", type=click.UUID)
@click.option("--category", "categories", multiple=True, type=click.Choice(["operational", "product_analytics"]))
@click.option("--plan-default", is_flag=True, help="Drop the contract's own policy: the plan's applies.")
def workspace_opt_out_policy(workspace_id: UUID, categories: tuple[str, ...], plan_default: bool) -> None:
    """Set which categories this workspace's contract lets it switch off (none when no --category)."""
    cats = None if plan_default else list(categories)
    _run_with_conn(lambda conn: optout.set_contract_policy(conn, workspace_id, cats, "cli"))


@workspace.command("status")
@click.argument("workspace_id", type=click.UUID)
def workspace_status(workspace_id: UUID) -> None:
    """Print the workspace's plan and opt-out status."""
    _run_with_conn(lambda conn: optout.status(conn, workspace_id))


@main.group("audit")
def audit_group() -> None:
    """Audit trail of opt-outs, forgotten data and policy changes (no values)."""


@audit_group.command("list")
@click.option("--workspace", "workspace_id", type=click.UUID, default=None)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000))
def audit_list(workspace_id: UUID | None, limit: int) -> None:
    """List audit records, newest first."""
    _run_with_conn(lambda conn: optout.audit_listing(conn, workspace_id=workspace_id, limit=limit))


@operator_token.command("list")
def operator_token_list() -> None:
    """List operator tokens (references, roles, labels; never the tokens)."""
    _run_with_conn(auth.list_operator_tokens)


@operator_token.command("revoke")
@click.argument("ref")
def operator_token_revoke(ref: str) -> None:
    """Revoke the operator token with reference REF (from `operator-token list`)."""
    _run_with_conn(lambda conn: auth.revoke_operator_token(conn, ref))


@main.group("quarantine")
def quarantine_group() -> None:
    """Refused reports (no values: paths, reasons, body hash and size)."""


@quarantine_group.command("list")
@click.option("--workspace", "workspace_id", type=click.UUID, default=None)
@click.option("--reason", default=None, help="e.g. schema_violation, malformed_body, too_large")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000))
def quarantine_list(workspace_id: UUID | None, reason: str | None, limit: int) -> None:
    """List quarantined reports, newest first."""
    _run_with_conn(lambda conn: quarantine.listing(conn, workspace_id=workspace_id, reason=reason, limit=limit))
@main.group()
def plan() -> None:
    """The plan catalogue: limits, billing model, MAC pack size, opt-out policy."""


@plan.command("list")
def plan_list() -> None:
    """Print every plan."""
    _run_with_conn(plans.list_plans)


@plan.command("show")
@click.argument("name")
def plan_show(name: str) -> None:
    """Print one plan."""
    _run_with_conn(lambda conn: plans.get_plan(conn, name))


@plan.command("set-limit")
@click.argument("name")
@click.argument("kind", type=click.Choice(plans.LIMIT_KINDS))
@click.argument("max_", metavar="MAX", type=int)
@click.option("--behavior", type=click.Choice(plans.BEHAVIORS), default=None, help="Licence behaviour at the limit.")
def plan_set_limit(name: str, kind: str, max_: int, behavior: str | None) -> None:
    """Set a plan's limit KIND to MAX (negative: unlimited); re-evaluates compliance."""
    _run_with_conn(lambda conn: plans.set_limit(conn, name, kind, max_, behavior))


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
    _run_with_conn(lambda conn: plans.update_plan(
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
@click.option("--plan", "plan_name", required=True)
@click.option("--term-start", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--term-end", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last day of the term (inclusive).")
@click.option("--seats", type=click.IntRange(min=0), default=None, help="Purchased seats.")
@click.option("--mac-packs", type=click.IntRange(min=0), default=0, help="Purchased MAC packs.")
@click.option("--limit", "limits", multiple=True, callback=_limit, help="Custom limit kind=N (repeat).")
def contract_set(workspace_id: UUID, plan_name: str, term_start, term_end, seats, mac_packs, limits) -> None:
    """Replace the workspace's contract (and its plan)."""
    _run_with_conn(lambda conn: plans.set_contract(
        conn, workspace_id, plan=plan_name, term_start=term_start.date(), term_end=term_end.date(),
        seats=seats, mac_packs=mac_packs, custom_limits=limits, actor="cli"))


@contract.command("show")
@click.argument("workspace_id", type=click.UUID)
def contract_show(workspace_id: UUID) -> None:
    """Print the workspace's contract."""
    _run_with_conn(lambda conn: plans.get_contract(conn, workspace_id))


def _now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


@main.command()
@click.option("--status", type=click.Choice(compliance_mod.STATUSES), default=None)
@click.option("--workspace", "workspace_id", type=click.UUID, default=None, help="One workspace only.")
def compliance(status: str | None, workspace_id: UUID | None) -> None:
    """Print the compliance of the workspaces (as GET /api/v1/compliance)."""
    stale = _settings().stale_after_s
    if workspace_id is not None:
        _run_with_conn(lambda conn: compliance_mod.workspace_compliance(
            conn, workspace_id, now=_now(), stale_after_s=stale))
        return

    async def go(conn):
        return {"workspaces": await compliance_mod.list_compliance(conn, now=_now(), stale_after_s=stale, status=status)}

    _run_with_conn(go)


@main.command()
@click.option("--period", default=None, help="A UTC month, YYYY-MM.")
@click.option("--from", "from_", default=None, help="First day, YYYY-MM-DD (with --to).")
@click.option("--to", default=None, help="Last day (inclusive), YYYY-MM-DD.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of JSON.")
def billing(period: str | None, from_: str | None, to: str | None, as_csv: bool) -> None:
    """Print the consumption billing report (as GET /api/v1/billing/consumption)."""
    try:
        start, end = billing_mod.parse_period(period, from_, to)
    except plans.Invalid as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.path}") from None
    stale = _settings().stale_after_s
    if as_csv:
        _run_with_conn(lambda conn: billing_mod.consumption_csv(conn, start, end, now=_now(), stale_after_s=stale),
                       printer=lambda text: click.echo(text, nl=False))
    else:
        _run_with_conn(lambda conn: billing_mod.consumption(conn, start, end, now=_now(), stale_after_s=stale))


if __name__ == "__main__":
    main()
