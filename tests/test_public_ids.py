"""Opaque public ids (``hub.api.ids``): what the API shows and accepts for rows the database
numbers — contacts, messages, sends, templates, inbound events, deliveries — is a keyed token
(``snd_…``), never the integer; any token that is not one of the caller's rows of that kind is 404."""
from __future__ import annotations

import re

import pytest
from cryptography.fernet import Fernet

from hub.api import ids
from hub.config import Settings
from hub.testing import payloads as p

CUSTOMER = "14155550188"
TOKEN = re.compile(r"^(ct|msg|snd|tpl|evt|dlv)_[a-z2-7]{26}$")


def send(client, conn, **body):
    r = client.post("/api/v1/messages", json={"to": "+" + CUSTOMER, "template": "order_update", "params": ["x"],
                                               **body}, headers=conn.workspace.headers)
    assert r.status_code == 202, r.json
    return r.json


def tampered(token: str) -> str:
    i = len(token) // 2
    return token[:i] + ("b" if token[i] != "b" else "c") + token[i + 1:]


@pytest.fixture
def world(client, coexistence, simulator, run_jobs):
    """A contact with a thread, three sends, an event, a template, all of one workspace."""
    h = coexistence.workspace.headers
    simulator.customer_message(coexistence.phone_number_id, CUSTOMER, "hello")
    run_jobs()
    sends = [send(client, coexistence, idempotency_key=f"k{i}") for i in range(3)]
    run_jobs()
    [contact] = client.get(f"/api/v1/contacts?q={CUSTOMER}", headers=h).json
    messages = client.get(f"/api/v1/contacts/{contact['id']}/messages", headers=h).json
    events = client.get("/api/v1/events", headers=h).json
    templates = client.get("/api/v1/templates", headers=h).json
    return {"h": h, "contact": contact, "sends": sends, "messages": messages, "events": events,
            "templates": templates}


def test_every_id_the_api_shows_is_a_token_of_its_kind(client, world):
    shown = {"ct": [world["contact"]["id"]], "snd": [s["id"] for s in world["sends"]],
             "msg": [m["id"] for m in world["messages"]], "evt": [e["id"] for e in world["events"]],
             "tpl": [t["id"] for t in world["templates"]]}
    for prefix, tokens in shown.items():
        assert tokens, prefix
        for token in tokens:
            assert isinstance(token, str) and TOKEN.match(token) and token.startswith(prefix + "_"), token
    assert all(s["contact_id"] == world["contact"]["id"] for s in world["sends"])
    # consecutive rows do not look consecutive: their tokens share no more than chance would
    rows = sorted(client.row_id(s["id"]) for s in world["sends"])
    assert rows == list(range(rows[0], rows[0] + 3))
    a, b, c = (s["id"][4:] for s in world["sends"])
    assert len({a[:4], b[:4], c[:4]}) == 3 and sum(x == y for x, y in zip(a, b)) < 10


def test_round_trip_through_paths_filters_and_bodies(client, world):
    h, contact, first = world["h"], world["contact"], world["sends"][0]
    got = client.get(f"/api/v1/sends/{first['id']}", headers=h)
    assert got.status_code == 200 and got.json["id"] == first["id"]
    filtered = client.get("/api/v1/sends", query_string={"contact_id": contact["id"]}, headers=h).json
    assert {s["id"] for s in world["sends"]} <= {s["id"] for s in filtered}
    assert {m["id"] for m in client.get("/api/v1/messages", query_string={"contact_id": contact["id"]},
                                        headers=h).json} == {m["id"] for m in world["messages"]}
    bc = client.post("/api/v1/broadcasts", json={"template": "order_update", "params": ["y"],
                                                 "audience": {"contact_ids": [contact["id"]]}}, headers=h)
    assert bc.status_code == 202 and bc.json["recipients"] == 1, bc.json
    assert client.get(f"/api/v1/contacts/{contact['id']}", headers=h).json["id"] == contact["id"]
    assert client.public_id("snd", client.row_id(first["id"])) == first["id"]


