"""The deadline for a request's headers and the bound on idle keep-alive
connections (issue 11: every request's cost in time is bounded by a setting,
whatever its content): ``COLLECTOR_HEADER_READ_TIMEOUT_S`` from a connection's
start, or from the first byte of the next request on a kept-alive connection;
``COLLECTOR_KEEPALIVE_TIMEOUT_S`` after the last answer. Raw sockets against
the real server (``collector.ops.listening``, as ``collector serve`` runs it)."""

from __future__ import annotations

import asyncio
import time

import orjson

from tests.conftest import ADMIN_TOKEN, load_fixture, make_settings, start_service, stop_service
from tests.test_request_bounds import _answer
from tests.test_shutdown import _whole_answer

DEADLINE = 1.0
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: collector\r\n\r\n"


async def _closed(reader) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed (monotonic)."""
    data = b""
    try:
        while chunk := await reader.read(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic()


async def _trickle(writer, data: bytes, every_s: float, size: int = 1) -> None:
    try:
        for i in range(0, len(data), size):
            writer.write(data[i:i + size])
            await writer.drain()
            await asyncio.sleep(every_s)
    except ConnectionError:
        pass


async def test_headers_sent_a_byte_at_a_time_are_cut_at_the_deadline_while_others_are_served(
        database_url, tmp_path):
    svc = await start_service(make_settings(tmp_path, header_read_timeout_s=DEADLINE), database_url)
    try:
        reader, writer = await asyncio.open_connection(svc.server.host, svc.server.port)
        started = time.monotonic()
        head = b"POST / HTTP/1.1\r\nHost: collector\r\nContent-Type: application/json\r\n" + b"X-Pad: a\r\n" * 50
        sender = asyncio.create_task(_trickle(writer, head, 0.2))  # would take 20 s
        closing = asyncio.create_task(_closed(reader))
        await asyncio.sleep(0.3)
        for _ in range(3):  # another connection is answered meanwhile
            async with svc.http.get(svc.url + "/healthz") as r:
                assert r.status == 200
        data, closed_at = await asyncio.wait_for(closing, 10)
        sender.cancel()
        writer.close()
        assert DEADLINE * 0.9 <= closed_at - started < DEADLINE + 2
        head_of_answer, _, body = data.partition(b"\r\n\r\n")
        assert head_of_answer.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in head_of_answer
        assert orjson.loads(body)["error"] == "read_timeout"
        async with svc.http.get(svc.url + "/metrics") as r:
            assert 'collector_header_read_timeouts_total{kind="partial"}' in await r.text()
    finally:
        await stop_service(svc)


async def test_a_connection_that_sends_nothing_is_closed_at_the_deadline_without_an_answer(database_url, tmp_path):
    svc = await start_service(make_settings(tmp_path, header_read_timeout_s=DEADLINE), database_url)
    try:
        reader, writer = await asyncio.open_connection(svc.server.host, svc.server.port)
        started = time.monotonic()
        data, closed_at = await asyncio.wait_for(_closed(reader), 10)
        writer.close()
        assert data == b""
        assert DEADLINE * 0.9 <= closed_at - started < DEADLINE + 2
    finally:
        await stop_service(svc)


async def test_keep_alive_and_slow_but_timely_requests_are_served(database_url, tmp_path):
    """No false positive: a second request on a kept-alive connection, sent at
    once or after an idle time longer than the header deadline (the deadline
    runs from its first byte; the idle bound is the keep-alive timeout); a
    request whose headers trickle in within the deadline; a request whose
    handling (a body read slowly) outlasts the header deadline."""
    svc = await start_service(make_settings(tmp_path, header_read_timeout_s=DEADLINE), database_url)
    try:
        ws = await svc.register()
        reader, writer = await asyncio.open_connection(svc.server.host, svc.server.port)
        for pause in (0, 0, DEADLINE * 1.5):
            await asyncio.sleep(pause)
            writer.write(HEALTHZ)
            status, headers, answer = await asyncio.wait_for(_answer(reader), 5)
            assert status == 200 and answer == {"status": "ok"} and headers.get("connection") != "close"

        await asyncio.sleep(0.2)  # the same connection, its request's headers over ~0.6 s
        await _trickle(writer, HEALTHZ, 0.05, size=3)
        status, _, _ = await asyncio.wait_for(_answer(reader), 5)
        assert status == 200
        writer.close()

        body = orjson.dumps(load_fixture("report-8.7.0.json"))
        reader, writer = await asyncio.open_connection(svc.server.host, svc.server.port)
        writer.write(f"POST / HTTP/1.1\r\nHost: collector\r\nAuthorization: Bearer {ws['token']}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        started = time.monotonic()
        await _trickle(writer, body, 0.1, size=len(body) // 15 + 1)  # the body over ~1.5 s
        status, _, answer = await asyncio.wait_for(_answer(reader), 10)
        writer.close()
        assert time.monotonic() - started > DEADLINE
        assert status == 200 and answer["outcome"] == "accepted"
    finally:
        await stop_service(svc)


async def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(database_url, tmp_path):
    """Its next request trickling in after an answer is cut at the header
    deadline from its first byte (408); an idle one at the keep-alive timeout."""
    svc = await start_service(make_settings(tmp_path, header_read_timeout_s=DEADLINE, keepalive_timeout_s=2.0),
                              database_url)
    try:
        reader, writer = await asyncio.open_connection(svc.server.host, svc.server.port)
        writer.write(HEALTHZ)
        assert (await asyncio.wait_for(_answer(reader), 5))[0] == 200
        answered = time.monotonic()
        data, closed_at = await asyncio.wait_for(_closed(reader), 10)
        writer.close()
        assert data == b"" and 2.0 * 0.9 <= closed_at - answered < 2.0 + 2

        reader, writer = await asyncio.open_connection(svc.server.host, svc.server.port)
        writer.write(HEALTHZ)
        assert (await asyncio.wait_for(_answer(reader), 5))[0] == 200
        await asyncio.sleep(0.5)
        started = time.monotonic()
        sender = asyncio.create_task(_trickle(writer, HEALTHZ, 0.2))
        data, closed_at = await asyncio.wait_for(_closed(reader), 10)
        sender.cancel()
        writer.close()
        assert data.startswith(b"HTTP/1.1 408 ")
        assert DEADLINE * 0.9 <= closed_at - started < DEADLINE + 1  # before the keep-alive timeout
    finally:
        await stop_service(svc)


async def test_an_answer_before_the_body_gets_no_second_408(database_url, tmp_path):
    """A 401 answered before the body is read (bad token) while the body still
    trickles in: exactly one answer, no stray 408 from the header deadline for
    the rest of that body (a newcomer's break-it pass found a second 408)."""
    svc = await start_service(make_settings(tmp_path, header_read_timeout_s=DEADLINE), database_url)
    try:
        reader, writer = await asyncio.open_connection(svc.server.host, svc.server.port)
        body = b" " * 3000
        writer.write(b"POST / HTTP/1.1\r\nHost: collector\r\nAuthorization: Bearer wsc_ws_nobody\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        await writer.drain()
        sender = asyncio.create_task(_trickle(writer, body, 0.1, size=100))  # 3 s: past the deadline
        data, _ = await asyncio.wait_for(_closed(reader), 20)
        sender.cancel()
        writer.close()
        assert data.count(b"HTTP/1.1 ") == 1 and data.startswith(b"HTTP/1.1 401")
    finally:
        await stop_service(svc)


async def test_every_body_has_a_deadline_api_and_console_included(database_url, tmp_path):
    """COLLECTOR_BODY_READ_TIMEOUT_S bounds every body, not only reports': an
    operator API body and a console sign-in form that stop half-way get 408."""
    svc = await start_service(make_settings(tmp_path, body_read_timeout_s=DEADLINE), database_url)
    try:
        for head in (b"POST /api/v1/workspaces HTTP/1.1\r\nAuthorization: Bearer " + ADMIN_TOKEN.encode()
                     + b"\r\nContent-Type: application/json\r\n",
                     b"POST /console/sign-in HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"):
            reader, writer = await asyncio.open_connection(svc.server.host, svc.server.port)
            started = time.monotonic()
            writer.write(head + b"Host: collector\r\nContent-Length: 1000\r\n\r\n" + b"token=")
            await writer.drain()
            status, _, answer = await asyncio.wait_for(_whole_answer(reader), 10)
            writer.close()
            assert status == 408, head
            assert DEADLINE * 0.9 <= time.monotonic() - started < DEADLINE + 3
    finally:
        await stop_service(svc)


async def test_a_client_gone_mid_body_is_refused_client_disconnected_not_a_database_fault(database_url, tmp_path):
    """A client that closes its connection half-way through a report's body ends
    refused(client_disconnected) in the metrics, never shed(database_unavailable)."""
    svc = await start_service(make_settings(tmp_path), database_url)
    try:
        ws = await svc.register()
        for _ in range(3):
            reader, writer = await asyncio.open_connection(svc.server.host, svc.server.port)
            writer.write(b"POST / HTTP/1.1\r\nHost: collector\r\nAuthorization: Bearer " + ws["token"].encode()
                         + b"\r\nContent-Type: application/json\r\nContent-Length: 12000\r\n\r\n{\"_id\": ")
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.transport.abort()  # a reset, mid-body
        await asyncio.sleep(0.5)
        async with svc.http.get(svc.url + "/metrics") as r:
            text = await r.text()
        assert 'collector_reports_total{outcome="refused",reason="client_disconnected"} 3.0' in text
        assert 'reason="database_unavailable"' not in text
    finally:
        await stop_service(svc)




async def test_an_unreadable_request_line_gets_a_json_400_that_quotes_nothing(database_url, tmp_path, capfd):
    """A request line or header aiohttp cannot parse (too long, too many, not
    HTTP) is answered in the collector's error shape, counted, and neither the
    answer nor the log quotes the client's bytes or address."""
    svc = await start_service(make_settings(tmp_path), database_url)
    try:
        marker = "zq" + "x" * 20
        for request in (b"GET /" + marker.encode() * 5000 + b" HTTP/1.1\r\nHost: c\r\n\r\n",
                        b"GET / HTTP/1.1\r\nHost: c\r\n" + b"".join(b"X-%d: %s\r\n" % (i, marker.encode())
                                                                   for i in range(1000)) + b"\r\n",
                        marker.encode() + b"\r\n\r\n"):
            reader, writer = await asyncio.open_connection(svc.server.host, svc.server.port)
            writer.write(request)
            await writer.drain()
            status, headers, answer = await asyncio.wait_for(_whole_answer(reader), 10)
            writer.close()
            assert 400 <= status < 500
            assert headers["content-type"].startswith("application/json")
            assert orjson.loads(answer)["error"] in ("malformed_request", "too_large")
            assert marker.encode() not in answer
        async with svc.http.get(svc.url + "/metrics") as r:
            assert "collector_unreadable_requests_total{status=" in await r.text()
        out, err = capfd.readouterr()
        assert marker not in out + err and "127.0.0.1" not in out + err
    finally:
        await stop_service(svc)
