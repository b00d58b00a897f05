"""The `collector` command against the real test database (subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson


def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "COLLECTOR_LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "-m", "collector", *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_workspace_add_rotate_revoke(database_url, service, db, report_870):
    added = run_cli(database_url, "workspace", "add", "--plan", "starter")
    assert added.returncode == 0, added.stderr
    ws = orjson.loads(added.stdout)
    assert ws["plan"] == "starter" and ws["token"].startswith("wsc_ws_")
    assert (await service.post_report(ws["token"], report_870))[0] == 200

    rotated = orjson.loads(run_cli(database_url, "workspace", "rotate", ws["workspace_id"]).stdout)
    assert (await service.post_report(ws["token"], report_870))[0] == 401
    assert (await service.post_report(rotated["token"], report_870))[0] == 200

    assert run_cli(database_url, "workspace", "revoke", ws["workspace_id"]).returncode == 0
    assert (await service.post_report(rotated["token"], report_870))[0] == 401
    shown = orjson.loads(run_cli(database_url, "workspace", "show", ws["workspace_id"]).stdout)
    assert shown["revoked_at"] is not None


def test_unknown_plan_fails_with_a_message(database_url, service):
    out = run_cli(database_url, "workspace", "add", "--plan", "platinum")
    assert out.returncode == 1
    assert "UnknownPlan" in out.stderr


async def test_quarantine_list(database_url, service, report_870):
    ws = await service.register()
    report_870["totalUsers"] = "many"
    report_870["activeUsers"] = "many"
    assert (await service.post_report(ws["token"], report_870))[0] == 422
    out = run_cli(database_url, "quarantine", "list", "--workspace", ws["workspace_id"])
    assert out.returncode == 0, out.stderr
    items = orjson.loads(out.stdout)
    assert items[0]["reason"] == "schema_violation"
    assert "many" not in out.stdout


def test_serve_refuses_a_port_in_use(database_url):
    import socket

    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as another collector's workers would
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = run_cli(database_url, "serve", "--port", str(port), "--workers", "2")
    assert out.returncode == 1
    assert f"127.0.0.1:{port} is in use" in out.stderr
