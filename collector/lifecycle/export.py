"""Access and portability: everything held about one workspace, as one JSON
document, streamed.

The document (UTF-8 JSON, keys in this order)::

    {"format": "collector-workspace-export/1",
     "generated_at": ISO 8601, "workspace_id": uuid,
     "registry": {the workspaces row: plan, created_at, revoked_at, opt_out, ...},
     "opt_out": {plan, opt_out, allowed, policy_source, dropped, changed_at},
     "tokens": [{"kind", "created_at", "revoked_at"}],
     "tables": {table: [row, ...]} for every other table with a workspace_id
               column (contracts, term_usage, compliance_state,
               daily_snapshots, monthly_usage, quarantine, audit_log, and any
               added later), rows as PostgreSQL's to_jsonb renders them,
     "reports": [{"report_id" (the receipt's recordId), "created_at",
                  "received_at", "rc_version", "catalogue_version",
                  "receipt" (the statsToken answered), ...,
                  "data": {category: {dotted path: value} | null}}]}

``data`` holds each category's kept fields, unsealed; null: not kept, or
forgotten. Left out, because they are secrets or pseudonyms, not data about
the workspace: tokens and token hashes (and their references, a prefix of the
hash), the data keys, the record keys (HMAC of each record's ``_id``) and
every other ``bytea`` column, except the quarantine's ``body_sha256`` (the
hash of the body the workspace sent, ``\\x``-hex).

One REPEATABLE READ read-only transaction: the document is one consistent
snapshot. Reports are read through a cursor ``CHUNK`` rows at a time and
written out as they come, so memory does not grow with the workspace's
history; other tables are small per workspace (at most a row per day) and
read the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from uuid import UUID

import asyncpg
import orjson

from collector.accounts import UnknownWorkspace, datakeys, optout
from collector.gate import CATEGORIES

FORMAT = "collector-workspace-export/1"
CHUNK = 500
#: Tables written elsewhere in the document, or never (secrets, pseudonyms).
_NOT_IN_TABLES = {"reports", "report_data", "report_keys", "data_keys", "tokens"}
#: bytea columns that are exported (all others are left out).
_EXPORTED_BYTEA = {("quarantine", "body_sha256")}

_COLUMNS_SQL = """
SELECT a.attname::text AS name, a.atttypid = 'bytea'::regtype AS is_bytea,
       coalesce(a.attnum = ANY (i.indkey::int2[]), false) AS in_pk, array_position(i.indkey::int2[], a.attnum) AS pk_pos
FROM pg_attribute a
LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


async def stream(conn: asyncpg.Connection, workspace_id: UUID, now: datetime) -> AsyncIterator[bytes]:
    """The export of ``workspace_id`` as chunks of UTF-8 JSON (concatenated:
    one document). Raises UnknownWorkspace before the first chunk when no
    such workspace is registered (revoked ones are exported)."""
    # The keys first, outside the snapshot's transaction: it would hold a lock
    # on data_keys for the whole export, and a key rewrite (VACUUM FULL)
    # queued behind it would hold up the ingest writers.
    keys = await datakeys.load(conn, workspace_id)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute("SET LOCAL timezone = 'UTC'; SET LOCAL datestyle = 'ISO'")
        registry = await _row_json(conn, "workspaces", workspace_id)
        if registry is None:
            raise UnknownWorkspace(str(workspace_id))
        head = {"format": FORMAT, "generated_at": now.isoformat(), "workspace_id": str(workspace_id)}
        yield orjson.dumps(head)[:-1] + b',"registry":' + registry
        yield b',"opt_out":' + orjson.dumps(await optout.status(conn, workspace_id))
        tokens = await conn.fetch(
            "SELECT kind, created_at, revoked_at FROM tokens WHERE workspace_id = $1 ORDER BY created_at", workspace_id)
        yield b',"tokens":' + orjson.dumps([dict(t) for t in tokens])
        yield b',"tables":{'
        first = True
        names = [t for t in await _tables(conn) if t not in _NOT_IN_TABLES] + ["audit_log"]
        for name in names:
            yield (b"" if first else b",") + orjson.dumps(name) + b":["
            first = False
            async for piece in _rows(conn, name, workspace_id):
                yield piece
            yield b"]"
        yield b'},"reports":['
        async for piece in _reports(conn, workspace_id, keys):
            yield piece
        yield b"]}"


async def _tables(conn) -> list[str]:
    return [r[0] for r in await conn.fetch("SELECT workspace_tables()")]


async def _select(conn, table: str) -> tuple[str, str]:
    """(the to_jsonb expression of a row of ``table`` without its secret
    columns, the ORDER BY of its primary key)."""
    cols = await conn.fetch(_COLUMNS_SQL, table)
    hidden = [c["name"] for c in cols if c["is_bytea"] and (table, c["name"]) not in _EXPORTED_BYTEA]
    expr = "to_jsonb(t)" + "".join(f" - '{h}'" for h in hidden)
    pk = sorted((c for c in cols if c["in_pk"]), key=lambda c: c["pk_pos"])
    order = ", ".join(f't."{c["name"]}"' for c in pk) or "1"
    return expr, order


async def _row_json(conn, table: str, workspace_id: UUID) -> bytes | None:
    expr, _ = await _select(conn, table)
    text = await conn.fetchval(f'SELECT ({expr})::text FROM "{table}" t WHERE t.workspace_id = $1', workspace_id)
    return text.encode() if text is not None else None


async def _rows(conn, table: str, workspace_id: UUID) -> AsyncIterator[bytes]:
    expr, order = await _select(conn, table)
    sql = f'SELECT ({expr})::text FROM "{table}" t WHERE t.workspace_id = $1 ORDER BY {order}'
    first = True
    batch: list[bytes] = []
    async for (text,) in conn.cursor(sql, workspace_id, prefetch=CHUNK):
        batch.append(text.encode())
        if len(batch) >= CHUNK:
            yield (b"" if first else b",") + b",".join(batch)
            first, batch = False, []
    if batch:
        yield (b"" if first else b",") + b",".join(batch)


_REPORTS_SQL = """
SELECT (to_jsonb(r) - 'record_key' - 'workspace_id')::text AS meta, r.report_id,
       d.billing, d.compliance, d.operational, d.product_analytics
FROM reports r
LEFT JOIN report_data d ON d.report_id = r.report_id AND d.created_at = r.created_at
WHERE r.workspace_id = $1
ORDER BY r.created_at, r.report_id
"""


async def _reports(conn, workspace_id: UUID, keys: datakeys.Keys) -> AsyncIterator[bytes]:
    first = True
    batch: list[bytes] = []
    async for row in conn.cursor(_REPORTS_SQL, workspace_id, prefetch=CHUNK):
        data = {cat: datakeys.unseal(keys.get(cat), row["report_id"], cat, row[cat]) for cat in CATEGORIES}
        batch.append(row["meta"].encode()[:-1] + b',"data":' + orjson.dumps(data) + b"}")
        if len(batch) >= CHUNK:
            yield (b"" if first else b",") + b",".join(batch)
            first, batch = False, []
    if batch:
        yield (b"" if first else b",") + b",".join(batch)
