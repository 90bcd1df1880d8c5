"""What the hub can know at request time is answered at once with 422 (issue 9, item 6), and the
papercuts of item 8 around messages, sends, analytics, broadcasts, installations and templates."""
import datetime as dt

from sqlalchemy import select

from hub.core.actions import SendTemplate
from hub.core.execute import Executor
from hub.core.models import Send, Template
from hub.core.processing import enqueue_all

CUSTOMER = "14155552671"


def post(client, workspace, to=CUSTOMER, **body):
    return client.post("/api/v1/messages", json={"to": "+" + to, **body}, headers=workspace.headers)


def error(response) -> tuple[int, str]:
    return response.status_code, response.json["error"]["code"]


def test_request_time_problems_are_422_with_a_reason_and_nothing_is_queued(client, coexistence, simulator, run_jobs):
    ws, h = coexistence.workspace, coexistence.workspace.headers
    with client.rt.db.session() as s:  # a template Meta paused
        s.add(Template(workspace_id=ws.id, waba_id=coexistence.waba_id, name="paused_one", language="en_US",
                       category="UTILITY", status="PAUSED", components=[{"type": "BODY", "text": "Hi"}]))
    assert error(post(client, ws, template="order_update", params=["a", "b"])) == (422, "template_params_invalid")
    assert error(post(client, ws, template="order_update", params=["x"], language="pt_BR")) == \
        (422, "template_unknown")  # approved in en_US only: language matters
    paused = post(client, ws, template="paused_one")
    assert error(paused) == (422, "template_not_approved") and "PAUSED" in paused.json["error"]["message"]
    assert error(post(client, ws, text="hello out of the blue")) == (422, "outside_window")
    assert client.get("/api/v1/sends", headers=h).json == []  # none of them was stored
    simulator.customer_message(coexistence.phone_number_id, CUSTOMER, "hi")
    run_jobs()
    [contact] = client.get(f"/api/v1/contacts?q={CUSTOMER}", headers=h).json
    client.patch(f"/api/v1/contacts/{contact['id']}", json={"marketing_opted_out": True}, headers=h)
    assert error(post(client, ws, template="promo", params=["20%"])) == (422, "contact_opted_out_of_marketing")
    assert post(client, ws, template="order_update", params=["#1"]).status_code == 202  # utility still goes
    client.patch(f"/api/v1/contacts/{contact['id']}", json={"opted_out": True}, headers=h)
    refused = post(client, ws, text="are you there?")
    assert error(refused) == (422, "contact_opted_out")
    assert refused.json["error"]["details"]["connection_id"] == coexistence.id
    run_jobs()  # nothing left queued for later tests' scheduler ticks


def test_what_only_delivery_can_tell_stays_asynchronous(client, coexistence, simulator, run_jobs):
    ws, h = coexistence.workspace, coexistence.workspace.headers
    later = post(client, ws, text="we open at 9", send_at="2099-01-01T09:00:00Z")
    assert later.status_code == 202 and later.json["status"] == "scheduled"  # the customer may write first
    first = post(client, ws, template="order_update", params=["#9"], idempotency_key="k-9")
    assert first.status_code == 202
    with client.rt.db.session() as s:  # the template is paused after the send was accepted
        s.scalars(select(Template).where(Template.waba_id == coexistence.waba_id,
                                         Template.name == "order_update")).one().status = "PAUSED"
    retry = post(client, ws, template="order_update", params=["#9"], idempotency_key="k-9")
    assert retry.status_code == 202 and retry.json["id"] == first.json["id"]  # a retry gets its send back
    run_jobs()
    failed = client.get(f"/api/v1/sends/{first.json['id']}", headers=h).json
    assert failed["status"] == "failed" and "PAUSED" in failed["last_error"]


def test_no_number_is_422_for_messages_broadcasts_and_template_sync(client, workspace):
    h = workspace.headers
    r = post(client, workspace, template="order_update", params=["x"])
    assert error(r) == (422, "no_connection") and "connect a number" in r.json["error"]["message"]
    bc = client.post("/api/v1/broadcasts", json={"template": "t", "audience": {"tags": ["x"]}}, headers=h)
    assert error(bc) == (422, "no_connection")
    sync = client.post("/api/v1/templates/sync", headers=h)
    assert error(sync) == (422, "no_connection") and "no WhatsApp number" in sync.json["error"]["message"]


def test_installing_a_connector_without_a_number_warns(client, workspace, simulator):
    inst = client.install(workspace, "acme", {"webhook_secret": "s"})
    assert len(inst["warnings"]) == 1 and "no WhatsApp number" in inst["warnings"][0]
    listed = client.get("/api/v1/installations", headers=workspace.headers).json
    assert listed[0]["warnings"] == inst["warnings"]


def test_installing_with_a_number_has_no_warning(client, coexistence):
    inst = client.install(coexistence.workspace, "acme", {"webhook_secret": "s"})
    assert inst["warnings"] == []


