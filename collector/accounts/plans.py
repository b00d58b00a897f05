"""The plan catalogue and the workspaces' contracts: read and edit.

A plan (table ``plans`` + ``plan_limits``, seeded by
``sql/0002_plans_and_rollups.sql`` from shared/ROCKETCHAT.md) has:
- ``limits``: per kind (``LIMIT_KINDS``) a ``max`` (negative = unlimited, as
  in Rocket.Chat licence v3) and the licence ``behavior`` applied when it is
  reached (``prevent_action``, ``start_fair_policy``: at value >= max;
  ``invalidate_license``, ``disable_modules``, ``prevent_installation``: at
  value > max);
- ``billing_model``: ``free``, ``per_seat`` or ``consumption``;
- ``mac_pack_size``: monthly active contacts in one purchasable MAC pack;
- ``opt_out_categories``: data categories a workspace on the plan may switch
  off (modelled here, enforced by the opt-out feature).

Seeded figures: community 3 private / 5 marketplace apps, presence stops above
200 connections (``disable_modules``); starter 50 users (the later docs; 25 at
the 6.5 launch), 100 MAC; pro 500 users, 100 MAC; enterprise unlimited with
custom limits per contract and MAC packs. ASSUMPTIONS (not in ROCKETCHAT.md,
editable by operators): starter apps as community, pro/enterprise apps
unlimited, MAC pack size 1000 on enterprise.

A contract (table ``contracts``, one per workspace) holds the plan, the term
(``term_start``..``term_end``, both inclusive UTC dates), purchased ``seats``
(None: none), ``mac_packs`` and ``custom_limits`` ({kind: max}). Effective max
of a kind (SQL ``effective_max``): the custom limit, else for activeUsers the
purchased seats, else the plan's max; monthlyActiveContacts adds
packs x pack size to a finite plan max (replaces an unlimited one).

Every edit re-evaluates the compliance of the workspaces it concerns, in the
same transaction.
"""

from __future__ import annotations

from datetime import date
from uuid import UUID

import asyncpg
import orjson

from collector.accounts import datakeys, optout
from collector.accounts.errors import UnknownPlan, UnknownWorkspace
from collector.ops import ROLLUP_LOCK_NAMESPACE as LOCK_NAMESPACE

LIMIT_KINDS = ("activeUsers", "guestUsers", "monthlyActiveContacts", "privateApps", "marketplaceApps", "peakConnections")
BEHAVIORS = ("prevent_action", "start_fair_policy", "invalidate_license", "disable_modules", "prevent_installation")
BILLING_MODELS = ("free", "per_seat", "consumption")
INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # limits, seats and packs are PostgreSQL integers
YEARS = range(2000, 3000)  # contract terms and billing periods: a year outside is a typo
CATEGORIES = ("billing", "compliance", "operational", "product_analytics")
_ORDER = {k: i for i, k in enumerate(LIMIT_KINDS)}


def _check_int(path: str, value: int | None, low: int) -> None:
    """Raise Invalid unless ``value`` (when given) is in ``low``..INT_MAX."""
    if value is not None and not low <= value <= INT_MAX:
        raise Invalid(path, f"{path} must be from {low} to {INT_MAX}")


