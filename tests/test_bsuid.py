"""BSUID-only recipients end to end: a user known only by a business-scoped user ID writes in,
is answered by BSUID (Meta's ``recipient`` field), statuses map back, ``user_changed_user_id``
re-keys the contact, and authentication templates are refused before Meta."""
import datetime as dt
import json
import secrets
import time

import httpx
from sqlalchemy import select

from hub.core.actions import SendTemplate
from hub.core.bsuid import SEND_FIELD
from hub.core.execute import Executor
from hub.core.models import Contact, ContactWindow, InboundEvent, Message, Send, utcnow
from hub.core.processing import enqueue_all


def bsuid() -> str:
    return "US." + str(secrets.randbelow(10**19) + 10**19)


def contacts_of(client, workspace):
    with client.rt.db.session() as s:
        return s.scalars(select(Contact).where(Contact.workspace_id == workspace.id).order_by(Contact.id)).all()


def sends_of(client, workspace):
    with client.rt.db.session() as s:
        return s.scalars(select(Send).where(Send.workspace_id == workspace.id).order_by(Send.id)).all()


def messages_of(client, contact_id):
    with client.rt.db.session() as s:
        return s.scalars(select(Message).where(Message.contact_id == contact_id).order_by(Message.id)).all()


def post(client, conn, **body):
    return client.post("/api/v1/messages", json=body, headers=conn.workspace.headers)


def test_a_bsuid_only_user_writes_in_and_is_answered_by_bsuid(client, coexistence, simulator, run_jobs):
    user = bsuid()
    r = simulator.customer_message(coexistence.phone_number_id, None, "hi", user_id=user, username="bob.shop")
    assert r.status_code == 200
    run_jobs()
    [contact] = contacts_of(client, coexistence.workspace)
    assert (contact.wa_id, contact.user_id, contact.username) == (None, user, "bob.shop")
    shown = client.get(f"/api/v1/contacts/{client.public_id('ct', contact.id)}", headers=coexistence.workspace.headers).json
    assert shown["user_id"] == user and shown["username"] == "bob.shop" and shown["windows"][0]["window_open"]

    text = post(client, coexistence, to_user_id=user, text="Hello!")
    template = post(client, coexistence, contact_id=client.public_id("ct", contact.id), template="order_update", params=["#7"])
    assert (text.status_code, template.status_code) == (202, 202), (text.json, template.json)
    assert text.json["contact_id"] == template.json["contact_id"] == client.public_id("ct", contact.id) and text.json["to"] == user
    assert text.json["connection_reason"] == "customer_last_wrote"  # routed by where the BSUID user wrote
    run_jobs()
    requests = simulator.sent(coexistence.phone_number_id)
    assert len(requests) == 2
    for request in requests:
        assert request["body"][SEND_FIELD] == user and "to" not in request["body"]
        assert request["response"]["contacts"] == [{"input": user, "user_id": user}]
    assert simulator.flush_statuses() >= 6  # other tests of this worker may have left some
    run_jobs()
    sent = sends_of(client, coexistence.workspace)
    assert [s.status for s in sent] == ["sent", "sent"]
    outbound = [m for m in messages_of(client, contact.id) if m.direction == "out"]
    assert [m.status for m in outbound] == ["read", "read"]  # statuses carried only recipient_user_id
    assert len(contacts_of(client, coexistence.workspace)) == 1

    simulator.customer_message(coexistence.phone_number_id, None, "new name", user_id=user, username="bob.new")
    run_jobs()
    simulator.usernames[user] = "bob.newest"  # changed again: delivered/read statuses carry it
    assert post(client, coexistence, to_user_id=user, text="noted").status_code == 202
    run_jobs()
    assert simulator.flush_statuses() >= 3
    run_jobs()
    [contact] = contacts_of(client, coexistence.workspace)
    assert contact.username == "bob.newest"


def test_statuses_with_only_recipient_user_id_find_the_contact(client, coexistence, simulator, run_jobs):
    """A status for a message the hub has no record of (sent elsewhere) still lands on the contact."""
    from hub.testing import payloads as p

    user = bsuid()
    simulator.customer_message(coexistence.phone_number_id, None, "hi", user_id=user)
    wamid = p.new_wamid()
    simulator.deliver(p.status(coexistence.waba_id, coexistence.phone_number_id, coexistence.display, wamid,
                               "delivered", None, user_id=user))
    run_jobs()
    [contact] = contacts_of(client, coexistence.workspace)
    assert any(m.wamid == wamid and m.status == "delivered" for m in messages_of(client, contact.id))


