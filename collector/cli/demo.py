"""``collector demo``: something for the console to show, now.

Registers a few labelled workspaces on different plans (directly: CLI
access is admin access), gives some a contract (purchased seats, MAC
packs), and posts real-shaped statistics records (copies of a Rocket.Chat
8.7.0 record, ``demo_report.json``, with new ``_id``s, counts and
``createdAt``) dated one a day over the last weeks through the real HTTP
API: to ``--url`` when given (a running ``collector serve``), else to the
collector's own application started in this process on a free 127.0.0.1
port, on the same database. Usage is dated by each record's ``createdAt``,
so these records fill this month's billing and the last weeks' charts.
A few records are refused on purpose (an e-mail address in a known field, a
value of the wrong type), so the quarantine shows something; the first
workspace's last record carries a field the catalogue does not know (kept out,
listed by the catalogue drift report); one enterprise workspace
switches its opt-out on (audited). Makes two operator tokens (roles
``billing`` and ``compliance``) and prints them once, with everything
registered, as JSON.

Running it again adds another set of workspaces (labels repeat).
"""

from __future__ import annotations

import asyncio
import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID

import aiohttp
import asyncpg
import click
import orjson

from collector.accounts import optout, plans, tokens, workspaces
from collector.cli.common import database_url, main, print_json, settings
from collector.ops import database as db
from collector.ops import logs

TEMPLATE = Path(__file__).with_name("demo_report.json")


@dataclass(frozen=True)
class Profile:
    """One demo workspace: its label and plan, a contract change, and its
    counts on day ``i`` of ``n`` (0 = the first day): a start and an end
    value each, drawn as a line with a little noise."""

    label: str
    plan: str
    seats: tuple[int, int]
    guests: tuple[int, int] = (0, 0)
    mac: tuple[int, int] = (0, 0)
    peak: tuple[int, int] = (5, 10)
    contract: dict | None = None
    stops_days_ago: int = 0  # > 0: the last report is that many days old (stale)
    opt_out: bool = False


PROFILES = (
    Profile("Acme Corp", "starter", seats=(31, 46), guests=(2, 6), mac=(40, 64), peak=(20, 38)),
    Profile("Globex Logistics", "pro", seats=(98, 131), guests=(10, 14), mac=(70, 104), peak=(60, 90),
            contract={"seats": 120}),
    Profile("Initech", "enterprise", seats=(350, 382), guests=(40, 55), mac=(1200, 1530), peak=(300, 340),
            contract={"seats": 400, "mac_packs": 2}, opt_out=True),
    Profile("Umbrella Health", "starter", seats=(50, 50), guests=(1, 1), mac=(88, 97), peak=(25, 30)),
    Profile("Hooli Labs", "community", seats=(120, 160), guests=(0, 3), peak=(150, 196)),
    Profile("Stark Industries", "pro", seats=(210, 230), guests=(5, 8), mac=(10, 20), peak=(90, 110),
            stops_days_ago=4),
)


def profile(i: int) -> Profile:
    """The i-th demo workspace (past the named ones: plain community workspaces)."""
    if i < len(PROFILES):
        return PROFILES[i]
    return Profile(f"Demo workspace {i + 1}", "community", seats=(5 + i, 12 + i), peak=(3, 9))


def _value(span: tuple[int, int], day: int, days: int, rnd: random.Random) -> int:
    low, high = span
    if low == high:
        return low
    base = low + (high - low) * day / max(1, days - 1)
    return max(0, round(base + rnd.uniform(-0.02, 0.02) * high))


def record(template: dict, p: Profile, day: int, days: int, at: datetime, rnd: random.Random) -> dict:
    """A copy of the template record for day ``day`` of ``days`` of ``p``, dated ``at``."""
    r = orjson.loads(orjson.dumps(template))
    users, guests = _value(p.seats, day, days, rnd), _value(p.guests, day, days, rnd)
    if day == days - 1:  # the last day reaches the profile's end values exactly
        users, guests = p.seats[1], p.guests[1]
    r["_id"] = secrets.token_hex(12)
    r["createdAt"] = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    r["activeUsers"], r["activeGuests"] = users, guests
    r["nonActiveUsers"] = users // 10
    r["totalUsers"] = users + guests + r["nonActiveUsers"]
    r["onlineUsers"] = users // 3
    r["omnichannelContactsBySource"]["contactsCount"] = p.mac[1] if day == days - 1 else _value(p.mac, day, days, rnd)
    r["dailyPeakConnections"] = p.peak[1] if day == days - 1 else _value(p.peak, day, days, rnd)
    return r


