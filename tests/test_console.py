"""The console over HTTP, as a browser without JavaScript sees it (issue 13):
sessions, cookies, CSRF, roles, the anonymous visitor, revocation, expiry,
escaping, the CSV download. Real server and database; the browser tests
(``test_console_browser.py``) click through the same pages in Chromium."""

from __future__ import annotations

import csv
import io
import ssl
import subprocess
import uuid
from datetime import datetime, timezone

import aiohttp
import pytest
from aiohttp import web

from collector.accounts import sessions
from collector.http.app import make_app
from tests.conftest import ADMIN_TOKEN, admin_headers, make_settings
from tests.console_helpers import Visitor, csrf_of, labelled_workspaces, operator_token

PAGES = ["/console/compliance", "/console/billing", "/console/billing.csv", "/console/quarantine",
         "/console/catalogue"]


@pytest.fixture
async def visitor(service):
    v = Visitor(service)
    yield v
    await v.close()


async def test_the_anonymous_visitor_sees_only_the_sign_in_form(service, visitor, report_870):
    made = await labelled_workspaces(service, report_870)
    wid = made["over"]["workspace_id"]
    for path in PAGES + [f"/console/workspaces/{wid}"]:
        status, headers, body = await visitor.get(path)
        assert status == 303 and headers["Location"].startswith("/console/?next="), path
        assert made["over"]["label"] not in body and wid not in body
    status, _, body = await visitor.get("/console/")
    assert status == 200 and '<input type="password" id="token" name="token"' in body
    assert made["over"]["label"] not in body
    # a POST without a session: no edit, no data
    for path in (f"/console/workspaces/{wid}/label", f"/console/workspaces/{wid}/opt-out"):
        status, _, body = await visitor.post(path, {"label": "hacked", "csrf": "x"})
        assert status == 401 and made["over"]["label"] not in body
    async with service.http.get(f"{service.url}/api/v1/workspaces/{wid}", headers=admin_headers()) as r:
        assert (await r.json())["label"] == made["over"]["label"]
    # /console redirects to /console/; an unknown console page is a 404 page (no session needed to say so)
    async with service.http.get(service.url + "/console", allow_redirects=False) as r:
        assert r.status == 308 and r.headers["Location"] == "/console/"
    status, _, body = await visitor.get("/console/no-such-page")
    assert status == 404 and "Not found" in body
    status, headers, _ = await visitor.get("/console/sign-in")
    assert status == 405 and headers["Allow"] == "POST"


async def test_sign_in_sets_a_strict_http_only_expiring_cookie_and_signs_out(service, visitor, db):
    status, headers, _ = await visitor.sign_in(ADMIN_TOKEN)
    assert status == 303 and headers["Location"] == "/console/compliance"
    set_cookie = [v for k, v in headers.items() if k.lower() == "set-cookie" and v.startswith("collector_console=")][0]
    attrs = {a.strip().split("=")[0].lower(): a.strip() for a in set_cookie.split(";")}
    assert "httponly" in attrs and attrs["samesite"] == "SameSite=Strict" and attrs["path"] == "Path=/console/"
    assert attrs["max-age"] == "Max-Age=28800" and "secure" not in attrs  # plain HTTP here: no Secure
    session_id = visitor.cookie("collector_console").value
    stored = await db.fetchval("SELECT count(*) FROM console_sessions WHERE session_hash = $1",
                               sessions.session_hash(session_id))
    assert stored == 1
    assert await db.fetchval("SELECT count(*) FROM console_sessions WHERE session_hash = $1::bytea",
                             session_id.encode()) == 0  # only the hash is stored
    status, _, page = await visitor.get("/console/compliance")
    assert status == 200
    status, headers, _ = await visitor.post("/console/sign-out", {"csrf": csrf_of(page)})
    assert status == 303 and headers["Location"] == "/console/"
    assert await db.fetchval("SELECT count(*) FROM console_sessions WHERE session_hash = $1",
                             sessions.session_hash(session_id)) == 0
    # the old cookie, replayed by hand, opens nothing
    async with aiohttp.ClientSession(cookies={"collector_console": session_id}) as other:
        async with other.get(service.url + "/console/compliance", allow_redirects=False) as r:
            assert r.status == 303


async def test_wrong_tokens_get_the_form_again_with_one_message(service, visitor):
    ws_token = (await service.register("starter"))["token"]
    revoked = await operator_token(service, "billing")
    async with service.http.post(f"{service.url}/api/v1/operator-tokens/{revoked['ref']}/revoke",
                                 headers=admin_headers()) as r:
        assert r.status == 200
    for token in ("wsc_op_unknown", ws_token, revoked["token"], ""):
        status, headers, body = await visitor.sign_in(token)
        assert status == 401 and "That is not a valid operator token." in body, token
        assert visitor.cookie("collector_console") is None