def test_bad_recipients_are_clear_4xx(client, coexistence):
    assert post(client, coexistence, text="x").status_code == 422  # no recipient
    assert post(client, coexistence, to="+14155550100", to_user_id=bsuid(), text="x").status_code == 422
    bad = post(client, coexistence, to_user_id="14155550100", text="x")
    assert bad.status_code == 422 and bad.json["error"]["code"] == "invalid_user_id"
    assert post(client, coexistence, contact_id=client.public_id("ct", 987654321), text="x").status_code == 404


def test_authentication_templates_to_a_bsuid_are_refused_before_meta(client, coexistence, simulator, run_jobs):
    coexistence.add_template("login_code", category="AUTHENTICATION", body_params=1)
    user, phone = bsuid(), "1415555" + str(secrets.randbelow(10**4)).zfill(4)
    simulator.customer_message(coexistence.phone_number_id, None, "hi", user_id=user)
    simulator.customer_message(coexistence.phone_number_id, phone, "hi")
    run_jobs()
    before = len(simulator.requests)

    refused = post(client, coexistence, to_user_id=user, template="login_code", params=["123456"])
    assert refused.status_code == 422 and refused.json["error"]["code"] == "authentication_needs_phone"
    assert "phone number" in refused.json["error"]["message"]
    assert post(client, coexistence, to="+" + phone, template="login_code", params=["123456"]).status_code == 202

    with client.rt.db.session() as s:  # a connector's send: refused at delivery, with the reason on the send
        executor = Executor(s, coexistence.workspace.id, origin="automation")
        executor.run([SendTemplate(to=user, template="login_code", params=["654321"])])
        jobs = executor.jobs
    enqueue_all(client.rt, jobs)
    for contact in contacts_of(client, coexistence.workspace):
        r = client.patch(f"/api/v1/contacts/{client.public_id('ct', contact.id)}", json={"add_tags": ["otp"]},
                         headers=coexistence.workspace.headers)
        assert r.status_code == 200, r.json
    bc = client.post("/api/v1/broadcasts", json={"template": "login_code", "params": ["1"], "audience": {"tags": ["otp"]}},
                     headers=coexistence.workspace.headers)
    assert bc.status_code == 202, bc.json
    assert bc.json["excluded"]["authentication_needs_phone"] == 1 and bc.json["recipients"] == 1
    run_jobs()
    by_to = {s.to: s for s in sends_of(client, coexistence.workspace) if s.template_name == "login_code"}
    connector = next(s for s in sends_of(client, coexistence.workspace) if s.origin == "automation")
    assert connector.status == "failed" and "phone number" in connector.last_error and connector.to == user
    assert by_to[phone].status == "sent"
    reached = [r["body"] for r in simulator.requests[before:] if r["phone_number_id"] == coexistence.phone_number_id]
    assert reached and all(SEND_FIELD not in b for b in reached)  # nothing went to Meta for the BSUID


def test_the_simulator_refuses_authentication_templates_to_a_bsuid_like_meta(coexistence, simulator):
    coexistence.add_template("otp_sim", category="AUTHENTICATION", body_params=1)
    with simulator.app.test_client() as http:
        r = http.post(f"/v25.0/{coexistence.phone_number_id}/messages",
                      headers={"Authorization": f"Bearer {coexistence.token}"},
                      json={"messaging_product": "whatsapp", SEND_FIELD: bsuid(), "type": "template",
                            "template": {"name": "otp_sim", "language": {"code": "en_US"},
                                         "components": [{"type": "body", "parameters": [{"type": "text", "text": "1"}]}]}})
    assert r.status_code == 400
    error = r.get_json()["error"]
    assert error["code"] == 131062 and "Business-scoped User ID" in error["message"]
    assert error["error_data"]["messaging_product"] == "whatsapp"


