"""Consumption billing per workspace and period. Reads rollups and contracts only.

Per workspace, for the period (UTC dates, both ends inclusive):
- ``seats``: the highest daily ``activeUsers`` (Rocket.Chat already leaves
  out guests, apps, bots and federated users: ROCKETCHAT.md); guests never
  count as seats;
- ``guests``: the highest daily ``activeGuests``;
- ``monthly_active_contacts``: the highest ``omnichannelContactsBySource.
  contactsCount`` (the current UTC month's MAC) reported by records of the
  period; for a period spanning several months, the highest month;
- ``peak_connections``: the highest ``dailyPeakConnections``;
- ``days_reported`` (days with a snapshot) of ``days_in_period``;
- ``stale``: the last report up to the period's end (or now, if earlier) is
  more than ``stale_after_s`` (48 h) old (or none, registered before that);
- ``contract``: plan, billing model, term, purchased seats and MAC packs,
  and the effective limits (``seats_limit``, ``guests_limit``, ``mac_limit``:
  negative = unlimited; see ``collector.plans``);
- ``overage``: max(0, usage - limit) per seats, guests and MAC; null when
  unlimited or the usage is unknown;
- ``true_up``: the highest daily seats over the contract term so far (the
  term, never a rolling year: ROCKETCHAT.md "lessons"), against the
  purchased seats (``seats_limit``).

A period that is one calendar month reads ``monthly_usage``; any other range
reads ``daily_snapshots``.
"""

from __future__ import annotations

import calendar
import csv
import io
import re
from datetime import date, datetime, timedelta, timezone

import asyncpg

from collector.plans import YEARS, Invalid

MAX_RANGE_DAYS = 400

#: Flat columns of a billing row, in CSV order.
COLUMNS = (
    "workspace_id", "plan", "billing_model", "term_start", "term_end", "purchased_seats", "mac_packs",
    "seats_limit", "guests_limit", "mac_limit", "seats", "guests", "monthly_active_contacts",
    "peak_connections", "days_reported", "days_in_period", "stale", "seats_overage", "guests_overage",
    "mac_overage", "term_max_seats", "term_max_seats_day", "true_up_overage",
)


def parse_period(period: str | None = None, from_: str | None = None, to: str | None = None) -> tuple[date, date]:
    """The (first, last) UTC dates of ``period=YYYY-MM`` or of ``from``/``to``
    (``YYYY-MM-DD``, inclusive; ``YYYY-MM`` also accepted: first / last day).

    Raises Invalid (path ``period``, ``from`` or ``to``): missing, malformed,
    both forms given, ``to`` before ``from``, or longer than MAX_RANGE_DAYS.
    """
    if period is not None and (from_ is not None or to is not None):
        raise Invalid("period", "give either period or from/to, not both")
    if period is not None:
        start, _ = _month_or_day("period", period, allow_day=False)
        return start, _last_of_month(start)
    if from_ is None or to is None:
        raise Invalid("period" if from_ is None and to is None else ("from" if from_ is None else "to"),
                      "period=YYYY-MM or both from and to (YYYY-MM-DD) are required")
    start, _ = _month_or_day("from", from_)
    end, is_month = _month_or_day("to", to)
    if is_month:
        end = _last_of_month(end)
    if end < start:
        raise Invalid("to", "to must not be before from")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise Invalid("to", f"the range must not exceed {MAX_RANGE_DAYS} days")
    return start, end


def _month_or_day(path: str, text: str, allow_day: bool = True) -> tuple[date, bool]:
    m = re.fullmatch(r"(\d{4})-(\d{2})(?:-(\d{2}))?", text)
    if not m or (m.group(3) and not allow_day):
        raise Invalid(path, f"{path} must be YYYY-MM" + ("-DD or YYYY-MM" if allow_day else ""))
    if int(m.group(1)) not in YEARS:
        raise Invalid(path, f"{path} must be a year from {YEARS.start} to {YEARS.stop - 1}")
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)), m.group(3) is None
    except ValueError:
        raise Invalid(path, f"{path} is not a calendar date") from None


def _last_of_month(d: date) -> date:
    return d.replace(day=calendar.monthrange(d.year, d.month)[1])


_USAGE_MONTH = (
    "SELECT workspace_id, max_seats AS seats, max_guests AS guests, mac, peak_connections, days_reported,"
    " last_report_at FROM monthly_usage WHERE month = $1 AND month <= $2"
)
_USAGE_DAYS = (
    "SELECT workspace_id, max(active_users) AS seats, max(active_guests) AS guests, max(mac) AS mac,"
    " max(peak_connections) AS peak_connections, count(*) AS days_reported, max(created_at) AS last_report_at"
    " FROM daily_snapshots WHERE day BETWEEN $1 AND $2 GROUP BY workspace_id"
)

