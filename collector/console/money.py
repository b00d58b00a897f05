"""The billing page and its CSV (role ``billing``).

  GET /console/billing[?period=YYYY-MM | ?from=YYYY-MM-DD&to=YYYY-MM-DD][&page=N]
      no period: the current UTC month
  GET /console/billing.csv?<the same period>
      the whole report as CSV (``collector.usage.billing.consumption_csv``),
      ``Content-Disposition: attachment; filename="consumption-YYYY-MM.csv"``
      (a range: ``consumption-YYYY-MM-DD_YYYY-MM-DD.csv``)
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from collector.accounts import Invalid
from collector.console import common
from collector.console.common import PREFIX, has_role, render, require
from collector.usage import billing

routes = web.RouteTableDef()

PAGE_SIZE = 200


def _period(request: web.Request) -> tuple[tuple | None, str | None, dict]:
    """((start, end) or None, a problem or None, the period's query parameters)
    from the query; blank fields count as absent (an empty picker means the
    current month)."""
    q = {k: request.query.get(k, "").strip() for k in ("period", "from", "to")}
    given = {k: v for k, v in q.items() if v}
    try:
        start, end = billing.parse_period(given.get("period"), given.get("from"), given.get("to"),
                                          today=common.utcnow().date())
    except Invalid as exc:
        return None, str(exc), given
    return (start, end), None, given


@routes.get("/billing")
async def billing_page(request: web.Request) -> web.Response:
    who = await require(request, "billing")
    settings = common.deps(request).settings
    period, problem, given = _period(request)
    try:
        page = max(1, min(int(request.query.get("page", "1")), 100_000))
    except ValueError:
        page = 1
    ctx = {"title": "Billing", "problem": problem, "rows": [], "totals": None, "page": page, "pages": 1,
           "period_value": given.get("period", ""), "from_value": given.get("from", ""),
           "to_value": given.get("to", ""), "links": has_role(who, "compliance")}
    if period is None:
        return await render(request, "billing.html", ctx, status=400, who=who)
    start, end = period
    kw = {"now": common.utcnow(), "stale_after_s": settings.stale_after_s}
    totals = await billing.consumption_totals(common.pool(request), start, end, **kw)
    rows = await billing.consumption_page(common.pool(request), start, end, **kw, limit=PAGE_SIZE,
                                          offset=(page - 1) * PAGE_SIZE)
    query = {"period": start.strftime("%Y-%m")} if billing.period_name(start, end) == start.strftime("%Y-%m") else {
        "from": start.isoformat(), "to": end.isoformat()}
    ctx.update(start=start, end=end, totals=totals, rows=rows, pages=max(1, -(-totals["workspaces"] // PAGE_SIZE)),
               period_value=ctx["period_value"] or (query.get("period") or ""),
               csv_url=f"{PREFIX}/billing.csv?" + urlencode(query), query=list(query.items()),
               file_name=f"consumption-{billing.period_name(start, end)}.csv")
    return await render(request, "billing.html", ctx, who=who)


@routes.get("/billing.csv")
async def billing_csv(request: web.Request) -> web.Response:
    await require(request, "billing")
    period, problem, _ = _period(request)
    if period is None:
        raise common.Problem(400, problem or "bad period")
    start, end = period
    body = await billing.consumption_csv(common.pool(request), start, end, now=common.utcnow(),
                                         stale_after_s=common.deps(request).settings.stale_after_s)
    name = f"consumption-{billing.period_name(start, end)}.csv"
    return web.Response(body=body, content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
