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
- ``label``: the operator's name for the account (``collector.accounts.workspaces``);
- ``stale``: the workspace's last report up to the reference time (the
  period's end, or now while the period runs) is more than ``stale_after_s``
  (48 h) older than it, or it never reported and was registered before
  that: the one definition compliance uses too (SQL ``is_stale`` of
  ``last_report_up_to``, ``sql/0006_console.sql``), so a workspace that
  reported an hour before a month began is not stale in the new month;
- ``contract``: plan, billing model, term, purchased seats and MAC packs,
  and the effective limits (``seats_limit``, ``guests_limit``, ``mac_limit``:
  negative = unlimited; see ``collector.accounts.plans``);
- ``overage``: max(0, usage - limit) per seats, guests and MAC; null when
  unlimited or the usage is unknown (no report of it in the period);
- ``true_up``: the highest daily seats over the contract term so far (the
  term, never a rolling year: Rocket.Chat's "lessons" on true-up), against
  ``seats_limit`` (the effective seats limit: the purchased seats, else the
  plan's); its ``overage`` is null when unlimited or no seats were reported.

Expired data (retention, ``collector.lifecycle.retention``): billing reads
only rollups, so it works the same after raw reports expire. The answer says
when retention has removed data of the period (``retained_since``: data
dated before it is gone): ``raw_data_expired`` (raw reports of the period
are gone; the figures still come from the rollups) and ``rollups_expired``
(rollups of the period are gone: missing figures are expired, not zero).

A period that is one calendar month reads ``monthly_usage``; any other range
reads ``daily_snapshots``. PostgreSQL renders the answers (``collector.ops.sqljson``
for the JSON, ``COPY ... CSV`` for the CSV): 100,000 workspaces are never
turned into Python objects on the way to the HTTP answer.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timedelta, timezone

import asyncpg
import orjson

from collector.accounts import YEARS, Invalid
from collector.ops import sqljson

MAX_RANGE_DAYS = 400

#: Flat columns of a billing row, in CSV order.
COLUMNS = (
    "workspace_id", "label", "plan", "billing_model", "term_start", "term_end", "purchased_seats", "mac_packs",
    "seats_limit", "guests_limit", "mac_limit", "seats", "guests", "monthly_active_contacts",
    "peak_connections", "days_reported", "days_in_period", "stale", "seats_overage", "guests_overage",
    "mac_overage", "term_max_seats", "term_max_seats_day", "true_up_overage",
)


def parse_period(period: str | None = None, from_: str | None = None, to: str | None = None,
                 *, today: date | None = None) -> tuple[date, date]:
    """The (first, last) UTC dates of ``period=YYYY-MM`` or of ``from``/``to``
    (``YYYY-MM-DD``, inclusive; ``YYYY-MM`` also accepted: first / last day);
    with none of them, the month of ``today`` (the current UTC month, given
    by the caller).

    Raises Invalid (path ``period``, ``from`` or ``to``): missing (no
    ``today``), malformed, both forms given, only one of ``from``/``to``,
    ``to`` before ``from``, or longer than MAX_RANGE_DAYS.
    """
    if period is None and from_ is None and to is None and today is not None:
        start = today.replace(day=1)
        return start, _last_of_month(start)
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


def period_name(start: date, end: date) -> str:
    """A short name of the period ``start``..``end``: ``YYYY-MM`` for one
    calendar month, else ``YYYY-MM-DD_YYYY-MM-DD`` (used in file names)."""
    if start.day == 1 and end == _last_of_month(start):
        return start.strftime("%Y-%m")
    return f"{start.isoformat()}_{end.isoformat()}"


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
    SELECT c.workspace_id, w.label, c.plan, p.billing_model, c.term_start, c.term_end, c.seats AS purchased_seats,
           c.mac_packs,
           effective_max('activeUsers', pl.au, c.custom_limits, c.seats, c.mac_packs, p.mac_pack_size) AS seats_limit,
           effective_max('guestUsers', pl.gu, c.custom_limits, c.seats, c.mac_packs, p.mac_pack_size) AS guests_limit,
           effective_max('monthlyActiveContacts', pl.mc, c.custom_limits, c.seats, c.mac_packs, p.mac_pack_size)
               AS mac_limit,
           u.seats, u.guests, u.mac AS monthly_active_contacts, u.peak_connections,
           coalesce(u.days_reported, 0)::int AS days_reported,
           $6::int AS days_in_period,
           is_stale(last_report_up_to(c.workspace_id, $3, cs.last_report_at, u.last_report_at), w.created_at, $3, $7)
               AS stale,
           t.max_seats AS term_max_seats, t.max_seats_day AS term_max_seats_day
    FROM contracts c
    JOIN workspaces w ON w.workspace_id = c.workspace_id
    JOIN plans p ON p.plan = c.plan
    LEFT JOIN pl ON pl.plan = c.plan
    LEFT JOIN u ON u.workspace_id = c.workspace_id
    LEFT JOIN term_usage t ON t.workspace_id = c.workspace_id
    LEFT JOIN compliance_state cs ON cs.workspace_id = c.workspace_id
    WHERE (w.created_at < $4 OR u.workspace_id IS NOT NULL) AND (w.revoked_at IS NULL OR w.revoked_at >= $5)
), r AS (
    SELECT x.*,
           -- greatest() skips NULLs (greatest(0, NULL) = 0): unknown usage must stay NULL
           CASE WHEN seats_limit >= 0 AND seats IS NOT NULL THEN greatest(0, seats - seats_limit) END
               AS seats_overage,
           CASE WHEN guests_limit >= 0 AND guests IS NOT NULL THEN greatest(0, guests - guests_limit) END
               AS guests_overage,
           CASE WHEN mac_limit >= 0 AND monthly_active_contacts IS NOT NULL
                THEN greatest(0, monthly_active_contacts - mac_limit) END AS mac_overage,
           CASE WHEN seats_limit >= 0 AND term_max_seats IS NOT NULL
                THEN greatest(0, term_max_seats - seats_limit) END AS true_up_overage
    FROM x
)
SELECT {select} FROM r {tail}
"""

#: One workspace of the JSON report (``sqljson.text_sql`` spec over the columns of ``r``).
_JSON_ROW = {
    "workspace_id": ("uuid", "workspace_id"),
    "label": ("text", "label"),
    "contract": {
        "plan": ("text", "plan"),
        "billing_model": ("text", "billing_model"),
        "term_start": ("date", "term_start"),
        "term_end": ("date", "term_end"),
        "purchased_seats": ("int", "purchased_seats"),
        "mac_packs": ("int", "mac_packs"),
        "seats_limit": ("int", "seats_limit"),
        "guests_limit": ("int", "guests_limit"),
        "mac_limit": ("int", "mac_limit"),
    },
    "seats": ("int", "seats"),
    "guests": ("int", "guests"),
    "monthly_active_contacts": ("int", "monthly_active_contacts"),
    "peak_connections": ("int", "peak_connections"),
    "days_reported": ("int", "days_reported"),
    "days_in_period": ("int", "days_in_period"),
    "stale": ("bool", "stale"),
    "overage": {
        "seats": ("int", "seats_overage"),
        "guests": ("int", "guests_overage"),
        "monthly_active_contacts": ("int", "mac_overage"),
    },
    "true_up": {
        "term_start": ("date", "term_start"),
        "term_end": ("date", "term_end"),
        "max_seats": ("int", "term_max_seats"),
        "max_seats_day": ("date", "term_max_seats_day"),
        "seats_limit": ("int", "seats_limit"),
        "overage": ("int", "true_up_overage"),
    },
}
_JSON_SELECT = sqljson.bytes_sql(_JSON_ROW)
# In the CSV, a boolean is written true / false (COPY would write t / f), and a
# label that a spreadsheet would read as a formula (first character = + - @,
# tab or carriage return: OWASP "CSV injection") gets a leading quote.
_CSV_EXPR = {
    "stale": "stale::text",
    "label": r"CASE WHEN label ~ '^[=+@\t\r-]' THEN '''' || label ELSE label END",
}
_CSV_SELECT = ", ".join(f"{_CSV_EXPR[c]} AS {c}" if c in _CSV_EXPR else c for c in COLUMNS)


def _report(start: date, end: date, select: str, *, now: datetime, stale_after_s: int,
            tail: str = "ORDER BY workspace_id") -> tuple[str, tuple]:
    """The report query over ``start``..``end`` (inclusive UTC dates), one
    row per workspace (by workspace_id, unless ``tail`` says otherwise:
    ORDER BY / LIMIT, or nothing for an aggregate ``select``), with its
    arguments ($1..$7)."""
    whole_month = start.day == 1 and end == _last_of_month(start)
    sql = _REPORT.format(usage=_USAGE_MONTH if whole_month else _USAGE_DAYS, select=select, tail=tail)
    period_end = datetime.combine(end + timedelta(days=1), datetime.min.time(), timezone.utc)
    period_start = datetime.combine(start, datetime.min.time(), timezone.utc)
    reference = min(now, period_end)
    days = (end - start).days + 1
    return sql, (start, end, reference, period_end, period_start, days, stale_after_s)


_EXPIRED = (
    "SELECT coalesce(bool_or(kind = 'raw' AND since > $1), false) AS raw,"
    " coalesce(bool_or(kind = 'rollups' AND since > $1), false) AS rollups"
    " FROM retained_since WHERE kind IN ('raw', 'rollups')"
)


async def expired(conn: asyncpg.Connection | asyncpg.Pool, start: date) -> tuple[bool, bool]:
    """(raw reports, rollups) of a period starting on ``start``: True when
    retention has removed some of them (``retained_since`` after the period's
    first instant)."""
    row = await conn.fetchrow(_EXPIRED, datetime.combine(start, datetime.min.time(), timezone.utc))
    return row["raw"], row["rollups"]


async def consumption_json(
    conn: asyncpg.Connection | asyncpg.Pool, start: date, end: date, *, now: datetime, stale_after_s: int
) -> bytes:
    """The billing report as the UTF-8 JSON body of the HTTP answer (rendered
    by PostgreSQL, never parsed here): ``{"from", "to", "days_in_period",
    "raw_data_expired", "rollups_expired" (``expired``), "workspaces": [{workspace_id, label, contract: {plan, billing_model, term_start,
    term_end, purchased_seats, mac_packs, seats_limit, guests_limit,
    mac_limit}, seats, guests, monthly_active_contacts, peak_connections,
    days_reported, days_in_period, stale, overage: {seats, guests,
    monthly_active_contacts}, true_up: {term_start, term_end, max_seats,
    max_seats_day, seats_limit, overage}}]}``.

    One item per workspace registered by ``end`` (or with usage in the
    period) and not revoked before ``start``, by workspace_id. ``start``,
    ``end``: inclusive UTC dates. Dates are ``YYYY-MM-DD`` strings; counts
    are integers (people, contacts, connections, days), null when unknown;
    limits negative = unlimited; overages null when unlimited or unknown.
    """
    sql, args = _report(start, end, _JSON_SELECT, now=now, stale_after_s=stale_after_s)
    async with sqljson.reading(conn) as c:
        rows = await c.fetch(sql, *args)
        raw_expired, rollups_expired = await expired(c, start)
    head = orjson.dumps({"from": start.isoformat(), "to": end.isoformat(), "days_in_period": args[5],
                         "raw_data_expired": raw_expired, "rollups_expired": rollups_expired})
    return sqljson.json_array([r[0] for r in rows], head[:-1] + b',"workspaces":', b"}")


async def consumption(
    conn: asyncpg.Connection | asyncpg.Pool, start: date, end: date, *, now: datetime, stale_after_s: int
) -> dict:
    """The billing report parsed: the shape of ``consumption_json`` as a dict
    (dates as ``YYYY-MM-DD`` strings). For callers that read the figures;
    the HTTP answer uses ``consumption_json``."""
    return orjson.loads(await consumption_json(conn, start, end, now=now, stale_after_s=stale_after_s))


async def consumption_csv(
    conn: asyncpg.Connection | asyncpg.Pool, start: date, end: date, *, now: datetime, stale_after_s: int
) -> bytes:
    """The billing report as UTF-8 CSV (``COPY ... CSV HEADER`` by PostgreSQL):
    header ``COLUMNS``, one line per workspace (the rows of ``consumption_json``,
    flattened), ``\\n`` line ends; an empty cell is unknown or unlimited (or
    no label); ``stale`` is ``true`` / ``false``; dates ``YYYY-MM-DD``; a
    label starting with ``= + - @``, tab or CR gets a leading ``'`` (a
    spreadsheet shows it as text instead of running it as a formula)."""
    sql, args = _report(start, end, _CSV_SELECT, now=now, stale_after_s=stale_after_s)
    chunks: list[bytes] = []

    async def collect(chunk: bytes) -> None:
        chunks.append(chunk)

    async with sqljson.reading(conn) as c:
        await c.copy_from_query(sql, *args, output=collect, format="csv", header=True)
    return b"".join(chunks)


#: The totals of a period (``consumption_totals``): name -> SQL aggregate over the report's rows.
TOTALS = {
    "workspaces": "count(*)",
    "seats": "sum(seats)",
    "guests": "sum(guests)",
    "monthly_active_contacts": "sum(monthly_active_contacts)",
    "peak_connections": "sum(peak_connections)",
    "stale": "count(*) FILTER (WHERE stale)",
    "seats_overage": "sum(seats_overage)",
    "guests_overage": "sum(guests_overage)",
    "mac_overage": "sum(mac_overage)",
    "true_up_overage": "sum(true_up_overage)",
}


async def consumption_totals(
    conn: asyncpg.Connection | asyncpg.Pool, start: date, end: date, *, now: datetime, stale_after_s: int
) -> dict[str, int | None]:
    """The period's totals over every row of the report (``TOTALS``): how many
    workspaces and stale ones, and the sums of seats, guests, MAC, peak
    connections and each overage (a sum skips unknown values; None when
    every row's is unknown)."""
    select = ", ".join(f"({expr})::bigint AS {name}" for name, expr in TOTALS.items())
    sql, args = _report(start, end, select, now=now, stale_after_s=stale_after_s, tail="")
    async with sqljson.reading(conn) as c:
        row = await c.fetchrow(sql, *args)
    return dict(row)


async def consumption_page(
    conn: asyncpg.Connection | asyncpg.Pool, start: date, end: date, *, now: datetime, stale_after_s: int,
    limit: int = 200, offset: int = 0,
) -> list[dict]:
    """``limit`` rows of the report from ``offset``, by label (unlabelled
    last), then workspace_id: the items of ``consumption_json``, parsed (the
    console's billing page)."""
    tail = f"ORDER BY label NULLS LAST, workspace_id LIMIT {max(1, min(int(limit), 1000))} OFFSET {max(0, int(offset))}"
    sql, args = _report(start, end, _JSON_SELECT, now=now, stale_after_s=stale_after_s, tail=tail)
    async with sqljson.reading(conn) as c:
        rows = await c.fetch(sql, *args)
    return [orjson.loads(r[0]) for r in rows]