async def test_csrf_is_required_and_bound_to_the_browser(service, visitor, report_870):
    made = await labelled_workspaces(service, report_870)
    wid = made["ok"]["workspace_id"]
    _, _, form = await visitor.get("/console/")
    status, _, body = await visitor.post("/console/sign-in", {"token": ADMIN_TOKEN})
    assert status == 403 and "Form expired" in body  # no token
    status, _, _ = await visitor.post("/console/sign-in", {"token": ADMIN_TOKEN, "csrf": csrf_of(form) + "x"})
    assert status == 403  # a token that does not verify
    other = Visitor(service)
    try:
        await other.sign_in(ADMIN_TOKEN)
        _, _, other_page = await other.get(f"/console/workspaces/{wid}")
        await visitor.sign_in(ADMIN_TOKEN)
        # a valid token of another session does not work in this one
        status, _, _ = await visitor.post(f"/console/workspaces/{wid}/label",
                                          {"label": "Cross-site", "csrf": csrf_of(other_page)})
        assert status == 403
        _, _, page = await visitor.get(f"/console/workspaces/{wid}")
        status, headers, _ = await visitor.post(f"/console/workspaces/{wid}/label",
                                                {"label": "Renamed Corp", "csrf": csrf_of(page)})
        assert status == 303 and headers["Location"] == f"/console/workspaces/{wid}?saved=label"
        _, _, page = await visitor.get(headers["Location"])
        assert "Renamed Corp" in page and "Label saved." in page
    finally:
        await other.close()


async def test_roles_open_their_pages_and_403_says_which_role(service, visitor, report_870):
    made = await labelled_workspaces(service, report_870)
    wid = made["near"]["workspace_id"]
    billing = await operator_token(service, "billing")
    status, headers, _ = await visitor.sign_in(billing["token"])
    assert headers["Location"] == "/console/billing"
    status, _, page = await visitor.get("/console/billing")
    assert status == 200 and made["near"]["label"] in page
    assert f'href="/console/workspaces/{wid}"' not in page  # no link into a page the role cannot open
    for path in ("/console/compliance", f"/console/workspaces/{wid}", "/console/quarantine"):
        status, _, body = await visitor.get(path)
        assert status == 403 and "needs the &#39;compliance&#39; role" in body and "billing" in body, path
        assert made["near"]["label"] not in body
    assert (await visitor.get("/console/catalogue"))[0] == 200
    # a compliance operator: the board and the workspace page, not billing, no edit forms
    comp = Visitor(service)
    try:
        status, headers, _ = await comp.sign_in((await operator_token(service, "compliance"))["token"])
        assert headers["Location"] == "/console/compliance"
        status, _, page = await comp.get(f"/console/workspaces/{wid}")
        assert status == 200 and made["near"]["label"] in page and "Edit (admin)" not in page
        status, _, _ = await comp.post(f"/console/workspaces/{wid}/label", {"label": "x", "csrf": csrf_of(page)})
        assert status == 403
        assert (await comp.get("/console/billing"))[0] == 403
        assert (await comp.get("/console/billing.csv"))[0] == 403
    finally:
        await comp.close()


async def test_revoking_the_token_ends_its_session_at_once(service, visitor):
    token = await operator_token(service, "compliance")
    await visitor.sign_in(token["token"])
    assert (await visitor.get("/console/compliance"))[0] == 200
    async with service.http.post(f"{service.url}/api/v1/operator-tokens/{token['ref']}/revoke",
                                 headers=admin_headers()) as r:
        assert r.status == 200
    status, headers, _ = await visitor.get("/console/compliance")
    assert status == 303 and headers["Location"].startswith("/console/?next=")
    assert visitor.cookie("collector_console") is None  # the stale cookie is removed


async def test_an_expired_session_is_over(service, visitor, db):
    await visitor.sign_in(ADMIN_TOKEN)
    session_id = visitor.cookie("collector_console").value
    await db.execute("UPDATE console_sessions SET expires_at = now() - interval '1 second' WHERE session_hash = $1",
                     sessions.session_hash(session_id))
    assert (await visitor.get("/console/compliance"))[0] == 303


async def test_next_is_followed_only_within_the_console(service, visitor):
    status, headers, _ = await visitor.sign_in(ADMIN_TOKEN, next_="/console/billing?period=2024-02")
    assert headers["Location"] == "/console/billing?period=2024-02"
    for evil in ("https://evil.example/", "//evil.example/console/", "/console/\\evil", "/api/v1/billing/consumption"):
        v = Visitor(service)
        try:
            status, headers, _ = await v.sign_in(ADMIN_TOKEN, next_=evil)
            assert headers["Location"] == "/console/compliance", evil
        finally:
            await v.close()


async def test_labels_are_escaped_and_headers_lock_the_page_down(service, visitor):
    async with service.http.post(f"{service.url}/api/v1/workspaces", headers=admin_headers(),
                                 json={"plan": "starter", "label": '<script>alert("x")</script> & Co'}) as r:
        wid = (await r.json())["workspace_id"]
    await visitor.sign_in(ADMIN_TOKEN)
    status, headers, page = await visitor.get(f"/console/workspaces/{wid}")
    assert status == 200
    assert "<script>" not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co" in page
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert "script-src" not in headers["Content-Security-Policy"]  # no script at all
    assert headers["Cache-Control"] == "no-store" and headers["X-Frame-Options"] == "DENY"
    status, headers, _ = await visitor.get(f"/console/workspaces/{uuid.uuid4()}")
    assert status == 404
    assert (await visitor.get("/console/workspaces/not-a-uuid"))[0] == 404


