"""Storage of accepted reports, with group commit.

Requests hand their checked report to ``ReportWriter.submit`` and wait; a few
writer tasks take what is queued (up to ``batch_max`` at once) and write it in
ONE transaction: the ``reports`` rows, their ``report_data`` rows (one per
report, one json column per data category; NULL: not kept), and the rollups (``collector.aggregation.apply_reports``, same
transaction, so a rollup never counts a report that is not stored). Only
after COMMIT does each waiting request get its outcome and receipt: nothing is
acknowledged before it is durable.

Idempotency: a record is identified by (workspace, HMAC-SHA256(secret, _id)).
The same record sent again is not stored again; it ends ``duplicate`` and gets
the receipt of the first. The record's ``_id`` itself is never stored.

Backpressure: the queue is bounded (``queue_max``); a full queue sheds the
report with ``overloaded`` (503 + Retry-After). A database fault sheds the
whole batch with ``database_unavailable``; nothing of it was committed.
The ingest handler asks ``full()`` before it reads a body, so bodies beyond
the queue are never read into memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from uuid import UUID

import asyncpg
import orjson

from collector import aggregation, metrics, optout
from collector.catalogue import CATEGORIES
from collector.db import UNAVAILABLE_ERRORS
from collector.logs import log
from collector.outcomes import ACCEPTED, DUPLICATE, Outcome, Reason, Refusal
from collector.receipts import ReceiptSigner


async def load_secret(conn: asyncpg.Connection, name: str) -> bytes:
    """The collector's secret ``name`` (32 random bytes made on first use, kept in the database)."""
    await conn.execute(
        "INSERT INTO collector_secrets (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        name,
        secrets.token_bytes(32),
    )
    return await conn.fetchval("SELECT secret FROM collector_secrets WHERE name = $1", name)


def record_key(secret: bytes, record_id: str) -> bytes:
    """HMAC-SHA256 of the record's ``_id``: stable per record, reveals nothing of it."""
    return hmac.new(secret, record_id.encode(), hashlib.sha256).digest()


def _json_or_none(data: dict | None) -> str | None:
    """A category's fields as compact JSON text (a ``report_data`` column), None when not kept."""
    return None if data is None else orjson.dumps(data).decode()


@dataclass
class PendingReport:
    """A checked report waiting to be written."""

    workspace_id: UUID
    record_key: bytes
    created_at: datetime
    rc_version: str | None
    categories: dict[str, dict]
    future: asyncio.Future = field(repr=False, default=None)  # type: ignore[assignment]
    opt_out: optout.Decision | None = None  # set by the writer when the opt-out dropped categories


@dataclass(frozen=True)
class StoredReport:
    """A report as written in this transaction, handed to the rollups."""

    report_id: UUID
    workspace_id: UUID
    created_at: datetime
    categories: dict[str, dict]


@dataclass(frozen=True)
class Receipt:
    """A report's outcome (accepted or duplicate), its stored id and receipt, and
    the opt-out decision that dropped categories from it (None: nothing dropped)."""

    outcome: Outcome
    report_id: UUID
    receipt: str
    opt_out: optout.Decision | None = None


