"""Operator API: the plan catalogue and the workspaces' contracts (``collector.accounts.plans``).

  GET  /api/v1/plans                           any operator role
  GET  /api/v1/plans/{plan}                    any operator role
  PATCH /api/v1/plans/{plan}                   admin   {billing_model?, mac_pack_size?, opt_out_categories?}
  PUT  /api/v1/plans/{plan}/limits/{kind}      admin   {max, behavior?}   (negative max = unlimited)
  GET  /api/v1/workspaces/{workspace_id}/contract   billing or compliance
  PUT  /api/v1/workspaces/{workspace_id}/contract   admin  {plan, term_start, term_end, seats?, mac_packs?, limits?}
                                                    (replaces; what GET answers can be PUT back unchanged:
                                                    its workspace_id must be the URL's, updated_at is ignored)
  PATCH /api/v1/workspaces/{workspace_id}/contract  admin  any of {plan, term_start, term_end, seats, mac_packs,
                                                    limits}: changes only those (seats null: none purchased)

Errors: 404 ``unknown_plan`` / ``unknown_workspace``; 422 ``invalid_request``
with ``violations`` [{path, reason, message}].
"""

from __future__ import annotations

from datetime import date

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from collector.accounts import Forbidden, UnknownPlan, plans
from collector.http.admin import workspace_id_of
from collector.http.common import (
    BadRequest,
    json_response,
    operator,
    parse_body,
    principal,
    state,
)

routes = web.RouteTableDef()


class LimitEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max: int
    behavior: str | None = None


class PlanEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    billing_model: str | None = None
    mac_pack_size: int | None = None
    opt_out_categories: list[str] | None = None


class ContractEdit(BaseModel):
    """PUT: the whole contract, in the shape GET answers (read-only fields allowed)."""

    model_config = ConfigDict(extra="forbid")
    plan: str
    term_start: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    term_end: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    seats: int | None = Field(default=None, ge=0)
    mac_packs: int = Field(default=0, ge=0)
    limits: dict[str, int] = Field(default_factory=dict)
    workspace_id: str | None = None  # read-only (as GET answers it): must be the URL's
    updated_at: str | None = None  # read-only: ignored


class ContractPatch(BaseModel):
    """PATCH: only the fields given change."""

    model_config = ConfigDict(extra="forbid")
    plan: str | None = None
    term_start: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    term_end: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    seats: int | None = Field(default=None, ge=0)
    mac_packs: int | None = Field(default=None, ge=0)
    limits: dict[str, int] | None = None


async def any_operator(request: web.Request) -> None:
    """Any operator token (admin, billing or compliance) may read the catalogue."""
    if (await principal(request)).kind != "operator":
        raise Forbidden("this call needs an operator token")


def _invalid(exc: plans.Invalid) -> BadRequest:
    return BadRequest(422, "invalid_request", str(exc), [{"path": exc.path, "reason": "invalid", "message": str(exc)}])


def _unknown_plan() -> BadRequest:
    return BadRequest(404, "unknown_plan", "no plan with that name")


@routes.get("/api/v1/plans")
async def list_plans(request: web.Request) -> web.Response:
    await any_operator(request)
    async with state(request).pool.acquire() as conn:
        return json_response({"plans": await plans.list_plans(conn)})


@routes.get("/api/v1/plans/{plan}")
async def read_plan(request: web.Request) -> web.Response:
    await any_operator(request)
    async with state(request).pool.acquire() as conn:
        try:
            return json_response(await plans.get_plan(conn, request.match_info["plan"]))
        except UnknownPlan:
            raise _unknown_plan() from None


@routes.patch("/api/v1/plans/{plan}")
async def edit_plan(request: web.Request) -> web.Response:
    who = await operator(request, "admin")
    body = await parse_body(request, PlanEdit)
    async with state(request).pool.acquire() as conn:
        try:
            return json_response(await plans.update_plan(conn, request.match_info["plan"], **body.model_dump(), actor=who.actor))
        except UnknownPlan:
            raise _unknown_plan() from None
        except plans.Invalid as exc:
            raise _invalid(exc) from None


@routes.put("/api/v1/plans/{plan}/limits/{kind}")
async def set_plan_limit(request: web.Request) -> web.Response:
    await operator(request, "admin")
    body = await parse_body(request, LimitEdit)
    async with state(request).pool.acquire() as conn:
        try:
            return json_response(await plans.set_limit(
                conn, request.match_info["plan"], request.match_info["kind"], body.max, body.behavior))
        except UnknownPlan:
            raise _unknown_plan() from None
        except plans.Invalid as exc:
            raise _invalid(exc) from None


@routes.get("/api/v1/workspaces/{workspace_id}/contract")
async def read_contract(request: web.Request) -> web.Response:
    who = await principal(request)
    try:
        who.require_role("billing")
    except Forbidden:
        who.require_role("compliance")
    async with state(request).pool.acquire() as conn:
        return json_response(await plans.get_contract(conn, workspace_id_of(request)))


def _dates(body: BaseModel) -> dict[str, date]:
    """The term dates given in ``body``, parsed; BadRequest(422) for a non-date."""
    terms = {}
    for name in ("term_start", "term_end"):
        text = getattr(body, name)
        if text is None:
            continue
        try:
            terms[name] = date.fromisoformat(text)
        except ValueError:
            raise _invalid(plans.Invalid(name, f"{name} must be a date YYYY-MM-DD")) from None
    return terms


async def _write_contract(request: web.Request, edit) -> web.Response:
    """Run ``edit(conn)`` (a contract write) and answer the contract, or the errors of a write."""
    async with state(request).pool.acquire() as conn:
        try:
            return json_response(await edit(conn))
        except UnknownPlan:
            raise BadRequest(422, "unknown_plan", "no plan with that name",
                             [{"path": "plan", "reason": "unknown_plan", "message": "the plan is not in the plan catalogue"}]) from None
        except plans.Invalid as exc:
            raise _invalid(exc) from None


@routes.put("/api/v1/workspaces/{workspace_id}/contract")
async def set_contract(request: web.Request) -> web.Response:
    who = await operator(request, "admin")
    ws = workspace_id_of(request)
    body = await parse_body(request, ContractEdit)
    if body.workspace_id is not None and body.workspace_id != str(ws):
        raise _invalid(plans.Invalid("workspace_id", "workspace_id must be the workspace of the URL (or absent)"))
    terms = _dates(body)
    return await _write_contract(request, lambda conn: plans.set_contract(
        conn, ws, plan=body.plan, **terms, seats=body.seats, mac_packs=body.mac_packs,
        custom_limits=body.limits, actor=who.actor))


@routes.patch("/api/v1/workspaces/{workspace_id}/contract")
async def patch_contract(request: web.Request) -> web.Response:
    who = await operator(request, "admin")
    ws = workspace_id_of(request)
    body = await parse_body(request, ContractPatch)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    for name in ("plan", "term_start", "term_end", "mac_packs", "limits"):
        if name in changes and changes[name] is None:
            raise _invalid(plans.Invalid(name, f"{name} cannot be null (leave it out to keep it)"))
    changes.update(_dates(body))
    return await _write_contract(request, lambda conn: plans.update_contract(conn, ws, changes, actor=who.actor))
