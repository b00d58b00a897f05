"""Per-request bounds of the ingest path (issue 11, items 2 and 3): the bytes of
bodies in flight per worker, and the deadline for reading a body."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from pydantic import ValidationError

from tests.conftest import load_fixture, make_settings, start_service, stop_service


async def _open(svc, token: str, length: int, encoding: str | None = None):
    """A raw connection that has sent a report's headers, announcing ``length`` body bytes."""
    host, port = svc.server.host, svc.server.port
    reader, writer = await asyncio.open_connection(host, port)
    head = (f"POST / HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
            + (f"Content-Encoding: {encoding}\r\n" if encoding else "") + "\r\n")
    writer.write(head.encode())
    await writer.drain()
    return reader, writer


async def _answer(reader) -> tuple[int, dict, dict]:
    status_line = await reader.readline()
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        k, _, v = line.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, orjson.loads(body)


async def test_a_body_sent_too_slowly_is_refused_408_at_the_deadline(database_url, tmp_path):
    svc = await start_service(make_settings(tmp_path, body_read_timeout_s=0.5), database_url)
    try:
        ws = await svc.register()
        body = orjson.dumps(load_fixture("report-8.7.0.json"))
        reader, writer = await _open(svc, ws["token"], len(body))
        started = time.monotonic()

        async def trickle():
            for i in range(len(body)):
                writer.write(body[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0.1)

        sender = asyncio.create_task(trickle())
        try:
            status, headers, answer = await asyncio.wait_for(_answer(reader), 10)
        finally:
            sender.cancel()
            writer.close()
        assert status == 408 and answer["error"] == "read_timeout" and "statsToken" not in answer
        assert time.monotonic() - started < 5  # the deadline, not the 1,200 s the trickle would take
    finally:
        await stop_service(svc)


async def test_bodies_in_flight_are_bounded_per_worker_and_shed_before_reading(database_url, tmp_path, db):
    """in_flight_max_bytes 30,000 (and the body cap as large): one 20,000-byte body being read holds its
    reservation; a second one of 20,000 is shed 503 + Retry-After before its body
    is read; once the first is done, the next is taken."""
    svc = await start_service(make_settings(tmp_path, in_flight_max_bytes=30_000, max_body_bytes=30_000), database_url)
    try:
        ws = await svc.register()
        doc = load_fixture("report-8.7.0.json")
        body = orjson.dumps(doc)
        assert len(body) < 20_000
        padded = body + b" " * (20_000 - len(body))
        slow_reader, slow_writer = await _open(svc, ws["token"], len(padded))
        slow_writer.write(padded[:100])
        await slow_writer.drain()
        await asyncio.sleep(0.3)  # its reservation is taken once its headers are in
        second = dict(doc, _id="in-flight-second")
        status, headers, answer = await svc.post_report(ws["token"], orjson.dumps(second) + b" " * 12_000,
                                                        {"Connection": "close"})
        assert status == 503 and int(headers["Retry-After"]) > 0
        assert orjson.loads(answer)["error"] == "overloaded"
        # a compressed body reserves the whole cap (its decompressed size is unknown): shed too
        status, _, _ = await svc.post_report(ws["token"], b"\x1f\x8b", {"Content-Encoding": "gzip", "Connection": "close"})
        assert status == 503
        slow_writer.write(padded[100:])
        await slow_writer.drain()
        status, _, answer = await _answer(slow_reader)
        slow_writer.close()
        assert status == 200 and answer["outcome"] == "accepted"
        status, _, _ = await svc.post_report(ws["token"], orjson.dumps(second), {"Connection": "close"})
        assert status == 200
        assert await db.fetchval("SELECT count(*) FROM reports WHERE workspace_id = $1::uuid", ws["workspace_id"]) == 2
    finally:
        await stop_service(svc)


def test_an_in_flight_bound_below_the_body_cap_is_refused_at_start(tmp_path):
    """A report reserves up to the body cap: a smaller in-flight bound would shed
    every compressed report with a 503 no retry passes. Refused, naming both settings."""
    with pytest.raises(ValidationError) as info:
        make_settings(tmp_path, in_flight_max_bytes=200_000)
    assert "COLLECTOR_IN_FLIGHT_MAX_BYTES" in str(info.value) and "COLLECTOR_MAX_BODY_BYTES" in str(info.value)
    assert make_settings(tmp_path, in_flight_max_bytes=200_000, max_body_bytes=200_000).in_flight_max_bytes == 200_000