def test_a_token_of_another_kind_tampered_or_not_a_token_is_404(client, world):
    h, contact, send_id = world["h"], world["contact"]["id"], world["sends"][0]["id"]
    event_id, message_id = world["events"][0]["id"], world["messages"][0]["id"]
    row = client.row_id(send_id)
    wrong = [contact, message_id, event_id, "ct" + send_id[3:],  # another kind, or its prefix on this one
             tampered(send_id), send_id[:-1], send_id + "a", send_id.upper(), str(row),  # damaged, the old integer
             send_id[:-1] + chr(ord(send_id[-1]) ^ 1), "snd_" + "a" * 26, "snd_" + "8" * 26]
    for token in wrong:
        for method, path in (("GET", f"/api/v1/sends/{token}"), ("POST", f"/api/v1/sends/{token}/cancel"),
                             ("POST", f"/api/v1/sends/{token}/replay")):
            r = client.open(path, method=method, headers=h)
            assert r.status_code == 404 and r.json["error"]["code"] == "not_found", (path, r.status_code, r.json)
    for path in (f"/api/v1/contacts/{send_id}", f"/api/v1/contacts/{tampered(contact)}/messages",
                 f"/api/v1/events/{send_id}", f"/api/v1/deliveries/{event_id}", f"/api/v1/contacts/{message_id}"):
        assert client.get(path, headers=h).status_code == 404, path
    for query in ({"contact_id": send_id}, {"contact_id": tampered(contact)}, {"contact_id": str(row)}):
        for listing in ("/api/v1/sends", "/api/v1/messages"):
            r = client.get(listing, query_string=query, headers=h)
            assert r.status_code == 404 and r.json["error"]["message"].startswith("no contact "), (listing, query)
    for audience in ([send_id], [tampered(contact)], [str(client.row_id(contact))]):
        r = client.post("/api/v1/broadcasts", json={"template": "order_update", "params": ["y"],
                                                    "audience": {"contact_ids": audience}}, headers=h)
        assert r.status_code == 404 and r.json["error"]["code"] == "not_found", r.json
    r = client.post("/api/v1/broadcasts", json={"template": "order_update", "audience": {"contact_ids": [7]}},
                    headers=h)
    assert r.status_code == 422  # not a string at all: a malformed body, as before


def test_another_workspaces_token_is_404_and_names_no_number(client, world):
    other = client.new_workspace("Other")
    send_id, contact = world["sends"][0]["id"], world["contact"]["id"]
    for path in (f"/api/v1/sends/{send_id}", f"/api/v1/contacts/{contact}", f"/api/v1/events/{world['events'][0]['id']}"):
        r = client.get(path, headers=other.headers)
        assert r.status_code == 404 and r.json["error"]["code"] == "not_found", path
        assert not re.search(r"\b\d+\b", r.json["error"]["message"]), r.json  # the token, never the row number
    assert client.get("/api/v1/sends", query_string={"contact_id": contact}, headers=other.headers).json == []


def test_event_outcomes_and_webhook_answers_show_tokens(client, coexistence, run_jobs):
    h = coexistence.workspace.headers
    body = p.text_message(coexistence.waba_id, coexistence.phone_number_id, coexistence.display, CUSTOMER, "STOP")
    import json as _json

    raw = _json.dumps(body).encode()
    r = client.post("/webhooks/whatsapp", data=raw, headers={"Content-Type": "application/json",
                                                             **p.sign(raw, "test-app-secret")})
    assert r.status_code == 200 and TOKEN.match(r.json["event_id"]) and r.json["event_id"].startswith("evt_")
    run_jobs()
    event = client.get(f"/api/v1/events/{r.json['event_id']}", headers=h).json
    assert event["id"] == r.json["event_id"] and event["status"] == "processed"
    assert all(TOKEN.match(s) and s.startswith("snd_") for s in event["outcome"]["sends"]), event["outcome"]


