"""The report path as a chain of named stages, each ending the report with a
``Refusal`` or handing it on; every report ends in exactly one outcome
(``collector.ingest.outcomes``), shared by the answer, the quarantine row and
the metrics.

    reserve (bytes) -> admit (a slot) -> authenticate -> read_body (limits, decoding) -> parse
      -> gate (validate, strip, fold: ``collector.gate``) -> pending (kept JSON)
      -> store (opt-out policy and group commit, ``writer``) -> receipt

Answer 200: ``{"statsToken": <JWT receipt>, "outcome": "accepted"|"duplicate",
"recordId": <uuid>, "kept": [data categories stored], "identifying_fields_dropped":
<count>, "unknown_fields_dropped": [paths of the fields outside the catalogue, left
out unread; ``{}`` for a key that does not look like a code identifier],
"opt_out": {"dropped": [categories], "why": <sentence>} (only when the
workspace's opt-out dropped categories)}``; Rocket.Chat reads only ``statsToken``.
Any other answer is ``{"error", "detail"[, "violations"]}`` with the reason's
status (``Reason.status``), ``Retry-After`` on sheds.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from uuid import UUID

import asyncpg
from aiohttp import web

from collector.accounts import Principal, PrincipalCache, Unauthorized, tokens
from collector.config import Settings
from collector.gate import CheckedReport, SchemaViolation, check_report
from collector.ingest import decoding, outcomes, quarantine
from collector.ingest.outcomes import Reason, Refusal
from collector.ingest.writer import PendingReport, Receipt, ReportWriter, pending, record_key
from collector.ops import UNAVAILABLE_ERRORS, log


#: A body from this size on is checked in turns (``Ingest.check``). Bytes: ~2 ms of parse and gate.
LARGE_BODY = 64 * 1024


@dataclass(frozen=True)
class Summary:
    """What the answer of a checked report tells (``Ingest.receipt``), kept instead of
    the report while it waits for its batch: ``categories`` kept (names), ``dropped``
    (how many identifying fields), ``unknown`` (paths dropped unread), ``version``."""

    categories: tuple[str, ...]
    dropped: int
    unknown: tuple[str, ...]
    version: str | None


@dataclass(frozen=True)
class Answer:
    """What the HTTP layer sends: ``status``, the JSON ``body``, extra ``headers``."""

    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)


class Ingest:
    """The ingest service: ``handle(request)`` runs one report through every stage."""

    def __init__(self, *, settings: Settings, pool: asyncpg.Pool, writer: ReportWriter,
                 principals: PrincipalCache, record_secret: bytes, catalogue_version: str):
        self.settings, self.pool, self.writer = settings, pool, writer
        self.principals, self.record_secret, self.catalogue_version = principals, record_secret, catalogue_version
        self._in_flight = 0  # bytes reserved by bodies waiting, read, parsed; then by kept JSON (``reserve``)
        self._slots = asyncio.Semaphore(settings.concurrent_reports)  # ``admit``
        self._large_check = asyncio.Lock()  # ``check``
        self._shed_counts: dict[str, int] = {}
        self._shed_logged: dict[str, float] = {}

    async def handle(self, request: web.Request) -> Answer:
        workspace_id: UUID | None = None
        body: bytes | None = None
        admitted = False
        try:
            # First, before any I/O: the bytes the body may take are reserved, and
            # the report waits for one of the worker's slots; under overload a
            # refusal costs no token lookup and no body read.
            reserved = self.reserve(request)
            try:
                await self.admit()
                admitted = True
                workspace_id = await self.authenticate(request)
                body = await self.read(request)
                checked = await self.check(body)
                body = None
                # While it waits for its batch, a request holds only its kept categories
                # as JSON (``writer.pending``), not the body, the parsed document nor the
                # kept values as objects; its reservation shrinks to those bytes and is
                # held until the answer, so what waits for the group commit counts too.
                report, summary = self.pending(workspace_id, checked)
                del checked
                self._in_flight += report.size - reserved
                reserved = report.size
                result = await self.store(report)
            finally:
                self._in_flight -= reserved
        except Refusal as refusal:
            return await self.refused(refusal, workspace_id, body)
        finally:
            if admitted:
                self._slots.release()
        return self.receipt(workspace_id, summary, result)

    # -- the stages ------------------------------------------------------

    def reserve(self, request: web.Request) -> int:
        """Reserve the bytes this request's body may take while it waits for a
        slot, is read and parsed (its Content-Length, or ``max_body_bytes`` when
        compressed or of unknown length: aiohttp buffers part of a body before
        the handler reads it); shed ``overloaded`` when the worker's reservations
        would exceed ``in_flight_max_bytes``. Returns the bytes reserved; once
        the body is checked ``handle`` shrinks them to the kept JSON's
        (``PendingReport.size``), released at the answer."""
        cap = self.settings.max_body_bytes
        length = request.content_length
        compressed = request.headers.get("Content-Encoding", "").strip().lower() not in ("", "identity")
        need = cap if compressed or length is None else min(length, cap)
        if self._in_flight + need > self.settings.in_flight_max_bytes:
            raise Refusal(Reason.OVERLOADED, "the collector is reading as many bodies as it may; retry later")
        self._in_flight += need
        return need

    async def read(self, request: web.Request) -> bytes:
        """Body limits and decoding (``decoding.read_body``) within ``body_read_timeout_s``:
        a body sent slower than that is refused ``read_timeout`` (408)."""
        return await decoding.read_body(request, self.settings.max_body_bytes, self.settings.body_read_timeout_s)

    async def authenticate(self, request: web.Request) -> UUID:
        """The workspace of the request's bearer token. Refuses ``unauthorized``;
        sheds ``database_unavailable`` when the token cannot be looked up."""
        try:
            token = tokens.bearer(request.headers.get("Authorization"))
            who: Principal = await tokens.authenticate(self.pool, token, self.settings.admin_token, self.principals)
        except Unauthorized:
            raise Refusal(Reason.UNAUTHORIZED, "a valid workspace token is required") from None
        except UNAVAILABLE_ERRORS:
            raise Refusal(Reason.DATABASE_UNAVAILABLE, "the database is unavailable; retry later") from None
        if who.kind != "workspace" or who.workspace_id is None:
            raise Refusal(Reason.UNAUTHORIZED, "a valid workspace token is required")
        return who.workspace_id

    async def admit(self) -> None:
        """Wait for one of the worker's ``concurrent_reports`` slots (first come,
        first served), at most ``admission_wait_s``; shed ``overloaded`` beyond.

        Admission control (issue 15, storm): a client answered 503 resends, and
        under a storm of thousands of connections answering them cost the
        accepted rate ~80 %; a report that waits costs no CPU, and its bytes
        were reserved (``reserve``), so memory stays bounded too. The slot is
        held until the report's answer (``handle``), so the write queue never
        holds more than the slots."""
        if not self._slots.locked():
            await self._slots.acquire()  # free slot: no timer
            return
        try:
            async with asyncio.timeout(self.settings.admission_wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise Refusal(Reason.OVERLOADED, "the collector is at capacity; retry later") from None

    async def check(self, body: bytes) -> CheckedReport:
        """Parse and gate ``body`` (``decoding.parse_json``, ``gate``), with no await
        in between: one document at a time per worker (~5x its body as objects).

        The check is what costs a report most CPU: ~0.3 ms for a real record,
        25-60 ms for a 1 MiB record of counts. A body of ``LARGE_BODY`` bytes or
        more holds the worker's large-check turn across one pass of the event
        loop after its check, so that large checks alternate with I/O instead of
        running back to back: ~100 1 MiB bodies read at once held ``/healthz``
        1.5-2 s without it (tests/test_memory_bound.py)."""
        if len(body) < LARGE_BODY:
            return self.gate(decoding.parse_json(body), body)
        async with self._large_check:
            checked = self.gate(decoding.parse_json(body), body)
            await asyncio.sleep(0)
        return checked

    def gate(self, doc: object, body: bytes | None = None) -> CheckedReport:
        """The privacy gate (``collector.gate.check_report``: validate, strip the
        identifying fields, fold; fields outside the catalogue dropped or refused
        per ``unknown_fields``) and the clock check. Refuses
        ``schema_violation`` (violations: path and reason, never a value) or
        ``future_record`` (createdAt beyond ``future_tolerance_s``).

        orjson reads an integer literal beyond 64 bits as a float (``expected_integer``):
        such a refused ``body`` is parsed again exactly and checked again, so the
        number is named ``number_too_large`` (refused bodies only: no cost to accepted ones)."""
        try:
            try:
                checked = check_report(doc, unknown=self.settings.unknown_fields)
            except SchemaViolation as exc:
                if body is None or not any(v.reason == "expected_integer" for v in exc.violations) \
                        or not decoding.has_long_integers(body):
                    raise
                checked = check_report(decoding.parse_exact(body), unknown=self.settings.unknown_fields)
        except SchemaViolation as exc:
            violations = [{"path": v.path, "reason": v.reason, "message": v.message} for v in exc.violations]
            raise Refusal(Reason.SCHEMA_VIOLATION, "the report does not fit the schema", violations) from None
        now = datetime.now(timezone.utc)
        if checked.created_at > now + timedelta(seconds=self.settings.future_tolerance_s):
            raise Refusal(
                Reason.FUTURE_RECORD,
                "createdAt is more than 1 hour in the future",
                [{"path": "createdAt", "reason": "future_timestamp", "message": "createdAt is in the future"}],
            )
        return checked

    def pending(self, workspace_id: UUID, checked: CheckedReport) -> tuple[PendingReport, Summary]:
        """The checked report as the writer takes it (``writer.pending``: kept
        categories as JSON, rollup values) and what its answer tells (``Summary``)."""
        report = pending(workspace_id, record_key(self.record_secret, checked.record_id), checked.created_at,
                         checked.version, checked.categories, checked.unknown_fields)
        return report, Summary(tuple(checked.categories), len(checked.dropped),
                               tuple(path for path, _types in checked.unknown_fields), checked.version)

    async def store(self, report: PendingReport) -> Receipt:
        """Queue the report for the group-commit writer and wait for its
        commit; the opt-out policy is applied inside the write transaction.
        Sheds ``overloaded`` / ``database_unavailable`` (nothing stored)."""
        return await self.writer.submit(report)

    def receipt(self, workspace_id: UUID, summary: Summary, result: Receipt) -> Answer:
        """The 200 answer of an accepted or duplicate report (counted)."""
        outcomes.count(result.outcome)
        # DEBUG: at thousands of reports/s a line per stored report costs CPU
        # and log volume for little; collector_reports_total counts them.
        log.debug("report_" + result.outcome.kind.value, workspace_id=str(workspace_id),
                  record_id=str(result.report_id))
        unknown = list(summary.unknown)
        if unknown:  # paths only (never a value): what the catalogue drift report counts
            log.info("report_unknown_fields_dropped", workspace_id=str(workspace_id),
                     outcome=result.outcome.kind.value, rc_version=summary.version, paths=unknown)
        dropped = result.opt_out.dropped if result.opt_out else frozenset()
        return Answer(200, {
            "statsToken": result.receipt,
            "outcome": result.outcome.kind.value,
            "recordId": str(result.report_id),
            "kept": sorted(set(summary.categories) - dropped),
            "identifying_fields_dropped": summary.dropped,
            "unknown_fields_dropped": unknown,
            **({"opt_out": {"dropped": sorted(dropped), "why": result.opt_out.why}} if result.opt_out else {}),
        })

    def _log_shed(self, reason: str) -> None:
        """Sheds are logged as one ``reports_shed`` line per reason and second at most
        (with how many): under a storm a line per shed report cost ~16 % of the
        server's CPU (py-spy, bench/loadgen.py --storm 5000); every shed is counted in
        ``collector_reports_total{outcome="shed"}``."""
        now = time.monotonic()
        count = self._shed_counts.get(reason, 0) + 1
        if now - self._shed_logged.get(reason, 0.0) >= 1.0:
            log.info("reports_shed", outcome="shed", reason=reason, count=count)
            self._shed_logged[reason], count = now, 0
        self._shed_counts[reason] = count

    async def refused(self, refusal: Refusal, workspace_id: UUID | None, body: bytes | None) -> Answer:
        """End a report refused or shed: count it, log it (INFO, no value),
        quarantine a refusal after authentication, answer the error."""
        outcomes.count(refusal.outcome, refusal.violations)
        shed = refusal.reason.kind is outcomes.Kind.SHED
        if shed:
            self._log_shed(refusal.reason.value)
        else:
            log.info(
                "report_refused",
                outcome=refusal.outcome.kind.value,
                reason=refusal.reason.value,
                workspace_id=str(workspace_id) if workspace_id else None,
                violations=len(refusal.violations),
            )
        if workspace_id is not None and not shed:
            await quarantine.record(
                self.pool,
                workspace_id=workspace_id,
                reason=refusal.reason.value,
                catalogue_version=self.catalogue_version,
                body=body,
                violations=refusal.violations,
            )
        payload: dict = {"error": refusal.reason.value, "detail": refusal.detail}
        if refusal.violations:
            payload["violations"] = refusal.violations
        headers = {"Retry-After": str(self.settings.retry_after_s)} if shed else {}
        if refusal.outcome.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="collector"'
        return Answer(refusal.outcome.status, payload, headers)
