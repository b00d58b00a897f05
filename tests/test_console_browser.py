"""The console in a real browser (issue 13): Playwright for Python driving
Debian's Chromium (``/usr/bin/chromium``; ``playwright install`` is never
run) against the real server of the ``service`` fixture. A billing person
gets this month's consumption and its CSV; a compliance person sees which
labelled workspaces are over or near which limit, filters, follows a link;
roles, the anonymous visitor, an admin edit and signing out.

Without Chromium these tests skip, saying how to install it; under CI
(``CI`` set, as ``.ci/run`` does, which installs it) they fail instead.
"""

from __future__ import annotations

import csv
import io
import os
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.console_helpers import labelled_workspaces, operator_token, this_month_moment

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run under CI: {why}")
    pytest.skip(f"browser tests skipped: {why}")


@pytest.fixture(scope="session")
async def browser():
    if not Path(CHROMIUM).exists():
        _unavailable(f"no Chromium at {CHROMIUM} (install it: apt-get install -y chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("Playwright for Python is missing (uv sync installs the dev dependencies)")
    pw = await async_playwright().start()
    b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield b
    await b.close()
    await pw.stop()


@pytest.fixture
async def page(browser):
    context = await browser.new_context(accept_downloads=True)
    p = await context.new_page()
    p.set_default_timeout(15_000)
    yield p
    await context.close()


async def sign_in(page, service, token: str) -> None:
    await page.goto(service.url + "/console/")
    await page.fill("input[name=token]", token)
    await page.get_by_role("button", name="Sign in").click()


async def test_a_billing_person_gets_this_months_consumption_and_its_csv(service, page, report_870):
    from playwright.async_api import expect

    made = await labelled_workspaces(service, report_870)
    month = datetime.now(timezone.utc).strftime("%Y-%m")
    await sign_in(page, service, (await operator_token(service, "billing"))["token"])
    await expect(page).to_have_url(service.url + "/console/billing")
    await expect(page.locator("input[name=period]")).to_have_value(month)  # the current month, by default
    await expect(page.locator("nav[aria-label=pages] a")).to_have_text(["Billing", "Catalogue"])
    over = page.locator(f"tr[data-workspace='{made['over']['workspace_id']}']")
    await expect(over.locator("th")).to_contain_text(made["over"]["label"])
    await expect(over.locator("td[data-col=seats]")).to_have_text("55 (50)")  # starter: 50 seats
    await expect(over.locator("td[data-col=overage]")).to_have_text("5 / \u2014 / 0")  # guests unlimited on starter
    await expect(page.locator("td[data-total=workspaces]")).not_to_have_text("0")

    async with page.expect_download() as info:
        await page.get_by_role("link", name="Download CSV").click()
    download = await info.value
    assert download.suggested_filename == f"consumption-{month}.csv"
    rows = {r["workspace_id"]: r for r in csv.DictReader(io.StringIO(Path(await download.path()).read_text()))}
    near = rows[made["near"]["workspace_id"]]
    assert (near["label"], near["seats"], near["monthly_active_contacts"], near["seats_overage"]) == \
        (made["near"]["label"], "46", "95", "0")

    # another month through the picker: this one has no usage of these workspaces
    await page.fill("input[name=period]", "2024-02")
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("h2#period")).to_have_text("2024-02-01 to 2024-02-29")
    # the compliance board is not for this role: a 403 page that says so
    response = await page.goto(service.url + "/console/compliance")
    assert response.status == 403
    await expect(page.locator("p.problem")).to_contain_text("needs the 'compliance' role")