async def test_billing_page_defaults_to_this_month_with_totals_and_its_csv(service, visitor, report_870):
    made = await labelled_workspaces(service, report_870)
    await visitor.sign_in((await operator_token(service, "billing"))["token"])
    month = datetime.now(timezone.utc).strftime("%Y-%m")
    status, _, page = await visitor.get("/console/billing")
    assert status == 200 and f'name="period" value="{month}"' in page
    assert f'href="/console/billing.csv?period={month}"' in page
    status, headers, body = await visitor.get(f"/console/billing.csv?period={month}")
    assert status == 200 and headers["Content-Type"] == "text/csv; charset=utf-8"
    assert headers["Content-Disposition"] == f'attachment; filename="consumption-{month}.csv"'
    rows = {r["workspace_id"]: r for r in csv.DictReader(io.StringIO(body))}
    over = rows[made["over"]["workspace_id"]]
    # starter: 50 seats; 55 reported: 5 over; MAC 20 of 100: 0 over
    assert (over["label"], over["seats"], over["seats_overage"], over["mac_overage"]) == (made["over"]["label"], "55", "5", "0")
    status, _, page = await visitor.get("/console/billing?period=2024-13")
    assert status == 400 and "period" in page
    assert (await visitor.get("/console/billing.csv?period=2024-13"))[0] == 400


def _self_signed(tmp_path) -> ssl.SSLContext:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def test_over_tls_the_cookie_is_secure(database_url, data_dir, service, tmp_path):
    """The same application behind TLS (a real TLS listener on a free port)."""
    runner = web.AppRunner(make_app(make_settings(data_dir), database_url), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=_self_signed(tmp_path))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            base = f"https://127.0.0.1:{port}/console"
            async with http.get(base + "/", ssl=False) as r:
                form = await r.text()
                assert "Secure" in r.headers["Set-Cookie"]  # the pre-session cookie too
            async with http.post(base + "/sign-in", data={"token": ADMIN_TOKEN, "csrf": csrf_of(form)}, ssl=False,
                                 allow_redirects=False) as r:
                assert r.status == 303
                cookie = [v for k, v in r.headers.items() if k.lower() == "set-cookie" and v.startswith("collector_console=")][0]
                assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    finally:
        await runner.cleanup()


async def test_quarantine_and_catalogue_pages_show_paths_and_reasons_never_values(service, visitor, report_870):
    made = await labelled_workspaces(service, report_870)
    ws = made["ok"]
    bad = dict(report_870, _id=f"refused-{ws['workspace_id']}", totalRooms="secret-value-4711@example.com")
    status, _, _ = await service.post_report(ws["token"], bad)
    assert status == 422
    await visitor.sign_in((await operator_token(service, "compliance"))["token"])
    status, _, page = await visitor.get("/console/quarantine?days=7")
    assert status == 200 and "<code>totalRooms</code>" in page and "schema_violation" in page
    assert "secret-value-4711" not in page
    status, _, page = await visitor.get(f"/console/workspaces/{ws['workspace_id']}")
    assert status == 200 and "<code>totalRooms</code>" in page and "secret-value-4711" not in page
    status, _, page = await visitor.get("/console/catalogue?category=billing&q=activeUsers")
    assert status == 200 and "<code>activeUsers</code>" in page and 'data-category="operational"' not in page
    newer = dict(report_870, _id=f"newer-{ws['workspace_id']}", consoleNewCounter=3, version="8.9.0")
    newer["Jane Doe"] = "secret-value-4712@example.com"
    assert (await service.post_report(ws["token"], newer))[0] == 200  # unknown fields: dropped, listed as drift
    status, _, page = await visitor.get("/console/catalogue")
    assert status == 200 and "<code>consoleNewCounter</code>" in page and "8.9.0" in page
    assert "secret-value-4712" not in page and "Jane Doe" not in page


async def test_forms_are_read_like_every_body_bounded_and_never_a_500(service, visitor):
    await visitor.sign_in(ADMIN_TOKEN)
    url = service.url + "/console/sign-out"
    for headers, data, status in (
        ({"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"}, b"not gzip at all", 400),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"csrf=" + b"x" * (70 * 1024), 413),
        ({"Content-Type": "application/json"}, b'{"csrf": "x"}', 415),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"csrf=%ff%fe", 400),
    ):
        async with visitor.http.post(url, data=data, headers=headers, allow_redirects=False) as r:
            assert r.status == status, (headers, r.status)
            assert "text/html" in r.headers["Content-Type"]
    assert (await visitor.get("/console/compliance"))[0] == 200  # still signed in: nothing was accepted
