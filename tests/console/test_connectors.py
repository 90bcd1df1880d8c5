"""The connectors pages, through the app: the generated install form, write-only secrets, the
webhook URL and setup steps, enable/disable, recent events with their outcome and replay."""
from __future__ import annotations

import re

from hub.core import processing
from hub.core.models import InboundEvent
from hub.core.scheduler import tick

SECRETS = {"webhook_secret": "acme-very-secret-123", "api_token": "acme-token-456"}


def acme_headers(topic: str, webhook_id: str) -> dict[str, str]:
    return {"X-Acme-Topic": topic, "X-Acme-Webhook-Id": webhook_id}


def labels_of(html: str) -> dict[str, str]:
    """input id → label text, for every <label for=…> on the page."""
    return {m.group(1): re.sub(r"<[^>]+>", "", m.group(2)).strip()
            for m in re.finditer(r'<label[^>]*for="([^"]+)"[^>]*>(.*?)</label>', html, re.S)}


def test_the_install_form_has_every_schema_field_with_a_label(client, workspace):
    owner = client.console(workspace, role="owner")
    schema = next(c for c in client.get("/api/v1/connectors", headers=workspace.headers).json
                  if c["name"] == "acme")["config_schema"]
    page = owner.get("/connectors/new/acme")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    labels = labels_of(html)
    for name in schema["properties"]:
        assert f'name="config[{name}]"' in html, name
        assert labels.get(f"cfg-{name}"), f"{name} has no label"
    assert re.search(r'<input type="password" id="cfg-webhook_secret"[^>]*required', html)
    assert re.search(r'<input type="password" id="cfg-api_token"', html)
    assert re.search(r'id="cfg-delay_minutes"[^>]*data-type="number"', html)
    assert 'value="order_confirmation"' in html  # defaults are filled in
    assert 'data-api="POST /api/v1/installations"' in html


def test_field_types_map_to_inputs(app):
    from hub.web.connectors import form_fields

    schema = {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "string"}, "b": {"type": "integer", "default": 3}, "c": {"type": "number"},
        "d": {"type": "boolean", "default": True}, "e": {"type": "string", "enum": ["x", "y"]},
        "f": {"type": "array", "items": {"type": "string"}}, "g": {"type": "string", "writeOnly": True, "x-secret": True},
        "h": {"type": "object"}, "i": {"type": "string", "format": "uri"}}}
    kinds = {f.name: (f.kind, f.required) for f in form_fields(schema)}
    assert kinds == {"a": ("text", True), "b": ("number", False), "c": ("number", False), "d": ("checkbox", False),
                     "e": ("select", False), "f": ("list", False), "g": ("password", False), "h": ("json", False),
                     "i": ("url", False)}


def test_install_through_the_api_then_the_page_shows_the_webhook_url_and_never_the_secret(client, workspace):
    owner = client.console(workspace, role="owner")
    refused = owner.api("POST", "/api/v1/installations", json={"connector": "acme", "config": {"delay_minutes": "soon"}})
    assert refused.status_code == 422
    assert {"webhook_secret", "delay_minutes"} <= set(refused.json["error"]["details"]["fields"])
    made = owner.api("POST", "/api/v1/installations", json={"connector": "acme", "name": "Main store",
                                                             "config": {**SECRETS, "delay_minutes": 30}})
    assert made.status_code == 201, made.json
    inst = made.json
    page = owner.get(f"/connectors/{inst['id']}?installed=1").get_data(as_text=True)
    assert inst["webhook_url"] in page and f"/webhooks/acme/{inst['id']}" in page
    assert "Main store" in page and "is installed" in page
    for value in SECRETS.values():
        assert value not in page
    assert "set — leave blank to keep it" in page
    assert 'value="30"' in page
    listing = owner.get("/connectors").get_data(as_text=True)
    assert "Main store" in listing and inst["webhook_url"] in listing
    assert SECRETS["webhook_secret"] not in listing


def test_editing_with_blank_secrets_keeps_them(client, workspace):
    owner = client.console(workspace, role="owner")
    inst = client.install(workspace, "acme", {**SECRETS})
    saved = owner.api("PATCH", f"/api/v1/installations/{inst['id']}", json={"config": {"delay_minutes": 15}})
    assert saved.status_code == 200 and saved.json["secrets_set"] == ["api_token", "webhook_secret"]
    from hub.core.models import Installation

    with client.rt.db.session() as s:
        row = s.get(Installation, inst["id"])
        assert row.secrets == SECRETS and row.config["delay_minutes"] == 15


def test_setup_steps_come_from_the_connector_guide(client, workspace):
    owner = client.console(workspace, role="owner")
    page = owner.get("/connectors/new/shopify").get_data(as_text=True)
    assert "Subscribe the webhooks" in page and "Create the WhatsApp templates" in page
    assert "Install the connector in the hub" not in page  # the form is that step
    inst = client.install(workspace, "shopify", {"webhook_secret": "shpss_x", "shop": "demo.myshopify.com"})
    shown = owner.get(f"/connectors/{inst['id']}").get_data(as_text=True)
    assert "Subscribe the webhooks" in shown and "shpss_x" not in shown


