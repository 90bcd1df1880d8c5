"""Meta webhook ingest and normalization: every field, redelivery, reordering, bad input."""
import json
import secrets

from sqlalchemy import select

from hub.core.models import Connection, Contact, InboundEvent, Message, Template
from hub.testing import payloads as p
from tests import acme

CUSTOMER = "919876543210"


def post(client, envelope, secret="test-app-secret"):
    body = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
    return client.post("/webhooks/whatsapp", data=body,
                       headers={"Content-Type": "application/json", **p.sign(body, secret)})


def q(client, model, *where):
    with client.rt.db.session() as s:
        return s.scalars(select(model).where(*where)).all()


def thread(client, conn, wa_id=CUSTOMER):
    [contact] = q(client, Contact, Contact.workspace_id == conn.workspace.id, Contact.wa_id == wa_id)
    return contact, q(client, Message, Message.contact_id == contact.id)


def test_verify_handshake(client):
    ok = client.get("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=test-verify-token&hub.challenge=1158201444")
    assert ok.status_code == 200 and ok.get_data(as_text=True) == "1158201444"
    bad = client.get("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1")
    assert bad.status_code == 403


def test_signature_malformed_and_empty(client, coexistence):
    env = p.text_message(coexistence.waba_id, coexistence.phone_number_id, coexistence.display, CUSTOMER, "hi")
    assert post(client, env, secret="wrong").status_code == 401
    nonce = secrets.token_hex(6).encode()  # bodies are deduplicated on their hash, across tests too
    body = json.dumps(env).encode()
    assert client.post("/webhooks/whatsapp", data=body).status_code == 401
    for garbage in (b"{not json " + nonce, b"[1, 2, " + nonce + b"]"):  # signed: kept as rejected, answered 200
        kept = post(client, garbage)
        assert kept.status_code == 200 and kept.json["rejected"]
    empty = post(client, {"object": "whatsapp_business_account", "entry": [], "nonce": nonce.decode()})
    assert empty.status_code == 200 and empty.json["duplicate"] is False


def test_customer_message_creates_contact_thread_and_window(client, coexistence, run_jobs):
    env = p.text_message(coexistence.waba_id, coexistence.phone_number_id, coexistence.display, CUSTOMER,
                         "Is my order shipped?", name="Kerry Fisher", user_id="US.13491208655302741918")
    first, again = post(client, env), post(client, env)
    assert first.status_code == again.status_code == 200 and again.json["duplicate"] is True
    run_jobs()
    contact, messages = thread(client, coexistence)
    assert contact.profile_name == "Kerry Fisher" and contact.user_id == "US.13491208655302741918"
    assert contact.last_inbound_at is not None
    [msg] = messages
    assert (msg.direction, msg.origin, msg.type, msg.body["text"]["body"]) == ("in", "customer", "text",
                                                                               "Is my order shipped?")


def test_every_message_type_is_normalized_once_even_when_batched(client, coexistence, run_jobs):
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display, CUSTOMER)
    quoted = p.new_wamid()
    envelopes = [
        p.text_message(*c, "original", wamid=quoted),
        p.media_message(*c, kind="image", media_id="1479537139650973", mime_type="image/jpeg",
                        sha256="HgF3aUdWWg1ugA0KbTBg5Tz9dY9Ld4v4wzs0mMNf8/4=", caption="the damage"),
        p.location_message(*c),
        p.contacts_message(*c),
        p.interactive_reply(*c, kind="button_reply", reply_id="cod_confirm:1001", title="Confirm"),
        p.interactive_reply(*c, kind="list_reply", reply_id="size_m", title="Medium"),
        p.template_button_reply(*c, payload="cod_cancel:1001", text="Cancel order"),
        p.reaction(*c, message_id=quoted, emoji="\U0001F44D"),
        p.unsupported_message(*c),
        p.text_message(*c, "replying", context={"from": coexistence.display, "id": quoted}),
    ]
    assert post(client, p.batch(*envelopes)).status_code == 200
    assert post(client, envelopes[1]).json["duplicate"] is False  # a different body with a known wamid
    run_jobs()
    _, messages = thread(client, coexistence)
    kinds = sorted(m.type for m in messages)
    assert kinds == sorted(["text", "image", "location", "contacts", "interactive", "interactive", "button",
                            "reaction", "unsupported", "text"])
    by_type = {m.type: m for m in messages}
    assert by_type["image"].body["image"]["id"] == "1479537139650973"
    assert by_type["unsupported"].body["errors"][0]["code"] == 131051
    reply = [m for m in messages if m.context_wamid == quoted]
    assert len(reply) == 1 and reply[0].body["text"]["body"] == "replying"


