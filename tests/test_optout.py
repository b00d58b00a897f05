"""Opt-out honoured by plan (issue 5): real server, real database."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import orjson

from tests.conftest import (
    admin_headers,
    get_json,
    make_report,
    operator_headers,
    post_ok,
    put_contract,
)

OPTIONAL = ["operational", "product_analytics"]


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def switch(service, token: str, on: bool, workspace_id: str | None = None):
    path = f"/api/v1/workspaces/{workspace_id}/opt-out" if workspace_id else "/api/v1/workspaces/self/opt-out"
    async with service.http.put(
        service.url + path, json={"opt_out": on}, headers={"Authorization": f"Bearer {token}"}
    ) as r:
        return r.status, await r.json()


async def categories_stored(db, workspace_id: str) -> dict[str, int]:
    """{category: how many of the workspace's reports hold data of it}, categories held by none left out."""
    row = await db.fetchrow(
        "SELECT count(billing) AS billing, count(compliance) AS compliance, count(operational) AS operational,"
        " count(product_analytics) AS product_analytics FROM report_data WHERE workspace_id = $1::uuid",
        workspace_id,
    )
    return {category: n for category, n in row.items() if n}


async def audit_of(service, workspace_id: str) -> list[dict]:
    return (await get_json(service, f"/api/v1/audit?workspace_id={workspace_id}", admin_headers()))["items"]


async def test_plans_that_forbid_opt_out_answer_403_and_change_nothing(service, db, report_870):
    for plan in ("community", "starter", "pro"):
        ws = await service.register(plan)
        await post_ok(service, ws["token"], report_870)
        status, body = await switch(service, ws["token"], True)
        assert status == 403
        assert body["error"] == "opt_out_not_allowed" and f"'{plan}'" in body["detail"]
        me = await get_json(service, "/api/v1/workspaces/self", {"Authorization": f"Bearer {ws['token']}"})
        assert (me["plan"], me["opt_out"], me["allowed"]) == (plan, False, [])
        assert await categories_stored(db, ws["workspace_id"]) == {
            "billing": 1, "compliance": 1, "operational": 1, "product_analytics": 1}
        assert await audit_of(service, ws["workspace_id"]) == []


async def test_opt_out_forgets_stored_optional_data_and_audits(service, db, report_870, report_680):
    ws = await service.register("enterprise")
    wid = ws["workspace_id"]
    await post_ok(service, ws["token"], report_870)
    await post_ok(service, ws["token"], report_680)
    status, body = await switch(service, ws["token"], True)
    assert status == 200, body
    # two reports had optional data: both are affected
    assert (body["opt_out"], body["dropped"], body["reports_affected"]) == (True, OPTIONAL, 2)
    assert await categories_stored(db, wid) == {"billing": 2, "compliance": 2}
    [entry] = await audit_of(service, wid)
    assert (entry["action"], entry["actor"], entry["categories"], entry["reports_affected"]) == (
        "opt_out_set", "workspace", OPTIONAL, 2)
    # switching on again is a no-op
    status, body = await switch(service, ws["token"], True)
    assert (status, body["reports_affected"]) == (200, 0)
    assert len(await audit_of(service, wid)) == 1


async def test_reports_after_opt_out_keep_only_contract_categories(service, db, report_870):
    ws = await service.register("enterprise")
    wid = ws["workspace_id"]
    assert (await switch(service, ws["token"], True))[0] == 200
    answer = await post_ok(service, ws["token"], report_870)
    assert answer["kept"] == ["billing", "compliance"]
    assert answer["opt_out"] == {"dropped": OPTIONAL, "why": "the workspace opted out; its plan 'enterprise' allows it"}
    assert await categories_stored(db, wid) == {"billing": 1, "compliance": 1}
    # clearing the opt-out keeps everything again from the next report on
    status, body = await switch(service, ws["token"], False)
    assert (status, body["opt_out"], body["dropped"]) == (200, False, [])
    report_870["_id"] = "after-clearing"
    answer = await post_ok(service, ws["token"], report_870)
    assert answer["kept"] == ["billing", "compliance", "operational", "product_analytics"]
    assert await categories_stored(db, wid) == {"billing": 2, "compliance": 2, "operational": 1, "product_analytics": 1}
    assert [e["action"] for e in await audit_of(service, wid)] == ["opt_out_cleared", "opt_out_set"]


async def test_operator_switches_on_behalf_and_workspace_cannot_switch_another(service, db, report_870):
    ws = await service.register("enterprise")
    other = await service.register("enterprise")
    status, body = await switch(service, admin_headers()["Authorization"].split()[1], True, ws["workspace_id"])
    assert status == 200 and body["opt_out"] is True
    assert (await audit_of(service, ws["workspace_id"]))[0]["actor"] == "operator:admin-env"
    status, _ = await switch(service, other["token"], True, ws["workspace_id"])
    assert status == 403
    billing_only = await operator_headers(service, "billing")
    status, _ = await switch(service, billing_only["Authorization"].split()[1], False, ws["workspace_id"])
    assert status == 403


async def test_downgrade_ends_opt_out_and_upgrade_keeps_the_choice(service, db, report_870):
    ws = await service.register("enterprise")
    wid = ws["workspace_id"]
    assert (await switch(service, ws["token"], True))[0] == 200
    await put_contract(service, wid, plan="enterprise", term_start="2026-01-01", term_end="2026-12-31", seats=20)
    me = await get_json(service, "/api/v1/workspaces/self", {"Authorization": f"Bearer {ws['token']}"})
    assert me["opt_out"] is True  # same plan, new terms: the choice stays
    await put_contract(service, wid, plan="pro", term_start="2026-01-01", term_end="2026-12-31", seats=20)
    me = await get_json(service, "/api/v1/workspaces/self", {"Authorization": f"Bearer {ws['token']}"})
    assert (me["plan"], me["opt_out"], me["dropped"]) == ("pro", False, [])
    ended = (await audit_of(service, wid))[0]
    assert (ended["action"], ended["reason"]) == ("opt_out_ended", "contract set on plan 'pro'")
    report_870["_id"] = "after-downgrade"
    assert (await post_ok(service, ws["token"], report_870))["kept"] == [
        "billing", "compliance", "operational", "product_analytics"]
    # upgrading back does not opt the workspace out by itself
    await put_contract(service, wid, plan="enterprise", term_start="2026-01-01", term_end="2026-12-31")
    me = await get_json(service, "/api/v1/workspaces/self", {"Authorization": f"Bearer {ws['token']}"})
    assert (me["plan"], me["opt_out"]) == ("enterprise", False)


async def test_contract_policy_overrides_the_plan(service, db, report_870):
    ws = await service.register("pro")
    wid = ws["workspace_id"]
    await post_ok(service, ws["token"], report_870)
    async with service.http.put(
        f"{service.url}/api/v1/workspaces/{wid}/opt-out-policy", json={"categories": ["billing"]}, headers=admin_headers()
    ) as r:
        assert r.status == 422
        assert (await r.json())["violations"][0]["path"] == "categories"
    async with service.http.put(
        f"{service.url}/api/v1/workspaces/{wid}/opt-out-policy", json={"categories": ["product_analytics"]},
        headers=admin_headers()
    ) as r:
        assert r.status == 200
        assert (await r.json())["policy_source"] == "contract"
    status, body = await switch(service, ws["token"], True)
    assert (status, body["dropped"], body["reports_affected"]) == (200, ["product_analytics"], 1)
    assert await categories_stored(db, wid) == {"billing": 1, "compliance": 1, "operational": 1}
    # widening the policy while opted out forgets the newly allowed category too
    async with service.http.put(
        f"{service.url}/api/v1/workspaces/{wid}/opt-out-policy", json={"categories": OPTIONAL}, headers=admin_headers()
    ) as r:
        assert r.status == 200
    assert await categories_stored(db, wid) == {"billing": 1, "compliance": 1}
    forgotten = [e for e in await audit_of(service, wid) if e["action"] == "data_forgotten"]
    assert forgotten[0]["categories"] == OPTIONAL and forgotten[0]["reports_affected"] == 1
    # back to the plan's policy (pro: none) ends the opt-out
    async with service.http.put(
        f"{service.url}/api/v1/workspaces/{wid}/opt-out-policy", json={"categories": None}, headers=admin_headers()
    ) as r:
        assert r.status == 200
        assert (await r.json())["opt_out"] is False


async def test_plan_policy_change_ends_opt_outs_it_no_longer_allows(service, db, report_870):
    ws = await service.register("enterprise")
    assert (await switch(service, ws["token"], True))[0] == 200
    try:
        async with service.http.patch(
            f"{service.url}/api/v1/plans/enterprise", json={"opt_out_categories": []}, headers=admin_headers()
        ) as r:
            assert r.status == 200, await r.text()
        me = await get_json(service, "/api/v1/workspaces/self", {"Authorization": f"Bearer {ws['token']}"})
        assert me["opt_out"] is False
        assert (await audit_of(service, ws["workspace_id"]))[0]["action"] == "opt_out_ended"
        async with service.http.patch(
            f"{service.url}/api/v1/plans/enterprise", json={"opt_out_categories": ["billing"]}, headers=admin_headers()
        ) as r:
            assert r.status == 422
    finally:
        async with service.http.patch(
            f"{service.url}/api/v1/plans/enterprise", json={"opt_out_categories": OPTIONAL}, headers=admin_headers()
        ) as r:
            assert r.status == 200


async def test_billing_and_compliance_work_for_opted_out_workspaces(service, db, report_870):
    ws = await service.register("enterprise")
    wid = ws["workspace_id"]
    assert (await switch(service, ws["token"], True))[0] == 200
    now = datetime.now(timezone.utc).replace(microsecond=0)
    await post_ok(service, ws["token"], make_report(report_870, "oo-1", iso(now - timedelta(hours=2)), users=7, guests=3))
    comp = await get_json(service, f"/api/v1/compliance/{wid}", await operator_headers(service, "compliance"))
    assert comp["limits"]["activeUsers"]["value"] == 7
    period = now.strftime("%Y-%m") if (now - timedelta(hours=2)).month == now.month else (now - timedelta(hours=2)).strftime("%Y-%m")
    bill = await get_json(service, f"/api/v1/billing/consumption?period={period}", await operator_headers(service, "billing"))
    row = next(r for r in bill["workspaces"] if r["workspace_id"] == wid)
    assert (row["seats"], row["guests"], row["days_reported"]) == (7, 3, 1)


async def test_opt_out_racing_reports_leaves_no_optional_rows(service, db, report_870):
    """Reports committed before the opt-out are forgotten with the rest; those
    after it are stored without the optional categories (several rounds: the
    interleaving differs each time)."""
    for _ in range(5):
        ws = await service.register("enterprise")

        async def post(i):
            r = orjson.loads(orjson.dumps(report_870))
            r["_id"] = f"race-{i}"
            return (await service.post_report(ws["token"], r))[0]

        results = await asyncio.gather(*(post(i) for i in range(40)), switch(service, ws["token"], True))
        assert set(results[:40]) == {200} and results[40][0] == 200
        assert await categories_stored(db, ws["workspace_id"]) == {"billing": 40, "compliance": 40}


async def test_audit_needs_an_operator(service):
    ws = await service.register("enterprise")
    await get_json(service, "/api/v1/audit", {"Authorization": f"Bearer {ws['token']}"}, status=403)
    await get_json(service, "/api/v1/audit?limit=0", admin_headers(), status=400)
