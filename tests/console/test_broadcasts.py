"""The console's Broadcasts pages through the app: compose lists approved templates only, the
preview (the API's dry run) names who is left out and why with the estimate, sending starts a
broadcast whose progress fragment follows the sends, and an agent cannot send."""
from __future__ import annotations

import re
import secrets

from hub.core import contacts


def _audience(client, workspace_id, *names, tag="vip"):
    """Contacts tagged ``tag`` with Austrian numbers; returns their public ids."""
    out = []
    with client.rt.db.session() as s:
        for name in names:
            contact = contacts.upsert(s, workspace_id, wa_id="43664" + str(secrets.randbelow(10**7)).zfill(7),
                                      source="import", first_name=name)
            contact.tags = [tag]
            s.flush()
            out.append(client.public_id("ct", contact.id))
    return out


def _body(coexistence, **extra):
    return {"connection_id": coexistence.id, "template": "order_update", "language": "en_US",
            "params": ["{first_name|there}"], "audience": {"tags": ["vip"]}, **extra}


def test_compose_lists_only_approved_templates_with_category_and_parameters(client, coexistence):
    coexistence.add_template("pending_offer", category="MARKETING", body_params=2, status="PENDING")
    coexistence.add_template("two_fields", body_params=2)
    _audience(client, coexistence.workspace.id, "Ana")
    page = client.console(coexistence.workspace, role="admin").get("/broadcasts")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    options = re.findall(r'<option value="([^"]+)" data-language', html)
    assert sorted(options) == ["order_update", "promo", "two_fields"]
    assert "pending_offer" not in html
    assert 'data-category="marketing" data-params="1"' in html and 'data-params="2"' in html
    assert "vip (1)" in html  # the tags in use, with how many contacts carry them


def test_preview_shows_each_recipients_text_and_who_is_left_out_and_why(client, coexistence):
    ana, bea, carl = _audience(client, coexistence.workspace.id, "Ana", "Bea", "Carl")
    admin = client.console(coexistence.workspace, role="admin")
    assert admin.api("PATCH", f"/api/v1/contacts/{carl}", json={"opted_out": True}).status_code == 200
    r = admin.api("POST", "/api/v1/broadcasts?dry_run=true", json=_body(coexistence))
    assert r.status_code == 200, r.json
    plan = r.json
    assert plan["recipients"] == 2 and plan["excluded"]["opted_out"] == 1
    assert {(p["name"], p["text"]) for p in plan["preview"]["recipients"]} == {("Ana", "Hello Ana"),
                                                                            ("Bea", "Hello Bea")}
    [left_out] = plan["preview"]["excluded"]
    assert (left_out["contact_id"], left_out["name"], left_out["reason"]) == (carl, "Carl", "opted_out")
    assert left_out["wa_id"].startswith("43664")
    assert plan["estimate"]["messages"] == 2 and plan["estimate"]["by_country"]["AT"]["messages"] == 2
    assert "headroom" in plan["portfolio"]
    bad = admin.api("POST", "/api/v1/broadcasts?dry_run=true", json=_body(coexistence, params=[]))
    assert bad.status_code == 422 and "parameter" in bad.json["error"]["message"]  # shown in the form


def test_send_starts_a_broadcast_and_the_progress_fragment_follows_it(client, coexistence, simulator, run_jobs):
    _audience(client, coexistence.workspace.id, "Ana", "Bea")
    admin = client.console(coexistence.workspace, role="owner")
    r = admin.api("POST", "/api/v1/broadcasts", json=_body(coexistence, name="Spring"))
    assert r.status_code == 202, r.json
    bid = r.json["id"]
    before = admin.get(f"/broadcasts/{bid}/progress").get_data(as_text=True)
    assert 'hx-trigger="every 3s"' in before and "Sending" in before  # polls while sends wait
    run_jobs()
    simulator.flush_statuses()
    run_jobs()
    after = admin.get(f"/broadcasts/{bid}/progress").get_data(as_text=True)
    assert "hx-trigger" not in after and "Done" in after  # stops polling once done
    assert re.search(r'data-count="sent">2<', after) and re.search(r'data-count="read">2<', after)
    detail = admin.get(f"/broadcasts/{bid}").get_data(as_text=True)
    assert "Spring" in detail and "Hello {{1}}" in detail
    listing = admin.get("/broadcasts").get_data(as_text=True)
    assert f"/broadcasts/{bid}" in listing and "2 recipients · 2 sent" in listing
    assert len(coexistence.sent("order_update")) == 2


