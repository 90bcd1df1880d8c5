"""Hostile or odd webhooks: whatever is signed is stored and answered 2xx (``rejected`` when it
cannot be understood), unsigned garbage is 401/400, and nothing is ever a 500."""
import json
import secrets

import pytest
from sqlalchemy import select

from hub.core.models import InboundEvent
from hub.core.verifiers import IncomingRequest, TimestampedHmac
from hub.testing import payloads as p
from tests import acme

CUSTOMER = "919876543210"


def post_meta(client, body: bytes, secret="test-app-secret"):
    return client.post("/webhooks/whatsapp", data=body,
                       headers={"Content-Type": "application/json", **p.sign(body, secret)})


def event(client, event_id) -> InboundEvent:
    with client.rt.db.session() as s:
        return s.scalars(select(InboundEvent).where(InboundEvent.id == client.row_id(event_id))).one()


def deep(levels: int) -> bytes:
    return b'{"a": ' * levels + b"1" + b"}" * levels


def text_envelope(coexistence, **change) -> dict:
    env = p.text_message(coexistence.waba_id, coexistence.phone_number_id, coexistence.display, CUSTOMER, "hi")
    env["entry"][0]["changes"][0].update(change)
    return env


@pytest.mark.parametrize("metadata", ["a string", ["a", "list"], 42, None, True])
def test_signed_envelope_with_odd_metadata_is_stored_and_answered_200(client, coexistence, metadata):
    env = text_envelope(coexistence)
    env["entry"][0]["changes"][0]["value"]["metadata"] = metadata
    response = post_meta(client, json.dumps(env).encode())
    assert response.status_code == 200, response.json
    row = event(client, response.json["event_id"])
    assert json.loads(row.body) == env
    assert row.workspace_id == coexistence.workspace.id and row.status == "pending"  # routed by the WABA id


@pytest.mark.parametrize("field", [{"an": "object"}, ["list"], 7, None])
def test_signed_envelope_whose_field_is_not_a_string_is_stored(client, coexistence, field):
    response = post_meta(client, json.dumps(text_envelope(coexistence, field=field)).encode())
    assert response.status_code == 200, response.json
    row = event(client, response.json["event_id"])
    assert row.topic is None and row.status == "pending"


