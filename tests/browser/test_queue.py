"""The queue in a real browser: a dead send with its reason, replayed, then sent."""
from __future__ import annotations

import datetime as dt

from hub.core.models import Send
from hub.core.sending.pipeline import MAX_ATTEMPTS
from playwright.sync_api import expect

from tests.browser.conftest import shot

CUSTOMER = "14155552671"


def test_replay_a_dead_send(client, coexistence, simulator, run_jobs, run_scheduler, live_hub, browser_page, sign_in):
    headers = coexistence.workspace.headers
    simulator.set_error_for(CUSTOMER, 131016, 503)
    dead = client.post("/api/v1/messages", json={"to": "+" + CUSTOMER, "template": "order_update", "params": ["A-9"]},
                       headers=headers).json
    client.post("/api/v1/messages", json={"to": "+14155550123", "template": "order_update", "params": ["later"],
                                          "send_at": "2099-01-01T09:00:00"}, headers=headers)
    run_jobs()
    with client.rt.db.session() as s:  # skip the retries in between
        row = s.get(Send, client.row_id(dead["id"]))
        row.attempts, due = MAX_ATTEMPTS - 1, row.not_before
    run_scheduler(now=due + dt.timedelta(seconds=1))
    simulator.clear_error_for(CUSTOMER)
    page = browser_page
    sign_in(page, coexistence.workspace, role="agent")
    page.get_by_role("link", name="Queue").first.click()
    page.wait_for_url("**/queue")
    assert page.get_by_role("link", name="Dead (1)").get_attribute("aria-current") == "page"
    expect(page.get_by_text("Meta error 131016")).to_be_visible()
    shot(page, "queue")
    page.get_by_role("button", name=f"Replay send {dead['id']}").click()
    page.get_by_role("link", name="Dead (0)").wait_for()  # the page reloads after the API call
    run_jobs()
    assert client.get(f"/api/v1/sends/{dead['id']}", headers=headers).json["status"] == "sent"
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_role("link", name="Scheduled (1)").click()
    page.get_by_role("button", name="Cancel send").wait_for()
    shot(page, "queue-phone")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px screen"
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel send").click()
    page.get_by_text("No scheduled sends.").wait_for()