_REPORT = """
WITH pl AS (
    SELECT plan, max(max) FILTER (WHERE kind = 'activeUsers') AS au,
           max(max) FILTER (WHERE kind = 'guestUsers') AS gu,
           max(max) FILTER (WHERE kind = 'monthlyActiveContacts') AS mc
    FROM plan_limits GROUP BY plan
), u AS ({usage}), x AS (
    SELECT c.workspace_id, c.plan, p.billing_model, c.term_start, c.term_end, c.seats AS purchased_seats,
           c.mac_packs,
           effective_max('activeUsers', pl.au, c.custom_limits, c.seats, c.mac_packs, p.mac_pack_size) AS seats_limit,
           effective_max('guestUsers', pl.gu, c.custom_limits, c.seats, c.mac_packs, p.mac_pack_size) AS guests_limit,
           effective_max('monthlyActiveContacts', pl.mc, c.custom_limits, c.seats, c.mac_packs, p.mac_pack_size)
               AS mac_limit,
           u.seats, u.guests, u.mac AS monthly_active_contacts, u.peak_connections,
           coalesce(u.days_reported, 0)::int AS days_reported,
           coalesce(u.last_report_at, w.created_at) < $3 AS stale,
           t.max_seats AS term_max_seats, t.max_seats_day AS term_max_seats_day
    FROM contracts c
    JOIN workspaces w ON w.workspace_id = c.workspace_id
    JOIN plans p ON p.plan = c.plan
    LEFT JOIN pl ON pl.plan = c.plan
    LEFT JOIN u ON u.workspace_id = c.workspace_id
    LEFT JOIN term_usage t ON t.workspace_id = c.workspace_id
    WHERE (w.created_at < $4 OR u.workspace_id IS NOT NULL) AND (w.revoked_at IS NULL OR w.revoked_at >= $5)
)
SELECT x.*,
       CASE WHEN seats_limit >= 0 THEN greatest(0, seats - seats_limit) END AS seats_overage,
       CASE WHEN guests_limit >= 0 THEN greatest(0, guests - guests_limit) END AS guests_overage,
       CASE WHEN mac_limit >= 0 THEN greatest(0, monthly_active_contacts - mac_limit) END AS mac_overage,
       CASE WHEN seats_limit >= 0 THEN greatest(0, term_max_seats - seats_limit) END AS true_up_overage
FROM x ORDER BY workspace_id
"""


async def consumption_rows(
    conn: asyncpg.Connection | asyncpg.Pool, start: date, end: date, *, now: datetime, stale_after_s: int
) -> list[asyncpg.Record]:
    """The flat billing rows (``COLUMNS`` minus ``days_in_period``) of every
    workspace registered by ``end`` (or with usage in the period) and not
    revoked before ``start``, by
    workspace_id. ``start``/``end``: inclusive UTC dates."""
    whole_month = start.day == 1 and end == _last_of_month(start)
    sql = _REPORT.format(usage=_USAGE_MONTH if whole_month else _USAGE_DAYS)
    period_end = datetime.combine(end + timedelta(days=1), datetime.min.time(), timezone.utc)
    period_start = datetime.combine(start, datetime.min.time(), timezone.utc)
    reference = min(now, period_end)
    return await conn.fetch(sql, start, end, reference - timedelta(seconds=stale_after_s), period_end, period_start)


async def consumption(
    conn: asyncpg.Connection | asyncpg.Pool, start: date, end: date, *, now: datetime, stale_after_s: int
) -> dict:
    """The billing report: ``{"from", "to", "days_in_period", "workspaces": [{workspace_id,
    contract: {plan, billing_model, term_start, term_end, purchased_seats, mac_packs,
    seats_limit, guests_limit, mac_limit}, seats, guests, monthly_active_contacts,
    peak_connections, days_reported, days_in_period, stale, overage: {seats, guests,
    monthly_active_contacts}, true_up: {term_start, term_end, max_seats, max_seats_day,
    purchased_seats, overage}}]}``. Dates are ``datetime.date``
    (orjson writes them as ISO strings); counts None when unknown."""
    days = (end - start).days + 1
    out = []
    for r in await consumption_rows(conn, start, end, now=now, stale_after_s=stale_after_s):
        term_start, term_end = r["term_start"], r["term_end"]  # dates: orjson writes them natively
        out.append({
            "workspace_id": str(r["workspace_id"]),
            "contract": {
                "plan": r["plan"], "billing_model": r["billing_model"], "term_start": term_start,
                "term_end": term_end, "purchased_seats": r["purchased_seats"], "mac_packs": r["mac_packs"],
                "seats_limit": r["seats_limit"], "guests_limit": r["guests_limit"], "mac_limit": r["mac_limit"],
            },
            "seats": r["seats"],
            "guests": r["guests"],
            "monthly_active_contacts": r["monthly_active_contacts"],
            "peak_connections": r["peak_connections"],
            "days_reported": r["days_reported"],
            "days_in_period": days,
            "stale": r["stale"],
            "overage": {"seats": r["seats_overage"], "guests": r["guests_overage"],
                        "monthly_active_contacts": r["mac_overage"]},
            "true_up": {
                "term_start": term_start, "term_end": term_end, "max_seats": r["term_max_seats"],
                "max_seats_day": r["term_max_seats_day"],
                "purchased_seats": r["seats_limit"], "overage": r["true_up_overage"],
            },
        })
    return {"from": start.isoformat(), "to": end.isoformat(), "days_in_period": days, "workspaces": out}


async def consumption_csv(
    conn: asyncpg.Connection | asyncpg.Pool, start: date, end: date, *, now: datetime, stale_after_s: int
) -> str:
    """The billing report as CSV (header ``COLUMNS``, one row per workspace;
    empty cell = unknown or unlimited)."""
    days = (end - start).days + 1
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in await consumption_rows(conn, start, end, now=now, stale_after_s=stale_after_s):
        row = dict(r, days_in_period=days)
        w.writerow("" if row[c] is None else str(row[c]).lower() if isinstance(row[c], bool) else row[c] for c in COLUMNS)
    return buf.getvalue()
