"""Answers rendered by PostgreSQL: compact JSON text built in SQL, read in one pass.

The billing report and the compliance listing return one row per workspace
(100,000 and more). Building a dict per row in Python and serialising it
again costs more than the query; instead the query renders each row as
compact JSON text (``text_sql``), and the rows are joined into the answer's
bytes without being parsed (``json_array``). Rendering with ``||`` and casts
is markedly cheaper in PostgreSQL than ``json_build_object`` (which looks up
every argument's type on every call), and yields compact JSON.

The casts are exact under the settings ``reading`` pins: ``DateStyle`` ISO
(``date::text`` is ``YYYY-MM-DD``) and ``TimeZone`` UTC (``to_json`` of a
timestamptz is ``YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import asyncpg

#: Value kinds of ``text_sql`` specs: how a SQL expression of that type becomes JSON.
_RENDER = {
    "int": "coalesce(({})::text, 'null')",  # integer, bigint, numeric: the SQL text is the JSON number
    "bool": "coalesce(({})::text, 'null')",  # 'true' / 'false'
    "text": "coalesce(to_json({})::text, 'null')",  # escaped and quoted by PostgreSQL
    "date": "coalesce('\"' || ({})::text || '\"', 'null')",  # ISO under DateStyle ISO
    "timestamptz": "coalesce(to_json({})::text, 'null')",  # ISO 8601 with the session's offset (UTC)
    "uuid": "coalesce('\"' || ({})::text || '\"', 'null')",
    "json": "coalesce(({})::text, 'null')",  # stored JSON text, passed through
}

Spec = Mapping[str, "tuple[str, str] | Spec"]


def text_sql(spec: Spec) -> str:
    """A SQL expression (type text) rendering one JSON object, keys in ``spec`` order.

    ``spec``: ``{key: (kind, sql_expression) | nested spec}``; ``kind`` is one
    of ``int``, ``bool``, ``text``, ``date``, ``timestamptz``, ``uuid``, ``json``;
    a NULL value renders as ``null``. Keys are written as given (they must
    not need escaping). Example: ``{"id": ("uuid", "w.workspace_id"),
    "usage": {"seats": ("int", "u.max_seats")}}``.
    """
    pieces: list[str] = []  # alternately a literal and an expression
    literal = ""

    def walk(obj: Spec) -> None:
        nonlocal literal
        literal += "{"
        for i, (key, value) in enumerate(obj.items()):
            if '"' in key or "\\" in key:
                raise ValueError(f"key needs escaping: {key!r}")
            literal += ("," if i else "") + f'"{key}":'
            if isinstance(value, Mapping):
                walk(value)
            else:
                kind, expression = value
                pieces.extend((literal, _RENDER[kind].format(expression)))
                literal = ""
        literal += "}"

    walk(spec)
    pieces.append(literal)
    return " || ".join(
        piece if i % 2 else "'" + piece.replace("'", "''") + "'" for i, piece in enumerate(pieces) if piece
    )


def bytes_sql(spec: Spec) -> str:
    """``text_sql(spec)`` as UTF-8 bytes (``bytea``): asyncpg hands those over
    without decoding them into a str."""
    return f"convert_to({text_sql(spec)}, 'UTF8')"


def json_array(items: list[bytes], prefix: bytes = b"", suffix: bytes = b"") -> bytes:
    """``prefix`` + ``[item,item,...]`` + ``suffix``; ``items``: UTF-8 JSON
    texts, written as they are (the list is consumed: its first and last
    items are replaced). One copy of the whole body, however large."""
    if not items:
        return prefix + b"[]" + suffix
    items[0] = prefix + b"[" + items[0]
    items[-1] = items[-1] + b"]" + suffix
    return b",".join(items)


@asynccontextmanager
async def reading(conn: asyncpg.Connection | asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection (acquired from ``conn`` when it is a pool) in a read-only
    transaction with the settings the rendering relies on (``DateStyle`` ISO,
    ``TimeZone`` UTC), JIT off (its compilation costs more than it saves on
    these queries) and ``work_mem`` large enough to sort a report in memory.
    On a connection already in a transaction this is a savepoint, and the
    settings last until the caller's transaction ends."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as acquired, reading(acquired) as c:
            yield c
        return
    async with conn.transaction(readonly=True):
        await conn.execute(
            "SET LOCAL datestyle = 'ISO'; SET LOCAL timezone = 'UTC'; SET LOCAL jit = off;"
            " SET LOCAL work_mem = '128MB'"
        )
        yield conn