def test_an_agent_cannot_send_a_broadcast_or_open_the_pages(client, coexistence):
    _audience(client, coexistence.workspace.id, "Ana")
    agent = client.console(coexistence.workspace, role="agent")
    refused = agent.api("POST", "/api/v1/broadcasts", json=_body(coexistence))
    assert refused.status_code == 403 and refused.json["error"]["code"] == "forbidden"
    assert agent.get("/broadcasts").status_code == 403
    assert 'href="/broadcasts"' not in agent.get("/").get_data(as_text=True)


def test_another_workspaces_broadcast_is_not_found(client, coexistence):
    _, bea = _audience(client, coexistence.workspace.id, "Ana", "Bea")
    owner = client.console(coexistence.workspace, role="owner")
    assert owner.api("PATCH", f"/api/v1/contacts/{bea}", json={"marketing_opted_out": True}).status_code == 200
    bid = owner.api("POST", "/api/v1/broadcasts", json=_body(coexistence, template="promo")).json["id"]
    detail = owner.get(f"/broadcasts/{bid}").get_data(as_text=True)
    assert "Left out (1)" in detail and "Opted out of marketing: 1" in detail
    assert f"Bea <code>{bea}</code>" in detail
    stranger = client.console(client.new_workspace("Other shop"), role="owner")
    assert stranger.get(f"/broadcasts/{bid}").status_code == 404
    assert stranger.get(f"/broadcasts/{bid}/progress").status_code == 404


def test_preview_marks_recipients_under_the_owners_hold_and_marketing_without_consent(client, coexistence):
    import datetime as dt

    from hub.api import ids
    from hub.core.models import ContactWindow, Workspace, utcnow

    ana, bea, carl = _audience(client, coexistence.workspace.id, "Ana", "Bea", "Carl")
    with client.rt.db.session() as s:  # the owner answered Ana from the phone app: her hold runs
        s.add(ContactWindow(connection_id=coexistence.id, contact_id=ids.decode("ct", ana),
                            workspace_id=coexistence.workspace.id, hold_until=utcnow() + dt.timedelta(hours=1)))
        s.get(Workspace, coexistence.workspace.id).settings = {"require_marketing_consent": True}
    admin = client.console(coexistence.workspace, role="admin")
    assert admin.api("PATCH", f"/api/v1/contacts/{bea}", json={"marketing_consent": True}).status_code == 200
    assert admin.api("PATCH", f"/api/v1/contacts/{ana}", json={"marketing_consent": True}).status_code == 200
    plan = admin.api("POST", "/api/v1/broadcasts?dry_run=true", json=_body(coexistence, template="promo")).json
    assert plan["recipients"] == 2 and plan["held"] == 1 and plan["excluded"]["no_marketing_consent"] == 1
    held = {p["name"]: p["held_until"] for p in plan["preview"]["recipients"]}
    assert held["Ana"] is not None and held["Bea"] is None
    assert [(e["name"], e["reason"]) for e in plan["preview"]["excluded"]] == [("Carl", "no_marketing_consent")]


def test_without_a_number_the_page_says_what_to_do_first(client, workspace):
    page = client.console(workspace, role="owner").get("/broadcasts")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Connect a WhatsApp number first" in html and 'id="compose"' not in html
