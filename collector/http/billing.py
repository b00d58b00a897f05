"""Billing reads (operator role ``billing``; see ``collector.usage.billing``).

  GET /api/v1/billing/consumption[?period=YYYY-MM | ?from=YYYY-MM-DD&to=YYYY-MM-DD (inclusive)]
      no period: the current UTC month. JSON by default; CSV with
      ``Accept: text/csv`` or ``?format=csv`` (``Content-Disposition:
      attachment; filename="consumption-YYYY-MM.csv"``).
      The CSV's headers ``X-Raw-Data-Expired`` / ``X-Rollups-Expired: true|false``
      say what the JSON's ``raw_data_expired`` / ``rollups_expired`` say.
"""

from __future__ import annotations

from datetime import datetime, timezone

from aiohttp import web

from collector.accounts import Invalid
from collector.http.common import BadRequest, json_body, operator, state
from collector.usage import billing

routes = web.RouteTableDef()


@routes.get("/api/v1/billing/consumption")
async def consumption(request: web.Request) -> web.Response:
    await operator(request, "billing")
    q = request.query
    now = datetime.now(timezone.utc)
    fmt = q.get("format", "json")
    if fmt not in ("json", "csv"):
        raise BadRequest(400, "invalid_request", "format must be json or csv",
                         [{"path": "format", "reason": "invalid", "message": "format must be json or csv"}])
    try:
        start, end = billing.parse_period(q.get("period"), q.get("from"), q.get("to"), today=now.date())
    except Invalid as exc:
        raise BadRequest(400, "invalid_request", str(exc),
                         [{"path": exc.path, "reason": "invalid", "message": str(exc)}]) from None
    st = state(request)
    kw = {"now": now, "stale_after_s": st.settings.stale_after_s}
    if fmt == "csv" or "text/csv" in request.headers.get("Accept", ""):
        body = await billing.consumption_csv(st.pool, start, end, **kw)
        raw, rollups = await billing.expired(st.pool, start)
        name = f"consumption-{billing.period_name(start, end)}.csv"
        return web.Response(body=body, content_type="text/csv", charset="utf-8",
                            headers={
                                "Content-Disposition": f'attachment; filename="{name}"',
                                "X-Raw-Data-Expired": str(raw).lower(), "X-Rollups-Expired": str(rollups).lower()})
    return json_body(await billing.consumption_json(st.pool, start, end, **kw))
