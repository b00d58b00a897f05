"""Hostile and broken clients (issue 11): whatever the body, the headers or the
numbers, the service answers with a 4xx naming what is wrong, never a 500.

The normal suite runs small, fast cases; ``-m slow`` (CI) runs the same kinds
at the limits (bodies at and just past the caps, every route, many numbers).
"""

from __future__ import annotations

import gzip
import re

import orjson
import pytest

from tests.conftest import admin_headers

API_CAP = 64 * 1024  # COLLECTOR_API_MAX_BODY_BYTES default
REPORT_CAP = 1024 * 1024  # COLLECTOR_MAX_BODY_BYTES default


async def _routes(service, ws_id: str) -> list[tuple[str, str]]:
    """Every (method, concrete path) the application routes, placeholders filled in."""
    values = {"workspace_id": ws_id, "plan": "starter", "kind": "activeUsers", "ref": "000000000000"}
    out = []
    for route in service.server.app.router.routes():
        if route.method in ("HEAD", "*"):
            continue
        path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], route.resource.canonical)
        out.append((route.method, path))
    return sorted(set(out))


async def _send(service, method: str, path: str, data, headers: dict) -> tuple[int, dict, bytes]:
    async with service.http.request(method, service.url + path, data=data, headers=headers) as r:
        return r.status, dict(r.headers), await r.read()


def _error(body: bytes) -> str | None:
    try:
        return orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None


@pytest.mark.parametrize("case", ["not_gzip", "too_large", "bomb", "not_json", "deflate_garbage"])
async def test_no_route_answers_500_to_a_bad_body(service, case):
    """Every route, every method it takes: a body that is not what its headers say
    gets a 4xx; a route that reads a body answers the one body reader's codes."""
    ws = await service.register()
    headers = {**admin_headers(), "Content-Type": "application/json"}
    if case == "not_gzip":
        data, headers["Content-Encoding"], want = b'{"plan": "starter"}', "gzip", (400, "malformed_body")
    elif case == "deflate_garbage":
        data, headers["Content-Encoding"], want = b"\x78\x9c garbage", "deflate", (400, "malformed_body")
    elif case == "too_large":
        data, want = b'{"plan": "' + b"x" * REPORT_CAP + b'"}', (413, "too_large")
    elif case == "bomb":
        data, headers["Content-Encoding"], want = gzip.compress(b" " * (16 * REPORT_CAP)), "gzip", (413, "too_large")
    else:
        data, want = b"{not json", (400, "malformed_body")
    seen = {}
    for method, path in await _routes(service, ws["workspace_id"]):
        status, _, body = await _send(service, method, path, data, headers)
        assert status < 500, (method, path, status, body)
        seen[(method, path)] = (status, _error(body))
    # the routes that read a JSON body answer exactly the reader's code
    for route in [("POST", "/api/v1/workspaces"), ("POST", "/api/v1/operator-tokens"),
                  ("PUT", "/api/v1/plans/starter/limits/activeUsers"), ("PATCH", "/api/v1/plans/starter"),
                  ("PUT", f"/api/v1/workspaces/{ws['workspace_id']}/contract")]:
        assert seen[route] == want, (route, seen[route])


async def test_405_carries_allow_and_404_is_json(service):
    status, headers, body = await _send(service, "PUT", "/", b"{}", {"Content-Type": "application/json"})
    assert (status, _error(body)) == (405, "method_not_allowed")
    assert set(headers["Allow"].replace(" ", "").split(",")) == {"POST"}
    status, headers, body = await _send(service, "DELETE", "/api/v1/plans/starter", None, admin_headers())
    assert status == 405 and set(headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "PATCH"}
    status, _, body = await _send(service, "GET", "/no/such/path", None, {})
    assert (status, _error(body)) == (404, "not_found")


async def test_api_body_cap_is_its_own_setting(service):
    """An operator body over COLLECTOR_API_MAX_BODY_BYTES is 413 ``too_large``,
    however it is sent (Content-Length, chunked, compressed); one at the cap is read."""
    headers = {**admin_headers(), "Content-Type": "application/json"}
    at_cap = b'{"plan": "starter"' + b" " * (API_CAP - 20) + b"}"
    assert len(at_cap) == API_CAP - 1
    status, _, body = await _send(service, "POST", "/api/v1/workspaces", at_cap, headers)
    assert status == 201, body
    over = at_cap + b"  "

    async def chunked():
        for i in range(0, len(over), 1000):
            yield over[i:i + 1000]

    for data, extra in [(over, {}), (chunked(), {}), (gzip.compress(over), {"Content-Encoding": "gzip"})]:
        status, headers_, body = await _send(service, "POST", "/api/v1/workspaces", data, {**headers, **extra})
        assert (status, _error(body)) == (413, "too_large")
        if extra == {} and isinstance(data, bytes):  # refused by Content-Length, unread: not reused
            assert headers_.get("Connection", "").lower() == "close"