class Invalid(ValueError):
    """An edit that does not fit: ``path`` names the offending field."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path


_PLANS_SQL = (
    "SELECT p.plan, p.billing_model, p.mac_pack_size, p.opt_out_categories, p.updated_at,"
    " coalesce(jsonb_object_agg(l.kind, jsonb_build_object('max', l.max, 'behavior', l.behavior))"
    "   FILTER (WHERE l.kind IS NOT NULL), '{}')::text AS limits"
    " FROM plans p LEFT JOIN plan_limits l ON l.plan = p.plan"
)


def _plan(row: asyncpg.Record) -> dict:
    return {
        "plan": row["plan"],
        "billing_model": row["billing_model"],
        "mac_pack_size": row["mac_pack_size"],
        "opt_out_categories": sorted(row["opt_out_categories"]),
        "limits": {k: v for k, v in sorted(orjson.loads(row["limits"]).items(), key=lambda kv: _ORDER.get(kv[0], 99))},
        "updated_at": row["updated_at"].isoformat(),
    }


async def list_plans(conn: asyncpg.Connection) -> list[dict]:
    """All plans, by name: ``[{plan, billing_model, mac_pack_size, opt_out_categories,
    limits: {kind: {max, behavior}}, updated_at}]``."""
    return [_plan(r) for r in await conn.fetch(_PLANS_SQL + " GROUP BY p.plan ORDER BY p.plan")]


async def get_plan(conn: asyncpg.Connection, plan: str) -> dict:
    """One plan (shape of ``list_plans``); raises UnknownPlan."""
    row = await conn.fetchrow(_PLANS_SQL + " WHERE p.plan = $1 GROUP BY p.plan", plan)
    if row is None:
        raise UnknownPlan(plan)
    return _plan(row)


async def _refresh_plan(conn: asyncpg.Connection, plan: str) -> None:
    await conn.execute(
        "SELECT refresh_compliance(ARRAY(SELECT workspace_id FROM contracts WHERE plan = $1), now())", plan
    )


async def set_limit(conn: asyncpg.Connection, plan: str, kind: str, max_: int, behavior: str | None = None) -> dict:
    """Set the ``max`` (negative = unlimited) and optionally the ``behavior`` of a
    plan's limit ``kind``; re-evaluate compliance of the plan's workspaces.

    Returns the plan. Raises UnknownPlan, Invalid (kind, behavior).
    """
    if kind not in LIMIT_KINDS:
        raise Invalid("kind", f"kind must be one of {', '.join(LIMIT_KINDS)}")
    _check_int("max", max_, INT_MIN)
    if behavior is not None and behavior not in BEHAVIORS:
        raise Invalid("behavior", f"behavior must be one of {', '.join(BEHAVIORS)}")
    async with conn.transaction():
        if not await conn.fetchval("SELECT 1 FROM plans WHERE plan = $1 FOR UPDATE", plan):
            raise UnknownPlan(plan)
        await conn.execute(
            "INSERT INTO plan_limits (plan, kind, max, behavior) VALUES ($1, $2, $3, coalesce($4, 'prevent_action'))"
            " ON CONFLICT (plan, kind) DO UPDATE SET max = excluded.max,"
            " behavior = coalesce($4, plan_limits.behavior)",
            plan, kind, max_, behavior,
        )
        await conn.execute("UPDATE plans SET updated_at = now() WHERE plan = $1", plan)
        await _refresh_plan(conn, plan)
    return await get_plan(conn, plan)


async def update_plan(
    conn: asyncpg.Connection,
    plan: str,
    *,
    billing_model: str | None = None,
    mac_pack_size: int | None = None,
    opt_out_categories: list[str] | None = None,
    actor: str = "operator",
) -> dict:
    """Change a plan's billing model, MAC pack size or opt-out categories (None:
    unchanged); re-evaluate compliance of its workspaces, and their opt-outs
    when the categories changed (``collector.accounts.optout.reevaluate``: a plan that
    allows none ends them, audited as ``actor``). Opt-out categories can only
    be optional ones (operational, product_analytics). Raises UnknownPlan, Invalid."""
    if billing_model is not None and billing_model not in BILLING_MODELS:
        raise Invalid("billing_model", f"billing_model must be one of {', '.join(BILLING_MODELS)}")
    _check_int("mac_pack_size", mac_pack_size, 0)
    if opt_out_categories is not None:
        try:
            opt_out_categories = optout.check_categories(opt_out_categories)
        except optout.InvalidCategories as exc:
            raise Invalid("opt_out_categories", str(exc)) from None
    async with conn.transaction():
        done = await conn.fetchval(
            "UPDATE plans SET billing_model = coalesce($2, billing_model),"
            " mac_pack_size = coalesce($3, mac_pack_size),"
            " opt_out_categories = coalesce($4, opt_out_categories), updated_at = now()"
            " WHERE plan = $1 RETURNING 1",
            plan, billing_model, mac_pack_size,
            sorted(set(opt_out_categories)) if opt_out_categories is not None else None,
        )
        if not done:
            raise UnknownPlan(plan)
        await _refresh_plan(conn, plan)
        if opt_out_categories is not None:
            await optout.reevaluate(
                conn,
                await conn.fetchval("SELECT array_agg(workspace_id) FROM contracts WHERE plan = $1", plan) or [],
                actor,
                f"opt-out policy of plan '{plan}' changed",
            )
    await datakeys.settle(conn)  # keys destroyed by a forgetting leave the data files now
    return await get_plan(conn, plan)


def _contract(row: asyncpg.Record) -> dict:
    return {
        "workspace_id": str(row["workspace_id"]),
        "plan": row["plan"],
        "term_start": row["term_start"].isoformat(),
        "term_end": row["term_end"].isoformat(),
        "seats": row["seats"],
        "mac_packs": row["mac_packs"],
        "limits": orjson.loads(row["custom_limits"]),
        "updated_at": row["updated_at"].isoformat(),
    }


async def get_contract(conn: asyncpg.Connection, workspace_id: UUID) -> dict:
    """The workspace's contract: ``{workspace_id, plan, term_start, term_end (inclusive,
    ISO dates), seats (purchased; None: none), mac_packs, limits (the contract's
    custom limits {kind: max}), updated_at}``: the field names ``set_contract``
    and ``update_contract`` take (and ``PUT``/``PATCH .../contract``), so what
    is read can be written back unchanged. Raises UnknownWorkspace."""
    row = await conn.fetchrow(
        "SELECT workspace_id, plan, term_start, term_end, seats, mac_packs, custom_limits::text, updated_at"
        " FROM contracts WHERE workspace_id = $1",
        workspace_id,
    )
    if row is None:
        raise UnknownWorkspace(str(workspace_id))
    return _contract(row)


async def create_default_contract(conn: asyncpg.Connection, workspace_id: UUID, plan: str) -> None:
    """Give a newly registered workspace a contract on ``plan``: the term starts on
    the registration's UTC date and lasts 12 months (issue 4)."""
    await conn.execute(
        "INSERT INTO contracts (workspace_id, plan, term_start, term_end)"
        " SELECT workspace_id, plan, (created_at AT TIME ZONE 'UTC')::date,"
        "  ((created_at AT TIME ZONE 'UTC')::date + interval '12 months' - interval '1 day')::date"
        " FROM workspaces WHERE workspace_id = $1 AND plan = $2",
        workspace_id, plan,
    )
    await conn.execute("SELECT refresh_term_usage($1::uuid[])", [workspace_id])
    await conn.execute("SELECT refresh_compliance($1::uuid[], now())", [workspace_id])


