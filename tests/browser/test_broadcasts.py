"""A small broadcast in a real browser: compose to a tag, the preview shows who is left out and
why, send, and the progress polls itself to done after the jobs ran."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.browser.conftest import shot
from tests.console.test_broadcasts import _audience


def test_compose_preview_send_and_watch_progress(client, coexistence, simulator, run_jobs, live_hub,
                                                  browser_page, sign_in):
    page = browser_page
    ana, bea, carl = _audience(client, coexistence.workspace.id, "Ana", "Bea", "Carl", tag="spring")
    person = sign_in(page, coexistence.workspace, role="owner")
    assert person.api("PATCH", f"/api/v1/contacts/{carl}", json={"opted_out": True}).status_code == 200
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Broadcasts").click()
    page.wait_for_url("**/broadcasts")
    page.get_by_label("Name").fill("Spring news")
    page.get_by_label("Approved template").select_option("promo")
    expect(page.locator("#bc-template-info")).to_contain_text("marketing template: Hello {{1}}")
    page.get_by_label("Approved template").select_option("order_update")
    expect(page.locator("#bc-template")).to_contain_text("order_update (en_US) · utility · 1 parameter")
    page.get_by_label("Audience: contacts with any of these tags").fill("spring")
    send = page.get_by_role("button", name=re.compile("^Send"))
    expect(send).to_be_disabled()  # not before a preview
    page.get_by_role("button", name="Preview").click()
    preview = page.locator("#preview")
    preview.get_by_text("2 recipients · 1 left out").wait_for()
    assert "Opted out of all messages: 1" in preview.inner_text()
    assert "Carl" in preview.inner_text() and "Hello Ana" in preview.inner_text()
    assert "Estimated cost:" in preview.inner_text() and "headroom" in preview.inner_text()
    shot(page, "broadcast-preview")

    page.get_by_label("Parameter 1").fill("")  # an empty parameter: the API's 422 shows in the form
    page.get_by_role("button", name="Preview").click()
    page.locator("#compose [data-errors]").get_by_text("parameter").wait_for()
    expect(send).to_be_disabled()
    page.get_by_label("Parameter 1").fill("{first_name|there}")
    page.get_by_role("button", name="Preview").click()
    preview.get_by_text("2 recipients · 1 left out").wait_for()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Send to 2").click()
    page.wait_for_url(re.compile(r".*/broadcasts/bc_[^/]+$"))
    assert page.get_by_role("heading", level=1).inner_text() == "Spring news"
    run_jobs()
    simulator.flush_statuses()
    run_jobs()
    page.locator("#progress .badge.ok", has_text="Done").wait_for()  # htmx polled the fragment
    assert page.locator('[data-count="sent"]').inner_text() == "2"
    assert page.locator('[data-count="read"]').inner_text() == "2"
    assert len(coexistence.sent("order_update")) == 2
    page.get_by_role("link", name="← Broadcasts").click()
    page.wait_for_url("**/broadcasts")
    page.get_by_role("link", name="Spring news").wait_for()
    shot(page, "broadcasts")
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_label("Audience: contacts with any of these tags").fill("spring")
    page.get_by_role("button", name="Preview").click()
    preview.get_by_text("2 recipients · 1 left out").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "broadcasts-phone")
