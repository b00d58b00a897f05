"""Opt-out API (rules in ``collector.accounts.optout``).

  GET /api/v1/workspaces/self                   workspace token: its plan and opt-out status
  PUT /api/v1/workspaces/self/opt-out           workspace token: {"opt_out": true|false}
  PUT /api/v1/workspaces/{id}/opt-out           operator admin: the same on its behalf
  GET /api/v1/workspaces/{id}/opt-out           operator compliance (or admin): the status
  PUT /api/v1/workspaces/{id}/opt-out-policy    operator admin: {"categories": [...]} or {"categories": null}
  GET /api/v1/audit                             operator compliance (or admin): audit records (?workspace_id, ?limit)

403 ``opt_out_not_allowed`` names the plan when it allows no opt-out;
nothing changes then.
"""

from __future__ import annotations

from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from collector.accounts import Principal, optout
from collector.http.admin import workspace_id_of
from collector.http.common import (
    BadRequest,
    error_response,
    json_response,
    operator,
    parse_body,
    parse_query,
    principal,
    state,
)

routes = web.RouteTableDef()


class OptOutBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    opt_out: bool


class PolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    categories: list[str] | None


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workspace_id: UUID | None = None
    limit: int = Field(default=100, ge=1, le=1000)


async def _self(request: web.Request) -> Principal:
    who = await principal(request)
    if who.kind != "workspace":
        raise BadRequest(403, "forbidden", "this call needs a workspace token")
    return who


async def _switch(request: web.Request, workspace_id: UUID, who: Principal) -> web.Response:
    body = await parse_body(request, OptOutBody)
    st = state(request)
    async with st.pool.acquire() as conn:
        try:
            result = await optout.set_opt_out(conn, workspace_id, body.opt_out, who.actor)
        except optout.OptOutNotAllowed as exc:
            return error_response(403, "opt_out_not_allowed", str(exc))
    if st.keyring is not None:  # this process's writers follow at once (the others on the NOTIFY)
        st.keyring.forget_workspace(workspace_id)
    return json_response(result)


@routes.get("/api/v1/workspaces/self")
async def read_self(request: web.Request) -> web.Response:
    who = await _self(request)
    async with state(request).pool.acquire() as conn:
        return json_response(await optout.status(conn, who.workspace_id))


@routes.put("/api/v1/workspaces/self/opt-out")
async def switch_self(request: web.Request) -> web.Response:
    who = await _self(request)
    return await _switch(request, who.workspace_id, who)


@routes.put("/api/v1/workspaces/{workspace_id}/opt-out")
async def switch_on_behalf(request: web.Request) -> web.Response:
    who = await operator(request, "admin")
    return await _switch(request, workspace_id_of(request), who)


@routes.get("/api/v1/workspaces/{workspace_id}/opt-out")
async def read_opt_out(request: web.Request) -> web.Response:
    await operator(request, "compliance")  # a read, no value: compliance (or admin)
    async with state(request).pool.acquire() as conn:
        return json_response(await optout.status(conn, workspace_id_of(request)))


@routes.put("/api/v1/workspaces/{workspace_id}/opt-out-policy")
async def set_contract_policy(request: web.Request) -> web.Response:
    who = await operator(request, "admin")
    body = await parse_body(request, PolicyBody)
    async with state(request).pool.acquire() as conn:
        try:
            result = await optout.set_contract_policy(conn, workspace_id_of(request), body.categories, who.actor)
        except optout.InvalidCategories as exc:
            raise BadRequest(422, "invalid_request", str(exc),
                             [{"path": "categories", "reason": "not_optional", "message": str(exc)}]) from None
    return json_response(result)


@routes.get("/api/v1/audit")
async def audit(request: web.Request) -> web.Response:
    await operator(request, "compliance")  # a read, no value: compliance (or admin)
    q = parse_query(request, AuditQuery)
    async with state(request).pool.acquire() as conn:
        return json_response({"items": await optout.audit_listing(conn, workspace_id=q.workspace_id, limit=q.limit)})
