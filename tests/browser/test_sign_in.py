"""Signing in through a real browser, and the API docs page rendering offline."""
from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import shot


def test_sign_in_and_out(client, workspace, live_hub, browser_page, sign_in):
    page = browser_page
    page.goto(f"{live_hub.url}/")
    assert page.url.endswith("/login")
    page.get_by_label("Email").fill("nobody@example.com")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong email or password")
    shot(page, "login")
    sign_in(page, workspace, role="owner")
    expect(page.get_by_role("heading", level=1)).to_have_text("Test shop")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")


def test_api_docs_render_offline(live_hub, browser_page):
    page = browser_page
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{live_hub.url}/api/v1/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "coexhub" in page.locator(".swagger-ui .info .title").inner_text()
    assert all(url.startswith(live_hub.url) or url.startswith("data:") for url in requests), requests
    shot(page, "api-docs")
