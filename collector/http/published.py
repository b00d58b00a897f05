"""Published contracts of the collector, readable by anyone:

  GET /api/v1/schema          JSON Schema of the report the collector accepts
                              (generated from the field catalogue; the same as
                              schemas/report.schema.json)
  GET /api/v1/schema/fields   the field catalogue itself (schemas/catalogue.json):
                              every path with type, class, data category,
                              versions seen and meaning
"""

from __future__ import annotations

from functools import lru_cache

import orjson
from aiohttp import web

from collector.gate import CATALOGUE_PATH, json_schema
from collector.http.common import json_response

routes = web.RouteTableDef()


@lru_cache(maxsize=1)
def _catalogue_document() -> dict:
    return orjson.loads(CATALOGUE_PATH.read_bytes())


@routes.get("/api/v1/schema")
async def report_schema(request: web.Request) -> web.Response:
    return json_response(json_schema())


@routes.get("/api/v1/schema/fields")
async def field_catalogue(request: web.Request) -> web.Response:
    return json_response(_catalogue_document())
