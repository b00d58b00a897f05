"""Hostile and broken clients (issue 11): whatever the body, the headers or the
numbers, the service answers with a 4xx naming what is wrong, never a 500.

The normal suite runs small, fast cases; ``-m slow`` (CI) runs the same kinds
at the limits (bodies at and just past the caps, every route, many numbers).
"""

from __future__ import annotations

import gzip
import re

import aiohttp
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


BAD_BODIES = ["not_gzip", "too_large", "bomb", "not_json", "deflate_garbage", "brotli_garbage", "zstd_garbage"]


@pytest.mark.parametrize("case", BAD_BODIES)
async def test_no_route_answers_500_to_a_bad_body(service, case):
    """Every route, every method it takes: a body that is not what its headers say
    gets a 4xx; a route that reads a body answers the one body reader's codes."""
    await _bad_body_everywhere(service, case, API_CAP + 1)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["too_large", "bomb"])
async def test_no_route_answers_500_to_a_bad_body_at_the_report_cap(service, case):
    await _bad_body_everywhere(service, case, REPORT_CAP + 1)


async def _bad_body_everywhere(service, case: str, size: int) -> None:
    ws = await service.register()
    headers = {**admin_headers(), "Content-Type": "application/json"}
    garbage = {"not_gzip": "gzip", "deflate_garbage": "deflate", "brotli_garbage": "br", "zstd_garbage": "zstd"}
    if case in garbage:
        data, headers["Content-Encoding"], want = b"\x78\x9c not compressed", garbage[case], (400, "malformed_body")
    elif case == "too_large":
        data, want = b'{"plan": "' + b"x" * size + b'"}', (413, "too_large")
    elif case == "bomb":
        data, headers["Content-Encoding"], want = gzip.compress(b" " * (16 * size)), "gzip", (413, "too_large")
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


def _with_literal(report: dict, setter, literal: bytes) -> bytes:
    """The report's JSON with one value replaced by a raw number ``literal``."""
    setter(report, "__LITERAL__")
    return orjson.dumps(report).replace(b'"__LITERAL__"', literal)


PLACES = [  # (where, setter, path the refusal names)
    ("activeUsers", lambda r, v: r.__setitem__("activeUsers", v), "activeUsers"),
    ("os.totalmem", lambda r, v: r["os"].__setitem__("totalmem", v), "os.totalmem"),
    ("os.uptime (a number field)", lambda r, v: r["os"].__setitem__("uptime", v), "os.uptime"),
    ("os.loadavg[1]", lambda r, v: r["os"]["loadavg"].__setitem__(1, v), "os.loadavg[1]"),
]
LITERALS = [b"18446744073709551616", b"18446744073709551615000", b"-9223372036854775809" + b"0" * 10,
            b"1" + b"0" * 5000, b"-" + b"9" * 5000]


@pytest.mark.parametrize("literal", LITERALS, ids=lambda b: f"{len(b)}digits")
@pytest.mark.parametrize("place", PLACES, ids=lambda p: p[0])
async def test_integers_beyond_64_bits_are_number_too_large_at_their_path(service, report_870, place, literal):
    ws = await service.register()
    _, setter, path = place
    status, _, body = await service.post_report(ws["token"], _with_literal(report_870, setter, literal))
    assert status == 422, body
    answer = orjson.loads(body)
    assert answer["error"] == "schema_violation"
    # a negative one in a count: below its lower bound (0) first
    reasons = {"number_too_large", "negative_count"} if literal.startswith(b"-") else {"number_too_large"}
    assert [v["path"] for v in answer["violations"]] == [path]
    assert answer["violations"][0]["reason"] in reasons
    assert literal[:30] not in body


@pytest.mark.parametrize("literal", [b"1e400", b"-1e400", b"1" + b"0" * 400 + b".5"])
async def test_floats_beyond_a_double_are_refused_at_their_path(service, report_870, literal):
    ws = await service.register()
    status, _, body = await service.post_report(
        ws["token"], _with_literal(report_870, lambda r, v: r["os"].__setitem__("uptime", v), literal))
    assert status == 422, body
    assert [v["path"] for v in orjson.loads(body)["violations"]] == ["os.uptime"]