def test_broadcast_defaults_missing_values_and_checks_parameters_up_front(client, coexistence, simulator, run_jobs):
    h = coexistence.workspace.headers
    simulator.state_sync(coexistence.phone_number_id, [("add", "+14155550301", "Meera Shah", "Meera"),
                                                       ("add", "+14155550302", "", "")])
    run_jobs()
    for c in client.get("/api/v1/contacts", headers=h).json:
        client.patch(f"/api/v1/contacts/{c['id']}", json={"add_tags": ["list"]}, headers=h)
    wrong = client.post("/api/v1/broadcasts", json={"template": "order_update", "params": ["a", "b"],
                                                    "audience": {"tags": ["list"]}}, headers=h)
    assert error(wrong) == (422, "template_params_invalid")
    bare = client.post("/api/v1/broadcasts", json={"template": "order_update", "params": ["{first_name}"],
                                                   "audience": {"tags": ["list"]}}, headers=h).json
    assert bare["recipients"] == 1 and bare["excluded"]["missing_value"] == 1  # not a send bound to fail
    kind = client.post("/api/v1/broadcasts", json={"template": "order_update", "params": ["{first_name|there}"],
                                                   "audience": {"tags": ["list"]}}, headers=h).json
    assert kind["recipients"] == 2 and kind["excluded"]["missing_value"] == 0
    run_jobs()
    sends = client.get(f"/api/v1/sends?broadcast_id={kind['id']}", headers=h).json
    assert {s["to"]: s["params"] for s in sends} == {"14155550301": ["Meera"], "14155550302": ["there"]}
    assert {s["status"] for s in sends} == {"sent"}
    bad = client.post("/api/v1/broadcasts", json={"template": "order_update", "params": ["{nickname|x}"],
                                                  "audience": {"tags": ["list"]}}, headers=h)
    assert bad.status_code == 422 and "params" in bad.json["error"]["details"]["fields"]


def test_sends_filter_is_validated(client, workspace):
    r = client.get("/api/v1/sends?status=bogus", headers=workspace.headers)
    assert error(r) == (422, "invalid_filter") and "queued" in r.json["error"]["message"]
    assert client.get("/api/v1/sends?status=dead", headers=workspace.headers).json == []


def test_messages_are_listed_with_filters_and_paging(client, coexistence, simulator, run_jobs):
    ws, h = coexistence.workspace, coexistence.workspace.headers
    for i in range(3):
        simulator.customer_message(coexistence.phone_number_id, CUSTOMER, f"message {i}")
    simulator.echo(coexistence.phone_number_id, CUSTOMER, "owner reply")
    run_jobs()
    assert post(client, ws, text="our reply").status_code == 202
    run_jobs()
    everything = client.get("/api/v1/messages", headers=h)
    assert everything.status_code == 200 and len(everything.json) == 5
    inbound = client.get("/api/v1/messages?direction=in&limit=2", headers=h).json
    assert [m["body"]["text"]["body"] for m in inbound] == ["message 2", "message 1"]  # newest first
    page2 = client.get("/api/v1/messages?direction=in&limit=2&offset=2", headers=h).json
    assert [m["body"]["text"]["body"] for m in page2] == ["message 0"]
    assert [m["origin"] for m in client.get("/api/v1/messages?origin=app_echo", headers=h).json] == ["app_echo"]
    [contact] = client.get(f"/api/v1/contacts?q={CUSTOMER}", headers=h).json
    mine = client.get(f"/api/v1/messages?contact_id={contact['id']}&connection_id={coexistence.id}", headers=h).json
    assert len(mine) == 5
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).isoformat()
    assert client.get("/api/v1/messages", query_string={"since": future}, headers=h).json == []
    assert len(client.get("/api/v1/messages", query_string={"until": future}, headers=h).json) == 5
    for bad in ("direction=sideways", "status=bogus", "since=yesterday"):
        assert error(client.get(f"/api/v1/messages?{bad}", headers=h)) == (422, "invalid_filter"), bad
    assert error(client.get("/api/v1/messages?contact_id=abc", headers=h)) == (404, "not_found")  # no such contact
    other = client.new_workspace("Someone else")
    assert client.get("/api/v1/messages", headers=other.headers).json == []
    assert {"get", "post"} <= set(client.get("/api/v1/openapi.json").json["paths"]["/api/v1/messages"])


def test_analytics_rates_agree_with_the_sends(client, coexistence, simulator, run_jobs):
    ws, h = coexistence.workspace, coexistence.workspace.headers
    ok = post(client, ws, template="order_update", params=["#1"]).json
    with client.rt.db.session() as s:  # connector sends that fail before Meta (wrong parameter count)
        executor = Executor(s, ws.id, origin="connector")
        executor.run([SendTemplate(to=f"1415555040{i}", template="order_update", params=[]) for i in range(3)])
    enqueue_all(client.rt, executor.jobs)
    run_jobs()
    simulator.flush_statuses()
    run_jobs()
    summary = client.get("/api/v1/analytics/summary", headers=h).json
    assert summary["sends_by_status"] == {"sent": 1, "failed": 3}
    assert summary["rates"]["failed"] == 0.75 and summary["rates"]["sent"] == 0.25
    assert summary["rates_basis"]["attempted_sends"] == 4
    assert client.get(f"/api/v1/sends/{ok['id']}", headers=h).json["status"] == "sent"
    with client.rt.db.session() as s:
        assert s.scalars(select(Send).where(Send.workspace_id == ws.id, Send.status == "failed")).all()
