"""The inbox in a real browser: an inbound message arrives without a reload (server-sent events),
a reply from the box appears with its tick, the owner's phone reply appears marked."""
from __future__ import annotations

import secrets

from playwright.sync_api import expect

from tests.browser.conftest import shot


def customer() -> str:
    return "1628" + str(200 + secrets.randbelow(800)) + str(secrets.randbelow(10**4)).zfill(4)


def test_live_inbox_reply_and_phone_echo(coexistence, simulator, run_jobs, live_hub, browser_page, sign_in):
    page, to = browser_page, customer()
    simulator.customer_message(coexistence.phone_number_id, to, "Hi, is the blue kurta back in stock?",
                               name="Meera Iyer")
    run_jobs()
    person = sign_in(page, coexistence.workspace, role="agent")
    page.goto(f"{live_hub.url}/inbox")
    page.get_by_role("link", name="Meera Iyer").click()
    page.wait_for_selector("text=Hi, is the blue kurta back in stock?")
    page.wait_for_selector("[data-live]:has-text('Live')")  # the event stream is connected
    page.evaluate("window.__sameDocument = true")

    simulator.customer_message(coexistence.phone_number_id, to, "Size M please", name="Meera Iyer")
    run_jobs()
    page.locator("#thread .bubble.in", has_text="Size M please").wait_for()
    assert page.evaluate("window.__sameDocument === true")  # arrived without a reload

    page.locator("#reply-text").fill("Yes! Size M is back, shall I reserve one?")
    page.get_by_role("button", name="Send", exact=True).click()
    mine = page.locator("#thread .bubble.out", has_text="Size M is back")
    mine.wait_for()
    expect(page.locator("#reply-text")).to_have_value("")
    run_jobs()  # the worker sends it through the Graph API simulator
    simulator.flush_statuses()
    run_jobs()
    mine.locator(".tick-read").wait_for()
    assert "read" in mine.locator(".tick").inner_text()

    simulator.echo(coexistence.phone_number_id, to, "Reserved for you - Priya from the shop")
    run_jobs()
    echo = page.locator("#thread .bubble.echo", has_text="Reserved for you")
    echo.wait_for()
    assert "Sent from the WhatsApp Business app" in echo.inner_text()
    assert page.evaluate("window.__sameDocument === true")
    shot(page, "inbox")

    page.get_by_text("Human took over").wait_for()  # the hold the echo started, live on the contact panel
    assert page.evaluate("window.__sameDocument === true")
    page.get_by_role("button", name="Resume automations").click()
    page.get_by_text("Running (no hold on this number).").wait_for()

    page.get_by_label("Assignee").select_option(label=page.locator("#assignee option", has_text="(me)").inner_text())
    page.get_by_role("button", name="Assign").click()
    page.locator(".conversation.current .badge", has_text=person.email.split("@")[0]).wait_for()
    page.get_by_label("Add a note").fill("Wants the blue one only")
    page.get_by_role("button", name="Add note").click()
    page.locator(".notes", has_text="Wants the blue one only").wait_for()
    page.get_by_role("button", name="Close conversation").click()
    page.get_by_role("button", name="Reopen").wait_for()

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_hub.url}/inbox?show=all")
    expect(page.get_by_role("link", name="Meera Iyer")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= 390")
    shot(page, "inbox-phone-list")
    page.get_by_role("link", name="Meera Iyer").click()
    expect(page.get_by_role("link", name="← All conversations")).to_be_visible()  # the thread page loaded
    expect(page.locator(".inbox-list")).to_be_hidden()  # list, then thread, at phone width
    assert page.evaluate("document.documentElement.scrollWidth <= 390")
    page.locator("#thread").scroll_into_view_if_needed()
    shot(page, "inbox-phone")


def test_without_eventsource_the_inbox_polls(coexistence, simulator, run_jobs, live_hub, browser_page, sign_in):
    page, to = browser_page, customer()
    page.add_init_script("delete window.EventSource")  # a browser (or proxy) without server-sent events
    simulator.customer_message(coexistence.phone_number_id, to, "First", name="Ravi Kumar")
    run_jobs()
    sign_in(page, coexistence.workspace, role="agent")
    page.goto(f"{live_hub.url}/inbox")
    page.get_by_text("Updating every 5 s").wait_for()
    page.evaluate("window.__sameDocument = true")
    other = customer()
    simulator.customer_message(coexistence.phone_number_id, other, "Polling works", name="Lata Menon")
    run_jobs()
    page.get_by_role("link", name="Lata Menon").wait_for()  # the list refreshed by polling
    assert page.evaluate("window.__sameDocument === true")


def test_the_reply_box_follows_the_24_hour_window(coexistence, simulator, run_jobs, live_hub, browser_page,
                                                 sign_in):
    page, to = browser_page, customer()
    simulator.echo(coexistence.phone_number_id, to, "Your order is ready for pickup")  # no window yet
    run_jobs()
    sign_in(page, coexistence.workspace, role="agent")
    page.goto(f"{live_hub.url}/inbox")
    page.locator(".conversation a").first.click()
    page.get_by_text("24-hour window closed").wait_for()
    assert page.locator("#reply-text").count() == 0
    page.get_by_label("Parameter {{1}}").first.fill("#5521")
    page.get_by_role("button", name="Send order_update").click()
    page.locator("#thread .bubble.out", has_text="order_update").wait_for()
    simulator.customer_message(coexistence.phone_number_id, to, "Coming at 6")
    run_jobs()
    page.locator("#reply-text").wait_for()  # the window opened: free text is offered
    expect(page.get_by_text("24-hour window open until")).to_be_visible()