async def set_contract(
    conn: asyncpg.Connection,
    workspace_id: UUID,
    *,
    plan: str,
    term_start: date,
    term_end: date,
    seats: int | None = None,
    mac_packs: int = 0,
    custom_limits: dict[str, int] | None = None,
    actor: str = "operator",
) -> dict:
    """Replace the workspace's contract (and its plan in the registry); recompute
    its term maximum and compliance, and re-evaluate its opt-out
    (``collector.accounts.optout.reevaluate``: a plan that allows no opt-out ends it,
    audited as ``actor``; an upgrade keeps the workspace's choice).
    ``term_end`` is inclusive.

    Returns the contract. Raises UnknownWorkspace, UnknownPlan, Invalid.
    """
    custom_limits = custom_limits or {}
    for name, d in (("term_start", term_start), ("term_end", term_end)):
        if d.year not in YEARS:
            raise Invalid(name, f"{name} must be in a year from {YEARS.start} to {YEARS.stop - 1}")
    if term_end < term_start:
        raise Invalid("term_end", "term_end must not be before term_start")
    _check_int("seats", seats, 0)
    _check_int("mac_packs", mac_packs, 0)
    for kind, max_ in custom_limits.items():
        if kind not in LIMIT_KINDS:
            raise Invalid(f"limits.{kind}", f"limit kinds are {', '.join(LIMIT_KINDS)}")
        _check_int(f"limits.{kind}", max_, INT_MIN)
    async with conn.transaction():
        if not await conn.fetchval("SELECT 1 FROM plans WHERE plan = $1", plan):
            raise UnknownPlan(plan)
        if not await conn.fetchval("UPDATE workspaces SET plan = $2 WHERE workspace_id = $1 RETURNING 1", workspace_id, plan):
            raise UnknownWorkspace(str(workspace_id))
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))", LOCK_NAMESPACE, workspace_id)
        await conn.execute(
            "INSERT INTO contracts (workspace_id, plan, term_start, term_end, seats, mac_packs, custom_limits)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)"
            " ON CONFLICT (workspace_id) DO UPDATE SET plan = excluded.plan, term_start = excluded.term_start,"
            " term_end = excluded.term_end, seats = excluded.seats, mac_packs = excluded.mac_packs,"
            " custom_limits = excluded.custom_limits, updated_at = now()",
            workspace_id, plan, term_start, term_end, seats, mac_packs, orjson.dumps(custom_limits).decode(),
        )
        await conn.execute("SELECT refresh_term_usage($1::uuid[])", [workspace_id])
        await conn.execute("SELECT refresh_compliance($1::uuid[], now())", [workspace_id])
        await optout.reevaluate(conn, [workspace_id], actor, f"contract set on plan '{plan}'")
    await datakeys.settle(conn)  # keys destroyed by a forgetting leave the data files now
    return await get_contract(conn, workspace_id)


