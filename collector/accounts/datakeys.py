"""Sealed report data: one key per workspace and category, destroyed to forget
(crypto-shredding).

Why: PostgreSQL does not overwrite what a row held when the row is updated
or deleted. VACUUM frees the space of dead rows for reuse but does not zero
it (a row that was the last one placed on its page stays readable in the
file after VACUUM and CHECKPOINT); only rewriting a table (VACUUM FULL,
CLUSTER) or dropping it removes the bytes, and rewriting the report tables
for every opt-out or erasure would cost a copy of every workspace's data.
So every category of a stored report is sealed with a key of its workspace
and category; forgetting a category (opt-out) or a workspace (erasure)
destroys the keys, and only the small table of keys is rewritten.

- ``seal(aead, report_id, category, data)``: the category's fields as
  compact JSON (``orjson``; or given as that JSON), compressed with zstd when over 1 KiB (sealed
  data does not compress in PostgreSQL), sealed with AES-256-GCM
  (``cryptography``, the library PyJWT already uses) under a random 96-bit
  nonce; the associated data binds it to its report and category. Format:
  ``0x01 | nonce(12) | ciphertext+tag`` (JSON) or ``0x02 | ...`` (zstd JSON).
- ``unseal``: the fields back, or None when the key is gone (forgotten or
  erased) or does not open it. Rows stored before migration 0007 hold the
  plain JSON bytes (first byte ``{``) and are read as they are.
- ``Keyring``: the keys the ingest writer seals with, made on first use by
  SQL ``data_keys_for`` (none for a category the workspace's opt-out drops)
  and kept per process (bounded LRU). Destroying a key, and every opt-out
  change, NOTIFYs ``collector_tokens`` with the workspace id; the process's
  ``RevocationListener`` then drops the workspace's keys as it drops its
  tokens (and stops caching while it has lost its connection, from empty
  again once it listens again).
- ``destroy`` (inside the forgetting transaction): deletes the keys, notes
  ``data_keys`` in ``pending_rewrites`` and NOTIFYs.
- ``shred`` (after the commit, outside a transaction): ``VACUUM FULL`` of
  every table in ``pending_rewrites`` once no snapshot older than the
  removing transaction is open (such a snapshot could still see the rows, so
  the rewrite would copy them); the old file is truncated at commit and
  unlinked at the next checkpoint. ``settle`` runs it when the connection
  is not inside a transaction; the maintenance runs it every check.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterable
from uuid import UUID

import asyncpg
import orjson
from cachetools import LRUCache
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from collector.accounts.tokens import REVOCATION_CHANNEL
from collector.gate import CATEGORIES
from collector.ops import log

try:  # Python 3.14+
    from compression import zstd
except ImportError:  # pragma: no cover - the backport (a dependency below 3.14)
    from backports import zstd

SEALED_JSON = 0x01
SEALED_ZSTD = 0x02
COMPRESS_FROM = 1024  # bytes of JSON; smaller ones stay inline in the row anyway
_NONCE = 12
_COMPRESSOR = zstd.ZstdCompressor(level=1)  # reused: a new context per call costs ~4x
_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def seal(aead: AESGCM | None, report_id: UUID, category: str, data: dict | bytes | None) -> bytes | None:
    """``data`` ({dotted path: value}, or that dict already as compact JSON,
    ``orjson.dumps``) sealed for ``report_id``'s ``category``; None when not
    kept (``data`` None) or when there is no key (the category is dropped by
    the workspace's opt-out)."""
    if data is None or aead is None:
        return None
    plain = data if isinstance(data, bytes) else orjson.dumps(data)
    kind = SEALED_JSON
    if len(plain) > COMPRESS_FROM:
        plain, kind = _COMPRESSOR.compress(plain, mode=zstd.ZstdCompressor.FLUSH_FRAME), SEALED_ZSTD
    nonce = secrets.token_bytes(_NONCE)
    return bytes((kind,)) + nonce + aead.encrypt(nonce, plain, _aad(report_id, category))


def unseal(aead: AESGCM | None, report_id: UUID, category: str, blob: bytes | None) -> dict | None:
    """The fields of a stored category, or None: not kept, forgotten (no key,
    or a key that does not open it: sealed with one destroyed since)."""
    if blob is None:
        return None
    if blob[:1] == b"{":  # stored before migration 0007, as plain JSON
        return orjson.loads(blob)
    if aead is None or blob[0] not in (SEALED_JSON, SEALED_ZSTD):
        return None
    try:
        plain = aead.decrypt(blob[1:1 + _NONCE], blob[1 + _NONCE:], _aad(report_id, category))
    except InvalidTag:
        return None
    return orjson.loads(zstd.decompress(plain) if blob[0] == SEALED_ZSTD else plain)


def _aad(report_id: UUID, category: str) -> bytes:
    return report_id.bytes + category.encode()


Keys = dict[str, AESGCM]  # category -> key of one workspace


class Keyring:
    """The data keys of workspaces, per process: ``keys_for`` reads (and makes)
    the missing ones in one round trip; ``forget_workspace`` / ``suspend``
    are driven by the revocation listener. ``maxsize`` 0: no cache."""

    def __init__(self, maxsize: int = 100_000):
        self._maxsize = maxsize
        self._cache: LRUCache | None = LRUCache(maxsize) if maxsize > 0 else None
        self._generation = 0  # bumped by every eviction: a fetch racing one is not cached

    async def keys_for(self, conn: asyncpg.Connection, workspace_ids: Iterable[UUID]) -> dict[UUID, Keys]:
        """``{workspace_id: {category: AESGCM}}`` for the given workspaces; a
        category without a key is absent (dropped by the opt-out), a workspace
        no longer registered has ``{}``. Raises asyncpg errors."""
        wanted = list(dict.fromkeys(workspace_ids))
        found: dict[UUID, Keys] = {}
        missing = []
        for w in wanted:
            hit = self._cache.get(w) if self._cache is not None else None
            if hit is None:
                missing.append(w)
            else:
                found[w] = hit
        if missing:
            generation = self._generation
            for attempt in (1, 2):
                try:
                    rows = await conn.fetch(
                        "SELECT workspace_id, category, key FROM data_keys_for($1::uuid[], $2::bytea[])",
                        missing, [secrets.token_bytes(32) for _ in range(len(CATEGORIES) * len(missing))],
                    )
                    break
                except asyncpg.ForeignKeyViolationError:
                    # a workspace erased while its keys were made: the next
                    # statement no longer sees it (it gets no key)
                    if attempt == 2:
                        raise
            fetched: dict[UUID, Keys] = {w: {} for w in missing}
            for r in rows:
                fetched[r["workspace_id"]][r["category"]] = AESGCM(r["key"])
            found.update(fetched)
            if self._cache is not None and generation == self._generation:
                self._cache.update({w: k for w, k in fetched.items() if k})
        return found

    def forget_workspace(self, workspace_id: UUID) -> None:
        self._generation += 1
        if self._cache is not None:
            self._cache.pop(workspace_id, None)

    def suspend(self) -> None:
        """Stop caching: key destructions can no longer be heard."""
        self._generation += 1
        self._cache = None

    def resume(self) -> None:
        """Cache again, from empty (the listener hears destructions again)."""
        self._generation += 1
        if self._maxsize > 0:
            self._cache = LRUCache(self._maxsize)


async def load(conn, workspace_id: UUID) -> Keys:
    """The workspace's existing keys (none made): ``{category: AESGCM}``."""
    rows = await conn.fetch("SELECT category, key FROM data_keys WHERE workspace_id = $1", workspace_id)
    return {r["category"]: AESGCM(r["key"]) for r in rows}


async def destroy(conn, workspace_id: UUID, categories: Iterable[str]) -> int:
    """Destroy the workspace's keys of ``categories`` (inside the forgetting
    transaction): their stored data becomes unreadable. Notes the rewrite
    of ``data_keys`` (``shred``) and NOTIFYs the workspace id. Returns the
    number of keys destroyed."""
    result = await conn.execute(
        "DELETE FROM data_keys WHERE workspace_id = $1 AND category = ANY($2::text[])",
        workspace_id, list(categories),
    )
    await mark_rewrite(conn, "data_keys")
    await notify(conn, workspace_id)
    return int(result.split()[-1])


async def notify(conn, workspace_id: UUID) -> None:
    """Tell every process (on commit) to drop the workspace's cached keys and tokens."""
    await conn.execute("SELECT pg_notify($1, $2)", REVOCATION_CHANNEL, str(workspace_id))


async def mark_rewrite(conn, *relnames: str) -> None:
    """Note (inside the removing transaction) that ``relnames`` hold rows it
    removed, to be rewritten by ``shred`` after the commit."""
    await conn.execute(
        "INSERT INTO pending_rewrites (relname, xid) SELECT r, pg_current_xact_id() FROM unnest($1::text[]) r"
        " ON CONFLICT DO NOTHING",
        list(relnames),
    )


#: True when a snapshot that may still see rows removed by transaction $1 is
#: open: a backend of this database (other than this one, and other than a
#: running VACUUM, which VACUUM FULL does not wait for either) whose xmin is
#: not newer, a replication slot's xmin, a prepared transaction. Needs a role
#: that sees other sessions' backend_xmin (superuser, the owner of the
#: sessions, or pg_read_all_stats).
_OLDER_SNAPSHOT_SQL = """
SELECT EXISTS (SELECT 1 FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid()
                     AND pid NOT IN (SELECT pid FROM pg_stat_progress_vacuum)  -- a vacuum's xmin holds back no vacuum
                     AND backend_xmin IS NOT NULL AND age(backend_xmin) >= age($1::xid8::xid))
    OR EXISTS (SELECT 1 FROM pg_replication_slots
               WHERE xmin IS NOT NULL AND (database IS NULL OR database = current_database())
                     AND age(xmin) >= age($1::xid8::xid))
    OR EXISTS (SELECT 1 FROM pg_prepared_xacts
               WHERE database = current_database() AND age(transaction) >= age($1::xid8::xid))
"""


async def shred(conn: asyncpg.Connection, lock_timeout_s: float = 1.0, wait_s: float = 5.0) -> list[str]:
    """Rewrite (``VACUUM FULL``) each table of ``pending_rewrites`` whose
    removing transactions no open snapshot predates, and clear those rows.
    Outside a transaction only. An older snapshot is waited for up to
    ``wait_s`` (ingest batches that began before the forgetting end in
    milliseconds); a table still pinned then, or whose lock is not granted
    within ``lock_timeout_s`` (ingest needing that table waits behind the
    rewrite meanwhile), stays pending for the next call. Returns the tables
    rewritten."""
    done = []
    for row in await conn.fetch("SELECT relname, max(xid) AS xid FROM pending_rewrites GROUP BY relname ORDER BY 1"):
        name, xid = row["relname"], row["xid"]
        if not _SAFE_NAME.match(name) or await conn.fetchval("SELECT to_regclass($1)", name) is None:
            await conn.execute("DELETE FROM pending_rewrites WHERE relname = $1", name)  # gone: nothing to rewrite
            continue
        for _ in range(max(1, int(wait_s / 0.05))):
            if not await conn.fetchval(_OLDER_SNAPSHOT_SQL, xid):
                break
            await asyncio.sleep(0.05)
        else:
            log.info("rewrite_deferred", table=name, why="an older snapshot is open")
            continue
        try:
            await conn.execute(f"SET lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
            await conn.execute(f'VACUUM FULL "{name}"')
        except asyncpg.LockNotAvailableError:
            log.info("rewrite_deferred", table=name, why="lock not granted")
            continue
        finally:
            await conn.execute("RESET lock_timeout")
        await conn.execute("DELETE FROM pending_rewrites WHERE relname = $1 AND xid <= $2", name, xid)
        done.append(name)
    return done


async def settle(conn: asyncpg.Connection) -> list[str]:
    """``shred`` now unless ``conn`` is inside a transaction (then the
    maintenance does it). Returns the tables rewritten."""
    if conn.is_in_transaction():
        return []
    return await shred(conn)
