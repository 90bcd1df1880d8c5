"""Installing a connector in a real browser: the form generated from its config schema, a
refused install showing the reason under the field, then the webhook URL and setup steps."""
from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import shot


def test_install_a_connector_through_the_generated_form(client, workspace, live_hub, browser_page, sign_in):
    page = browser_page
    client.install(workspace, "shopify", {"webhook_secret": "shpss_x", "shop": "demo.myshopify.com"}, name="Demo store")
    sign_in(page, workspace, role="owner")
    page.get_by_role("link", name="Connectors").first.click()
    page.wait_for_url("**/connectors")
    expect(page.get_by_role("heading", name="Available")).to_be_visible()
    shot(page, "connectors")
    page.locator('a[href="/connectors/new/shopify"]').click()
    page.get_by_text("Subscribe the webhooks").click()  # a setup step opens
    page.set_viewport_size({"width": 1280, "height": 1100})
    shot(page, "connector-install")
    page.goto(f"{live_hub.url}/connectors")
    page.locator('a[href="/connectors/new/acme"]').click()
    page.wait_for_url("**/connectors/new/acme")
    page.get_by_label("Name").fill("Main store")
    page.get_by_label("Delay minutes").fill("45")
    page.get_by_role("button", name="Install").click()  # without the required secret: the API's 422
    error = page.locator(".field-error")
    error.wait_for()
    assert "missing data" in error.inner_text().lower()
    assert page.get_by_label("Webhook secret").get_attribute("aria-invalid") == "true"
    page.get_by_label("Webhook secret").fill("whsec-browser-123")
    page.get_by_label("API token").fill("token-browser-456")
    page.get_by_role("button", name="Install").click()
    page.wait_for_url("**/connectors/ins_*?installed=1")
    url = page.get_by_label("Paste this into Acme Store's webhook settings").input_value()
    assert url.endswith(page.url.split("/connectors/")[1].split("?")[0]) and "/webhooks/acme/" in url
    expect(page.get_by_text("Acme Store is installed")).to_be_visible()
    shot(page, "connector-installed")
    assert "whsec-browser-123" not in page.content() and "token-browser-456" not in page.content()
    assert page.get_by_label("Webhook secret").get_attribute("placeholder") == "set — leave blank to keep it"
    page.get_by_role("button", name="Disable").click()
    page.get_by_role("button", name="Enable").wait_for()
    installed = {i["connector"]: i for i in client.get("/api/v1/installations", headers=workspace.headers).json}
    assert installed["acme"]["enabled"] is False and installed["shopify"]["enabled"] is True


def test_connectors_page_on_a_phone(client, workspace, live_hub, browser_page, sign_in):
    page = browser_page
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, workspace, role="owner")
    client.install(workspace, "shopify", {"webhook_secret": "shpss_x", "shop": "demo.myshopify.com"})
    page.goto(f"{live_hub.url}/connectors")
    page.get_by_role("link", name="Shopify").first.click()
    page.get_by_role("heading", name="Webhook URL").wait_for()
    page.get_by_text("Subscribe the webhooks").click()  # a setup step opens
    expect(page.get_by_text("checkouts/create").first).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px screen"
