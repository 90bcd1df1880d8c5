"""Workspace A's key on workspace B's objects: 404 on every ``/api/v1`` route, as if they did not exist.

The routes come from the app's URL map at collection time, so a route added later is tested
without touching this file — and one whose id parameter this file cannot fill with one of B's
objects fails until ``B_OBJECT`` below learns it. Every listing (and its ``*_id`` query filters)
is checked not to show B's data, and B's objects are checked unchanged after each attempt.
"""
from __future__ import annotations

import json
import re
import secrets
import tempfile

import pytest
from cryptography.fernet import Fernet

from hub.core.models import OutboundDelivery
from hub.testing import HubClient, drain
from tests.test_tenancy_events import onboard

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# path parameter → which of B's objects fills it (``None``: a route outside the workspace API)
B_OBJECT = {"connection_id": "connection", "contact_id": "contact", "send_id": "send", "event_id": "event",
            "delivery_id": "delivery", "installation_id": "installation", "broadcast_id": "broadcast",
            "key_id": "key", "hook_id": "hook", "sub_id": "subscription",
            "message_id": "message", "conversation_id": "conversation"}
# path parameters naming a kind of thing rather than one of B's objects: such routes are listings
NAMES = {"event_type": "message.received"}
# routes that take no workspace key (the instance admin's, the OpenAPI document)
NOT_WORKSPACE_ROUTES = {("GET", "/api/v1/workspaces"), ("POST", "/api/v1/workspaces"), ("GET", "/api/v1/openapi.json"),
                        ("GET", "/api/v1/docs"), ("GET", "/api/v1/docs/assets/<path:filename>")}  # Swagger UI, public
# bodies that pass validation, so the ownership check is what answers; ``{B:kind}`` is replaced
BODIES = {("POST", "/api/v1/messages"): {"to": "14155552671", "text": "hi", "connection_id": "{B:connection}"},
          ("POST", "/api/v1/broadcasts"): {"template": "iso_tpl", "connection_id": "{B:connection}",
                                           "audience": {"contact_ids": ["{B:contact}"]}},
          ("POST", "/api/v1/subscriptions/<sub_id>/replay"): {"since": "2026-01-01T00:00:00Z"},
          ("POST", "/api/v1/actions/send-text"): {"to": "14155552671", "text": "hi", "connection_id": "{B:connection}"},
          ("POST", "/api/v1/actions/send-template"): {"to": "14155552671", "template": "iso_tpl",
                                                      "connection_id": "{B:connection}"},
          ("PATCH", "/api/v1/conversations/<conversation_id>"): {"status": "closed"},
          ("POST", "/api/v1/conversations/<conversation_id>/notes"): {"text": "intrusion"}}


def _api_routes() -> list[tuple[str, str]]:
    """``(method, rule)`` of every ``/api/v1`` route of an app built the way ``create_app`` builds it."""
    from hub.app import create_app
    from hub.config import Settings
    from hub.core import runtime as runtime_module
    from hub.core.plugins.manager import Plugins
    from tests.conftest import extra_plugins

    before = runtime_module._current  # create_app installs its runtime; the tests' own comes back
    settings = Settings(data_dir=tempfile.mkdtemp(prefix="coexhub-routes-"), database_url="sqlite://",
                        secret_keys=(Fernet.generate_key().decode(),), admin_token="adm_routes")
    try:
        app = create_app(runtime=runtime_module.Runtime(settings, plugins=Plugins(None, extra=extra_plugins())))
    finally:
        runtime_module._current = before
    return sorted((method, rule.rule) for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1")
                  for method in rule.methods if method in METHODS)


def params(rule: str) -> list[str]:
    return re.findall(r"<(?:[^:<>]+:)?([^<>]+)>", rule)


def named(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: NAMES.get(m.group(1), m.group(0)), rule)


ROUTES = _api_routes()
ID_ROUTES = [r for r in ROUTES if "<" in named(r[1]) and r not in NOT_WORKSPACE_ROUTES]
PLAIN_ROUTES = [(m, named(r)) for m, r in ROUTES if "<" not in named(r) and (m, r) not in NOT_WORKSPACE_ROUTES]


def fill(rule: str, objects: dict) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: str(objects[B_OBJECT[m.group(1)]]), rule)


