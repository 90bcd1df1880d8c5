"""Onboarding, the send pipeline against the Graph API simulator, opt-outs, echo hold, broadcasts."""
import datetime as dt
import json

from sqlalchemy import select

from hub.core.actions import SendTemplate
from hub.core.execute import Executor
from hub.core.processing import enqueue_all
from hub.core.models import Connection, Contact, Send
from hub.core.scheduler import tick
from hub.testing import payloads as p

CUSTOMER = "14155552671"


def send(client, conn, to=CUSTOMER, **body):
    return client.post("/api/v1/messages", json={"to": "+" + to, **body}, headers=conn.workspace.headers)


def rows(client, model, *where):
    with client.rt.db.session() as s:
        return s.scalars(select(model).where(*where)).all()


def test_onboarding_follows_the_coexistence_steps(client, workspace, simulator):
    simulator.add_signup_code("code-x", "555000111", "666000111", "EAAG-x")
    simulator.add_template("555000111", "order_update", body_params=1)
    before = len(simulator.calls)
    r = client.post("/api/v1/connections/onboard", json={"code": "code-x", "waba_id": "555000111", "history": True},
                    headers=workspace.headers)
    assert r.status_code == 201, r.json
    conn = r.json
    assert (conn["mode"], conn["messages_per_second"], conn["status"]) == ("coexistence", 20, "active")
    assert conn["contact_sync_request_id"] and conn["history_request_id"]
    calls = [(m, path) for m, path, _ in simulator.calls[before:]]
    assert ("POST", "/v25.0/555000111/subscribed_apps") in calls
    assert not any(path.endswith("/register") for _, path in calls)
    syncs = [body["sync_type"] for m, path, body in simulator.calls[before:] if path.endswith("/smb_app_data")]
    assert syncs == ["smb_app_state_sync", "history"]
    again = client.post(f"/api/v1/connections/{conn['id']}/sync", headers=workspace.headers)
    assert again.status_code == 200  # requested once each: no second request is made
    assert [b for m, path, b in simulator.calls[before:] if path.endswith("/smb_app_data")] == \
        [{"messaging_product": "whatsapp", "sync_type": t} for t in syncs]
    templates = client.get("/api/v1/templates", headers=workspace.headers).json
    assert [t["name"] for t in templates] == ["order_update"]
    bad = client.post("/api/v1/connections/onboard", json={"code": "used-or-wrong", "waba_id": "1"},
                      headers=workspace.headers)
    assert bad.status_code == 422 and bad.json["error"]["details"]["step"] == "code exchange"


def test_template_send_end_to_end_with_statuses(client, coexistence, simulator, run_jobs):
    r = send(client, coexistence, template="order_update", params=["#1001"], idempotency_key="order-1001")
    assert r.status_code == 202 and r.json["status"] == "queued"
    dup = send(client, coexistence, template="order_update", params=["#1001"], idempotency_key="order-1001")
    assert dup.json["id"] == r.json["id"]
    run_jobs()
    [request] = [q for q in simulator.sent(coexistence.phone_number_id)]
    assert request["body"]["template"]["components"] == [
        {"type": "body", "parameters": [{"type": "text", "text": "#1001"}]}]
    sent = client.get(f"/api/v1/sends/{r.json['id']}", headers=coexistence.workspace.headers).json
    assert sent["status"] == "sent" and sent["wamid"] == request["response"]["messages"][0]["id"]
    assert simulator.flush_statuses(shuffle=True) >= 3  # sent, delivered, read (earlier tests may add theirs)
    run_jobs()
    [contact] = client.get(f"/api/v1/contacts?q={CUSTOMER}", headers=coexistence.workspace.headers).json
    [message] = client.get(f"/api/v1/contacts/{contact['id']}/messages", headers=coexistence.workspace.headers).json
    assert message["status"] == "read" and message["pricing"]["category"] == "utility"
    summary = client.get("/api/v1/analytics/summary", headers=coexistence.workspace.headers).json
    assert summary["rates"]["read"] == 1.0 and summary["spend_by_category"]["utility"]["billable"] == 1