def test_customer_delete_marks_the_original_revoked(client, coexistence, run_jobs):
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display, CUSTOMER)
    wamid = p.new_wamid()
    post(client, p.text_message(*c, "oops", wamid=wamid))
    post(client, p.revoke_message(*c, original_message_id=wamid))
    run_jobs()
    [original] = q(client, Message, Message.wamid == wamid)
    assert original.revoked_at is not None


def test_user_without_a_phone_number_is_keyed_by_bsuid_and_merged_later(client, coexistence, run_jobs):
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    post(client, p.text_message(*c, None, "hidden number", user_id="US.999"))
    run_jobs()
    [hidden] = q(client, Contact, Contact.workspace_id == coexistence.workspace.id, Contact.user_id == "US.999")
    assert hidden.wa_id is None
    post(client, p.text_message(*c, "15551234567", "now with number", user_id="US.999"))
    run_jobs()
    [merged] = q(client, Contact, Contact.workspace_id == coexistence.workspace.id, Contact.user_id == "US.999")
    assert merged.wa_id == "15551234567"
    assert len(q(client, Message, Message.contact_id == merged.id)) == 2


def test_statuses_never_downgrade_and_keep_pricing(client, coexistence, run_jobs):
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    wamid = p.new_wamid()
    for st in ("read", "delivered", "sent", "sent"):  # late and redelivered
        post(client, p.status(*c, wamid, st, CUSTOMER, pricing_category="marketing"))
    run_jobs()
    [msg] = q(client, Message, Message.wamid == wamid)
    assert msg.status == "read" and msg.sent_at and msg.delivered_at and msg.read_at
    assert msg.pricing["category"] == "marketing" and msg.pricing["billable"] is True
    failed = p.new_wamid()
    post(client, p.status(*c, failed, "failed", CUSTOMER,
                          errors=[{"code": 131026, "title": "Message undeliverable"}]))
    post(client, p.status(*c, failed, "delivered", CUSTOMER))
    run_jobs()
    [msg] = q(client, Message, Message.wamid == failed)
    assert msg.status == "failed" and msg.error["code"] == 131026


def test_owner_echoes_join_the_thread_and_edit_or_revoke_it(client, coexistence, run_jobs):
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display, CUSTOMER)
    post(client, p.text_message(*c, "Do you have it in blue?"))
    echo_id, other_id = p.new_wamid(), p.new_wamid()
    post(client, p.echo(*c, "Yes! Sending a photo.", wamid=echo_id))
    post(client, p.echo(*c, "typo", wamid=other_id))
    post(client, p.echo_edit(*c, original_message_id=echo_id, new_body="Yes, in blue!"))
    post(client, p.echo_revoke(*c, original_message_id=other_id))
    run_jobs()
    contact, messages = thread(client, coexistence)
    assert [m.origin for m in sorted(messages, key=lambda m: m.id)] == ["customer", "app_echo", "app_echo"]
    echo = next(m for m in messages if m.wamid == echo_id)
    assert echo.direction == "out" and echo.edited_at and echo.body["edited"]["text"]["body"] == "Yes, in blue!"
    assert next(m for m in messages if m.wamid == other_id).revoked_at is not None
    assert contact.last_inbound_at is not None and contact.hold_until is not None
    [conn] = q(client, Connection, Connection.id == coexistence.id)
    assert conn.last_app_activity_at is not None


def test_app_contacts_sync_add_edit_remove(client, coexistence, run_jobs):
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    post(client, p.state_sync(*c, [("add", "+1 555-010-2030", "Ana Silva", "Ana")]))
    post(client, p.state_sync(*c, [("add", "+1 555-010-2030", "Ana Silva Costa", "Ana")]))
    run_jobs()
    [ana] = q(client, Contact, Contact.workspace_id == coexistence.workspace.id, Contact.wa_id == "15550102030")
    assert (ana.full_name, ana.source, ana.app_removed_at) == ("Ana Silva Costa", "app_sync", None)
    post(client, p.state_sync(*c, [("remove", "+1 555-010-2030", None, None)]))
    run_jobs()
    [ana] = q(client, Contact, Contact.id == ana.id)
    assert ana.app_removed_at is not None and ana.full_name == "Ana Silva Costa"


