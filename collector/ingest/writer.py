"""Storage of accepted reports, with group commit.

Requests hand their checked report to ``ReportWriter.submit`` and wait; a few
writer tasks (``writers``) take what is queued (up to ``batch_max`` at once)
and write it in ONE transaction, which is ONE statement and one round trip
(SQL function ``write_batch``, ``sql/0004_write_batch.sql``): the opt-out
decisions, the ``reports`` rows, their ``report_data`` rows (one per report,
one column per data category, sealed with the workspace's key of the
category, ``collector.accounts.datakeys``; NULL: not kept), and the rollups
(``apply_rollups``, see ``collector.usage.rollups``; same transaction, so a
rollup never counts a report that is not stored). Only after COMMIT does
each waiting request get its outcome and receipt: nothing is acknowledged
before it is durable.

Idempotency: a record is identified by (workspace, HMAC-SHA256(secret, _id))
(``report_keys``, sql/0007). The same record sent again is not stored again;
it ends ``duplicate`` and gets the receipt of the first. The record's ``_id``
itself is never stored.

Sealing: before the call, the batch's categories are sealed with the keys of
the writer's ``Keyring`` (cached per process; the workspaces it does not
hold cost one more round trip, ``data_keys_for``). A workspace erased while
its report waited gets no key and no row: that report is refused
``unauthorized`` (its token is gone).

Backpressure: the queue holds at most the ingest's admitted reports
(``COLLECTOR_CONCURRENT_REPORTS`` per worker, ``Ingest.admit``): others wait
for a slot before their body is read, or are shed ``overloaded``. A queued
report holds its kept categories as JSON (``pending``), bytes its request keeps
reserved (``COLLECTOR_IN_FLIGHT_MAX_BYTES``, ``Ingest.reserve``). A database
fault sheds the whole batch with ``database_unavailable``; nothing of it was
committed.
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

from collector.accounts import datakeys, optout
from collector.gate import CATEGORIES
from collector.ingest import drift
from collector.ingest.outcomes import ACCEPTED, DUPLICATE, Outcome, Reason, Refusal
from collector.ingest.receipts import ReceiptSigner
from collector.ops import UNAVAILABLE_ERRORS, log, metrics
from collector.usage import rollups as aggregation


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


@dataclass
class PendingReport:
    """A checked report waiting to be written, compact: its kept categories as
    the JSON ``datakeys.seal`` seals, and its rollup values, not the category
    dicts (as Python objects those take ~7x their JSON: 2.4 MiB against 355 KB
    for the kept part of a 1 MiB record of counts; ``pending`` makes one)."""

    workspace_id: UUID
    record_key: bytes
    created_at: datetime
    rc_version: str | None
    #: category -> its kept fields as compact JSON (``orjson.dumps`` of the gate's dict; None: none)
    categories: dict[str, bytes | None]
    #: ``collector.usage.rollups.snapshot_values`` of the categories
    rollup: dict[str, int | None]
    future: asyncio.Future = field(repr=False, default=None)  # type: ignore[assignment]
    #: keys outside the catalogue the gate dropped: ((path, (JSON type, ...)), ...)
    unknown_fields: tuple = ()

    @property
    def size(self) -> int:
        """Bytes of kept JSON it holds (what ``Ingest`` keeps reserved while it waits)."""
        return sum(len(v) for v in self.categories.values() if v is not None)


def pending(workspace_id: UUID, key: bytes, created_at: datetime, rc_version: str | None,
            categories: dict[str, dict], unknown_fields: tuple = ()) -> PendingReport:
    """The compact ``PendingReport`` of a checked report's kept ``categories``."""
    return PendingReport(
        workspace_id=workspace_id, record_key=key, created_at=created_at, rc_version=rc_version,
        categories={cat: None if data is None else orjson.dumps(data) for cat, data in categories.items()},
        rollup=aggregation.snapshot_values(categories), unknown_fields=unknown_fields)


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
        batch_max: int = 256,
        writers: int = 1,
        keyring: datakeys.Keyring | None = None,
    ):
        self._pool = pool
        # Without a keyring from the caller (whose revocation listener keeps
        # it current) nothing is cached: every batch reads its keys.
        self._keyring = keyring if keyring is not None else datakeys.Keyring(maxsize=0)
        self._signer = signer
        self._catalogue_version = catalogue_version
        self._queue: asyncio.Queue[PendingReport] = asyncio.Queue()  # bounded by the admitted reports
        self._batch_max = batch_max
        self._n_writers = writers
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name=f"writer-{i}") for i in range(self._n_writers)]

    async def stop(self, timeout: float | None = None) -> None:
        """Write what is queued (for at most ``timeout`` seconds; None: no bound),
        then stop the writer tasks. Reports still queued then are not written
        (their requests were not answered: nothing acknowledged is dropped)."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except asyncio.TimeoutError:
            log.warning("writer_stopped_with_queued_reports", reports=self._queue.qsize())
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def submit(self, report: PendingReport) -> Receipt:
        """Queue a report and wait until its batch is committed.

        Returns the Receipt (accepted or duplicate). Raises Refusal with
        DATABASE_UNAVAILABLE when its batch could not be committed.
        """
        report.future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(report)
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
                    if r.future.done():
                        continue
                    if isinstance(res, Refusal):
                        r.future.set_exception(res)
                    else:
                        r.future.set_result(res)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[PendingReport]) -> list[Receipt]:
        """Store a batch in ONE statement, the SQL function ``write_batch``
        (``sql/0004_write_batch.sql``): opt-out decisions under a share lock of
        the workspaces' registry rows, reports and report_data (categories the
        opt-out drops stored as NULL), rollups, and the stored id and receipt of
        each record. Sent outside any explicit transaction, that statement is its
        own transaction: ``fetch`` returns only once PostgreSQL has committed it,
        so nothing is acknowledged before it is durable. A batch with unknown
        fields sends the same call wrapped with ``record_drift`` (``drift.with_drift``,
        ``sql/0005_catalogue_drift.sql``): still one statement, one transaction.

        Returns one Receipt per report of ``batch``, in order (a Refusal for a
        report of a workspace erased meanwhile). Raises asyncpg errors
        (nothing of the batch was committed).
        """
        now = datetime.now(timezone.utc)
        # The first of several identical records in one batch is the one stored;
        # the others are answered like it, as duplicates.
        first: dict[tuple[UUID, bytes], int] = {}
        for i, r in enumerate(batch):
            first.setdefault((r.workspace_id, r.record_key), i)
        fresh = [batch[i] for i in sorted(first.values())]
        ids = [uuid.uuid4() for _ in fresh]
        receipts = [self._signer.sign(r.workspace_id, rid, now) for r, rid in zip(fresh, ids)]
        async with self._pool.acquire() as conn:
            keys = await self._keyring.keys_for(conn, (r.workspace_id for r in fresh))
            sealed = [
                [datakeys.seal(keys[r.workspace_id].get(cat), rid, cat, r.categories.get(cat))
                 for r, rid in zip(fresh, ids)]
                for cat in CATEGORIES
            ]
            args: list = [
                now,
                self._catalogue_version,
                aggregation.LOCK_NAMESPACE,
                ids,
                [r.workspace_id for r in fresh],
                [r.record_key for r in fresh],
                [r.created_at for r in fresh],
                [r.rc_version for r in fresh],
                receipts,
                *sealed,
                *aggregation.rollup_columns([r.rollup for r in fresh]),
            ]
            sql = _WRITE_BATCH_SQL
            if any(r.unknown_fields for r in fresh):
                sql = _WRITE_BATCH_WITH_DRIFT_SQL
                args += [now, [r.rc_version for r in fresh], *drift.drift_arrays([r.unknown_fields for r in fresh])]
            rows = await conn.fetch(sql, *args)
        if len(rows) != len(fresh):  # every record is stored, by this batch or before it
            raise RuntimeError(f"write_batch answered {len(rows)} rows for {len(fresh)} records")
        answers: dict[tuple[UUID, bytes], Receipt | Refusal] = {}
        for r, row in zip(fresh, rows):
            if row["report_id"] is None:  # erased while it waited: nothing stored
                answers[(r.workspace_id, r.record_key)] = Refusal(
                    Reason.UNAUTHORIZED, "a valid workspace token is required")
                continue
            opt_out = optout.decision(row["dropped"], row["plan"], row["policy_source"])
            outcome = ACCEPTED if row["accepted"] else DUPLICATE
            answers[(r.workspace_id, r.record_key)] = Receipt(outcome, row["report_id"], row["receipt"], opt_out)
        results = []
        for i, r in enumerate(batch):
            answer = answers[(r.workspace_id, r.record_key)]
            if isinstance(answer, Receipt) and first[(r.workspace_id, r.record_key)] != i:  # a repeat within the batch
                answer = replace(answer, outcome=DUPLICATE)
            results.append(answer)
        return results


#: The writer's one statement (``sql/0004_write_batch.sql``, as changed by ``sql/0007_lifecycle.sql``): $1 received_at,
#: $2 catalogue version, $3 rollup lock namespace, $4..$9 the reports
#: (id, workspace, record key, createdAt, rc version, receipt), $10..$13 the
#: categories sealed (``CATEGORIES`` order, ``datakeys.seal``; NULL: not kept), $14..$19
#: the rollup values (``aggregation.ROLLUP_COLUMNS``).
_WRITE_BATCH_SQL = (
    "SELECT report_id, receipt, accepted, dropped, plan, policy_source FROM write_batch("
    "$1::timestamptz, $2::text, $3::integer, $4::uuid[], $5::uuid[], $6::bytea[], $7::timestamptz[],"
    " $8::text[], $9::text[], $10::bytea[], $11::bytea[], $12::bytea[], $13::bytea[],"
    " $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[], $18::bigint[], $19::bigint[])"
)
#: A batch carrying fields outside the catalogue: the same call, then ``record_drift``
#: in the same statement ($20 received_at, $21 versions, $22..$24 ``drift.drift_arrays``).
_WRITE_BATCH_WITH_DRIFT_SQL = drift.with_drift(_WRITE_BATCH_SQL)