def test_template_problems_are_caught_before_meta(client, coexistence, simulator, run_jobs):
    own = lambda: [r for r in simulator.requests if r.get("phone_number_id") == coexistence.phone_number_id]  # noqa: E731
    before = len(own())
    wrong_count = send(client, coexistence, template="order_update", params=[])
    unknown = send(client, coexistence, template="nope", params=["x"])
    empty_param = send(client, coexistence, template="order_update", params=[""])
    assert [r.status_code for r in (wrong_count, unknown, empty_param)] == [422] * 3  # answered at once
    assert [r.json["error"]["code"] for r in (wrong_count, unknown, empty_param)] == [
        "template_params_invalid", "template_unknown", "template_params_invalid"]
    assert "expects 1 parameter" in wrong_count.json["error"]["message"]
    assert rows(client, Send, Send.workspace_id == coexistence.workspace.id) == []  # nothing was queued
    with client.rt.db.session() as s:  # a connector's sends have no one to answer: the pipeline refuses them
        executor = Executor(s, coexistence.workspace.id, origin="automation")
        executor.run([SendTemplate(to=CUSTOMER, template="order_update", params=[])])
    enqueue_all(client.rt, executor.jobs)
    run_jobs()
    failed = client.get(f"/api/v1/sends/{client.public_id('snd', executor.outcome['sends'][0])}", headers=coexistence.workspace.headers).json
    assert failed["status"] == "failed" and "expects 1 parameter" in failed["last_error"]
    assert len(own()) == before  # Meta never saw them


def test_free_form_only_inside_the_window_opened_by_the_customer(client, coexistence, simulator, run_jobs):
    h = coexistence.workspace.headers
    simulator.echo(coexistence.phone_number_id, CUSTOMER, "echoes do not open the window")
    run_jobs()
    early = send(client, coexistence, text="Hi!")
    assert early.status_code == 422 and early.json["error"]["code"] == "outside_window"
    assert "24-hour" in early.json["error"]["message"]
    simulator.customer_message(coexistence.phone_number_id, CUSTOMER, "hello?")
    run_jobs()
    later = send(client, coexistence, text="Hi! How can we help?").json
    run_jobs()
    assert client.get(f"/api/v1/sends/{later['id']}", headers=h).json["status"] == "sent"


def test_stop_opts_out_with_one_confirmation_and_start_resubscribes(client, coexistence, simulator, run_jobs):
    h = coexistence.workspace.headers
    simulator.customer_message(coexistence.phone_number_id, CUSTOMER, "  stop ")
    simulator.customer_message(coexistence.phone_number_id, CUSTOMER, "STOP")
    run_jobs()
    [contact] = rows(client, Contact, Contact.workspace_id == coexistence.workspace.id, Contact.wa_id == CUSTOMER)
    assert contact.opted_out
    confirmations = [r for r in simulator.sent(coexistence.phone_number_id) if r["body"]["to"] == CUSTOMER]
    assert len(confirmations) == 1 and "no longer receive" in confirmations[0]["body"]["text"]["body"]
    blocked = send(client, coexistence, template="order_update", params=["x"])
    assert blocked.status_code == 422 and blocked.json["error"] == {
        "code": "contact_opted_out", "message": "contact opted out",
        "details": {"connection_id": coexistence.id, "connection_reason": "customer_last_wrote"}}
    with client.rt.db.session() as s:  # a connector's send is refused by the pipeline, with the same rule
        executor = Executor(s, coexistence.workspace.id, origin="connector")
        executor.run([SendTemplate(to=CUSTOMER, template="order_update", params=["x"])])
    enqueue_all(client.rt, executor.jobs)
    run_jobs()
    assert client.get(f"/api/v1/sends/{client.public_id('snd', executor.outcome['sends'][0])}", headers=h).json["last_error"] == \
        "contact opted out"
    simulator.customer_message(coexistence.phone_number_id, CUSTOMER, "Start")
    run_jobs()
    [contact] = rows(client, Contact, Contact.id == contact.id)
    assert not contact.opted_out


def test_meta_errors_are_classified(client, coexistence, simulator, run_jobs):
    h = coexistence.workspace.headers
    simulator.set_error_for(CUSTOMER, 131026)
    undeliverable = send(client, coexistence, template="order_update", params=["a"]).json
    run_jobs()
    simulator.clear_error_for(CUSTOMER)
    assert client.get(f"/api/v1/sends/{undeliverable['id']}", headers=h).json["status"] == "failed"
    simulator.set_error_for(CUSTOMER, 131050)
    marketing = send(client, coexistence, template="promo", params=["20% off"]).json
    run_jobs()
    simulator.clear_error_for(CUSTOMER)
    assert client.get(f"/api/v1/sends/{marketing['id']}", headers=h).json["error_code"] == 131050
    [contact] = rows(client, Contact, Contact.workspace_id == coexistence.workspace.id, Contact.wa_id == CUSTOMER)
    assert contact.marketing_opted_out
    simulator.fail_next(1, code=131016, http_status=503)
    retried = send(client, coexistence, "14155550188", template="order_update", params=["b"]).json
    run_jobs()
    s = client.get(f"/api/v1/sends/{retried['id']}", headers=h).json
    assert (s["status"], s["hold_reason"], s["attempts"]) == ("scheduled", "retry", 1)
    [row] = rows(client, Send, Send.id == client.row_id(retried["id"]))
    tick(client.rt, now=row.not_before)
    run_jobs()
    assert client.get(f"/api/v1/sends/{retried['id']}", headers=h).json["status"] == "sent"