def test_the_openapi_document_describes_ids_as_prefixed_strings(client):
    spec = client.get("/api/v1/openapi.json").json
    param = next(x for x in spec["paths"]["/api/v1/sends/{send_id}"]["parameters"] if x["name"] == "send_id")
    assert param["schema"] == {"type": "string", "pattern": ids.pattern("snd"), "description": "a send id"}
    schemas = spec["components"]["schemas"]
    assert schemas["SendOut"]["properties"]["id"]["pattern"] == "^snd_[a-z2-7]{26}$"
    assert schemas["SendOut"]["properties"]["contact_id"]["pattern"] == "^ct_[a-z2-7]{26}$"
    assert schemas["AudienceIn"]["properties"]["contact_ids"]["items"]["type"] == "string"
    for name, schema in schemas.items():  # no id anywhere is an integer any more
        for prop, value in (schema.get("properties") or {}).items():
            if prop == "id" or prop.endswith("_id") or prop.endswith("_ids"):
                kind = value.get("items", value).get("type")
                assert kind in ("string", None), (name, prop, value)
    for path, item in spec["paths"].items():
        parameters = [*item.get("parameters", []), *(x for o in item.values() if isinstance(o, dict)
                                                     for x in o.get("parameters", []))]
        for parameter in parameters:
            if parameter["name"].endswith("_id"):
                assert parameter["schema"]["type"] == "string", (path, parameter)


def test_tokens_depend_on_the_key_and_survive_a_rotation():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = ids.codec(Settings(secret_keys=(old,)))
    token = before.encode("snd", 42)
    rotating = ids.codec(Settings(secret_keys=(new, old)))  # a new key is prepended: the ids stay
    assert rotating.encode("snd", 42) == token and rotating.decode("snd", token) == 42
    assert ids.codec(Settings(secret_keys=(new,))).decode("snd", token) is None  # another instance's token
    pinned = ids.codec(Settings(secret_keys=(new,), id_key="ids-of-this-hub"))
    assert pinned.encode("snd", 42) == ids.codec(Settings(secret_keys=(old,), id_key="ids-of-this-hub")) \
        .encode("snd", 42) != token
    assert pinned.decode("snd", token) is None and pinned.decode_any(pinned.encode("dlv", 7)) == 7
    assert ids.codec(Settings(secret_keys=(new,), id_key=old)).encode("snd", 42) == token  # the old key kept for ids
    assert before.decode("ct", "ct" + token[3:]) is None and before.decode_any(token) == 42
    for value in (1, 2, 2**63 - 1):
        assert before.decode("msg", before.encode("msg", value)) == value
    for bad in (0, -1, 2**63):
        with pytest.raises(ValueError):
            before.encode("snd", bad)
    for junk in (None, 42, "", "snd_", "snd_" + "=" * 26, "snd_" + "é" * 26, "x" * 1000, "snd_" + "a" * 25 + "b"):
        assert before.decode("snd", junk) is None and before.decode_any(junk) is None


def test_a_new_kind_is_one_registration():
    with pytest.raises(ValueError):
        ids.PublicId("zz")
    with pytest.raises(ValueError):
        ids.register("snd", "something else")  # a prefix keeps its meaning
    with pytest.raises(ValueError):
        ids.register("Bad!", "thing")


def test_the_cli_translates_between_log_numbers_and_api_ids(client, runner, coexistence):
    token = send(client, coexistence)["id"]
    settings = client.rt.settings
    env = {"COEXHUB_SECRET_KEY": ",".join(settings.secret_keys), "COEXHUB_ADMIN_TOKEN": settings.admin_token,
           "COEXHUB_DATA_DIR": str(settings.data_dir), "COEXHUB_ID_KEY": settings.id_key}
    decoded = runner.invoke(["id", token], env=env)
    assert decoded.exit_code == 0 and decoded.output.strip() == f"send {client.row_id(token)}", decoded.output
    encoded = runner.invoke(["id", str(client.row_id(token)), "snd"], env=env)
    assert encoded.exit_code == 0 and encoded.output.strip() == token
    assert runner.invoke(["id", tampered(token)], env=env).exit_code != 0
    assert runner.invoke(["id", "0", "snd"], env=env).exit_code != 0
