"""Compliance reads (operator role ``compliance``; see ``collector.usage.compliance``).

  GET /api/v1/compliance[?status=over,near&status=stale][&label=acme]   -> {"workspaces": [...]}
      status: ok, near, at, over, unknown, stale; several (comma-separated or
      repeated) keep a workspace matching any; label: the label contains it
      (case ignored)
  GET /api/v1/compliance/{workspace_id}                                  -> one workspace (limits with behavior)
"""

from __future__ import annotations

from datetime import datetime, timezone

from aiohttp import web

from collector.http.admin import workspace_id_of
from collector.http.common import BadRequest, json_body, json_response, operator, state
from collector.usage import compliance

routes = web.RouteTableDef()


@routes.get("/api/v1/compliance")
async def list_compliance(request: web.Request) -> web.Response:
    await operator(request, "compliance")
    try:
        statuses = compliance.check_statuses(",".join(request.query.getall("status", [])))
    except ValueError as exc:
        raise BadRequest(400, "invalid_request", "unknown status", [
            {"path": "status", "reason": "invalid", "message": str(exc)}]) from None
    st = state(request)
    return json_body(await compliance.list_compliance_json(
        st.pool, now=datetime.now(timezone.utc), stale_after_s=st.settings.stale_after_s, statuses=statuses,
        label=request.query.get("label")))


@routes.get("/api/v1/compliance/{workspace_id}")
async def read_compliance(request: web.Request) -> web.Response:
    await operator(request, "compliance")
    st = state(request)
    return json_response(await compliance.workspace_compliance(
        st.pool, workspace_id_of(request), now=datetime.now(timezone.utc), stale_after_s=st.settings.stale_after_s))
