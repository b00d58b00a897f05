"""Access, portability and erasure (rules in ``collector.lifecycle``).

  GET    /api/v1/workspaces/self/export    workspace token: everything held about it (one JSON document, streamed)
  GET    /api/v1/workspaces/{id}/export    operator admin: the same for any workspace (revoked ones too)
  DELETE /api/v1/workspaces/{id}           operator admin: erase it (one transaction, one audit line)

The export is sent as it is read (chunked): ``Content-Disposition`` names it
``workspace-<id>.json``. A database fault before the first chunk is the
usual 503; one after it cuts the answer short (an incomplete JSON document;
the client retries the export).
"""

from __future__ import annotations

from datetime import datetime, timezone
from uuid import UUID

from aiohttp import web

from collector.accounts import workspaces
from collector.http.admin import workspace_id_of
from collector.http.common import BadRequest, json_response, operator, principal, state
from collector.lifecycle import erasure, export

routes = web.RouteTableDef()


async def _export(request: web.Request, workspace_id: UUID) -> web.StreamResponse:
    st = state(request)
    async with st.pool.acquire() as conn:
        await workspaces.get(conn, workspace_id)  # UnknownWorkspace -> 404 before anything is sent
        chunks = export.stream(conn, workspace_id, datetime.now(timezone.utc))
        try:
            first = await anext(chunks)
            response = web.StreamResponse(headers={
                "Content-Type": "application/json",
                "Content-Disposition": f'attachment; filename="workspace-{workspace_id}.json"',
            })
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(first)
            async for chunk in chunks:
                await response.write(chunk)
            await response.write_eof()
            return response
        finally:
            await chunks.aclose()  # ends the export's transaction before the connection goes back


@routes.get("/api/v1/workspaces/self/export")
async def export_self(request: web.Request) -> web.StreamResponse:
    who = await principal(request)
    if who.kind != "workspace" or who.workspace_id is None:
        raise BadRequest(403, "forbidden", "this call needs a workspace token")
    return await _export(request, who.workspace_id)


@routes.get("/api/v1/workspaces/{workspace_id}/export")
async def export_workspace(request: web.Request) -> web.StreamResponse:
    await operator(request, "admin")
    return await _export(request, workspace_id_of(request))


@routes.delete("/api/v1/workspaces/{workspace_id}")
async def erase_workspace(request: web.Request) -> web.Response:
    who = await operator(request, "admin")
    workspace_id = workspace_id_of(request)
    st = state(request)
    async with st.pool.acquire() as conn:
        erased = await erasure.erase(conn, workspace_id, who.actor)
    # this process at once (the others on the NOTIFY, at the commit)
    st.principals.forget_workspace(workspace_id)
    if st.keyring is not None:
        st.keyring.forget_workspace(workspace_id)
    return json_response(erased)
