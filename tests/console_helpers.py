"""Helpers of the console tests: a browser-like HTTP client (its own cookie
jar), signing in through the real form, and labelled workspaces with this
month's reports."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone

import aiohttp

from tests.conftest import admin_headers, make_report, post_ok

CSRF_RE = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(html: str) -> str:
    found = CSRF_RE.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


class Visitor:
    """One browser: a cookie jar (unsafe=True: the server is 127.0.0.1) and no redirects followed."""

    def __init__(self, service):
        self.service = service
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def close(self) -> None:
        await self.http.close()

    async def get(self, path: str, **kw) -> tuple[int, dict, str]:
        async with self.http.get(self.service.url + path, allow_redirects=False, **kw) as r:
            return r.status, r.headers, await r.text()

    async def post(self, path: str, data: dict, **kw) -> tuple[int, dict, str]:
        async with self.http.post(self.service.url + path, data=data, allow_redirects=False, **kw) as r:
            return r.status, r.headers, await r.text()

    async def sign_in(self, token: str, next_: str = "") -> tuple[int, dict, str]:
        _, _, form = await self.get("/console/")
        return await self.post("/console/sign-in", {"token": token, "csrf": csrf_of(form), "next": next_})

    def cookie(self, name: str):
        return next((c for c in self.http.cookie_jar if c.key == name), None)


async def operator_token(service, *roles: str, label: str = "console test") -> dict:
    async with service.http.post(f"{service.url}/api/v1/operator-tokens", json={"roles": list(roles), "label": label},
                                 headers=admin_headers()) as r:
        assert r.status == 201, await r.text()
        return await r.json()


def this_month_moment() -> datetime:
    """A time of the current UTC month, at most an hour ago (the month's start if it began less than an hour ago)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    return max(now - timedelta(hours=1), now.replace(day=1, hour=0, minute=0, second=0))


async def labelled_workspaces(service, report: dict, tag: str | None = None) -> dict[str, dict]:
    """Three labelled starter workspaces (50 seats, 100 MAC) with one report of
    this month each: ``over`` (55 seats), ``near`` (46 seats, MAC 95), ``ok``
    (10 seats); keyed by that name, each ``{workspace_id, label, token}``."""
    tag = tag or uuid.uuid4().hex[:6]
    at = this_month_moment().strftime("%Y-%m-%dT%H:%M:%S.000Z")
    made = {}
    for name, users, mac in (("over", 55, 20), ("near", 46, 95), ("ok", 10, 5)):
        label = f"{name.capitalize()} Corp {tag}"
        async with service.http.post(f"{service.url}/api/v1/workspaces", json={"plan": "starter", "label": label},
                                     headers=admin_headers()) as r:
            ws = await r.json()
        await post_ok(service, ws["token"], make_report(report, f"console-{ws['workspace_id']}", at,
                                                        users=users, guests=2, mac=mac, peak=7))
        made[name] = {"workspace_id": ws["workspace_id"], "label": label, "token": ws["token"]}
    return made