def test_user_changed_user_id_rekeys_the_contact_keeping_history_opt_outs_and_holds(
        client, coexistence, simulator, run_jobs):
    old, new = bsuid(), bsuid()
    pnid = coexistence.phone_number_id
    simulator.customer_message(pnid, None, "hi", user_id=old, username="ana")
    simulator.echo(pnid, None, "Ana, I will call you", to_user_id=old)  # the owner takes over: automations hold
    run_jobs()
    [contact] = contacts_of(client, coexistence.workspace)
    later = post(client, coexistence, to_user_id=old, template="order_update", params=["#1"],
                 send_at=(utcnow() + dt.timedelta(hours=2)).isoformat() + "Z")
    assert later.status_code == 202 and later.json["status"] == "scheduled"
    simulator.customer_message(pnid, None, "STOP", user_id=old)
    run_jobs()
    history = len(messages_of(client, contact.id))

    changed = simulator.user_changed_user_id(pnid, old, new)
    assert changed.status_code == 200
    run_jobs()
    with client.rt.db.session() as s:
        outcome = s.get(InboundEvent, client.row_id(changed.json["event_id"])).outcome
    assert outcome["events"] == 2 and not outcome.get("skipped")  # message.received, contact.user_id_changed
    [after] = contacts_of(client, coexistence.workspace)
    assert (after.id, after.user_id, after.username, after.opted_out) == (contact.id, new, "ana", True)
    msgs = messages_of(client, contact.id)
    assert len(msgs) == history + 1 and msgs[-1].type == "system"  # the audit note in the thread
    assert msgs[-1].body["system"]["type"] == "user_changed_user_id"
    with client.rt.db.session() as s:
        window = s.get(ContactWindow, (coexistence.id, contact.id))
        assert window.hold_until and window.hold_until > utcnow() and window.last_inbound_at
    [scheduled] = [s for s in sends_of(client, coexistence.workspace) if s.id == client.row_id(later.json["id"])]
    assert scheduled.to == new and scheduled.contact_id == contact.id

    simulator.customer_message(pnid, None, "START", user_id=new)
    run_jobs()
    [still] = contacts_of(client, coexistence.workspace)
    assert still.id == contact.id and not still.opted_out
    confirmations = [b for b in coexistence.sent() if b.get("type") == "text"]
    assert confirmations[-1][SEND_FIELD] == new  # START confirmed to the new BSUID


def test_a_message_from_the_new_bsuid_before_the_system_message_is_merged(client, coexistence, simulator, run_jobs):
    old, new = bsuid(), bsuid()
    pnid = coexistence.phone_number_id
    simulator.customer_message(pnid, None, "STOP", user_id=old)
    run_jobs()
    phone = "1415555" + str(secrets.randbelow(10**4)).zfill(4)
    simulator.customer_message(pnid, phone, "hello again", user_id=new)  # overtook the system message
    run_jobs()
    assert len(contacts_of(client, coexistence.workspace)) == 2
    simulator.user_changed_user_id(pnid, old, new)
    run_jobs()
    [one] = contacts_of(client, coexistence.workspace)
    assert (one.user_id, one.wa_id, one.opted_out) == (new, phone, True)  # nothing lost in the merge
    assert [m.body.get("text", {}).get("body") for m in messages_of(client, one.id) if m.direction == "in"][:2] == \
        ["STOP", "hello again"]


def test_a_contact_with_a_phone_and_a_bsuid_keeps_both_and_is_sent_to_by_phone(
        client, coexistence, simulator, run_jobs):
    user, phone = bsuid(), "1415555" + str(secrets.randbelow(10**4)).zfill(4)
    simulator.customer_message(coexistence.phone_number_id, phone, "hi", user_id=user)
    run_jobs()
    [contact] = contacts_of(client, coexistence.workspace)
    assert (contact.wa_id, contact.user_id) == (phone, user)
    r = post(client, coexistence, contact_id=client.public_id("ct", contact.id), text="Hello")
    assert r.status_code == 202 and r.json["to"] == phone
    run_jobs()
    [request] = coexistence.sent()
    assert request["to"] == phone and SEND_FIELD not in request
    simulator.flush_statuses()
    run_jobs()
    assert [m.status for m in messages_of(client, contact.id) if m.direction == "out"] == ["read"]