async def test_exact_reparse_is_as_strict_as_orjson(service, report_870):
    """A body orjson refuses for a huge number and for something else is 400, whatever the order."""
    ws = await service.register()
    for bad in [b'"\\ud800"', b"NaN", b"Infinity"]:
        report_870["x"] = "__BAD__"
        raw = _with_literal(report_870, lambda r, v: r.__setitem__("activeUsers", v), b"1" + b"0" * 400)
        status, _, body = await service.post_report(ws["token"], raw.replace(b'"__BAD__"', bad))
        assert (status, _error(body)) == (400, "malformed_body"), bad


@pytest.mark.parametrize("literal", [b"18446744073709551616", b"1" + b"0" * 5000])
async def test_a_huge_integer_in_a_dropped_identifying_field_is_dropped(service, db, report_870, literal):
    """``process.pid`` is identifying: any integer is taken and dropped, never stored."""
    ws = await service.register()
    status, _, body = await service.post_report(
        ws["token"], _with_literal(report_870, lambda r, v: r["process"].__setitem__("pid", v), literal))
    assert status == 200, body


async def test_a_500_logs_its_traceback_but_no_local_value(database_url, tmp_path):
    """The one 500 there is (a bug) logs the exception's type, text and frames;
    never the frames' locals, where a body or a token would be."""
    import io

    from aiohttp.test_utils import TestServer

    from collector.http.app import make_app
    from collector.ops import logs
    from tests.conftest import make_settings

    app = make_app(make_settings(tmp_path), database_url)

    async def failing(request):
        body = await request.read()  # noqa: F841  (a local holding the body)
        raise RuntimeError("a bug")

    app.router.add_post("/failing", failing)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    stream = io.StringIO()
    logs.configure("INFO", True, stream)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(server.make_url("/failing"), data=b'{"secret": "wsc_ws_TOKEN_VALUE"}') as r:
                assert r.status == 500 and (await r.json())["error"] == "internal_error"
    finally:
        logs.configure("INFO", True)
        await server.close()
    line = next(orjson.loads(x) for x in stream.getvalue().splitlines() if '"request_failed"' in x)
    (exc,) = line["exception"]
    assert (exc["exc_type"], exc["exc_value"]) == ("RuntimeError", "a bug")
    assert any(f["name"] == "failing" for f in exc["frames"])
    assert "TOKEN_VALUE" not in stream.getvalue() and "locals" not in stream.getvalue()


async def test_deep_nesting_is_400_even_with_a_huge_number(service, report_870):
    ws = await service.register()
    for raw in [b"[" * 100_000 + b"]" * 100_000,
                b'{"activeUsers": 1' + b"0" * 500 + b', "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"]:
        status, _, body = await service.post_report(ws["token"], raw)
        assert (status, _error(body)) == (400, "malformed_body")


@pytest.mark.slow
@pytest.mark.parametrize("digits", [300, 4301, 900_000])
async def test_huge_numbers_at_the_size_limit(service, report_870, digits):
    """Every integer of a real record replaced by a ``digits``-digit literal (as
    many as fit under the cap), or one literal filling the body: every path named
    ``number_too_large``, never 400/500."""
    ws = await service.register()
    literal = b"9" * digits
    paths = []

    def walk(node, path):
        for key, value in (node.items() if isinstance(node, dict) else enumerate(node)):
            here = f"{path}.{key}" if isinstance(node, dict) and path else (str(key) if not path else f"{path}[{key}]")
            if type(value) is int and value > 1 and (len(paths) + 1) * digits < REPORT_CAP - 100_000:
                node[key] = "__LITERAL__"
                paths.append(here)
            elif isinstance(value, (dict, list)):
                walk(value, here)

    report_870["process"]["pid"] = 0  # identifying: any integer is taken and dropped
    walk(report_870, "")
    assert paths
    raw = orjson.dumps(report_870).replace(b'"__LITERAL__"', literal)
    assert len(raw) <= REPORT_CAP
    status, _, body = await service.post_report(ws["token"], raw)
    assert status == 422, body[:500]
    found = {v["path"]: v["reason"] for v in orjson.loads(body)["violations"]}
    # every violation is the size (an enumerated integer: not one of its values)
    assert set(found.values()) <= {"number_too_large", "not_in_enumeration"}
    assert "number_too_large" in found.values() and literal[:50] not in body