def test_history_import_is_opt_in_ordered_by_progress_and_not_duplicated(client, coexistence, run_jobs):
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    live = p.new_wamid()
    post(client, p.text_message(*c, CUSTOMER, "live one", wamid=live))
    chunk = p.history_chunk(*c, phase=0, chunk_order=1, progress=40,
                            threads={CUSTOMER: [(p.new_wamid(), False, "old question", 1_700_000_000),
                                                (p.new_wamid(), True, "old answer", 1_700_000_100)]})
    post(client, chunk)
    run_jobs()
    [conn] = q(client, Connection, Connection.id == coexistence.id)
    assert conn.history_status.get("ignored_chunks") == 1  # not opted in: nothing imported
    client.patch(f"/api/v1/connections/{coexistence.id}", json={"history_opt_in": True},
                 headers=coexistence.workspace.headers)
    later = p.history_chunk(*c, phase=2, chunk_order=3, progress=100,
                            threads={CUSTOMER: [(live, False, "live one", 1_700_000_200)]})
    post(client, later)
    post(client, {**chunk, "entry": chunk["entry"]})  # same chunk again, now opted in (new body? no: same)
    post(client, p.history_chunk(*c, phase=0, chunk_order=1, progress=40,
                                 threads={CUSTOMER: [(p.new_wamid(), False, "older", 1_690_000_000)]}))
    run_jobs()
    [conn] = q(client, Connection, Connection.id == coexistence.id)
    assert conn.history_status["state"] == "complete" and conn.history_status["progress"] == 100
    assert set(conn.history_status["chunks"]) == {"0:1", "2:3"}
    _, messages = thread(client, coexistence)
    assert len([m for m in messages if m.wamid == live]) == 1  # the live message is not duplicated
    assert [m.origin for m in messages if m.body.get("text", {}).get("body") == "older"] == ["history"]
    post(client, p.history_declined(*c))
    run_jobs()
    [conn] = q(client, Connection, Connection.id == coexistence.id)
    assert conn.history_status["state"] == "declined" and conn.history_status["error"]["code"] == 2593109


def test_partner_removed_pauses_and_reconnect_resumes(client, coexistence, run_jobs):
    post(client, p.account_update(coexistence.waba_id, "PARTNER_REMOVED", reason="PRIMARY_INACTIVITY"))
    run_jobs()
    [conn] = q(client, Connection, Connection.id == coexistence.id)
    assert conn.status == "paused" and "PRIMARY_INACTIVITY" in conn.pause_reason
    post(client, p.account_update(coexistence.waba_id, "ACCOUNT_RECONNECTED"))
    run_jobs()
    [conn] = q(client, Connection, Connection.id == coexistence.id)
    assert conn.status == "active" and conn.pause_reason is None


def test_template_status_updates_and_quality(client, coexistence, run_jobs):
    [tpl] = q(client, Template, Template.waba_id == coexistence.waba_id, Template.name == "order_update")
    post(client, p.template_status(coexistence.waba_id, "PAUSED", int(tpl.meta_id), "order_update", "en_US"))
    post(client, p.quality_update(coexistence.waba_id, coexistence.display, "FLAGGED", "TIER_2K"))
    run_jobs()
    [tpl] = q(client, Template, Template.id == tpl.id)
    assert tpl.status == "PAUSED"
    [conn] = q(client, Connection, Connection.id == coexistence.id)
    assert conn.quality["event"] == "FLAGGED" and conn.quality["current_limit"] == "TIER_2K"
    h = coexistence.workspace.headers
    promo = client.post("/api/v1/messages", json={"to": "+" + CUSTOMER, "template": "promo", "params": ["x"]},
                        headers=h).json
    run_jobs()
    held = client.get(f"/api/v1/sends/{promo['id']}", headers=h).json
    assert (held["status"], held["hold_reason"]) == ("scheduled", "quality_flagged")  # marketing waits
    post(client, p.template_status(coexistence.waba_id, "REINSTATED", int(tpl.meta_id), "order_update", "en_US"))
    run_jobs()
    assert q(client, Template, Template.id == tpl.id)[0].status == "APPROVED"


def test_user_preferences_stop_and_resume_marketing(client, coexistence, run_jobs):
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display, CUSTOMER)
    post(client, p.user_preferences(*c, "stop"))
    run_jobs()
    contact, _ = thread(client, coexistence)
    assert contact.marketing_opted_out and not contact.opted_out
    post(client, p.user_preferences(*c, "resume"))
    run_jobs()
    contact, _ = thread(client, coexistence)
    assert not contact.marketing_opted_out