class ReportWriter:
    """Group-commit writer. ``start()`` before use, ``stop()`` drains and ends it."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        signer: ReceiptSigner,
        catalogue_version: str,
        *,
        queue_max: int = 2000,
        batch_max: int = 256,
        writers: int = 2,
    ):
        self._pool = pool
        self._signer = signer
        self._catalogue_version = catalogue_version
        self._queue: asyncio.Queue[PendingReport] = asyncio.Queue(maxsize=queue_max)
        self._batch_max = batch_max
        self._n_writers = writers
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name=f"writer-{i}") for i in range(self._n_writers)]

    async def stop(self) -> None:
        """Write what is queued, then stop the writer tasks."""
        await self._queue.join()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    def full(self) -> bool:
        """True when the write queue is full: a new report would be shed."""
        return self._queue.full()

    async def submit(self, report: PendingReport) -> Receipt:
        """Queue a report and wait until its batch is committed.

        Returns the Receipt (accepted or duplicate). Raises Refusal with
        OVERLOADED when the queue is full, DATABASE_UNAVAILABLE when its batch
        could not be committed.
        """
        report.future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(report)
        except asyncio.QueueFull:
            raise Refusal(Reason.OVERLOADED, "the collector is at capacity; retry later") from None
        metrics.WRITE_QUEUE.set(self._queue.qsize())
        return await report.future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_max:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            metrics.WRITE_QUEUE.set(self._queue.qsize())
            try:
                results = await self._write(batch)
            except UNAVAILABLE_ERRORS as exc:
                log.warning("batch_not_committed", reports=len(batch), error=type(exc).__name__)
                err = Refusal(Reason.DATABASE_UNAVAILABLE, "the database is unavailable; retry later")
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(err)
            except Exception as exc:  # a bug: answer 503 so the client retries, and say so
                log.exception("batch_failed", reports=len(batch), error=type(exc).__name__)
                err = Refusal(Reason.DATABASE_UNAVAILABLE, "the report could not be stored; retry later")
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(err)
            else:
                metrics.BATCH_SIZE.observe(len(batch))
                for r, res in zip(batch, results):
                    if not r.future.done():
                        r.future.set_result(res)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[PendingReport]) -> list[Receipt]:
        now = datetime.now(timezone.utc)
        # The first of several identical records in one batch is the one stored.
        first: dict[tuple[UUID, bytes], int] = {}
        for i, r in enumerate(batch):
            first.setdefault((r.workspace_id, r.record_key), i)
        fresh = sorted(first.values())
        ids = {i: uuid.uuid4() for i in fresh}
        receipts = {
            i: self._signer.sign(batch[i].workspace_id, ids[i], batch[i].created_at, now) for i in fresh
        }
        async with self._pool.acquire() as conn, conn.transaction():
            # The opt-out policy, read under a share lock of each workspace's
            # registry row: an opt-out committing meanwhile waits for this batch
            # (and then forgets its optional rows), or this batch sees it.
            opt_outs = await optout.decisions(conn, [r.workspace_id for r in batch])
            for r in batch:
                r.opt_out = opt_outs.get(r.workspace_id)
                if r.opt_out:
                    r.categories = {c: d for c, d in r.categories.items() if c not in r.opt_out.dropped}
            # One statement (one round trip): the reports, and the data row of
            # each that was new (a duplicate's data is discarded). A category
            # column is the compact JSON text of its fields, NULL when dropped.
            inserted = {
                row["report_id"]
                for row in await conn.fetch(
                    "WITH ins AS ("
                    " INSERT INTO reports (report_id, workspace_id, record_key, created_at,"
                    " received_at, rc_version, catalogue_version, receipt)"
                    " SELECT r.id, r.ws, r.k, r.c, $5::timestamptz, r.v, $7::text, r.receipt FROM"
                    " unnest($1::uuid[], $2::uuid[], $3::bytea[], $4::timestamptz[], $6::text[], $8::text[])"
                    " AS r(id, ws, k, c, v, receipt)"
                    " ON CONFLICT (workspace_id, record_key) DO NOTHING RETURNING report_id, workspace_id),"
                    " data AS ("
                    f" INSERT INTO report_data (report_id, workspace_id, {', '.join(CATEGORIES)})"
                    " SELECT ins.report_id, ins.workspace_id, d.c1::json, d.c2::json, d.c3::json, d.c4::json"
                    " FROM unnest($1::uuid[], $9::text[], $10::text[], $11::text[], $12::text[]) AS d(id, c1, c2, c3, c4)"
                    " JOIN ins ON ins.report_id = d.id)"
                    " SELECT report_id FROM ins",
                    [ids[i] for i in fresh],
                    [batch[i].workspace_id for i in fresh],
                    [batch[i].record_key for i in fresh],
                    [batch[i].created_at for i in fresh],
                    now,
                    [batch[i].rc_version for i in fresh],
                    self._catalogue_version,
                    [receipts[i] for i in fresh],
                    *(
                        [_json_or_none(batch[i].categories.get(cat)) for i in fresh]
                        for cat in CATEGORIES
                    ),
                )
            }
            stored = [
                StoredReport(ids[i], batch[i].workspace_id, batch[i].created_at, batch[i].categories)
                for i in fresh
                if ids[i] in inserted
            ]
            if stored:
                await aggregation.apply_reports(conn, stored)
            existing: dict[tuple[UUID, bytes], Receipt] = {}
            if len(stored) < len(batch):
                for row in await conn.fetch(
                    "SELECT r.workspace_id, r.record_key, r.report_id, r.receipt FROM reports r"
                    " JOIN unnest($1::uuid[], $2::bytea[]) AS k(ws, key)"
                    " ON r.workspace_id = k.ws AND r.record_key = k.key",
                    [r.workspace_id for r in batch],
                    [r.record_key for r in batch],
                ):
                    existing[(row["workspace_id"], row["record_key"])] = Receipt(
                        DUPLICATE, row["report_id"], row["receipt"]
                    )
        results = []
        for i, r in enumerate(batch):
            if i in ids and ids[i] in inserted:
                results.append(Receipt(ACCEPTED, ids[i], receipts[i], r.opt_out))
            else:
                results.append(replace(existing[(r.workspace_id, r.record_key)], opt_out=r.opt_out))
        return results