def test_invalid_token_pauses_the_connection_and_keeps_its_queue(client, coexistence, simulator, run_jobs):
    h = coexistence.workspace.headers
    simulator.numbers[coexistence.phone_number_id]["token"] = "rotated-elsewhere"
    first = send(client, coexistence, template="order_update", params=["1"]).json
    run_jobs()
    conn = client.get(f"/api/v1/connections/{coexistence.id}", headers=h).json
    assert conn["status"] == "paused" and conn["pause_reason"].startswith("190")
    second = send(client, coexistence, template="order_update", params=["2"], idempotency_key="2").json
    run_jobs()
    for s in (first, second):
        s = client.get(f"/api/v1/sends/{s['id']}", headers=h).json
        assert (s["status"], s["hold_reason"]) == ("scheduled", "connection_paused")
    tick(client.rt)
    assert {client.get(f"/api/v1/sends/{s['id']}", headers=h).json["status"] for s in (first, second)} == \
        {"scheduled"}  # paused numbers' sends stay put
    simulator.numbers[coexistence.phone_number_id]["token"] = coexistence.token
    client.patch(f"/api/v1/connections/{coexistence.id}", json={"status": "active"}, headers=h)
    assert tick(client.rt)["sends"] >= 2
    run_jobs()
    assert {client.get(f"/api/v1/sends/{s['id']}", headers=h).json["status"] for s in (first, second)} == {"sent"}


def test_owner_reply_holds_automation_until_released(client, coexistence, simulator, run_jobs):
    h = coexistence.workspace.headers
    simulator.customer_message(coexistence.phone_number_id, CUSTOMER, "where is my order?")
    simulator.echo(coexistence.phone_number_id, CUSTOMER, "Checking for you now!")
    run_jobs()
    with client.rt.db.session() as s:  # what a connector's handler would cause
        executor = Executor(s, coexistence.workspace.id, origin="automation")
        executor.run([SendTemplate(to=CUSTOMER, template="order_update", params=["shipped"])])
        send_id = client.public_id("snd", executor.outcome["sends"][0])
    enqueue_all(client.rt, executor.jobs)
    api_send = send(client, coexistence, template="order_update", params=["manual"]).json
    run_jobs()
    held = client.get(f"/api/v1/sends/{send_id}", headers=h).json
    assert (held["status"], held["hold_reason"]) == ("scheduled", "human_took_over")
    assert client.get(f"/api/v1/sends/{api_send['id']}", headers=h).json["status"] == "sent"  # humans are not held
    [contact] = rows(client, Contact, Contact.workspace_id == coexistence.workspace.id, Contact.wa_id == CUSTOMER)
    assert client.post(f"/api/v1/contacts/{client.public_id('ct', contact.id)}/release", headers=h).json["hold_until"] is None
    tick(client.rt)
    run_jobs()
    assert client.get(f"/api/v1/sends/{send_id}", headers=h).json["status"] == "sent"


def test_scheduled_send_can_be_cancelled_and_dead_ones_replayed(client, coexistence, simulator, run_jobs):
    h = coexistence.workspace.headers
    later = send(client, coexistence, template="order_update", params=["x"], send_at="2099-01-01T00:00:00").json
    assert later["status"] == "scheduled"
    assert client.post(f"/api/v1/sends/{later['id']}/cancel", headers=h).json["status"] == "cancelled"
    assert client.post(f"/api/v1/sends/{later['id']}/cancel", headers=h).status_code == 409
    listed = client.get("/api/v1/sends?status=cancelled", headers=h).json
    assert [s["id"] for s in listed] == [later["id"]]
    with client.rt.db.session() as s:
        row = s.get(Send, client.row_id(later["id"]))
        row.status = "dead"
    replayed = client.post(f"/api/v1/sends/{later['id']}/replay", headers=h)
    assert replayed.status_code == 202
    run_jobs()
    assert client.get(f"/api/v1/sends/{later['id']}", headers=h).json["status"] == "sent"


