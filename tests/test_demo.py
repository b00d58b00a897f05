"""``collector demo`` (issue 13 item 3): labelled workspaces on different plans
with records of the last days, posted through the real HTTP API, so the
console has something to show at once."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import orjson

from tests.conftest import admin_headers, get_json


async def test_demo_fills_billing_compliance_and_the_quarantine(database_url, data_dir, service, db):
    env = {**os.environ, "DATABASE_URL": database_url, "COLLECTOR_DATA_DIR": str(data_dir),
           "COLLECTOR_LOG_LEVEL": "WARNING"}
    out = subprocess.run([sys.executable, "-m", "collector", "demo", "--workspaces", "3", "--days", "5"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    demo = orjson.loads(out.stdout)
    # Acme Corp (starter), Globex Logistics (pro, 120 seats bought), Initech (enterprise, opted out)
    assert [(w["label"], w["plan"]) for w in demo["workspaces"]] == [
        ("Acme Corp", "starter"), ("Globex Logistics", "pro"), ("Initech", "enterprise")]
    # one record a day for 5 days each; the 1st and 3rd workspace also send 2 refused records
    assert (demo["reports_accepted"], demo["reports_refused"]) == (15, 4)
    ids = [w["workspace_id"] for w in demo["workspaces"]]
    for wid in ids:
        days = await db.fetch("SELECT day FROM daily_snapshots WHERE workspace_id = $1::uuid ORDER BY day", wid)
        today = datetime.now(timezone.utc).date()
        assert [d["day"] for d in days] == [today - timedelta(days=4 - i) for i in range(5)]
    # the printed operator tokens work, each for its role
    billing = {"Authorization": f"Bearer {demo['operator_tokens']['billing']}"}
    compliance = {"Authorization": f"Bearer {demo['operator_tokens']['compliance']}"}
    listing = await get_json(service, "/api/v1/compliance?label=globex", compliance)
    globex = next(w for w in listing["workspaces"] if w["workspace_id"] == ids[1])
    # the last day reaches the profile's end values: 131 seats of 120 bought, 104 MAC of 100
    assert (globex["limits"]["activeUsers"]["value"], globex["limits"]["activeUsers"]["max"]) == (131, 120)
    assert globex["status"] == "over" and globex["stale"] is False
    await get_json(service, "/api/v1/compliance", billing, status=403)
    row = next(w for w in (await get_json(service, "/api/v1/billing/consumption", billing))["workspaces"]
               if w["workspace_id"] == ids[0])
    assert row["label"] == "Acme Corp" and row["days_reported"] >= 1
    opted = await get_json(service, f"/api/v1/workspaces/{ids[2]}/opt-out", compliance)
    assert opted["opt_out"] is True
    refused = await db.fetch("SELECT violations::text FROM quarantine WHERE workspace_id = ANY($1::uuid[])", ids)
    assert len(refused) == 4 and all("totalRooms" in r[0] or "looks_like_email" in r[0] for r in refused)
    drift = (await get_json(service, "/api/v1/catalogue/drift", admin_headers()))["items"]
    assert any(i["path"] == "demoNewField" and i["reports"] >= 1 for i in drift)
