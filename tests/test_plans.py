"""Plan catalogue and contracts (issue 4): API, CLI, default contract on register."""

from __future__ import annotations

import calendar
import os
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone

import orjson

from tests.conftest import admin_headers, get_json, operator_headers


async def test_seeded_catalogue(service):
    h = await operator_headers(service, "billing")  # any operator role may read plans
    plans = {p["plan"]: p for p in (await get_json(service, "/api/v1/plans", h))["plans"]}
    assert set(plans) == {"community", "starter", "pro", "enterprise"}
    assert plans["starter"]["limits"]["activeUsers"] == {"max": 50, "behavior": "prevent_action"}
    assert plans["starter"]["limits"]["monthlyActiveContacts"]["max"] == 100
    assert plans["pro"]["limits"]["activeUsers"]["max"] == 500 and plans["pro"]["billing_model"] == "per_seat"
    assert plans["community"]["limits"]["privateApps"]["max"] == 3
    assert plans["community"]["limits"]["marketplaceApps"]["max"] == 5
    assert plans["community"]["limits"]["peakConnections"] == {"max": 200, "behavior": "disable_modules"}
    assert plans["enterprise"]["billing_model"] == "consumption"
    assert plans["enterprise"]["opt_out_categories"] == ["operational", "product_analytics"]
    assert [plans[p]["opt_out_categories"] for p in ("community", "starter", "pro")] == [[], [], []]
    ws = await service.register("starter")
    await get_json(service, "/api/v1/plans", {"Authorization": f"Bearer {ws['token']}"}, 403)
    await get_json(service, "/api/v1/plans/nope", h, 404)


async def test_register_gives_a_twelve_month_contract(service):
    ws = await service.register("pro")
    c = await get_json(service, f"/api/v1/workspaces/{ws['workspace_id']}/contract",
                       await operator_headers(service, "billing"))
    today = datetime.now(timezone.utc).date()
    # 12 months from the registration's UTC date; term_end is the last day (inclusive),
    # e.g. registered 2026-11-29 -> term 2026-11-29 .. 2027-11-28
    next_year = date(today.year + 1, today.month, min(today.day, calendar.monthrange(today.year + 1, today.month)[1]))
    assert c["plan"] == "pro" and c["term_start"] == today.isoformat()
    assert c["term_end"] == (next_year - timedelta(days=1)).isoformat()
    assert c["seats"] is None and c["mac_packs"] == 0 and c["limits"] == {}


async def test_edit_limit_and_contract_via_api(service):
    ws = await service.register("community")
    url = service.url
    h_billing = await operator_headers(service, "billing")
    async with service.http.put(f"{url}/api/v1/plans/community/limits/privateApps", json={"max": 4},
                                headers=h_billing) as r:
        assert r.status == 403
    try:
        async with service.http.put(f"{url}/api/v1/plans/community/limits/privateApps",
                                    json={"max": 4, "behavior": "prevent_installation"}, headers=admin_headers()) as r:
            assert r.status == 200
            assert (await r.json())["limits"]["privateApps"] == {"max": 4, "behavior": "prevent_installation"}
        async with service.http.put(f"{url}/api/v1/plans/community/limits/roomsPerGuest", json={"max": 4},
                                    headers=admin_headers()) as r:
            assert r.status == 422 and (await r.json())["violations"][0]["path"] == "kind"
    finally:
        async with service.http.put(f"{url}/api/v1/plans/community/limits/privateApps",
                                    json={"max": 3, "behavior": "prevent_action"}, headers=admin_headers()) as r:
            assert r.status == 200
    async with service.http.put(f"{url}/api/v1/workspaces/{ws['workspace_id']}/contract", headers=admin_headers(),
                                json={"plan": "pro", "term_start": "2026-03-01", "term_end": "2026-02-01"}) as r:
        assert r.status == 422 and (await r.json())["violations"][0]["path"] == "term_end"
    async with service.http.put(f"{url}/api/v1/workspaces/{ws['workspace_id']}/contract", headers=admin_headers(),
                                json={"plan": "pro", "term_start": "2026-03-01", "term_end": "2026-08-31",
                                      "seats": 20, "limits": {"guestUsers": 5}}) as r:
        assert r.status == 200, await r.text()
    # numbers beyond a PostgreSQL integer, and years out of range, are refused with their field
    for body, path in [({"seats": 2**31}, "seats"), ({"mac_packs": 2**40}, "mac_packs"),
                       ({"limits": {"activeUsers": 2**63}}, "limits.activeUsers"),
                       ({"term_end": "9999-12-31"}, "term_end")]:
        async with service.http.put(f"{url}/api/v1/workspaces/{ws['workspace_id']}/contract", headers=admin_headers(),
                                    json={"plan": "pro", "term_start": "2026-03-01", "term_end": "2026-08-31", **body}) as r:
            assert r.status == 422 and (await r.json())["violations"][0]["path"] == path, await r.text()
    async with service.http.put(f"{url}/api/v1/plans/community/limits/activeUsers", json={"max": 2**63},
                                headers=admin_headers()) as r:
        assert r.status == 422 and (await r.json())["violations"][0]["path"] == "max"
    # the registry follows the contract's plan
    assert (await get_json(service, f"/api/v1/workspaces/{ws['workspace_id']}", admin_headers()))["plan"] == "pro"


async def test_cli_plan_contract_billing_and_compliance(service, database_url):
    env = {**os.environ, "DATABASE_URL": database_url, "COLLECTOR_LOG_LEVEL": "WARNING"}

    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "collector", *args], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert {p["plan"] for p in orjson.loads(cli("plan", "list"))} >= {"starter", "enterprise"}
    wid = orjson.loads(cli("workspace", "add", "--plan", "starter"))["workspace_id"]
    c = orjson.loads(cli("contract", "set", wid, "--plan", "enterprise", "--term-start", "2026-02-01",
                         "--term-end", "2026-07-31", "--seats", "30", "--mac-packs", "1", "--limit", "guestUsers=9"))
    assert (c["plan"], c["seats"], c["mac_packs"], c["limits"]) == ("enterprise", 30, 1, {"guestUsers": 9})
    comp = orjson.loads(cli("compliance", "--workspace", wid))
    # enterprise MAC unlimited + 1 pack of 1000 = 1000; guests: the custom 9
    assert comp["limits"]["monthlyActiveContacts"]["max"] == 1000 and comp["limits"]["guestUsers"]["max"] == 9
    assert "workspace_id,label,plan,billing_model" in cli("billing", "--period", "2026-02", "--csv")
    assert orjson.loads(cli("billing", "--period", "2026-02"))["days_in_period"] == 28
