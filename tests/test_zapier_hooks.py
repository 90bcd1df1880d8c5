"""Zapier REST hooks on the hub (issue 11, item 3) through real HTTP: subscribe, unsubscribe,
perform-list samples, signed delivery to a real local receiver, 410 removes the hook, and
workspace isolation."""
import dataclasses
import secrets
import threading

import pytest
from standardwebhooks import Webhook
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from hub.core.events import EVENT_TYPES, publish
from hub.core.models import Subscription


@pytest.fixture
def receiver():
    got, status = [], {"code": 200}

    @Request.application
    def app(request):
        got.append({"headers": dict(request.headers), "body": request.get_data()})
        return Response("ok", status=status["code"])

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/zap", got, status
    server.shutdown()
    thread.join(5)


@pytest.fixture
def refuse_private(coexhub_runtime):
    """The production default (the test kit allows loopback, where every stand-in lives)."""
    original = coexhub_runtime.settings
    coexhub_runtime.settings = dataclasses.replace(original, outbound_allow_private=False)
    yield
    coexhub_runtime.settings = original


def customer() -> str:
    return "1415558" + str(secrets.randbelow(10**4)).zfill(4)


def hook(client, workspace, url, event="message.received"):
    return client.post("/api/v1/hooks", json={"target_url": url, "event": event}, headers=workspace.headers)


def test_subscribe_and_unsubscribe(client, workspace, receiver):
    url, _, _ = receiver
    made = hook(client, workspace, url)
    assert made.status_code == 201, made.json
    assert made.json["event"] == "message.received" and made.json["target_url"] == url
    assert made.json["id"].startswith("sub")
    with client.rt.db.session() as s:
        row = s.get(Subscription, made.json["id"])
        assert row.kind == "zapier" and row.events == ["message.received"] and row.enabled
    assert client.delete(f"/api/v1/hooks/{made.json['id']}", headers=workspace.headers).status_code == 204
    assert client.delete(f"/api/v1/hooks/{made.json['id']}", headers=workspace.headers).status_code == 404
    with client.rt.db.session() as s:
        assert s.get(Subscription, made.json["id"]) is None


def test_bad_subscriptions_are_refused_with_a_reason(client, workspace, receiver):
    url, _, _ = receiver
    unknown = hook(client, workspace, url, event="message.teleported")
    assert unknown.status_code == 422 and "message.teleported" in unknown.json["error"]["message"]
    assert hook(client, workspace, "ftp://example.com/x").status_code == 400
    assert client.post("/api/v1/hooks", json={"event": "message.received"}, headers=workspace.headers).status_code == 422
    assert client.post("/api/v1/hooks", json={"target_url": url, "event": "message.received"}).status_code == 401


def test_private_targets_are_refused_at_subscribe_time(client, workspace, refuse_private):
    for url in ("http://127.0.0.1:8080/x", "http://10.0.0.7/x", "http://169.254.169.254/latest", "http://[::1]/x",
                "http://localhost:8080/x"):  # a name resolving to loopback
        refused = hook(client, workspace, url)
        assert refused.status_code == 400, url
        assert refused.json["error"]["message"], url


def published(client, workspace, text, event_type="message.received"):
    """An event through the hub's single fan-out (what WhatsApp processing calls)."""
    data = {**EVENT_TYPES[event_type].example, "body": {"text": {"body": text}}}
    with client.rt.db.session() as s:
        publish(s, workspace.id, event_type, data)


def test_samples_are_the_catalogue_example_then_real_events_newest_first(client, workspace):
    h = workspace.headers
    [example] = client.get("/api/v1/hooks/samples/message.received", headers=h).json
    assert example["type"] == "message.received" and example["id"]
    assert example["data"] == EVENT_TYPES["message.received"].example
    for text in ("first", "second"):
        published(client, workspace, text)
    samples = client.get("/api/v1/hooks/samples/message.received", headers=h).json
    assert [s["data"]["body"]["text"]["body"] for s in samples] == ["second", "first"]
    assert set(samples[0]) == set(example) and samples[0]["id"].startswith("evt_")
    assert client.get("/api/v1/hooks/samples/message.teleported", headers=h).status_code == 422
    other = client.new_workspace()  # another workspace sees none of these events
    [theirs] = client.get("/api/v1/hooks/samples/message.received", headers=other.headers).json
    assert theirs["data"] == EVENT_TYPES["message.received"].example


def test_a_delivery_is_signed_and_410_removes_the_hook(client, workspace, run_jobs, receiver):
    url, got, status = receiver
    made = hook(client, workspace, url).json
    hook(client, workspace, url, event="contact.opted_out")  # another event: not delivered here
    published(client, workspace, "hello zap")
    run_jobs()
    [request] = got
    payload = Webhook(made["secret"]).verify(request["body"], request["headers"])
    assert payload["type"] == "message.received" and payload["data"]["body"]["text"]["body"] == "hello zap"
    [latest] = client.get("/api/v1/hooks/samples/message.received", headers=workspace.headers).json
    assert payload == latest  # perform-list gives exactly what a live delivery carries
    assert request["headers"]["Webhook-Id"] == payload["id"]  # Zapier and receivers dedupe on it
    status["code"] = 410
    published(client, workspace, "are you there?")
    run_jobs()
    assert len(got) == 2
    with client.rt.db.session() as s:
        assert s.get(Subscription, made["id"]) is None
    assert client.delete(f"/api/v1/hooks/{made['id']}", headers=workspace.headers).status_code == 404
    published(client, workspace, "third")
    run_jobs()
    assert len(got) == 2


def test_another_workspaces_hook_does_not_exist(client, workspace, receiver):
    url, _, _ = receiver
    made = hook(client, workspace, url).json
    other = client.new_workspace()
    assert client.delete(f"/api/v1/hooks/{made['id']}", headers=other.headers).status_code == 404
    assert client.delete("/api/v1/hooks/sub_nope", headers=workspace.headers).status_code == 404
    assert client.delete(f"/api/v1/hooks/{made['id']}", headers=workspace.headers).status_code == 204


def test_whatsapp_events_reach_their_zap_end_to_end(client, coexistence, simulator, run_jobs, receiver):
    """A customer's message and an opt-out made by a Zap action each reach the hook of their event."""
    url, got, _ = receiver
    h, who = coexistence.workspace.headers, customer()
    received = hook(client, coexistence.workspace, url).json
    opted = hook(client, coexistence.workspace, url, event="contact.opted_out").json
    simulator.customer_message(coexistence.phone_number_id, who, "is my order shipped?")
    run_jobs()
    [message] = [Webhook(received["secret"]).verify(r["body"], r["headers"]) for r in got]
    assert message["type"] == "message.received" and message["data"]["contact"]["wa_id"] == who
    assert message["data"]["body"]["text"]["body"] == "is my order shipped?"
    assert client.get("/api/v1/hooks/samples/message.received", headers=h).json[0] == message
    assert client.post("/api/v1/actions/contact", headers=h, json={"phone": "+" + who, "opted_out": True}).status_code == 200
    run_jobs()
    assert len(got) == 2
    out = Webhook(opted["secret"]).verify(got[1]["body"], got[1]["headers"])
    assert out["type"] == "contact.opted_out" and out["data"]["contact"]["wa_id"] == who
