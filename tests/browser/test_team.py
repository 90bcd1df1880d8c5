"""The Team page in a real browser: the owner invites, the new person accepts in a second
browser and signs in; an agency user switches between client workspaces."""
from __future__ import annotations

import secrets

from playwright.sync_api import expect

from tests.browser.conftest import shot


def test_owner_invites_and_the_new_person_joins(client, workspace, live_hub, browser_page, chromium_browser,
                                                 sign_in):
    page = browser_page
    owner = sign_in(page, workspace, role="owner")
    client.console(workspace, role="agent", email=f"asha-{secrets.token_hex(2)}@example.com")
    page.get_by_role("link", name="Team").first.click()
    page.wait_for_url("**/team")
    email = f"ravi-{secrets.token_hex(3)}@example.com"
    page.get_by_label("Email").fill(email)
    page.get_by_label("Role", exact=True).select_option("agent")
    page.get_by_role("button", name="Create invitation link").click()
    link_box = page.get_by_label("Invitation link", exact=True)
    link = link_box.input_value()
    assert link.startswith(f"{live_hub.url}/invite/inv_")
    assert email in page.get_by_role("region", name="Pending invitations").inner_text()
    shot(page, "team")
    page.get_by_role("button", name="Copy link").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()

    other = chromium_browser.new_context(viewport={"width": 390, "height": 844})  # the invited person's phone
    try:
        phone = other.new_page()
        phone.goto(link)
        assert phone.get_by_role("heading", level=1).inner_text() == "Join Test shop"
        phone.get_by_label("Your name").fill("Ravi Kumar")
        phone.get_by_label("Choose a password").fill("ravi's long password")
        phone.get_by_label("Password again").fill("ravi's long password")
        shot(phone, "team-accept")
        phone.get_by_role("button", name="Create my account and join").click()
        phone.wait_for_url(f"{live_hub.url}/")
        assert "you joined as agent" in phone.get_by_role("status").first.inner_text()
        phone.get_by_role("button", name="Sign out").click()
        phone.wait_for_url("**/login")
        phone.get_by_label("Email").fill(email)
        phone.get_by_label("Password").fill("ravi's long password")
        phone.get_by_role("button", name="Sign in").click()
        phone.wait_for_url(f"{live_hub.url}/")
        assert phone.get_by_role("heading", level=1).inner_text() == "Test shop"
        phone.goto(link)  # used now
        assert "already used" in phone.get_by_role("alert").inner_text()
    finally:
        other.close()

    page.reload()
    members = page.get_by_role("region", name="Members").inner_text()
    assert "Ravi Kumar" in members and email in members and owner.email in members
    page.get_by_label(f"Role of {email}").select_option("admin")
    page.get_by_role("button", name=f"Change role of {email}").click()
    page.wait_for_url("**/team")
    assert f"{email} is now admin." in page.get_by_role("status").first.inner_text()
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Remove {email}").click()
    page.wait_for_url("**/team")
    assert email not in page.get_by_role("region", name="Members").inner_text()


def test_an_agency_user_switches_workspace_from_the_header(client, workspace, live_hub, browser_page, sign_in):
    from hub.core import users

    page = browser_page
    second = client.new_workspace("Client two")
    agency = sign_in(page, workspace, role="admin")
    with client.rt.db.session() as s:
        users.add_member(s, users.user_by_email(s, agency.email), second.id, "agent")
    page.reload()
    assert page.get_by_role("heading", level=1).inner_text() == "Test shop"
    page.get_by_label("Workspace").select_option(label="Client two (agent)")
    page.wait_for_function("document.querySelector('h1').innerText === 'Client two'")
    page.get_by_role("link", name="Team").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Team of Client two")
    assert page.get_by_role("button", name="Create invitation link").count() == 0  # an agent there
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "team-phone")


def test_the_instance_admin_creates_a_workspace(client, workspace, live_hub, browser_page, sign_in):
    page = browser_page
    sign_in(page, None, instance_admin=True)
    page.get_by_role("link", name="Workspaces").click()
    page.get_by_label("Name").fill("Agency client D")
    page.get_by_role("button", name="Create workspace").click()
    assert page.get_by_label("API key of Agency client D").input_value().startswith("chk_")
    assert page.get_by_role("combobox", name="Workspace").input_value() == page.locator("tbody tr", has_text="Agency client D") \
        .locator("code").inner_text()  # the new workspace is on screen
    page.get_by_role("link", name="Invite its team").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Team of Agency client D")
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_role("heading", name="Invite someone").scroll_into_view_if_needed()
    shot(page, "team-owner-phone")