def test_disable_and_enable(client, workspace):
    owner = client.console(workspace, role="admin")
    inst = client.install(workspace, "acme", {**SECRETS})
    page = owner.get(f"/connectors/{inst['id']}").get_data(as_text=True)
    assert f'data-api="PATCH /api/v1/installations/{inst["id"]}"' in page and ">Disable<" in page
    off = owner.api("PATCH", f"/api/v1/installations/{inst['id']}", json={"enabled": False})
    assert off.status_code == 200 and off.json["enabled"] is False
    page = owner.get(f"/connectors/{inst['id']}").get_data(as_text=True)
    assert "Disabled" in page and ">Enable<" in page and "disabled through the API" in page
    on = owner.api("PATCH", f"/api/v1/installations/{inst['id']}", json={"enabled": True})
    assert on.json["enabled"] is True and ">Disable<" in owner.get(f"/connectors/{inst['id']}").get_data(as_text=True)


def test_a_failed_event_shows_its_error_and_replay_requeues_it(client, workspace, run_jobs):
    owner = client.console(workspace, role="owner")
    inst = client.install(workspace, "acme", {**SECRETS})
    client.deliver("acme", inst["id"], {"x": 1}, SECRETS, acme_headers("explode", "e1"))
    client.deliver("acme", inst["id"], {"phone": "not a phone", "id": 5}, SECRETS, acme_headers("cart.updated", "c1"))
    client.deliver("acme", inst["id"], b"{not json", SECRETS, acme_headers("order.created", "r1"))
    run_jobs()
    page = owner.get(f"/connectors/{inst['id']}").get_data(as_text=True)
    assert "RuntimeError: handler bug" in page and ">failed<" in page
    assert ">rejected<" in page
    assert "skipped: cart without phone" in page or ">processed<" in page
    for _ in range(processing.MAX_ATTEMPTS):  # retried until dead
        with client.rt.db.session() as s:
            due = s.query(InboundEvent).filter_by(scope=inst["id"], topic="explode").one().next_attempt_at
        tick(client.rt, now=due)
        run_jobs()
    with client.rt.db.session() as s:
        event = s.query(InboundEvent).filter_by(scope=inst["id"], topic="explode").one()
        assert event.status == "dead"
        public = client.public_id("evt", event.id)
    page = owner.get(f"/connectors/{inst['id']}").get_data(as_text=True)
    assert ">dead<" in page and f'data-api="POST /api/v1/events/{public}/replay"' in page
    assert "2 events need attention" in owner.get("/connectors").get_data(as_text=True)  # dead + rejected
    replayed = owner.api("POST", f"/api/v1/events/{public}/replay")
    assert replayed.status_code == 202 and replayed.json["status"] == "pending"
    with client.rt.db.session() as s:
        assert s.get(InboundEvent, event.id).attempts == 0
    run_jobs()  # runs again (and fails again: the handler is broken on purpose)
    with client.rt.db.session() as s:
        assert s.get(InboundEvent, event.id).attempts == 1


def test_agents_cannot_see_the_connectors_pages(client, workspace):
    inst = client.install(workspace, "acme", {**SECRETS})
    agent = client.console(workspace, role="agent")
    assert agent.get("/connectors").status_code == 403
    assert agent.get(f"/connectors/{inst['id']}").status_code == 403
    assert agent.get("/connectors/new/acme").status_code == 403
    assert 'href="/connectors"' not in agent.get("/").get_data(as_text=True)
    assert client.console(workspace, role="admin").get("/connectors").status_code == 200


def test_another_workspaces_installation_is_not_found(client, workspace):
    other = client.new_workspace("Other shop")
    theirs = client.install(other, "acme", {**SECRETS}, name="Their store")
    owner = client.console(workspace, role="owner")
    assert owner.get(f"/connectors/{theirs['id']}").status_code == 404
    assert "Their store" not in owner.get("/connectors").get_data(as_text=True)
    assert owner.get("/connectors/new/no-such-connector").status_code == 404


def test_signed_out_visitors_go_to_the_login_page(client):
    response = client.get("/connectors")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_an_installation_whose_connector_is_gone_still_renders(client, workspace):
    from hub.core.models import Installation

    with client.rt.db.session() as s:
        row = Installation(workspace_id=workspace.id, connector="retired", name="Old shop", config={},
                           secrets={"token": "old-secret-value"}, state={})
        s.add(row)
        s.flush()
        inst_id = row.id
    owner = client.console(workspace, role="owner")
    page = owner.get(f"/connectors/{inst_id}")
    assert page.status_code == 200 and "Old shop" in page.get_data(as_text=True)
    assert "old-secret-value" not in page.get_data(as_text=True)
    assert "Old shop" in owner.get("/connectors").get_data(as_text=True)