async def test_a_compliance_person_sees_who_is_over_or_near_at_a_glance(service, page, report_870):
    from playwright.async_api import expect

    made = await labelled_workspaces(service, report_870)
    tag = made["over"]["label"].split()[-1]
    await sign_in(page, service, (await operator_token(service, "compliance"))["token"])
    await expect(page).to_have_url(service.url + "/console/compliance")
    await page.fill("input[name=label]", tag)
    await page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.board tbody tr")
    # worst first: over, near, ok
    await expect(rows).to_have_count(3)
    assert [await r.get_attribute("data-status") for r in await rows.all()] == ["over", "near", "ok"]
    await expect(rows.nth(0).locator("td[data-kind=activeUsers]")).to_contain_text("55 / 50 (110.0 %)")
    await expect(rows.nth(0).locator("td[data-kind=activeUsers] .status")).to_have_text("over")
    await expect(rows.nth(1).locator("td[data-kind=monthlyActiveContacts] .status")).to_have_text("near")  # 95 of 100
    # several statuses at once
    await page.check("input[name=status][value=over]")
    await page.check("input[name=status][value=near]")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(2)
    assert re.search(r"status=over&status=near", page.url)
    # follow the link to the workspace page
    await rows.nth(0).get_by_role("link").click()
    await expect(page).to_have_url(service.url + f"/console/workspaces/{made['over']['workspace_id']}")
    await expect(page.locator("h1")).to_have_text(made["over"]["label"])
    await expect(page.locator("table.limits tr[data-kind=activeUsers]")).to_contain_text("55 / 50")
    charts = page.locator("figure.chart svg")
    await expect(charts).to_have_count(4)
    assert [await c.get_attribute("data-series") for c in await charts.all()] == \
        ["seats", "guests", "monthly_active_contacts", "peak_connections"]
    seats_dot = page.locator("svg[data-series=seats] circle.dot title")
    await expect(seats_dot).to_have_count(1)
    await expect(seats_dot).to_have_text(f"{this_month_moment().date().isoformat()}: 55")  # the report's day
    await expect(page.locator("svg[data-series=seats] line.limitline")).to_have_count(1)  # the 50-seat limit
    await expect(page.locator("text=Edit (admin)")).to_have_count(0)
    # billing is not for this role
    response = await page.goto(service.url + "/console/billing")
    assert response.status == 403


async def test_the_anonymous_visitor_is_sent_to_sign_in_and_back(service, page, report_870):
    from playwright.async_api import expect

    made = await labelled_workspaces(service, report_870)
    target = f"/console/workspaces/{made['near']['workspace_id']}"
    for path in (target, "/console/compliance", "/console/billing"):
        await page.goto(service.url + path)
        await expect(page.locator("input[type=password][name=token]")).to_be_visible()
        assert made["near"]["label"] not in await page.content()
    await page.goto(service.url + target)
    await page.fill("input[name=token]", "wsc_op_not_a_token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("p.problem")).to_have_text("That is not a valid operator token.")
    await page.fill("input[name=token]", ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(service.url + target)  # back where the visitor wanted to go
    await expect(page.locator("h1")).to_have_text(made["near"]["label"])


async def test_an_admin_renames_a_workspace_and_signs_out(service, page, report_870):
    from playwright.async_api import expect

    made = await labelled_workspaces(service, report_870)
    wid = made["ok"]["workspace_id"]
    await sign_in(page, service, ADMIN_TOKEN)
    await page.goto(service.url + f"/console/workspaces/{wid}")
    await page.fill("input[name=label]", made["ok"]["label"] + " (renamed)")
    await page.get_by_role("button", name="Save label").click()
    await expect(page.locator("p.saved")).to_have_text("Label saved.")
    await expect(page.locator("h1")).to_have_text(made["ok"]["label"] + " (renamed)")
    await page.fill("input[name=seats]", "12")
    await page.get_by_role("button", name="Save contract").click()
    await expect(page.locator("p.saved")).to_have_text("Contract saved.")
    await expect(page.locator("table.limits tr[data-kind=activeUsers]")).to_contain_text("10 / 12")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("input[name=token]")).to_be_visible()
    await page.goto(service.url + f"/console/workspaces/{wid}")
    await expect(page.locator("input[name=token]")).to_be_visible()  # signed out: the form again
