"""Issue 13 API side: workspace labels, partial contract edits, billing
defaults, several compliance statuses, one definition of stale (issue 11
item 9), null overage for unknown usage (issue 11 item 10), and ``since``.
Real server, real database, hand-computed values."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date, datetime, timedelta, timezone

import orjson

from collector.usage import billing, compliance
from collector.usage import rollups as aggregation
from collector.usage.rollups import StoredReport
from tests.conftest import admin_headers, get_json, make_report, operator_headers, post_ok
from tests.test_cli import run_cli

STALE = 48 * 3600


def row_of(answer: dict, workspace_id: str) -> dict:
    return next(w for w in answer["workspaces"] if w["workspace_id"] == workspace_id)


async def register(service, plan: str, label: str | None) -> dict:
    async with service.http.post(f"{service.url}/api/v1/workspaces", json={"plan": plan, "label": label},
                                 headers=admin_headers()) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def patch(service, path: str, body: dict, status: int = 200) -> dict:
    async with service.http.patch(service.url + path, json=body, headers=admin_headers()) as r:
        assert r.status == status, await r.text()
        return await r.json()


async def test_label_at_registration_edit_and_everywhere_it_is_carried(service):
    ws = await register(service, "starter", "  Acme Corp  ")
    wid = ws["workspace_id"]
    assert ws["label"] == "Acme Corp"  # surrounding white space is not part of a label
    assert (await get_json(service, f"/api/v1/workspaces/{wid}", admin_headers()))["label"] == "Acme Corp"
    edited = await patch(service, f"/api/v1/workspaces/{wid}", {"label": "=Acme Corp (CRM 4711)"})
    assert edited["label"] == "=Acme Corp (CRM 4711)"
    # compliance listing, its label filter (case ignored), and the one-workspace answer
    h = await operator_headers(service, "compliance")
    listing = await get_json(service, "/api/v1/compliance?label=crm%204711", h)
    assert [w["workspace_id"] for w in listing["workspaces"]] == [wid]
    assert listing["workspaces"][0]["label"] == "=Acme Corp (CRM 4711)"
    assert (await get_json(service, f"/api/v1/compliance/{wid}", h))["label"] == "=Acme Corp (CRM 4711)"
    # billing JSON and CSV (a label a spreadsheet would run as a formula gets a leading quote)
    b = await operator_headers(service, "billing")
    assert row_of(await get_json(service, "/api/v1/billing/consumption", b), wid)["label"] == "=Acme Corp (CRM 4711)"
    async with service.http.get(service.url + "/api/v1/billing/consumption?format=csv", headers=b) as r:
        rows = {row["workspace_id"]: row for row in csv.DictReader(io.StringIO(await r.text()))}
    assert rows[wid]["label"] == "'=Acme Corp (CRM 4711)"
    # cleared with null; refused when too long or with a control character; admin only
    assert (await patch(service, f"/api/v1/workspaces/{wid}", {"label": None}))["label"] is None
    for bad in ("x" * 201, "two\nlines"):
        body = await patch(service, f"/api/v1/workspaces/{wid}", {"label": bad}, status=422)
        assert body["violations"][0]["path"] == "label"
    async with service.http.patch(f"{service.url}/api/v1/workspaces/{wid}", json={"label": "x"}, headers=b) as r:
        assert r.status == 403
    async with service.http.patch(f"{service.url}/api/v1/workspaces/{uuid.uuid4()}", json={"label": "x"},
                                  headers=admin_headers()) as r:
        assert r.status == 404


async def test_contract_patch_changes_only_what_is_given_and_get_can_be_put_back(service):
    ws = await register(service, "pro", "Globex")
    wid = ws["workspace_id"]
    path = f"/api/v1/workspaces/{wid}/contract"
    before = await get_json(service, path, admin_headers())
    assert set(before) == {"workspace_id", "plan", "term_start", "term_end", "seats", "mac_packs", "limits", "updated_at"}
    after = await patch(service, path, {"seats": 5})
    assert after["seats"] == 5
    assert {k: after[k] for k in ("plan", "term_start", "term_end", "mac_packs", "limits")} == \
        {k: before[k] for k in ("plan", "term_start", "term_end", "mac_packs", "limits")}
    after = await patch(service, path, {"limits": {"guestUsers": 7}, "term_end": "2030-01-31"})
    assert (after["seats"], after["limits"], after["term_end"]) == (5, {"guestUsers": 7}, "2030-01-31")
    assert (await patch(service, path, {"seats": None}))["seats"] is None  # null: no purchased seats
    for bad, field in (({"plan": None}, "plan"), ({"mac_packs": -1}, "mac_packs"), ({"colour": 1}, "colour"),
                       ({"term_end": "2001-01-01"}, "term_end")):
        body = await patch(service, path, bad, status=422)
        assert body["violations"][0]["path"] == field, body
    # what GET answers is PUT back unchanged (read-only fields included)
    got = await get_json(service, path, admin_headers())
    async with service.http.put(service.url + path, json=got, headers=admin_headers()) as r:
        assert r.status == 200, await r.text()
        put = await r.json()
    assert {k: v for k, v in put.items() if k != "updated_at"} == {k: v for k, v in got.items() if k != "updated_at"}
    async with service.http.put(service.url + path, json={**got, "workspace_id": str(uuid.uuid4())},
                                headers=admin_headers()) as r:
        assert r.status == 422 and (await r.json())["violations"][0]["path"] == "workspace_id"
    # compliance and billing may read the contract
    for role in ("compliance", "billing"):
        await get_json(service, path, await operator_headers(service, role))


async def test_billing_defaults_to_the_current_month_and_format_csv(service):
    h = await operator_headers(service, "billing")
    today = datetime.now(timezone.utc).date()
    answer = await get_json(service, "/api/v1/billing/consumption", h)
    first = today.replace(day=1)
    assert answer["from"] == first.isoformat()
    assert date.fromisoformat(answer["to"]).month == today.month and date.fromisoformat(answer["to"]).day >= 28
    async with service.http.get(service.url + "/api/v1/billing/consumption?format=csv", headers=h) as r:
        assert r.status == 200 and r.content_type == "text/csv"
        assert r.headers["Content-Disposition"] == f'attachment; filename="consumption-{first:%Y-%m}.csv"'
        assert (await r.text()).splitlines()[0] == ",".join(billing.COLUMNS)
    async with service.http.get(service.url + "/api/v1/billing/consumption?from=2024-02-03&to=2024-02-09&format=csv",
                                headers=h) as r:
        assert r.headers["Content-Disposition"] == 'attachment; filename="consumption-2024-02-03_2024-02-09.csv"'
    body = await get_json(service, "/api/v1/billing/consumption?format=xml", h, status=400)
    assert body["violations"][0]["path"] == "format"


def test_cli_billing_without_a_period_is_the_current_month(database_url, service):
    out = run_cli(database_url, "billing")
    assert out.returncode == 0, out.stderr
    assert orjson.loads(out.stdout)["from"] == datetime.now(timezone.utc).date().replace(day=1).isoformat()


def test_cli_label_and_partial_contract(database_url, service):
    ws = orjson.loads(run_cli(database_url, "workspace", "add", "--plan", "starter", "--label", "Initech").stdout)
    assert ws["label"] == "Initech"
    wid = ws["workspace_id"]
    assert orjson.loads(run_cli(database_url, "workspace", "label", wid, "Initech EU").stdout)["label"] == "Initech EU"
    before = orjson.loads(run_cli(database_url, "contract", "show", wid).stdout)
    after = orjson.loads(run_cli(database_url, "contract", "set", wid, "--seats", "5").stdout)
    assert after["seats"] == 5 and {k: after[k] for k in ("plan", "term_start", "term_end", "mac_packs", "limits")} == \
        {k: before[k] for k in ("plan", "term_start", "term_end", "mac_packs", "limits")}
    assert orjson.loads(run_cli(database_url, "contract", "set", wid, "--no-seats").stdout)["seats"] is None
    assert run_cli(database_url, "contract", "set", wid).returncode == 2  # nothing to change
    out = orjson.loads(run_cli(database_url, "compliance", "--status", "ok", "--status", "unknown",
                               "--label", "initech eu").stdout)
    assert [w["workspace_id"] for w in out["workspaces"]] == [wid]
    assert orjson.loads(run_cli(database_url, "workspace", "label", wid, "--clear").stdout)["label"] is None


async def test_several_statuses_at_once(service, report_870):
    h = await operator_headers(service, "compliance")
    now = datetime.now(timezone.utc) - timedelta(minutes=5)
    tag = uuid.uuid4().hex[:8]
    made = {}
    for users, name in ((51, "over"), (46, "near"), (10, "ok")):
        ws = await register(service, "starter", f"multi {tag} {name}")
        await post_ok(service, ws["token"], make_report(report_870, f"multi-{ws['workspace_id']}",
                                                        now.strftime("%Y-%m-%dT%H:%M:%S.000Z"), users=users))
        made[name] = ws["workspace_id"]
    for query in ("status=over,near", "status=over&status=near"):
        got = await get_json(service, f"/api/v1/compliance?{query}&label=multi%20{tag}", h)
        assert sorted(w["workspace_id"] for w in got["workspaces"]) == sorted([made["over"], made["near"]])
    body = await get_json(service, "/api/v1/compliance?status=over,bad", h, status=400)
    assert body["violations"][0]["path"] == "status"
    # the console's board: worst first (over, then near, then ok)
    board = await compliance.board(service_pool(service), now=datetime.now(timezone.utc), stale_after_s=STALE,
                                   label=f"multi {tag}")
    assert [w["workspace_id"] for w in board["workspaces"]] == [made["over"], made["near"], made["ok"]]
    assert board["total"] == 3


def service_pool(service):
    from collector.http.common import STATE

    return service.server.app[STATE].pool


async def test_stale_is_one_definition_and_right_at_a_period_start(service, db):
    """Issue 11 item 9: a workspace that reported an hour before the month began
    is not stale in the new month (billing and compliance agree)."""
    ws = await register(service, "pro", "Period start")
    wid = uuid.UUID(ws["workspace_id"])
    await db.execute("UPDATE workspaces SET created_at = '2024-01-15T00:00:00Z' WHERE workspace_id = $1", wid)
    async with db.transaction():
        await aggregation.apply_reports(db, [StoredReport(uuid.uuid4(), wid, datetime(2024, 2, 29, 23, 0, tzinfo=timezone.utc),
                                                          {"billing": {"activeUsers": 3}})])

    async def billing_stale(period_start: date, period_end: date, now: datetime) -> bool:
        answer = await billing.consumption(db, period_start, period_end, now=now, stale_after_s=STALE)
        return row_of(answer, str(wid))["stale"]

    async def compliance_stale(now: datetime) -> bool:
        return (await compliance.workspace_compliance(db, wid, now=now, stale_after_s=STALE))["stale"]

    march = (date(2024, 3, 1), date(2024, 3, 31))
    at = datetime(2024, 3, 1, 3, 0, tzinfo=timezone.utc)  # 4 h after the last report, 3 h into March
    assert await billing_stale(*march, now=at) is False  # was True: it looked only at March's reports
    assert await compliance_stale(at) is False
    later = datetime(2024, 3, 2, 23, 1, tzinfo=timezone.utc)  # 48 h 1 min after the last report
    assert await billing_stale(*march, now=later) is True and await compliance_stale(later) is True
    edge = datetime(2024, 3, 2, 23, 0, tzinfo=timezone.utc)  # exactly 48 h: not yet stale (more than 48 h is)
    assert await billing_stale(*march, now=edge) is False and await compliance_stale(edge) is False
    # A past period: the reference is its end (1 Apr 00:00), the report a month older: stale.
    assert await billing_stale(*march, now=datetime(2024, 4, 15, tzinfo=timezone.utc)) is True
    # February, read later: its last report is 1 h before its end.
    assert await billing_stale(date(2024, 2, 1), date(2024, 2, 29), now=datetime(2024, 6, 1, tzinfo=timezone.utc)) is False
    # A report after the reference does not count: a range that ends on 28 Feb.
    assert await billing_stale(date(2024, 2, 1), date(2024, 2, 28), now=datetime(2024, 6, 1, tzinfo=timezone.utc)) is True

    # With a later report (5 March), the answers for February come from February's own
    # reports, and for a range without a report from the lookup: the same definition.
    async with db.transaction():
        await aggregation.apply_reports(db, [StoredReport(uuid.uuid4(), wid, datetime(2024, 3, 5, 9, 0, tzinfo=timezone.utc),
                                                          {"billing": {"activeUsers": 4}})])
    june = datetime(2024, 6, 1, tzinfo=timezone.utc)
    assert await billing_stale(date(2024, 2, 1), date(2024, 2, 29), now=june) is False  # 29 Feb 23:00, 1 h before the end
    # no report in these ranges: the last before them is 29 Feb 23:00
    assert await billing_stale(date(2024, 3, 1), date(2024, 3, 1), now=june) is False  # 25 h before 2 Mar 00:00
    assert await billing_stale(date(2024, 3, 2), date(2024, 3, 3), now=june) is True  # 73 h before 4 Mar 00:00
    for day in range(1, 32):  # every day end of March: the shortcut and the lookup agree
        ref = datetime(2024, 3, day, tzinfo=timezone.utc) + timedelta(days=1)
        direct = await db.fetchval("SELECT is_stale(last_report_before($1, $2), $3, $2, $4)", wid, ref,
                                   datetime(2024, 1, 15, tzinfo=timezone.utc), STALE)
        assert await billing_stale(date(2024, 3, 1), date(2024, 3, day), now=june) is direct, day


async def test_overage_is_null_when_usage_is_unknown(service, db):
    """Issue 11 item 10: no report, so seats, MAC and the term maximum are unknown: their overage is null, not 0."""
    ws = await register(service, "starter", "Never reported")
    h = await operator_headers(service, "billing")
    row = row_of(await get_json(service, "/api/v1/billing/consumption", h), ws["workspace_id"])
    assert (row["seats"], row["guests"], row["monthly_active_contacts"]) == (None, None, None)
    assert row["overage"] == {"seats": None, "guests": None, "monthly_active_contacts": None}
    assert (row["true_up"]["max_seats"], row["true_up"]["overage"], row["true_up"]["seats_limit"]) == (None, None, 50)
    # the contract's purchased seats and the limit are two names, two values (issue 13 item 7)
    assert (row["contract"]["purchased_seats"], row["contract"]["seats_limit"]) == (None, 50)


async def test_since_is_when_the_collector_first_saw_the_status(service, report_870):
    """Issue 13 item 8: a 60-day-old record changes the status today: since = today."""
    ws = await register(service, "starter", "Old record")
    h = await operator_headers(service, "compliance")
    old = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=60)
    before = datetime.now(timezone.utc)
    await post_ok(service, ws["token"], make_report(report_870, f"old-{ws['workspace_id']}",
                                                    old.strftime("%Y-%m-%dT%H:%M:%S.000Z"), users=55))
    after = datetime.now(timezone.utc)
    c = await get_json(service, f"/api/v1/compliance/{ws['workspace_id']}", h)
    assert c["limits"]["activeUsers"]["status"] == "over"
    assert before <= datetime.fromisoformat(c["limits"]["activeUsers"]["since"]) <= after
    assert datetime.fromisoformat(c["last_report_at"]) == old and c["stale"] is True