def refused_records(template: dict, at: datetime) -> list[dict]:
    """Two records the privacy gate refuses: an e-mail address where a deployment platform
    belongs, and a count that is text. (A field not in the catalogue is dropped, not refused.)"""
    email = orjson.loads(orjson.dumps(template))
    email.update(_id=secrets.token_hex(12), createdAt=at.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    email["deploy"] = {**email.get("deploy", {}), "platform": "ops@acme.example"}
    wrong = orjson.loads(orjson.dumps(template))
    wrong.update(_id=secrets.token_hex(12), createdAt=at.strftime("%Y-%m-%dT%H:%M:%S.000Z"), totalRooms="many")
    return [email, wrong]


async def _post(http: aiohttp.ClientSession, url: str, token: str, body: dict) -> int:
    async with http.post(url, data=orjson.dumps(body), headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"}) as r:
        await r.read()
        return r.status


async def run(count: int, days: int, url: str | None, seed: int) -> dict:
    cfg = settings()
    dsn = database_url(cfg)
    template = orjson.loads(TEMPLATE.read_bytes())
    now = datetime.now(timezone.utc)
    conn = await asyncpg.connect(dsn)
    try:
        await db.migrate(conn)
        made = []
        for i in range(count):
            p = profile(i)
            ws = await workspaces.register(conn, p.plan, p.label)
            # a term that began before the first record, so the true-up sees them all
            start = (now - timedelta(days=days + 30)).date()
            term = {"term_start": start, "term_end": start + timedelta(days=364)}
            await plans.update_contract(conn, UUID(ws["workspace_id"]), {**term, **(p.contract or {})}, actor="cli")
            made.append((p, ws))
        billing_token = await tokens.create_operator_token(conn, ["billing"], "demo")
        compliance_token = await tokens.create_operator_token(conn, ["compliance"], "demo")
    finally:
        await conn.close()

    runner = None
    if url is None:
        from aiohttp import web

        from collector.http.app import make_app

        runner = web.AppRunner(make_app(cfg, dsn), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}"
    target = url.rstrip("/") + "/api/v1/statistics"
    first_day = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    accepted = refused = 0
    try:
        async with aiohttp.ClientSession() as http:
            async def one(n: int, p: Profile, ws: dict) -> tuple[int, int]:
                ok = bad = 0
                local = random.Random(seed * 1000 + n)
                last = days - 1 - p.stops_days_ago
                for d in range(last + 1):
                    at = first_day + timedelta(days=d, hours=2, minutes=7 * n + local.randint(0, 30))
                    at = min(at, now - timedelta(minutes=5))
                    body = record(template, p, d, last + 1, at, local)
                    if n == 0 and d == last:  # a field of a newer release: accepted, in the drift report
                        body["demoNewField"] = 1
                    status = await _post(http, target, ws["token"], body)
                    ok += status == 200
                if n % 2 == 0:
                    for body in refused_records(template, now - timedelta(hours=1 + n)):
                        bad += await _post(http, target, ws["token"], body) == 422
                return ok, bad

            for ok, bad in await asyncio.gather(*(one(n, p, ws) for n, (p, ws) in enumerate(made))):
                accepted, refused = accepted + ok, refused + bad
    finally:
        if runner is not None:
            await runner.cleanup()

    conn = await asyncpg.connect(dsn)
    try:
        for p, ws in made:
            if p.opt_out:
                await optout.set_opt_out(conn, UUID(ws["workspace_id"]), True, "cli")
    finally:
        await conn.close()
    return {
        "workspaces": [{"workspace_id": ws["workspace_id"], "label": p.label, "plan": p.plan} for p, ws in made],
        "reports_accepted": accepted,
        "reports_refused": refused,
        "days": days,
        "operator_tokens": {"billing": billing_token["token"], "compliance": compliance_token["token"]},
        "console": f"http://{cfg.host}:{cfg.port}/console/",
        "note": "sign in to the console with one of the operator tokens (shown once); CLI access is admin access",
    }


@main.command()
@click.option("--workspaces", "count", default=len(PROFILES), show_default=True, type=click.IntRange(1, 50),
              help="How many demo workspaces to register.")
@click.option("--days", default=28, show_default=True, type=click.IntRange(1, 90),
              help="One record a day over this many days, up to today.")
@click.option("--url", default=None,
              help="Post through this running collector (e.g. http://127.0.0.1:8080); default: start one in this process.")
@click.option("--seed", default=13, show_default=True, type=int, help="Seed of the counts' noise.")
def demo(count: int, days: int, url: str | None, seed: int) -> None:
    """Register labelled demo workspaces and post records dated over the last weeks."""
    cfg = settings()
    logs.configure("WARNING", cfg.log_json)
    print_json(asyncio.run(run(count, days, url, seed)))
