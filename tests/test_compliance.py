"""Compliance (issue 4): statuses, since, lifting, stale, roles. Real server and DB."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson

from tests.conftest import (
    get_json,
    make_report,
    operator_headers,
    post_ok,
    put_contract,
)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def test_status_follows_the_latest_snapshot_and_lifts(service, report_870):
    ws = await service.register("starter")  # starter: 50 users, 100 MAC, 3 private / 5 marketplace apps
    wid, token = ws["workspace_id"], ws["token"]
    h = await operator_headers(service, "compliance")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    day = [now - timedelta(days=5 - i, hours=1) for i in range(6)]  # five days ago .. today, 1 h ago

    seen = {}  # i -> (before, after) the post of record i: when the collector saw it

    async def post(i, users, **kw):
        before = datetime.now(timezone.utc)
        await post_ok(service, token, make_report(report_870, f"cmp-{wid}-{i}", iso(day[i]), users=users, **kw))
        seen[i] = (before, datetime.now(timezone.utc))
        return await get_json(service, f"/api/v1/compliance/{wid}", h)

    def since(c, kind="activeUsers"):
        return datetime.fromisoformat(c["limits"][kind]["since"])

    c = await post(0, 30, mac=10, apps_active=6, apps_private=2)
    au = c["limits"]["activeUsers"]
    # 30 / 50 = 60.0 %: ok
    assert (au["value"], au["max"], au["percent"], au["status"]) == (30, 50, 60.0, "ok")
    # apps: private 2 of 3 = 66.7 %; marketplace = totalActive 6 - private 2 = 4 of 5 = 80.0 %
    assert (c["limits"]["privateApps"]["value"], c["limits"]["privateApps"]["percent"]) == (2, 66.7)
    assert (c["limits"]["marketplaceApps"]["value"], c["limits"]["marketplaceApps"]["percent"]) == (4, 80.0)
    assert c["limits"]["activeUsers"]["behavior"] == "prevent_action"
    c = await post(1, 45)  # 45 / 50 = 90 %: near
    assert (c["limits"]["activeUsers"]["status"], c["status"]) == ("near", "near")
    c = await post(2, 50)  # 50 == 50: at
    assert c["limits"]["activeUsers"]["status"] == "at" and c["status"] == "at"
    c = await post(3, 51)  # 51 > 50: over, since the collector saw that record (not its createdAt, 2 days ago)
    assert c["limits"]["activeUsers"]["status"] == "over" and c["status"] == "over"
    over_since = since(c)
    assert seen[3][0] <= over_since <= seen[3][1]
    c = await post(4, 51)  # still over: since unchanged
    assert since(c) == over_since
    over = await get_json(service, "/api/v1/compliance?status=over", h)
    assert wid in {w["workspace_id"] for w in over["workspaces"]}

    # A late record for an earlier day (day 1) does not change the current state.
    await post_ok(service, token, make_report(report_870, f"cmp-{wid}-late", iso(day[1] + timedelta(hours=1)), users=5))
    c = await get_json(service, f"/api/v1/compliance/{wid}", h)
    assert c["limits"]["activeUsers"]["value"] == 51 and c["status"] == "over"

    c = await post(5, 40, apps_active=False)  # back under: 40 / 50 = 80 %: ok at once
    assert (c["limits"]["activeUsers"]["status"], c["limits"]["activeUsers"]["percent"]) == ("ok", 80.0)
    assert seen[5][0] <= since(c) <= seen[5][1]
    assert c["limits"]["marketplaceApps"]["value"] == 0  # apps false: no app runs
    assert c["stale"] is False and datetime.fromisoformat(c["last_report_at"]) == day[5]
    over = await get_json(service, "/api/v1/compliance?status=over", h)
    assert wid not in {w["workspace_id"] for w in over["workspaces"]}

    # A custom contract limit re-evaluates at once: 40 == 40 -> at.
    await put_contract(service, wid, plan="starter", term_start="2026-01-01", term_end="2026-12-31",
                       limits={"activeUsers": 40})
    c = await get_json(service, f"/api/v1/compliance/{wid}", h)
    assert (c["limits"]["activeUsers"]["max"], c["limits"]["activeUsers"]["status"]) == (40, "at")


async def test_no_report_for_more_than_48h_is_stale(service, report_870):
    ws = await service.register("pro")
    h = await operator_headers(service, "compliance")
    old = datetime.now(timezone.utc) - timedelta(hours=49)
    await post_ok(service, ws["token"], make_report(report_870, "stale-" + ws["workspace_id"], iso(old), users=3))
    c = await get_json(service, f"/api/v1/compliance/{ws['workspace_id']}", h)
    assert c["stale"] is True and c["status"] == "ok"
    stale = await get_json(service, "/api/v1/compliance?status=stale", h)
    assert ws["workspace_id"] in {w["workspace_id"] for w in stale["workspaces"]}
    fresh = await service.register("pro")  # registered now, never reported: not stale yet, status unknown
    c = await get_json(service, f"/api/v1/compliance/{fresh['workspace_id']}", h)
    assert (c["stale"], c["status"], c["last_report_at"]) == (False, "unknown", None)


async def test_compliance_roles_and_errors(service):
    ws = await service.register("starter")
    await get_json(service, "/api/v1/compliance", await operator_headers(service, "billing"), 403)
    await get_json(service, f"/api/v1/compliance/{ws['workspace_id']}", {"Authorization": f"Bearer {ws['token']}"}, 403)
    h = await operator_headers(service, "compliance")
    body = await get_json(service, "/api/v1/compliance?status=bad", h, 400)
    assert body["violations"][0]["path"] == "status"
    await get_json(service, "/api/v1/compliance/00000000-0000-0000-0000-000000000000", h, 404)
    listing = await get_json(service, "/api/v1/compliance", h)
    assert ws["workspace_id"] in {w["workspace_id"] for w in listing["workspaces"]}
    assert orjson.dumps(listing)  # plain JSON


async def test_listing_items_are_the_one_workspace_answer_without_the_plans_behavior(service, report_870):
    ws = await service.register("starter")
    wid = ws["workspace_id"]
    h = await operator_headers(service, "compliance")
    at = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    before = datetime.now(timezone.utc)
    await post_ok(service, ws["token"], make_report(report_870, f"lean-{wid}", iso(at), users=46, mac=10))
    after = datetime.now(timezone.utc)
    one = await get_json(service, f"/api/v1/compliance/{wid}", h)
    listing = await get_json(service, "/api/v1/compliance", h)
    item = next(w for w in listing["workspaces"] if w["workspace_id"] == wid)
    assert list(item) == ["workspace_id", "label", "plan", "status", "stale", "last_report_at", "limits"]
    assert list(item["limits"]) == ["activeUsers", "guestUsers", "monthlyActiveContacts", "privateApps",
                                    "marketplaceApps", "peakConnections"]
    near_since = item["limits"]["activeUsers"].pop("since")
    assert item["limits"]["activeUsers"] == {"value": 46, "max": 50, "percent": 92.0, "status": "near"}
    assert before <= datetime.fromisoformat(near_since) <= after  # when the collector saw it
    item["limits"]["activeUsers"]["since"] = near_since
    # The one-workspace answer adds the plan's behavior per kind (starter: as in plan_limits).
    assert one["limits"]["activeUsers"]["behavior"] == "prevent_action"
    assert one["limits"]["peakConnections"]["behavior"] == "disable_modules"
    for limit in one["limits"].values():
        limit.pop("behavior")
    assert one == item
    assert item["last_report_at"] == at.isoformat() and item["status"] == "near"
    # The filtered listing is the same item.
    near = await get_json(service, "/api/v1/compliance?status=near", h)
    assert next(w for w in near["workspaces"] if w["workspace_id"] == wid) == item
    assert all(w["status"] == "near" for w in near["workspaces"])
