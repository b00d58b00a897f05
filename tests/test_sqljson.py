"""JSON rendered by PostgreSQL (collector.ops.sqljson): exact, escaped, independent of session settings."""

from __future__ import annotations

from datetime import date, datetime, timezone

import asyncpg
import orjson
import pytest

from collector.ops import sqljson

SPEC = {
    "id": ("uuid", "$1::uuid"),
    "name": ("text", "$2::text"),
    "inner": {"n": ("int", "$3::int"), "none": ("int", "NULL::int"), "big": ("int", "$4::bigint"),
              "pct": ("int", "round($5::numeric, 1)"), "flag": ("bool", "$6::bool")},
    "day": ("date", "$7::date"),
    "no_day": ("date", "NULL::date"),
    "at": ("timestamptz", "$8::timestamptz"),
    "no_at": ("timestamptz", "NULL::timestamptz"),
    "stored": ("json", "$9::json"),
}
NAME = 'quote " backslash \\ newline \n tab \t nul-ish \x01 accents éü snowman \u2603 emoji \U0001F600'


@pytest.fixture
async def conn(database_url):
    c = await asyncpg.connect(database_url)
    # Settings a deployment might have: rendering must not depend on them.
    await c.execute("SET timezone = 'Asia/Kolkata'; SET datestyle = 'SQL, DMY'")
    yield c
    await c.close()


async def render(conn: asyncpg.Connection, spec, *args) -> bytes:
    async with sqljson.reading(conn) as c:
        return await c.fetchval("SELECT " + sqljson.bytes_sql(spec), *args)


async def test_values_render_as_the_json_a_python_serialiser_would_write(conn):
    wid = "0b7c1c5e-6f0b-4b8a-9d5e-2f1c3a4b5c6d"
    at = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=timezone.utc)
    body = await render(conn, SPEC, wid, NAME, -7, 2**40, 66.666, False, date(2024, 2, 29), at, '{"a":[1,null]}')
    assert isinstance(body, bytes)
    data = orjson.loads(body)
    assert data == {
        "id": wid, "name": NAME,
        "inner": {"n": -7, "none": None, "big": 2**40, "pct": 66.7, "flag": False},
        "day": "2024-02-29", "no_day": None,
        "at": "2024-02-29T23:59:58.123456+00:00", "no_at": None,  # UTC, whatever the session's time zone
        "stored": {"a": [1, None]},
    }
    assert list(data) == list(SPEC) and list(data["inner"]) == list(SPEC["inner"])  # key order kept
    assert b'": ' not in body and b'", "' not in body  # compact


async def test_a_whole_second_has_no_fraction_and_a_null_row_value_is_null(conn):
    body = await render(conn, {"at": ("timestamptz", "$1::timestamptz"), "t": ("text", "$2::text")},
                        datetime(2026, 1, 1, 5, 30, tzinfo=timezone.utc), None)
    assert orjson.loads(body) == {"at": "2026-01-01T05:30:00+00:00", "t": None}
    assert datetime.fromisoformat(orjson.loads(body)["at"]) == datetime(2026, 1, 1, 5, 30, tzinfo=timezone.utc)


async def test_settings_are_local_to_the_read(conn):
    async with sqljson.reading(conn):
        pass
    assert await conn.fetchval("SHOW timezone") == "Asia/Kolkata"
    assert await conn.fetchval("SHOW datestyle") == "SQL, DMY"


def test_json_array_joins_items_once():
    assert sqljson.json_array([], b'{"w":', b"}") == b'{"w":[]}'
    assert sqljson.json_array([b"1"], b'{"w":', b"}") == b'{"w":[1]}'
    assert sqljson.json_array([b'{"a":1}', b"2", b"3"]) == b'[{"a":1},2,3]'


def test_keys_that_would_need_escaping_are_refused():
    with pytest.raises(ValueError):
        sqljson.text_sql({'a"b': ("int", "1")})
