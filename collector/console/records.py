"""The quarantine page (role ``compliance``) and the catalogue page (any operator).

  GET /console/quarantine[?days=7|30|90][&reason=schema_violation]
      refusals by reason and by path over time (paths and reasons, never a value)
  GET /console/catalogue[?category=billing][&class=count][&q=text]
      the field catalogue: path, type, class, data category, versions, meaning;
      and the drift seen: fields not in the catalogue that accepted reports carried
      (``collector.ingest.drift``), and paths refused as ``unknown_field``
      (``COLLECTOR_UNKNOWN_FIELDS=refuse``, from the quarantine)
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

import orjson
from aiohttp import web

from collector.console import charts, common
from collector.console.common import render, require
from collector.gate import CATALOGUE_PATH, CATALOGUE_VERSION, CATEGORIES
from collector.ingest import drift as catalogue_drift
from collector.ingest import quarantine

routes = web.RouteTableDef()

WINDOWS = (7, 30, 90)


@routes.get("/quarantine")
async def quarantine_page(request: web.Request) -> web.Response:
    who = await require(request, "compliance")
    try:
        days = int(request.query.get("days", "30"))
    except ValueError:
        days = 30
    days = days if days in WINDOWS else 30
    reason = request.query.get("reason", "").strip()
    if reason and (len(reason) > 40 or not reason.replace("_", "").isalpha()):
        reason = ""
    today = common.utcnow().date()
    first = today - timedelta(days=days - 1)
    since = common.utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)
    async with common.pool(request).acquire() as conn:
        summary = await quarantine.summary(conn, since=since, reason=reason or None)
        recent = await quarantine.listing(conn, reason=reason or None, since=since, limit=20)
    per_day: dict[date, int] = {}
    for row in summary["by_day"]:
        per_day[row["day"]] = per_day.get(row["day"], 0) + row["reports"]
    total = sum(per_day.values())
    chart = charts.day_chart("refusals", "refused reports per day", first, today,
                             {first + timedelta(days=i): per_day.get(first + timedelta(days=i), 0) for i in range(days)},
                             summary=f"{total:,} refused in {days} days" + (
                                 f"; most on one day: {max(per_day.values()):,}" if per_day else ""))
    return await render(request, "quarantine.html", {
        "title": "Quarantine", "days": days, "windows": WINDOWS, "reason": reason, "summary": summary,
        "recent": recent, "chart": chart, "first": first, "last": today,
    }, who=who)


@lru_cache(maxsize=1)
def _catalogue() -> dict:
    return orjson.loads(CATALOGUE_PATH.read_bytes())


@routes.get("/catalogue")
async def catalogue_page(request: web.Request) -> web.Response:
    who = await require(request, None)
    doc = _catalogue()
    category = request.query.get("category", "")
    klass = request.query.get("class", "")
    text = request.query.get("q", "").strip().lower()[:100]
    fields = [f for f in doc["fields"]
              if (not category or f["category"] == category) and (not klass or f["class"] == klass)
              and (not text or text in f["path"].lower() or text in (f.get("meaning") or "").lower())]
    since = common.utcnow() - timedelta(days=90)
    async with common.pool(request).acquire() as conn:
        drift = (await quarantine.summary(conn, since=since, violation="unknown_field", paths=200))["by_path"]
        dropped = (await catalogue_drift.listing(conn))[:200]
    return await render(request, "catalogue.html", {
        "title": "Catalogue", "version": CATALOGUE_VERSION, "fields": fields, "total": len(doc["fields"]),
        "categories": CATEGORIES, "category_notes": doc.get("categories", {}), "classes": sorted(doc.get("classes", {})),
        "class_notes": doc.get("classes", {}), "category": category, "klass": klass, "q": text, "drift": drift,
        "dropped": dropped,
    }, who=who)
