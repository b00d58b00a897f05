"""Consumption billing (issue 4): real HTTP server, real PostgreSQL, hand-computed values."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date, datetime, timezone

from collector.usage import billing
from collector.usage import rollups as aggregation
from collector.usage.rollups import StoredReport
from tests.conftest import (
    admin_headers,
    get_json,
    make_report,
    operator_headers,
    post_ok,
    put_contract,
)


def row_of(answer: dict, workspace_id: str) -> dict:
    return next(w for w in answer["workspaces"] if w["workspace_id"] == workspace_id)


async def test_month_billing_boundaries_leap_day_late_records_and_true_up(service, report_870):
    ws = await service.register("pro")
    wid, token = ws["workspace_id"], ws["token"]
    await put_contract(service, wid, plan="pro", term_start="2024-01-01", term_end="2024-12-31", seats=5)

    def rep(n, at, **kw):
        return make_report(report_870, f"bill-{wid}-{n}", at, **kw)

    # January, the last second: counts for January only.
    await post_ok(service, token, rep(1, "2024-01-31T23:59:59.000Z", users=90, guests=0, mac=30))
    # February (a leap year: 29 days).
    await post_ok(service, token, rep(2, "2024-02-01T00:00:00.000Z", users=3, guests=1, mac=2))
    await post_ok(service, token, rep(3, "2024-02-10T10:00:00.000Z", users=9, guests=1, mac=5))
    await post_ok(service, token, rep(4, "2024-02-10T18:00:00.000Z", users=4, guests=1, mac=6))  # same day, later: wins
    await post_ok(service, token, rep(5, "2024-02-29T23:59:00.000Z", users=7, guests=40, mac=12))  # leap day
    # March, 30 s after the boundary: the new month's MAC restarts.
    await post_ok(service, token, rep(6, "2024-03-01T00:00:30.000Z", users=50, guests=2, mac=1))
    # a resend changes nothing
    assert (await post_ok(service, token, rep(5, "2024-02-29T23:59:00.000Z", users=7, guests=40, mac=12)))["outcome"] == "duplicate"

    h = await operator_headers(service, "billing")
    feb = row_of(await get_json(service, "/api/v1/billing/consumption?period=2024-02", h), wid)
    # Days reported: 1, 10 and 29 Feb = 3 of 29. Seats: the 10th is 4 (the later record
    # wins over 9), so max(3, 4, 7) = 7; guests (40) are not seats. MAC: highest Feb
    # value max(2, 5, 6, 12) = 12 (January's 30 and March's 1 are other months).
    assert (feb["seats"], feb["guests"], feb["monthly_active_contacts"]) == (7, 40, 12)
    assert (feb["days_reported"], feb["days_in_period"]) == (3, 29)
    assert feb["contract"]["purchased_seats"] == 5 and feb["contract"]["seats_limit"] == 5
    # Overage: seats 7 - 5 = 2; MAC 12 vs pro's 100 = 0; guests unlimited on pro: null.
    assert feb["overage"] == {"seats": 2, "guests": None, "monthly_active_contacts": 0}
    # The last Feb report (29th 23:59) is within 48 h of the period's end.
    assert feb["stale"] is False
    # True-up over the term 2024-01-01..2024-12-31: max(90, 3, 4, 7, 50) = 90 on 31 Jan; 90 - 5 = 85.
    assert feb["true_up"] == {"term_start": "2024-01-01", "term_end": "2024-12-31", "max_seats": 90,
                              "max_seats_day": "2024-01-31", "seats_limit": 5, "overage": 85}

    # Late records: 15 Feb (a day with no snapshot yet) with 20 seats raises February;
    # an earlier record of 29 Feb (08:00 < 23:59) does not win that day.
    await post_ok(service, token, rep(7, "2024-02-15T12:00:00.000Z", users=20, guests=3, mac=8))
    await post_ok(service, token, rep(8, "2024-02-29T08:00:00.000Z", users=100, guests=0, mac=11))
    feb = row_of(await get_json(service, "/api/v1/billing/consumption?period=2024-02", h), wid)
    # seats max(3, 4, 20, 7) = 20; days 1, 10, 15, 29 = 4; MAC still 12; term max still 90.
    assert (feb["seats"], feb["days_reported"], feb["monthly_active_contacts"]) == (20, 4, 12)
    assert feb["true_up"]["max_seats"] == 90

    mar = row_of(await get_json(service, "/api/v1/billing/consumption?period=2024-03", h), wid)
    # March: one day, 1 Mar: seats 50, MAC 1, 1 of 31 days; last report > 48 h before 1 Apr: stale.
    assert (mar["seats"], mar["monthly_active_contacts"], mar["days_reported"], mar["days_in_period"]) == (50, 1, 1, 31)
    assert mar["stale"] is True

    # from/to across the month boundary, 28 Feb .. 1 Mar = 3 days: seats max(7, 50) = 50,
    # guests max(40, 2) = 40, days reported 29 Feb and 1 Mar = 2, MAC the highest month: 12.
    rng = row_of(await get_json(service, "/api/v1/billing/consumption?from=2024-02-28&to=2024-03-01", h), wid)
    assert (rng["seats"], rng["guests"], rng["days_reported"], rng["days_in_period"]) == (50, 40, 2, 3)
    assert rng["monthly_active_contacts"] == 12

    # CSV: the same figures.
    async with service.http.get(service.url + "/api/v1/billing/consumption?period=2024-02",
                                headers={**h, "Accept": "text/csv"}) as r:
        assert r.status == 200 and r.content_type == "text/csv"
        rows = {row["workspace_id"]: row for row in csv.DictReader(io.StringIO(await r.text()))}
    assert rows[wid]["seats"] == "20" and rows[wid]["seats_overage"] == "15" and rows[wid]["guests_overage"] == ""
    assert rows[wid]["days_in_period"] == "29" and rows[wid]["stale"] == "false"


async def test_true_up_uses_a_contract_term_that_is_not_twelve_months(service, db):
    ws = await service.register("enterprise")
    wid = uuid.UUID(ws["workspace_id"])
    # A 3-month term, 15 Feb .. 14 May 2024 (both inclusive), 10 purchased seats.
    await put_contract(service, str(wid), plan="enterprise", term_start="2024-02-15", term_end="2024-05-14", seats=10)

    def stored(day: str, users: int) -> StoredReport:
        at = datetime.fromisoformat(day + "T12:00:00+00:00")
        return StoredReport(uuid.uuid4(), wid, at, {"billing": {"activeUsers": users, "activeGuests": 0}})

    async with db.transaction():
        await aggregation.apply_reports(db, [stored("2024-02-14", 80), stored("2024-03-10", 12),
                                             stored("2024-05-14", 15), stored("2024-05-15", 60)])
    h = await operator_headers(service, "billing")
    may = row_of(await get_json(service, "/api/v1/billing/consumption?period=2024-05", h), str(wid))
    # In the term: 12 (10 Mar) and 15 (14 May, the last day); 80 (the day before) and
    # 60 (the day after) are outside. True-up max = 15, 15 - 10 = 5 over.
    assert may["true_up"]["max_seats"] == 15 and may["true_up"]["overage"] == 5
    # May itself: max(15, 60) = 60 seats, 60 - 10 = 50 over the purchased seats.
    assert may["seats"] == 60 and may["overage"]["seats"] == 50
    # The term moves: 1 Feb .. 31 May now includes 80 (14 Feb) -> true-up 80.
    await put_contract(service, str(wid), plan="enterprise", term_start="2024-02-01", term_end="2024-05-31", seats=10)
    may = row_of(await get_json(service, "/api/v1/billing/consumption?period=2024-05", h), str(wid))
    assert may["true_up"]["max_seats"] == 80 and may["true_up"]["max_seats_day"] == "2024-02-14"


async def test_mac_packs_raise_the_mac_included(service, db):
    ws = await service.register("enterprise")
    wid = uuid.UUID(ws["workspace_id"])
    # enterprise: MAC unlimited, pack size 1000; 2 packs = 2000 MAC included.
    await put_contract(service, str(wid), plan="enterprise", term_start="2024-01-01", term_end="2024-12-31", mac_packs=2)
    at = datetime(2024, 4, 30, 23, 0, tzinfo=timezone.utc)
    async with db.transaction():
        await aggregation.apply_reports(db, [StoredReport(uuid.uuid4(), wid, at, {"billing": {
            "activeUsers": 1, "omnichannelContactsBySource.contactsCount": 2500}})])
    h = await operator_headers(service, "billing")
    apr = row_of(await get_json(service, "/api/v1/billing/consumption?period=2024-04", h), str(wid))
    assert apr["contract"]["mac_limit"] == 2000
    assert apr["monthly_active_contacts"] == 2500 and apr["overage"]["monthly_active_contacts"] == 500  # 2500 - 2000


async def test_bad_period_is_400_with_violations(service):
    h = await operator_headers(service, "billing")
    for query, path in [("period=2024-13", "period"), ("period=24-02", "period"), ("from=2024-02-01", "to"),
                        ("from=2024-03-01&to=2024-02-01", "to"), ("period=2024-02&from=2024-02-01", "period"),
                        ("period=9999-12", "period"), ("from=0001-01-01&to=2024-01-01", "from")]:
        body = await get_json(service, "/api/v1/billing/consumption?" + query, h, status=400)
        assert body["error"] == "invalid_request" and body["violations"][0]["path"] == path


async def test_billing_needs_the_billing_role(service):
    ws = await service.register("starter")
    await get_json(service, "/api/v1/billing/consumption?period=2024-02", await operator_headers(service, "compliance"), 403)
    await get_json(service, "/api/v1/billing/consumption?period=2024-02", {"Authorization": f"Bearer {ws['token']}"}, 403)
    await get_json(service, "/api/v1/billing/consumption?period=2024-02", {}, 401)
    await get_json(service, "/api/v1/billing/consumption?period=2024-02", admin_headers(), 200)


async def test_true_up_follows_a_day_lowered_by_a_later_record(service, db):
    ws = await service.register("pro")
    wid = uuid.UUID(ws["workspace_id"])
    await put_contract(service, str(wid), plan="pro", term_start="2024-01-01", term_end="2024-12-31", seats=25)

    def stored(at: str, users: int) -> StoredReport:
        return StoredReport(uuid.uuid4(), wid, datetime.fromisoformat(at), {"billing": {"activeUsers": users}})

    async with db.transaction():
        await aggregation.apply_reports(db, [stored("2024-06-01T10:00:00+00:00", 50)])
    async with db.transaction():  # later that day 20 replaces 50; 2 June: 30
        await aggregation.apply_reports(db, [stored("2024-06-01T20:00:00+00:00", 20), stored("2024-06-02T09:00:00+00:00", 30)])
    h = await operator_headers(service, "billing")
    jun = row_of(await get_json(service, "/api/v1/billing/consumption?period=2024-06", h), str(wid))
    # days: 1 June = 20 (latest of the day), 2 June = 30 -> seats and true-up max(20, 30) = 30; 30 - 25 = 5
    assert (jun["seats"], jun["days_reported"], jun["days_in_period"]) == (30, 2, 30)
    assert (jun["true_up"]["max_seats"], jun["true_up"]["max_seats_day"], jun["true_up"]["overage"]) == (30, "2024-06-02", 5)


async def test_equal_created_at_the_record_received_last_wins(service, report_870):
    ws = await service.register("pro")
    wid, token = ws["workspace_id"], ws["token"]
    at = "2024-06-10T10:00:00.000Z"
    await post_ok(service, token, make_report(report_870, f"tie-{wid}-1", at, users=5))
    await post_ok(service, token, make_report(report_870, f"tie-{wid}-2", at, users=7))
    h = await operator_headers(service, "billing")
    june = row_of(await get_json(service, "/api/v1/billing/consumption?period=2024-06", h), wid)
    assert june["seats"] == 7  # both dated 10:00:00.000 on the same day: the second one received wins


async def test_json_csv_and_python_answers_carry_the_same_figures(service, db):
    ws = await service.register("enterprise")
    wid = uuid.UUID(ws["workspace_id"])
    await put_contract(service, str(wid), plan="enterprise", term_start="2024-01-01", term_end="2024-12-31",
                       seats=10, mac_packs=1)
    at = datetime(2024, 7, 3, 9, 0, tzinfo=timezone.utc)
    async with db.transaction():
        await aggregation.apply_reports(db, [StoredReport(uuid.uuid4(), wid, at, {"billing": {
            "activeUsers": 12, "activeGuests": 3, "omnichannelContactsBySource.contactsCount": 1500}})])
    h = await operator_headers(service, "billing")
    answer = await get_json(service, "/api/v1/billing/consumption?period=2024-07", h)
    assert (answer["from"], answer["to"], answer["days_in_period"]) == ("2024-07-01", "2024-07-31", 31)
    ids = [w["workspace_id"] for w in answer["workspaces"]]
    assert ids == sorted(ids)
    row = row_of(answer, str(wid))
    assert row == {
        "workspace_id": str(wid),
        "label": None,
        "contract": {"plan": "enterprise", "billing_model": "consumption", "term_start": "2024-01-01",
                     "term_end": "2024-12-31", "purchased_seats": 10, "mac_packs": 1, "seats_limit": 10,
                     "guests_limit": -1, "mac_limit": 1000},
        "seats": 12, "guests": 3, "monthly_active_contacts": 1500, "peak_connections": None,
        "days_reported": 1, "days_in_period": 31, "stale": True,
        "overage": {"seats": 2, "guests": None, "monthly_active_contacts": 500},
        "true_up": {"term_start": "2024-01-01", "term_end": "2024-12-31", "max_seats": 12,
                    "max_seats_day": "2024-07-03", "seats_limit": 10, "overage": 2},
    }
    # The Python function gives the same answer.
    py = await billing.consumption(db, date(2024, 7, 1), date(2024, 7, 31), now=datetime.now(timezone.utc),
                                   stale_after_s=48 * 3600)
    assert row_of(py, str(wid)) == row
    # CSV: the same row, flattened, every column.
    async with service.http.get(service.url + "/api/v1/billing/consumption?period=2024-07",
                                headers={**h, "Accept": "text/csv"}) as r:
        assert r.status == 200 and r.content_type == "text/csv" and r.charset == "utf-8"
        text = await r.text()
    assert text.splitlines()[0] == ",".join(billing.COLUMNS)
    flat = next(c for c in csv.DictReader(io.StringIO(text)) if c["workspace_id"] == str(wid))
    expected = {**row["contract"], **{k: row[k] for k in ("workspace_id", "label", "seats", "guests",
                "monthly_active_contacts", "peak_connections", "days_reported", "days_in_period", "stale")},
                "seats_overage": 2, "guests_overage": None, "mac_overage": 500, "term_max_seats": 12,
                "term_max_seats_day": "2024-07-03", "true_up_overage": 2}
    assert flat == {k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                    for k, v in expected.items()}