#: The fields of a contract an edit may give (``update_contract``).
CONTRACT_FIELDS = ("plan", "term_start", "term_end", "seats", "mac_packs", "limits")


async def update_contract(
    conn: asyncpg.Connection, workspace_id: UUID, changes: dict, actor: str = "operator"
) -> dict:
    """Change only the fields in ``changes`` of the workspace's contract (keys
    of CONTRACT_FIELDS: ``term_start``/``term_end`` dates, ``seats`` None
    clears the purchased seats, ``limits`` replaces the custom limits, ``{}``
    none); the others keep their value. Then as ``set_contract`` (term
    maximum, compliance and opt-out re-evaluated, in the same transaction,
    with the workspace's registry row locked first, as ``set_contract`` does).

    Returns the contract. Raises UnknownWorkspace, UnknownPlan, Invalid
    (an unknown field, or a value ``set_contract`` refuses).
    """
    for name in changes:
        if name not in CONTRACT_FIELDS:
            raise Invalid(name, f"a contract has the fields {', '.join(CONTRACT_FIELDS)}")
    async with conn.transaction():
        if not await conn.fetchval("SELECT 1 FROM workspaces WHERE workspace_id = $1 FOR UPDATE", workspace_id):
            raise UnknownWorkspace(str(workspace_id))
        row = await conn.fetchrow(
            "SELECT plan, term_start, term_end, seats, mac_packs, custom_limits::text FROM contracts"
            " WHERE workspace_id = $1 FOR UPDATE",
            workspace_id,
        )
        if row is None:
            raise UnknownWorkspace(str(workspace_id))
        merged = {"plan": row["plan"], "term_start": row["term_start"], "term_end": row["term_end"],
                  "seats": row["seats"], "mac_packs": row["mac_packs"],
                  "limits": orjson.loads(row["custom_limits"]), **changes}
        return await set_contract(
            conn, workspace_id, plan=merged["plan"], term_start=merged["term_start"], term_end=merged["term_end"],
            seats=merged["seats"], mac_packs=merged["mac_packs"], custom_limits=merged["limits"], actor=actor)