def test_broadcast_respects_opt_outs_and_consent_and_reports_progress(client, coexistence, simulator, run_jobs):
    h = coexistence.workspace.headers
    numbers = ["14155550101", "14155550102", "14155550103", "14155550104"]
    for n in numbers:
        simulator.state_sync(coexistence.phone_number_id, [("add", "+" + n, f"Buyer {n[-1]}", f"Buyer{n[-1]}")])
    run_jobs()
    ids = {c["wa_id"]: c["id"] for c in client.get("/api/v1/contacts", headers=h).json}
    for n in numbers[:3]:
        client.patch(f"/api/v1/contacts/{ids[n]}", json={"add_tags": ["vip"]}, headers=h)
    client.patch(f"/api/v1/contacts/{ids[numbers[1]]}", json={"opted_out": True}, headers=h)
    client.patch(f"/api/v1/contacts/{ids[numbers[2]]}", json={"marketing_consent": False}, headers=h)
    r = client.post("/api/v1/broadcasts", json={"template": "promo", "params": ["Hi {first_name}"],
                                                "audience": {"tags": ["vip"]}}, headers=h)
    assert r.status_code == 202, r.json
    bc = r.json
    assert bc["recipients"] == 1 and bc["excluded"]["opted_out"] == 1 and bc["excluded"]["no_marketing_consent"] == 1
    run_jobs()
    done = client.get(f"/api/v1/broadcasts/{bc['id']}", headers=h).json
    assert done["status"] == "done" and done["progress"] == {"sent": 1}
    [req] = [q for q in simulator.sent(coexistence.phone_number_id) if q["body"]["to"] == numbers[0]]
    assert req["body"]["template"]["components"][0]["parameters"][0]["text"] == "Hi Buyer1"


def test_status_webhook_failure_updates_the_send(client, coexistence, simulator, run_jobs):
    h = coexistence.workspace.headers
    s = send(client, coexistence, template="order_update", params=["1"]).json
    run_jobs()
    wamid = client.get(f"/api/v1/sends/{s['id']}", headers=h).json["wamid"]
    simulator.deliver(p.status(coexistence.waba_id, coexistence.phone_number_id, coexistence.display, wamid,
                               "failed", CUSTOMER, errors=[{"code": 131049, "title": "ecosystem engagement"}]))
    run_jobs()
    after = client.get(f"/api/v1/sends/{s['id']}", headers=h).json
    assert (after["status"], after["error_code"]) == ("failed", 131049)


def test_connections_are_isolated_per_workspace(client, coexistence):
    other = client.new_workspace("Another client")
    assert client.get("/api/v1/connections", headers=other.headers).json == []
    assert client.get(f"/api/v1/connections/{coexistence.id}", headers=other.headers).status_code == 404
    assert client.get("/api/v1/contacts", headers=other.headers).json == []
    r = client.post("/api/v1/messages", json={"to": "+" + CUSTOMER, "text": "x", "connection_id": coexistence.id},
                    headers=other.headers)
    assert r.status_code == 404
    assert "access_token" not in json.dumps(client.get("/api/v1/connections", headers=coexistence.workspace.headers).json)


def test_connection_warns_before_the_14_day_inactivity_disconnect(client, coexistence):
    url = f"/api/v1/connections/{coexistence.id}"
    assert client.get(url, headers=coexistence.workspace.headers).json["app_inactivity_warning"] is None
    with client.rt.db.session() as s:
        s.get(Connection, coexistence.id).last_app_activity_at = dt.datetime(2000, 1, 1)
    warning = client.get(url, headers=coexistence.workspace.headers).json["app_inactivity_warning"]
    assert "open the app on the phone before day 14" in warning


def test_pair_rate_holds_a_burst_to_one_customer(client, coexistence, simulator, run_jobs):
    h = coexistence.workspace.headers
    ids = [send(client, coexistence, template="order_update", params=[str(i)]).json["id"] for i in range(5)]
    run_jobs()
    states = [client.get(f"/api/v1/sends/{i}", headers=h).json for i in ids]
    assert [s["status"] for s in states] == ["sent"] * 3 + ["scheduled"] * 2
    assert {s["hold_reason"] for s in states[3:]} == {"pair_rate"}
    assert len([r for r in simulator.sent(coexistence.phone_number_id) if r["body"]["to"] == CUSTOMER]) == 3