def test_lone_surrogate_and_nul_in_phone_number_id_are_stored(client, coexistence):
    for number in ("\ud800", "12\x0034", "9" * 500):
        env = text_envelope(coexistence)
        env["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = number
        env["entry"][0]["id"] = number
        body = json.dumps(env).encode()  # ensure_ascii: the surrogate travels as the escape \ud800
        response = post_meta(client, body)
        assert response.status_code == 200, response.json
        row = event(client, response.json["event_id"])
        assert row.body == body and row.workspace_id is None


@pytest.mark.parametrize("template, reason", [  # {n}: a nonce (bodies are deduplicated on their hash)
    (b'{"n": "{n}", "a": ' + deep(5000) + b"}", "nested too deeply"), (b"{not json {n}", "not JSON"),
    (b"\xff\xfe\x00{n}", "not JSON"), (b"[1, 2, {n}]", "not a JSON object"), (b'"text {n}"', "not a JSON object"),
    (b'{"n": "{n}", "entry": "x"}', "entry must be a list"),
    (b'{"n": "{n}", "entry": [{"changes": [1]}]}', "changes must be"),
])
def test_signed_body_that_is_no_envelope_is_kept_as_rejected(client, template, reason):
    body = template.replace(b"{n}", str(secrets.randbelow(10**12)).encode())
    response = post_meta(client, body)
    assert response.status_code == 200 and reason in response.json["rejected"]
    row = event(client, response.json["event_id"])
    assert (row.status, row.body, row.enqueued_at) == ("rejected", body, None)
    assert reason in row.last_error
    assert client.rt.queues["ingest"].count == 0  # never processed, never retried
    again = post_meta(client, body)  # Meta's redelivery of the same bytes
    assert again.status_code == 200 and again.json["duplicate"] is True


def test_unsigned_garbage_is_still_refused(client):
    assert client.post("/webhooks/whatsapp", data=deep(5000)).status_code == 401
    assert post_meta(client, b"{not json", secret="wrong").status_code == 401


def test_rejected_meta_event_is_listed_in_its_workspace(client, coexistence):
    env = {"object": "whatsapp_business_account",
           "entry": [{"id": coexistence.waba_id, "changes": [{"field": "messages", "value": "garbage"}]}]}
    response = post_meta(client, json.dumps(env).encode())
    assert response.status_code == 200 and "rejected" in response.json
    listed = client.get("/api/v1/events?status=rejected", headers=coexistence.workspace.headers).json
    assert [(e["id"], e["status"]) for e in listed] == [(response.json["event_id"], "rejected")]
    assert "changes must be" in listed[0]["last_error"]
    replay = client.post(f"/api/v1/events/{listed[0]['id']}/replay", headers=coexistence.workspace.headers)
    assert replay.status_code == 409  # processing it again would not make it understandable


def test_verify_token_failure_answers_json(client):
    response = client.get("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1")
    assert response.status_code == 403 and response.is_json
    assert response.json["error"]["code"] == "verification_failed"
    assert "hub.verify_token" in response.json["error"]["message"]


# -- connector routes ----------------------------------------------------------------------------

def acme_headers(webhook_id="wh-x", topic="order.created"):
    return {"X-Acme-Topic": topic, "X-Acme-Webhook-Id": webhook_id}


@pytest.mark.parametrize("body, reason", [(deep(5000), "nested too deeply"), (b"{not json", "cannot be decoded"),
                                          (b"\xff\xfe", "cannot be decoded")])
def test_signed_unreadable_connector_body_is_rejected_listed_and_never_processed(
        client, workspace, acme_installation, body, reason):
    inst, secrets = acme_installation
    response = client.deliver("acme", inst["id"], body, secrets, acme_headers())
    assert response.status_code == 200, response.json
    assert reason in response.json["rejected"]
    row = event(client, response.json["event_id"])
    assert (row.status, row.workspace_id, row.body) == ("rejected", workspace.id, body)
    assert client.rt.queues["ingest"].count == 0
    listed = client.get("/api/v1/events?status=rejected", headers=workspace.headers).json
    assert [e["id"] for e in listed] == [client.public_id("evt", row.id)]


def test_unsigned_unreadable_connector_body_is_401(client, acme_installation):
    inst, _ = acme_installation
    response = client.post(f"/webhooks/acme/{inst['id']}", data=deep(5000), headers=acme_headers())
    assert response.status_code == 401


def test_odd_ids_and_topics_from_headers_and_bodies_are_stored(client, acme_installation):
    inst, secrets = acme_installation
    for webhook_id, topic in (("x" * 1000, "t" * 1000), ("é" * 300, "ü" * 300)):
        response = client.deliver("acme", inst["id"], {"id": 1}, secrets, acme_headers(webhook_id, topic))
        assert response.status_code == 200, response.json
        row = event(client, response.json["event_id"])
        assert len(row.dedupe_key) <= 255 and len(row.topic) <= 128


def test_timestamped_hmac_refuses_non_ascii_digits_instead_of_raising():
    verifier, body = TimestampedHmac("Sig"), b"{}"
    for header in ("t=²,v1=00", "t=١٢٣,v1=00", "t=" + "9" * 5000 + ",v1=00", "t=,v1=", "v1"):
        assert verifier.verify(IncomingRequest({"Sig": header}, body), {"signing_key": "k"}) is False


def test_a_timestamped_hmac_route_answers_401_to_odd_timestamps(client, acme_installation, monkeypatch):
    inst, secrets = acme_installation
    monkeypatch.setattr(acme.Acme, "verify", TimestampedHmac("X-Acme-Signature", key="webhook_secret"))
    for header in ("t=²,v1=00", "t=9999999999999999999999,v1=00"):
        response = client.post(f"/webhooks/acme/{inst['id']}", data=b"{}",
                               headers={**acme_headers(), "X-Acme-Signature": header})
        assert response.status_code == 401, response.json
    good = client.deliver("acme", inst["id"], {"id": 1}, secrets, acme_headers("wh-ts"))
    assert good.status_code == 200 and "rejected" not in good.json