def test_unknown_number_is_kept_and_counted(client, coexistence, run_jobs):
    r = post(client, p.text_message("1", "999000999", "15550009999", CUSTOMER, "to nobody"))
    run_jobs()
    [event] = q(client, InboundEvent, InboundEvent.id == client.row_id(r.json["event_id"]))
    assert event.status == "unrouted" and event.body
    assert 'coexhub_ingest_total{provider="whatsapp",result="unrouted"}' in client.get("/metrics").get_data(as_text=True)


def test_unknown_fields_and_types_never_fail(client, coexistence, run_jobs):
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    odd = p.envelope(coexistence.waba_id, "brand_new_field", {"metadata": p.metadata(*c[1:]), "x": [None]})
    weird = p.message(*c, {"from": CUSTOMER, "id": p.new_wamid(), "timestamp": "1", "type": "hologram",
                           "hologram": {"id": 1}})
    system = p.message(*c, {"from": CUSTOMER, "id": p.new_wamid(), "timestamp": "1700000000", "type": "system",
                            "system": {"body": "changed number", "type": "user_changed_number"}}, contacts=[])
    ids = []
    for env in (odd, weird, system):
        response = post(client, env)
        assert response.status_code == 200
        ids.append(client.row_id(response.json["event_id"]))
    run_jobs()
    events = q(client, InboundEvent, InboundEvent.id.in_(ids))
    assert [(e.status, e.last_error) for e in events] == [("processed", None)] * 3
    assert next(e for e in events if e.id == ids[0]).outcome["ignored_fields"] == ["brand_new_field"]


def test_two_records_of_one_person_merge_without_losing_an_opt_out(client, coexistence, run_jobs):
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    post(client, p.text_message(*c, "15557654321", "by number"))
    post(client, p.text_message(*c, None, "STOP", user_id="US.777"))  # same person, number hidden
    run_jobs()
    post(client, p.text_message(*c, "15557654321", "both ids now", user_id="US.777"))
    run_jobs()
    [person] = q(client, Contact, Contact.workspace_id == coexistence.workspace.id,
                 (Contact.user_id == "US.777") | (Contact.wa_id == "15557654321"))
    assert (person.wa_id, person.user_id, person.opted_out) == ("15557654321", "US.777", True)
    assert len(q(client, Message, Message.contact_id == person.id)) == 3


def test_signed_envelopes_of_the_wrong_shape_are_kept_as_rejected(client):
    nonce = secrets.token_hex(6).encode()  # bodies are deduplicated on their hash, across tests too
    for body in (b'{"entry": [1]}', b'{"entry": [{"changes": "ab"}]}', b'{"entry": {"a": 1}}',
                 b'{"entry": [{"changes": [{"field": "messages", "value": [1]}]}]}', b'"text"'):
        body = body[:-1] + b', "n": "' + nonce + b'"}' if body.startswith(b"{") else b'"' + nonce + b'"'
        r = post(client, body)
        assert r.status_code == 200 and r.json["rejected"], body
        [event] = q(client, InboundEvent, InboundEvent.id == client.row_id(r.json["event_id"]))
        assert (event.status, event.body) == ("rejected", body)


def test_an_edit_or_delete_that_arrives_before_its_message_is_kept(client, coexistence, run_jobs):
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display, CUSTOMER)
    edited, deleted = p.new_wamid(), p.new_wamid()
    post(client, p.echo_edit(*c, original_message_id=edited, new_body="final text"))
    post(client, p.revoke_message(*c, original_message_id=deleted))
    run_jobs()
    post(client, p.echo(*c, "first text", wamid=edited))
    post(client, p.text_message(*c, "oops", wamid=deleted))
    run_jobs()
    [e] = q(client, Message, Message.wamid == edited)
    [d] = q(client, Message, Message.wamid == deleted)
    assert e.edited_at and e.body["edited"]["text"]["body"] == "final text" and e.origin == "app_echo"
    assert d.revoked_at is not None and d.direction == "in"


def test_domain_events_reach_plugins_and_their_actions_run(client, coexistence, run_jobs):
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display, CUSTOMER)
    acme.SEEN_EVENTS.clear()
    post(client, p.batch(p.text_message(*c, "tag me"), p.echo(*c, "sure"),
                         p.state_sync(*c[:3], [("add", "+14155550123", "Li Wei", "Li")])))
    run_jobs()
    assert [t for t, ws in acme.SEEN_EVENTS if ws == coexistence.workspace.id] == \
        ["message.received", "message.echoed", "contact.synced"]
    contact, _ = thread(client, coexistence)
    assert contact.tags == ["tagged-by-plugin"]