def test_connections_cli_connects_lists_and_disconnects(runner, workspace, simulator, client):
    simulator.add_number("777000111", "777000999", "EAAG-cli", display_phone_number="15550007777")
    result = runner.invoke(["connections", "connect", "--workspace", workspace.id, "--waba", "777000999",
                            "--token", "EAAG-cli"])
    assert result.exit_code == 0, result.output
    conn_id = result.output.split()[1].rstrip(":")
    listed = runner.invoke(["connections", "list", "--workspace", workspace.id])
    assert "+15550007777  coexistence 20/s  active" in listed.output
    assert runner.invoke(["connections", "disconnect", conn_id]).exit_code == 0
    assert client.get(f"/api/v1/connections/{conn_id}", headers=workspace.headers).json["status"] == "disconnected"
    bad = runner.invoke(["connections", "onboard", "--workspace", workspace.id, "--waba", "1", "--code", "nope"])
    assert bad.exit_code != 0 and "code exchange failed" in bad.output


def test_a_malformed_send_fails_alone_and_never_blocks_its_batch(client, coexistence, simulator, run_jobs):
    h = coexistence.workspace.headers
    bad_api = send(client, coexistence, template="order_update", params={"body": ["x"], "buttons": ["oops"]})
    assert bad_api.status_code == 422 and "params" in bad_api.json["error"]["details"]["fields"]
    with client.rt.db.session() as s:  # what a buggy connector could still produce
        executor = Executor(s, coexistence.workspace.id, origin="automation")
        executor.run([SendTemplate(to="14155550177", template="order_update", params={"body": ["x"], "buttons": [7]}),
                      SendTemplate(to="14155550178", template="order_update", params=["fine"])])
        bad_id, good_id = (client.public_id("snd", i) for i in executor.outcome["sends"])
    enqueue_all(client.rt, executor.jobs)
    run_jobs()
    bad, good = (client.get(f"/api/v1/sends/{i}", headers=h).json for i in (bad_id, good_id))
    assert bad["status"] == "failed" and "buttons" in bad["last_error"]
    assert good["status"] == "sent"


def test_cancel_races_with_delivery_cleanly(client, coexistence, run_jobs):
    h = coexistence.workspace.headers
    s = send(client, coexistence, template="order_update", params=["x"]).json
    with client.rt.db.session() as session:
        session.get(Send, client.row_id(s["id"])).status = "sending"  # a worker claimed it a moment ago
    r = client.post(f"/api/v1/sends/{s['id']}/cancel", headers=h)
    assert r.status_code == 409


def test_send_at_with_a_timezone_and_broadcast_attributes(client, coexistence, simulator, run_jobs):
    h = coexistence.workspace.headers
    later = send(client, coexistence, template="order_update", params=["x"], send_at="2099-01-01T05:30:00+05:30").json
    assert later["status"] == "scheduled" and later["not_before"].startswith("2099-01-01T00:00:00")
    simulator.state_sync(coexistence.phone_number_id, [("add", "+14155550199", "Meera Shah", "Meera")])
    run_jobs()
    [meera] = client.get("/api/v1/contacts?q=14155550199", headers=h).json
    client.patch(f"/api/v1/contacts/{meera['id']}", json={"add_tags": ["pune"], "attributes": {"city": "Pune"}},
                 headers=h)
    bc = client.post("/api/v1/broadcasts", json={"template": "order_update", "params": ["{first_name} in {attributes.city}"],
                                                 "audience": {"tags": ["pune"]}}, headers=h).json
    run_jobs()
    [req] = [r for r in simulator.sent(coexistence.phone_number_id) if r["body"]["to"] == "14155550199"]
    assert req["body"]["template"]["components"][0]["parameters"][0]["text"] == "Meera in Pune"
    assert client.get(f"/api/v1/broadcasts/{bc['id']}", headers=h).json["progress"] == {"sent": 1}


def test_a_queued_send_whose_wake_up_was_lost_is_delivered(client, coexistence, run_jobs):
    h = coexistence.workspace.headers
    s = send(client, coexistence, "14155550166", template="order_update", params=["lost"]).json
    client.rt.queues["send"].empty()  # the job that would have picked it up is gone
    with client.rt.db.session() as session:
        session.get(Send, client.row_id(s["id"])).updated_at = dt.datetime(2000, 1, 1)
    tick(client.rt)
    run_jobs()
    assert client.get(f"/api/v1/sends/{s['id']}", headers=h).json["status"] == "sent"
