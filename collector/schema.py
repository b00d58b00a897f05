"""PROVISIONAL: replaced by the catalogue-built strict schema (issue 3)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Violation:
    path: str
    reason: str
    message: str


class SchemaViolation(Exception):
    def __init__(self, violations):
        super().__init__("schema violation")
        self.violations = violations


@dataclass(frozen=True)
class CheckedReport:
    record_id: str
    created_at: datetime
    version: str | None
    categories: dict
    dropped: tuple


_ID = {"_id", "uniqueId", "host", "installedAt", "statsToken", "deploymentFingerprintHash", "wizard", "os", "process", "matrixFederation", "services", "settings", "omnichannelSources", "enterprise", "migration"}
_BILLING = {"activeUsers", "activeGuests", "dailyPeakConnections", "maxMonthlyPeakConnections"}


def check_report(doc):
    if not isinstance(doc, dict):
        raise SchemaViolation([Violation("$", "not_an_object", "the report must be a JSON object")])
    v = []
    if not isinstance(doc.get("_id"), str):
        v.append(Violation("_id", "missing_field", "the record id is required"))
    try:
        created = datetime.fromisoformat(doc["createdAt"].replace("Z", "+00:00"))
    except Exception:
        v.append(Violation("createdAt", "bad_timestamp", "createdAt must be ISO 8601"))
    for k in _BILLING:
        if k in doc and (not isinstance(doc[k], int) or isinstance(doc[k], bool) or doc[k] < 0):
            v.append(Violation(k, "expected_integer", "a count must be a non-negative integer"))
    if v:
        raise SchemaViolation(v)
    cats = {"billing": {k: doc[k] for k in _BILLING if k in doc},
            "compliance": {"version": doc.get("version")},
            "operational": {k: x for k, x in doc.items() if k not in _ID and k not in _BILLING and isinstance(x, (int, float, bool)) and not isinstance(x, str)},
            "product_analytics": {}}
    mac = (doc.get("omnichannelContactsBySource") or {}).get("contactsCount")
    if mac is not None:
        cats["billing"]["omnichannelContactsBySource.contactsCount"] = mac
    apps = doc.get("apps") or {}
    for k in ("totalPrivateApps", "totalActive"):
        if k in apps:
            cats["compliance"]["apps." + k] = apps[k]
    return CheckedReport(doc["_id"], created, doc.get("version"), cats, tuple(k for k in _ID if k in doc))
