"""Operator API: workspaces (register, read, rotate, revoke), operator tokens, the
quarantine and the catalogue drift.

All calls need an operator bearer token with the ``admin`` role (the first
one is ``COLLECTOR_ADMIN_TOKEN``), except the quarantine listing (``compliance``). Answers are JSON; a new token appears in
the answer once and is stored only as a hash.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from collector.accounts import Invalid, workspaces
from collector.accounts import tokens as auth
from collector.http.common import (
    BadRequest,
    json_response,
    operator,
    parse_body,
    parse_query,
    state,
)
from collector.ingest import drift, quarantine

routes = web.RouteTableDef()


class NewWorkspace(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    label: str | None = Field(default=None, max_length=workspaces.LABEL_MAX)


class WorkspaceEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str | None = Field(max_length=workspaces.LABEL_MAX)


class NewOperatorToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roles: list[str] = Field(min_length=1)
    label: str | None = Field(default=None, max_length=100)


def workspace_id_of(request: web.Request) -> UUID:
    """The ``{workspace_id}`` of the URL; BadRequest(404) when not a UUID."""
    try:
        return UUID(request.match_info["workspace_id"])
    except ValueError:
        raise BadRequest(404, "unknown_workspace", "no workspace with that id") from None


@routes.post("/api/v1/workspaces")
async def create_workspace(request: web.Request) -> web.Response:
    await operator(request, "admin")
    body = await parse_body(request, NewWorkspace)
    async with state(request).pool.acquire() as conn:
        try:
            created = await workspaces.register(conn, body.plan, body.label)
        except workspaces.UnknownPlan:
            raise BadRequest(422, "unknown_plan", "no plan with that name", [{"path": "plan", "reason": "unknown_plan", "message": "the plan is not in the plan catalogue"}]) from None
        except Invalid as exc:
            raise invalid(exc) from None
    return json_response(created, status=201)


def invalid(exc: Invalid) -> BadRequest:
    """422 ``invalid_request`` naming the field of an edit that does not fit."""
    return BadRequest(422, "invalid_request", str(exc), [{"path": exc.path, "reason": "invalid", "message": str(exc)}])


@routes.patch("/api/v1/workspaces/{workspace_id}")
async def edit_workspace(request: web.Request) -> web.Response:
    """``{"label": "Acme Corp"}`` (null or blank: no label) -> the registry entry."""
    await operator(request, "admin")
    body = await parse_body(request, WorkspaceEdit)
    async with state(request).pool.acquire() as conn:
        try:
            return json_response(await workspaces.set_label(conn, workspace_id_of(request), body.label))
        except Invalid as exc:
            raise invalid(exc) from None


@routes.get("/api/v1/workspaces/{workspace_id}")
async def read_workspace(request: web.Request) -> web.Response:
    await operator(request, "admin")
    async with state(request).pool.acquire() as conn:
        return json_response(await workspaces.get(conn, workspace_id_of(request)))


@routes.post("/api/v1/workspaces/{workspace_id}/rotate")
async def rotate_workspace_token(request: web.Request) -> web.Response:
    await operator(request, "admin")
    st = state(request)
    async with st.pool.acquire() as conn:
        rotated = await workspaces.rotate(conn, workspace_id_of(request))
    st.principals.forget_workspace(workspace_id_of(request))
    return json_response(rotated)


@routes.post("/api/v1/workspaces/{workspace_id}/revoke")
async def revoke_workspace(request: web.Request) -> web.Response:
    await operator(request, "admin")
    st = state(request)
    async with st.pool.acquire() as conn:
        revoked = await workspaces.revoke(conn, workspace_id_of(request))
    st.principals.forget_workspace(workspace_id_of(request))
    return json_response(revoked)


@routes.post("/api/v1/operator-tokens")
async def create_operator_token(request: web.Request) -> web.Response:
    await operator(request, "admin")
    body = await parse_body(request, NewOperatorToken)
    async with state(request).pool.acquire() as conn:
        try:
            created = await auth.create_operator_token(conn, body.roles, body.label)
        except ValueError as exc:
            raise BadRequest(422, "invalid_request", str(exc), [{"path": "roles", "reason": "unknown_role", "message": str(exc)}]) from None
    return json_response(created, status=201)


@routes.get("/api/v1/operator-tokens")
async def list_operator_tokens(request: web.Request) -> web.Response:
    await operator(request, "admin")
    async with state(request).pool.acquire() as conn:
        return json_response({"items": await auth.list_operator_tokens(conn)})


@routes.post("/api/v1/operator-tokens/{ref}/revoke")
async def revoke_operator_token(request: web.Request) -> web.Response:
    await operator(request, "admin")
    async with state(request).pool.acquire() as conn:
        try:
            return json_response(await auth.revoke_operator_token(conn, request.match_info["ref"]))
        except LookupError:
            raise BadRequest(404, "unknown_token", "no operator token with that reference") from None


class QuarantineQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workspace_id: UUID | None = None
    reason: str | None = Field(default=None, pattern=r"^[a-z_]{1,40}$")
    since: datetime | None = None
    limit: int = Field(default=100, ge=1, le=1000)


@routes.get("/api/v1/quarantine")
async def list_quarantine(request: web.Request) -> web.Response:
    """Quarantined reports, newest first; query: workspace_id, reason, since (ISO 8601), limit (1..1000).
    Role ``compliance`` (or admin): paths and reasons, never a value."""
    await operator(request, "compliance")
    q = parse_query(request, QuarantineQuery)
    async with state(request).pool.acquire() as conn:
        items = await quarantine.listing(
            conn, workspace_id=q.workspace_id, reason=q.reason, since=q.since, limit=q.limit
        )
    return json_response({"items": items})


@routes.get("/api/v1/catalogue/drift")
async def catalogue_drift(request: web.Request) -> web.Response:
    """Fields outside the catalogue that accepted reports carried (``collector.ingest.drift.listing``):
    ``{"items": [{path, json_types, rc_versions, reports, first_seen, last_seen, in_catalogue}]}``; never a value."""
    await operator(request, "admin")
    async with state(request).pool.acquire() as conn:
        items = await drift.listing(conn)
    return json_response({"items": items})
