"""Operator API: the plan catalogue and the workspaces' contracts (``collector.accounts.plans``).

  GET  /api/v1/plans                           any operator role
  GET  /api/v1/plans/{plan}                    any operator role
  PATCH /api/v1/plans/{plan}                   admin   {billing_model?, mac_pack_size?, opt_out_categories?}
  PUT  /api/v1/plans/{plan}/limits/{kind}      admin   {max, behavior?}   (negative max = unlimited)
  GET  /api/v1/workspaces/{workspace_id}/contract   billing
  PUT  /api/v1/workspaces/{workspace_id}/contract   admin  {plan, term_start, term_end, seats?, mac_packs?, limits?}

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
    model_config = ConfigDict(extra="forbid")
    plan: str
    term_start: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    term_end: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    seats: int | None = Field(default=None, ge=0)
    mac_packs: int = Field(default=0, ge=0)
    limits: dict[str, int] = Field(default_factory=dict)


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
    await operator(request, "billing")
    async with state(request).pool.acquire() as conn:
        return json_response(await plans.get_contract(conn, workspace_id_of(request)))


@routes.put("/api/v1/workspaces/{workspace_id}/contract")
async def set_contract(request: web.Request) -> web.Response:
    who = await operator(request, "admin")
    ws = workspace_id_of(request)
    body = await parse_body(request, ContractEdit)
    terms = {}
    for name in ("term_start", "term_end"):
        try:
            terms[name] = date.fromisoformat(getattr(body, name))
        except ValueError:
            raise _invalid(plans.Invalid(name, f"{name} must be a date YYYY-MM-DD")) from None
    async with state(request).pool.acquire() as conn:
        try:
            return json_response(await plans.set_contract(
                conn, ws, plan=body.plan, **terms, seats=body.seats, mac_packs=body.mac_packs,
                custom_limits=body.limits, actor=who.actor))
        except UnknownPlan:
            raise BadRequest(422, "unknown_plan", "no plan with that name",
                             [{"path": "plan", "reason": "unknown_plan", "message": "the plan is not in the plan catalogue"}]) from None
        except plans.Invalid as exc:
            raise _invalid(exc) from None