def test_control_api_and_cli_play_bsuid_users(client, coexistence, simulator, run_jobs, runner):
    old, new, pnid = bsuid(), bsuid(), coexistence.phone_number_id
    with httpx.Client(base_url=simulator.base_url, timeout=30) as http:
        r = http.post(f"/_sim/numbers/{pnid}/customer-message", json={"user_id": old, "username": "kim", "text": "hi"})
        assert r.status_code == 200 and r.json()["webhook_status"] == 200, r.text
        bad = http.post(f"/_sim/numbers/{pnid}/customer-message", json={"user_id": "123", "text": "hi"})
        assert bad.status_code == 400
        assert http.post(f"/_sim/numbers/{pnid}/customer-message", json={"text": "hi"}).status_code == 400
    run_jobs()
    [contact] = contacts_of(client, coexistence.workspace)
    assert (contact.user_id, contact.username, contact.wa_id) == (old, "kim", None)
    url = ["--url", simulator.base_url]
    wrote = runner.invoke(["simulator", "customer-message", pnid, old, "again", "--username", "kim2", *url])
    assert wrote.exit_code == 0 and "webhook delivered to the hub" in wrote.output, wrote.output
    moved = runner.invoke(["simulator", "user-changed-user-id", pnid, old, new, "--json", *url])
    assert moved.exit_code == 0, moved.output
    assert json.loads(moved.output)["webhook_status"] == 200
    run_jobs()
    [contact] = contacts_of(client, coexistence.workspace)
    assert (contact.user_id, contact.username) == (new, "kim2")


def test_a_message_without_from_is_the_single_contacts(client, coexistence, simulator, run_jobs):
    """Meta's BSUID examples show the sender in ``contacts[]`` only (``user_id``, ``profile.username``)."""
    from hub.testing import payloads as p

    user = bsuid()
    msg = {"id": p.new_wamid(), "timestamp": str(int(time.time())), "type": "text", "text": {"body": "hey"}}
    r = simulator.deliver(p.message(coexistence.waba_id, coexistence.phone_number_id, coexistence.display, msg,
                                    contacts=[{"profile": {"name": "Lee", "username": "lee"}, "user_id": user}]))
    assert r.status_code == 200
    run_jobs()
    [contact] = contacts_of(client, coexistence.workspace)
    assert (contact.user_id, contact.username, contact.profile_name, contact.wa_id) == (user, "lee", "Lee", None)
    [message] = messages_of(client, contact.id)
    assert message.body == {"text": {"body": "hey"}}
    assert post(client, coexistence, to_user_id=user, text="hi Lee").status_code == 202  # its window is open


def test_the_echo_hold_and_opt_outs_apply_to_bsuid_only_contacts(client, coexistence, simulator, run_jobs):
    user, pnid = bsuid(), coexistence.phone_number_id
    simulator.customer_message(pnid, None, "hi", user_id=user)
    simulator.echo(pnid, None, "I'm on it", to_user_id=user)  # the owner answers from the phone
    run_jobs()
    with client.rt.db.session() as s:
        executor = Executor(s, coexistence.workspace.id, origin="automation")
        executor.run([SendTemplate(to=user, template="order_update", params=["#9"])])
        jobs = executor.jobs
    enqueue_all(client.rt, jobs)
    run_jobs()
    [held] = [s for s in sends_of(client, coexistence.workspace) if s.origin == "automation"]
    assert (held.status, held.hold_reason, held.to) == ("scheduled", "human_took_over", user)
    simulator.customer_message(pnid, None, "STOP", user_id=user)
    run_jobs()
    refused = post(client, coexistence, to_user_id=user, text="still there?")
    assert refused.status_code == 422 and refused.json["error"]["code"] == "contact_opted_out"
    [stop_reply] = [b for b in coexistence.sent() if b.get("type") == "text"]
    assert stop_reply[SEND_FIELD] == user  # the opt-out confirmation went to the BSUID


def test_the_simulator_prefers_to_over_recipient_and_names_the_bsuid_in_statuses(coexistence, simulator):
    user, phone, pnid = bsuid(), "1415555" + str(secrets.randbelow(10**4)).zfill(4), coexistence.phone_number_id
    simulator.hub_client = None  # keep the webhooks here: only the Graph side is under test
    simulator.customer_message(pnid, phone, "hi", user_id=user)
    text = {"messaging_product": "whatsapp", "type": "text", "text": {"body": "yo"}}
    with simulator.app.test_client() as http:
        headers = {"Authorization": f"Bearer {coexistence.token}"}
        both = http.post(f"/v25.0/{pnid}/messages", headers=headers, json={**text, "to": phone, SEND_FIELD: user})
        bad = http.post(f"/v25.0/{pnid}/messages", headers=headers, json={**text, SEND_FIELD: phone})
    assert both.status_code == 200 and both.get_json()["contacts"] == [{"input": phone, "wa_id": phone}]
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == 100
    with simulator.lock:
        statuses = [json.loads(json.dumps(e)) for e in simulator.pending_statuses]
    [st] = statuses[-3]["entry"][0]["changes"][0]["value"]["statuses"]
    assert (st["recipient_id"], st["recipient_user_id"]) == (phone, user)