class World:
    """Workspaces A (empty: its key is the intruder) and B (one object of every kind)."""

    def __init__(self, client: HubClient, simulator, runtime):
        self.client, self.rt = client, runtime
        self.a, self.b = client.new_workspace("A"), client.new_workspace("B")
        simulator.hub_client, simulator.hub_url = client.http, None
        conn = onboard(client, simulator, self.b)
        simulator.add_template(conn.waba_id, "iso_tpl", body_params=0)
        assert client.post("/api/v1/templates/sync", headers=self.b.headers).status_code == 200
        self.wa_id = "4917" + str(secrets.randbelow(10**9)).zfill(9)
        self.text = "b-private-" + secrets.token_hex(6)
        assert simulator.customer_message(conn.phone_number_id, self.wa_id, self.text, name="Bertha Private") \
            .status_code == 200
        drain(runtime, queues=("ingest",))
        b = self.b.headers
        [contact] = client.get("/api/v1/contacts", headers=b).json
        [event] = client.get("/api/v1/events", headers=b).json
        send = client.post("/api/v1/messages", headers=b, json={"to": self.wa_id, "text": self.text + "-reply"}).json
        broadcast = client.post("/api/v1/broadcasts", headers=b, json={
            "template": "iso_tpl", "audience": {"contact_ids": [contact["id"]]}}).json
        installation = client.install(self.b, "acme", {"webhook_secret": "b-secret-" + secrets.token_hex(4)},
                                      name="b-install-" + secrets.token_hex(4))
        assert client.post("/api/v1/workspace/keys", headers=b, json={"name": "b-second"}).status_code == 201
        key = next(k for k in client.get("/api/v1/workspace/keys", headers=b).json if k["name"] == "b-second")
        self.hook = f"http://127.0.0.1:9/b-hook-{secrets.token_hex(4)}"
        subscription = client.post("/api/v1/subscriptions", headers=b, json={"url": self.hook, "events": ["*"]}).json
        with runtime.db.session() as s:
            delivery = OutboundDelivery(workspace_id=self.b.id, kind="webhook", target="sub_b", status="dead",
                                        payload={"text": self.text}, attempts=9, last_error="HTTP 500")
            s.add(delivery)
        drain(runtime, queues=("ingest", "send"))
        hook = client.post("/api/v1/hooks", headers=b, json={"target_url": "http://127.0.0.1:9/b-hook",
                                                              "event": "connection.resumed"}).json
        [message] = [m for m in client.get("/api/v1/messages", headers=b).json if m["direction"] == "in"]
        [conversation] = client.get("/api/v1/conversations", headers=b).json
        assert client.post(f"/api/v1/conversations/{conversation['id']}/notes", headers=b,
                           json={"text": self.text + "-note"}).status_code == 201
        self.objects = {"connection": conn.id, "contact": contact["id"], "send": send["id"], "event": event["id"],
                        "message": message["id"], "delivery": client.public_id("dlv", delivery.id),
                        "installation": installation["id"], "broadcast": broadcast["id"], "key": key["id"],
                        "subscription": subscription["id"], "hook": hook["id"], "conversation": conversation["id"]}
        self.markers = [self.hook, conn.id, conn.phone_number_id, conn.waba_id, self.wa_id, self.text, "Bertha",
                        installation["id"], installation["name"], broadcast["id"], key["id"], "iso_tpl", "sub_b", "b-hook",
                        conversation["id"]]
        self.before = self.snapshot()

    def snapshot(self) -> dict:
        """What B sees of its objects (the fields an intrusion would change)."""
        get = lambda path: self.client.get(path, headers=self.b.headers)  # noqa: E731
        o = self.objects
        keys = {k["id"]: k.get("revoked_at") for k in get("/api/v1/workspace/keys").json}
        return {"connection": get(f"/api/v1/connections/{o['connection']}").json["status"],
                "contact": {k: get(f"/api/v1/contacts/{o['contact']}").json.get(k)
                            for k in ("tags", "opted_out", "marketing_opted_out", "attributes", "hold_until")},
                "send": get(f"/api/v1/sends/{o['send']}").json["status"],
                "installation": get(f"/api/v1/installations/{o['installation']}").json.get("enabled"),
                "event": get(f"/api/v1/events/{o['event']}").json["status"],
                "delivery": get(f"/api/v1/deliveries/{o['delivery']}").json["status"],
                "broadcast": get(f"/api/v1/broadcasts/{o['broadcast']}").status_code,
                "key": keys[o["key"]],
                "message": next(m["read_at"] for m in get("/api/v1/messages").json if m["id"] == o["message"]),
                "hook": [h["id"] for h in get("/api/v1/subscriptions?kind=zapier").json],
                "conversation": (get(f"/api/v1/conversations/{o['conversation']}").json["status"],
                                 len(get(f"/api/v1/conversations/{o['conversation']}/notes").json)),
                "subscription": {k: get(f"/api/v1/subscriptions/{o['subscription']}").json.get(k)
                                 for k in ("url", "events", "enabled", "previous_secret_expires_at")}}

    def body_for(self, method: str, rule: str):
        body = BODIES.get((method, rule))
        if body is None:
            return {} if method in ("POST", "PATCH", "PUT") else None
        text = json.dumps(body)
        for kind, value in self.objects.items():
            text = text.replace(f'"{{B:{kind}}}"', json.dumps(value))
        return json.loads(text)


