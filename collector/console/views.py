"""The compliance board and the workspace page (role ``compliance``), and the
workspace edits an ``admin`` makes there (label, contract, opt-out).

  GET  /console/compliance[?status=over&status=near][&label=acme][&page=N]
  GET  /console/workspaces/{id}
  POST /console/workspaces/{id}/label      admin: label            (blank: none)
  POST /console/workspaces/{id}/contract   admin: plan, term_start, term_end, seats, mac_packs
                                            (blank: unchanged; seats "none": no purchased seats)
  POST /console/workspaces/{id}/opt-out    admin: opt_out = on | off
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from uuid import UUID

from aiohttp import web

from collector.accounts import Invalid, UnknownPlan, optout, plans, workspaces
from collector.console import charts, common
from collector.console.common import PREFIX, has_role, render, require
from collector.ingest import quarantine
from collector.usage import compliance, history

routes = web.RouteTableDef()

PAGE_SIZE = 200
CHART_DAYS = 90

#: Limit kinds as the pages name them, in the catalogue's order.
KIND_NAMES = {
    "activeUsers": "Seats",
    "guestUsers": "Guests",
    "monthlyActiveContacts": "Monthly active contacts",
    "privateApps": "Private apps",
    "marketplaceApps": "Marketplace apps",
    "peakConnections": "Peak connections",
}
#: The chart's series -> the limit kind drawn as its limit line.
SERIES_LIMITS = {"seats": "activeUsers", "guests": "guestUsers",
                 "monthly_active_contacts": "monthlyActiveContacts", "peak_connections": "peakConnections"}


def _limits(item: dict) -> list[dict]:
    """The limits of a compliance item, in KIND_NAMES order, each with its
    name, bar geometry and ``since`` parsed."""
    out = []
    for kind, name in KIND_NAMES.items():
        lim = item["limits"].get(kind)
        if lim is None:
            continue
        out.append({**lim, "kind": kind, "name": name, "bar": charts.bar(lim["value"], lim["max"]),
                    "since": datetime.fromisoformat(lim["since"]) if lim.get("since") else None})
    return out


def _workspace_id(request: web.Request) -> UUID:
    try:
        return UUID(request.match_info["workspace_id"])
    except ValueError:
        raise common.NotFound() from None


@routes.get("/compliance")
async def board(request: web.Request) -> web.Response:
    """Every workspace worst first, with its limits as bars; filters by several statuses and by label."""
    who = await require(request, "compliance")
    settings = common.deps(request).settings
    label = request.query.get("label", "").strip()[:200]
    try:
        page = max(1, min(int(request.query.get("page", "1")), 100_000))
    except ValueError:
        page = 1
    try:
        statuses = compliance.check_statuses(request.query.getall("status", []))
    except ValueError:
        statuses, problem = [], "Unknown status in the filter: showing every status."
    else:
        problem = None
    now = common.utcnow()
    kw = {"now": now, "stale_after_s": settings.stale_after_s}
    data = await compliance.board(common.pool(request), **kw, statuses=statuses, label=label or None,
                                  limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    counts = await compliance.status_counts(common.pool(request), **kw)
    rows = [{**w, "limit_rows": _limits(w),
             "last_report_at": datetime.fromisoformat(w["last_report_at"]) if w["last_report_at"] else None}
            for w in data["workspaces"]]
    pages = max(1, -(-data["total"] // PAGE_SIZE))
    return await render(request, "compliance.html", {
        "title": "Compliance", "rows": rows, "total": data["total"], "page": page, "pages": pages,
        "statuses": compliance.WORST_FIRST + ("stale",), "chosen": statuses, "label": label, "counts": counts,
        "kinds": KIND_NAMES, "problem": problem,
        "query": [("status", s) for s in statuses] + ([("label", label)] if label else []),
    }, status=400 if problem else 200, who=who)


async def _workspace_context(request: web.Request, workspace_id: UUID) -> dict:
    """Everything the workspace page shows. Raises UnknownWorkspace."""
    settings = common.deps(request).settings
    now = common.utcnow()
    today = now.date()
    first = today - timedelta(days=CHART_DAYS - 1)
    async with common.pool(request).acquire() as conn:
        entry = await workspaces.get(conn, workspace_id)
        contract = await plans.get_contract(conn, workspace_id)
        state = await compliance.workspace_compliance(conn, workspace_id, now=now,
                                                      stale_after_s=settings.stale_after_s)
        days = await history.daily(conn, workspace_id, first, today)
        opt = await optout.status(conn, workspace_id)
        audit = await optout.audit_listing(conn, workspace_id=workspace_id, limit=20)
        refusals = await quarantine.listing(conn, workspace_id=workspace_id, limit=10)
        plan_names = [p["plan"] for p in await plans.list_plans(conn)]
    limits = _limits(state)
    by_kind = {lim["kind"]: lim for lim in limits}
    chart_list = []
    for key, title in history.SERIES.items():
        lim = by_kind.get(SERIES_LIMITS[key])
        chart_list.append(charts.day_chart(key, title, first, today, {d["day"]: d[key] for d in days},
                                           limit=lim["max"] if lim else None))
    for row in audit:
        row["at"] = datetime.fromisoformat(row["at"])
    for row in refusals:
        row["received_at"] = datetime.fromisoformat(row["received_at"])
    return {
        "title": entry["label"] or f"Workspace {workspace_id}", "entry": entry, "contract": contract,
        "state": state, "limits": limits, "charts": chart_list, "chart_first": first, "chart_last": today,
        "opt": opt, "audit": audit, "refusals": refusals, "plan_names": plan_names,
        "last_report_at": datetime.fromisoformat(state["last_report_at"]) if state["last_report_at"] else None,
        "problem": None, "saved": None,
    }


SAVED = {"label": "Label saved.", "contract": "Contract saved.", "opt-out": "Opt-out changed."}


@routes.get("/workspaces/{workspace_id}")
async def workspace(request: web.Request) -> web.Response:
    who = await require(request, "compliance")
    ctx = await _workspace_context(request, _workspace_id(request))
    ctx["saved"] = SAVED.get(request.query.get("saved", ""))
    ctx["can_edit"] = has_role(who, "admin") and ctx["entry"]["revoked_at"] is None
    return await render(request, "workspace.html", ctx, who=who)


async def _edit(request: web.Request, what: str, change) -> web.Response:
    """An admin edit of the workspace page: CSRF checked, ``change(conn, ws,
    form)`` run; then back to the page (303), or the page again with the
    problem (422) when the edit does not fit."""
    who = await require(request, "admin")
    workspace_id = _workspace_id(request)
    form = await common.read_form(request)
    await common.check_csrf(request, form)
    try:
        async with common.pool(request).acquire() as conn:
            await change(conn, workspace_id, form, who)
    except (Invalid, UnknownPlan, optout.OptOutNotAllowed) as exc:
        message = str(exc) if isinstance(exc, Invalid) else (
            "That plan is not in the catalogue." if isinstance(exc, UnknownPlan) else
            "This workspace's plan allows no opt-out.")
        ctx = await _workspace_context(request, workspace_id)
        ctx.update(problem=message, can_edit=True)
        return await render(request, "workspace.html", ctx, status=422, who=who)
    return common.redirect(f"{PREFIX}/workspaces/{workspace_id}?saved={what}")


def _text(form, name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


@routes.post("/workspaces/{workspace_id}/label")
async def edit_label(request: web.Request) -> web.Response:
    async def change(conn, workspace_id, form, who):
        await workspaces.set_label(conn, workspace_id, _text(form, "label") or None)

    return await _edit(request, "label", change)


@routes.post("/workspaces/{workspace_id}/contract")
async def edit_contract(request: web.Request) -> web.Response:
    async def change(conn, workspace_id, form, who):
        changes: dict = {}
        if _text(form, "plan"):
            changes["plan"] = _text(form, "plan")
        for name in ("term_start", "term_end"):
            if _text(form, name):
                try:
                    changes[name] = date.fromisoformat(_text(form, name))
                except ValueError:
                    raise Invalid(name, f"{name} must be a date YYYY-MM-DD") from None
        for name in ("seats", "mac_packs"):
            text = _text(form, name)
            if name == "seats" and text.lower() == "none":
                changes["seats"] = None
            elif text:
                try:
                    changes[name] = int(text)
                except ValueError:
                    raise Invalid(name, f"{name} must be a whole number" + (" or 'none'" if name == "seats" else "")) from None
                if changes[name] < 0:
                    raise Invalid(name, f"{name} must not be negative")
        await plans.update_contract(conn, workspace_id, changes, actor=who.actor)

    return await _edit(request, "contract", change)


@routes.post("/workspaces/{workspace_id}/opt-out")
async def edit_opt_out(request: web.Request) -> web.Response:
    async def change(conn, workspace_id, form, who):
        value = _text(form, "opt_out")
        if value not in ("on", "off"):
            raise Invalid("opt_out", "opt_out must be on or off")
        await optout.set_opt_out(conn, workspace_id, value == "on", who.actor)

    return await _edit(request, "opt-out", change)

