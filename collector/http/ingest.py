"""POST / and /api/v1/statistics: a workspace posts its statistics record.

The one-way flow of a report, each step raising ``Refusal`` to end it:
auth -> body limits and decoding -> parse -> validate and strip (the field
catalogue, ``collector.schema``) -> opt-out policy -> store (group commit)
-> receipt. The answer, the quarantine row and the metrics all use the
report's single outcome (``collector.outcomes``).

Answer 200: ``{"statsToken": <JWT receipt>, "outcome": "accepted"|"duplicate",
"recordId": <uuid>, "kept": [data categories stored], "identifying_fields_dropped":
<count>, "opt_out": {"dropped": [categories], "why": <sentence>} (only when the
workspace's opt-out dropped categories)}``; Rocket.Chat reads only ``statsToken``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from aiohttp import web

from collector import decoding, metrics, quarantine, storage
from collector.auth import Unauthorized
from collector.db import UNAVAILABLE_ERRORS
from collector.http.common import error_response, json_response, principal, state
from collector.logs import log
from collector.outcomes import Reason, Refusal
from collector.schema import SchemaViolation, check_report


async def post_statistics(request: web.Request) -> web.Response:
    st = state(request)
    workspace_id = None
    body: bytes | None = None
    try:
        try:
            who = await principal(request)
        except Unauthorized:
            raise Refusal(Reason.UNAUTHORIZED, "a valid workspace token is required") from None
        except UNAVAILABLE_ERRORS:
            raise Refusal(Reason.DATABASE_UNAVAILABLE, "the database is unavailable; retry later") from None
        if who.kind != "workspace":
            raise Refusal(Reason.UNAUTHORIZED, "a valid workspace token is required")
        workspace_id = who.workspace_id
        if st.writer.full():  # shed before the body is read: memory stays bounded under overload
            raise Refusal(Reason.OVERLOADED, "the collector is at capacity; retry later")
        body = await decoding.read_body(request)
        doc = decoding.parse_json(body)
        try:
            checked = check_report(doc)
        except SchemaViolation as exc:
            violations = [{"path": v.path, "reason": v.reason, "message": v.message} for v in exc.violations]
            raise Refusal(Reason.SCHEMA_VIOLATION, "the report does not fit the schema", violations) from None
        now = datetime.now(timezone.utc)
        if checked.created_at > now + timedelta(seconds=st.settings.future_tolerance_s):
            raise Refusal(
                Reason.FUTURE_RECORD,
                "createdAt is more than 1 hour in the future",
                [{"path": "createdAt", "reason": "future_timestamp", "message": "createdAt is in the future"}],
            )
        kept = checked.categories
        pending = storage.PendingReport(
            workspace_id=workspace_id,
            record_key=storage.record_key(st.record_secret, checked.record_id),
            created_at=checked.created_at,
            rc_version=checked.version,
            categories=kept,
        )
        # While it waits for its batch, a request holds only the kept categories,
        # not the body nor the parsed document: memory stays bounded by the queue.
        body = doc = None
        result = await st.writer.submit(pending)
    except Refusal as refusal:
        metrics.count_outcome(refusal.outcome, refusal.violations)
        log.info(
            "report_refused" if refusal.reason.kind.value == "refused" else "report_shed",
            outcome=refusal.outcome.kind.value,
            reason=refusal.reason.value,
            workspace_id=str(workspace_id) if workspace_id else None,
            violations=len(refusal.violations),
        )
        if workspace_id is not None and refusal.reason.kind.value == "refused":
            await quarantine.record(
                st.pool,
                workspace_id=workspace_id,
                reason=refusal.reason.value,
                catalogue_version=st.catalogue_version,
                body=body,
                violations=refusal.violations,
            )
        return error_response(
            refusal.outcome.status,
            refusal.reason.value,
            refusal.detail,
            refusal.violations if refusal.violations else None,
            retry_after=st.settings.retry_after_s if refusal.reason.kind.value == "shed" else None,
        )
    metrics.count_outcome(result.outcome)
    # DEBUG: at thousands of reports/s a line per stored report costs CPU and
    # log volume for little; collector_reports_total counts them. Refusals
    # and sheds stay INFO above.
    log.debug("report_" + result.outcome.kind.value, workspace_id=str(workspace_id), record_id=str(result.report_id))
    return json_response(
        {
            "statsToken": result.receipt,
            "outcome": result.outcome.kind.value,
            "recordId": str(result.report_id),
            "kept": sorted(set(kept) - (result.opt_out.dropped if result.opt_out else frozenset())),
            "identifying_fields_dropped": len(checked.dropped),
            **({"opt_out": {"dropped": sorted(result.opt_out.dropped), "why": result.opt_out.why}} if result.opt_out else {}),
        }
    )
