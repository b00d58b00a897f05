"""POST / and /api/v1/statistics: a workspace posts its statistics record.

Thin: the report runs through the stages of ``collector.ingest`` (``Ingest.handle``),
whose ``Answer`` is sent as JSON.
"""

from __future__ import annotations

from aiohttp import web

from collector.http.common import json_response, state


async def post_statistics(request: web.Request) -> web.Response:
    answer = await state(request).ingest.handle(request)
    return json_response(answer.body, answer.status, answer.headers or None)
