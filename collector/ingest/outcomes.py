"""The closed list of outcomes of a report.

Every report posted to the collector ends in exactly one outcome:

- ``accepted``: stored and committed; the answer is 200 with a receipt.
- ``duplicate``: the same record (same workspace, same ``_id``) was stored
  before; the answer is 200 with the original receipt.
- ``refused(reason)``: the report is wrong and resending it unchanged will not
  help; 4xx. Refusals after authentication are quarantined (no values).
- ``shed(reason)``: the collector could not take it now; 503 (or 429) with
  ``Retry-After``. The client's resend is the retry; nothing was stored.

The HTTP answer, the quarantine and the Prometheus counters all use these
names (``outcome`` and ``reason`` labels), so they can be compared directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from collector.ops import metrics


class Kind(str, Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REFUSED = "refused"
    SHED = "shed"


class Reason(str, Enum):
    """Why a report was refused or shed, with the HTTP status it maps to."""

    # refused
    UNAUTHORIZED = "unauthorized"  # 401: missing, unknown or revoked token
    TOO_LARGE = "too_large"  # 413: body over the (decompressed) size cap
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415: not application/json
    UNSUPPORTED_ENCODING = "unsupported_encoding"  # 415: Content-Encoding not gzip/deflate
    MALFORMED_BODY = "malformed_body"  # 400: not JSON, bad gzip, not UTF-8
    READ_TIMEOUT = "read_timeout"  # 408: the body did not arrive within body_read_timeout_s
    CLIENT_DISCONNECTED = "client_disconnected"  # 400: the client closed its connection mid-body (no one reads it)
    SCHEMA_VIOLATION = "schema_violation"  # 422: a value does not fit its field
    FUTURE_RECORD = "future_record"  # 422: createdAt more than 1 h ahead
    # shed
    OVERLOADED = "overloaded"  # 503: no slot within admission_wait_s, or the bytes in flight at their cap
    DATABASE_UNAVAILABLE = "database_unavailable"  # 503: the database cannot be reached

    @property
    def kind(self) -> Kind:
        return Kind.SHED if self in _SHED else Kind.REFUSED

    @property
    def status(self) -> int:
        return _STATUS[self]


_SHED = {Reason.OVERLOADED, Reason.DATABASE_UNAVAILABLE}
_STATUS = {
    Reason.UNAUTHORIZED: 401,
    Reason.TOO_LARGE: 413,
    Reason.UNSUPPORTED_MEDIA_TYPE: 415,
    Reason.UNSUPPORTED_ENCODING: 415,
    Reason.MALFORMED_BODY: 400,
    Reason.READ_TIMEOUT: 408,
    Reason.CLIENT_DISCONNECTED: 400,
    Reason.SCHEMA_VIOLATION: 422,
    Reason.FUTURE_RECORD: 422,
    Reason.OVERLOADED: 503,
    Reason.DATABASE_UNAVAILABLE: 503,
}


@dataclass(frozen=True)
class Outcome:
    """One report's outcome: ``kind`` and, for refused/shed, the ``reason``."""

    kind: Kind
    reason: Reason | None = None

    @classmethod
    def of(cls, reason: Reason) -> "Outcome":
        return cls(reason.kind, reason)

    @property
    def status(self) -> int:
        return 200 if self.reason is None else self.reason.status

    @property
    def label(self) -> str:
        return self.reason.value if self.reason else ""


ACCEPTED = Outcome(Kind.ACCEPTED)
DUPLICATE = Outcome(Kind.DUPLICATE)


class Refusal(Exception):
    """Raised anywhere on the ingest path to end a report as refused or shed.

    ``violations`` is a list of {"path", "reason", "message"} dicts (never a
    value); ``detail`` one sentence for the answer.
    """

    def __init__(self, reason: Reason, detail: str, violations: list[dict] | None = None):
        super().__init__(detail)
        self.reason = reason
        self.outcome = Outcome.of(reason)
        self.detail = detail
        self.violations = violations or []


def count(outcome: Outcome, violations: list[dict] | None = None) -> None:
    """Count one report's outcome (``collector_reports_total{outcome,reason}``)
    and, for schema refusals, its violation reasons."""
    metrics.REPORTS.labels(outcome.kind.value, outcome.label).inc()
    for v in violations or ():
        metrics.VIOLATIONS.labels(v["reason"]).inc()