@pytest.fixture(scope="module")
def world(coexhub_runtime, graph_simulator):
    from hub.app import create_app

    app = create_app(runtime=coexhub_runtime)
    app.config["TESTING"] = True
    for queue in coexhub_runtime.queues.all():
        queue.empty()
    return World(HubClient(app), graph_simulator, coexhub_runtime)


def test_routes_were_found():
    rules = {rule for _, rule in ROUTES}
    assert "/api/v1/events/<pid(evt):event_id>/replay" in rules and "/api/v1/connections/<connection_id>" in rules
    assert len(ID_ROUTES) >= 20, ID_ROUTES


@pytest.mark.parametrize("method, rule", ID_ROUTES, ids=[f"{m} {r}" for m, r in ID_ROUTES])
def test_another_workspaces_object_is_404(world, method, rule):
    unknown = [p for p in params(rule) if p not in B_OBJECT]
    assert not unknown, (f"{method} {rule}: id parameter(s) {unknown} cannot be filled with another workspace's "
                         "object — add them to B_OBJECT (and create one in World) so this route is tested")
    path = fill(rule, world.objects)
    if method == "GET":  # the control: B itself reads it
        own = world.client.get(path, headers=world.b.headers)
        assert own.status_code == 200, (path, own.json)
    response = world.client.open(path, method=method, headers=world.a.headers, json=world.body_for(method, rule))
    assert response.status_code == 404, (method, path, response.status_code, response.get_data(as_text=True))
    assert response.json["error"]["code"] == "not_found" or response.json["error"]["code"].startswith("unknown")
    leaked = [m for m in world.markers if m in response.get_data(as_text=True) and m not in path]  # the id asked for
    assert not leaked, (method, path, leaked)
    assert world.snapshot() == world.before, f"{method} {path} with A's key changed B's objects"


@pytest.mark.parametrize("method, rule", PLAIN_ROUTES, ids=[f"{m} {r}" for m, r in PLAIN_ROUTES])
def test_listings_and_references_show_nothing_of_another_workspace(world, method, rule):
    """Lists (also filtered by B's ids) hold none of B's data; a body naming B's objects is 404."""
    if method == "GET":
        spec = world.client.get("/api/v1/openapi.json").json["paths"].get(re.sub(r"<(?:[^:<>]+:)?([^<>]+)>",
                                                                                 r"{\1}", rule), {})
        query_ids = [p["name"] for p in spec.get("get", {}).get("parameters", []) if p.get("in") == "query"
                     and p["name"].endswith("_id") and p["name"] in B_OBJECT]
        query_ids += [name for name in B_OBJECT if f"?{name}=" in (spec.get("get", {}).get("description") or "")
                      or f"``?{name}=``" in (spec.get("get", {}).get("description") or "")]
        for query in [{}] + [{name: world.objects[B_OBJECT[name]]} for name in dict.fromkeys(query_ids)]:
            response = world.client.get(rule, headers=world.a.headers, query_string=query)
            assert response.status_code in (200, 404), (rule, query, response.get_data(as_text=True))
            leaked = [m for m in world.markers if m in response.get_data(as_text=True)]
            assert not leaked, (rule, query, leaked)
            if rule == "/api/v1/events":
                assert world.objects["event"] not in [e["id"] for e in response.json]
    else:
        spec = world.client.get("/api/v1/openapi.json").json
        operation = spec["paths"][rule].get(method.lower(), {})
        schema = ((operation.get("requestBody") or {}).get("content") or {}).get("application/json", {}).get("schema")
        references = sorted(n for n in property_names(spec, schema) if n in B_OBJECT or n[:-1] in B_OBJECT)
        if (method, rule) not in BODIES:
            assert not references, (f"{method} {rule} takes {references}: add a valid body naming B's objects "
                                    "to BODIES so the route is tested")
            return
        response = world.client.open(rule, method=method, headers=world.a.headers, json=world.body_for(method, rule))
        assert response.status_code == 404, (method, rule, response.get_data(as_text=True))
    assert world.snapshot() == world.before, f"{method} {rule} with A's key changed B's objects"


def property_names(spec: dict, schema: dict | None, seen: frozenset = frozenset()) -> set[str]:
    """Every property name in a request schema, nested ones included (``$ref`` followed)."""
    if not isinstance(schema, dict):
        return set()
    ref = schema.get("$ref")
    if ref:
        if ref in seen:
            return set()
        return property_names(spec, spec["components"]["schemas"][ref.rsplit("/", 1)[-1]], seen | {ref})
    names = set(schema.get("properties") or {})
    for sub in [*(schema.get("properties") or {}).values(), schema.get("items"), *schema.get("allOf", [])]:
        names |= property_names(spec, sub, seen)
    return names
