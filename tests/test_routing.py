"""A workspace with two numbers: the window and the echo hold are per number and customer, and
sends leave from the number the customer last wrote to (issue 9, items 4 and 5)."""
import secrets
import time

import pytest
from sqlalchemy import select

from hub.core.actions import SendTemplate, SendText
from hub.core.execute import Executor
from hub.core.models import ContactWindow, Installation, Send
from hub.core.processing import enqueue_all
from hub.core.scheduler import tick
from hub.testing import Connected, sends

CUSTOMER, OTHER = "14155552671", "14155550142"


def second_number(client, simulator, workspace, *, templates=("order_update",)) -> Connected:
    """Onboard number B into the workspace (after A, so A stays the workspace's oldest)."""
    pnid, waba = str(secrets.randbelow(10**15) + 10**14), str(secrets.randbelow(10**15) + 10**14)
    token, code = "EAAG" + secrets.token_hex(12), "code-" + secrets.token_hex(6)
    display = "1555" + str(secrets.randbelow(10**7)).zfill(7)
    simulator.add_number(pnid, waba, token, display_phone_number=display)
    simulator.add_signup_code(code, waba, pnid, token)
    for name in templates:
        simulator.add_template(waba, name, body_params=1)
    time.sleep(0.01)  # created_at orders the numbers
    r = client.post("/api/v1/connections/onboard", json={"code": code, "waba_id": waba}, headers=workspace.headers)
    assert r.status_code == 201, r.json
    return Connected(r.json, pnid, waba, display, token, workspace)


@pytest.fixture
def two_numbers(client, coexistence, simulator):
    return coexistence, second_number(client, simulator, coexistence.workspace)


def post(client, a: Connected, to=CUSTOMER, **body):
    return client.post("/api/v1/messages", json={"to": "+" + to, **body}, headers=a.workspace.headers)


def get_send(client, a: Connected, send_id: int | str) -> dict:
    """A send by its row id (``execute``) or its public id (the API's)."""
    send_id = client.public_id("snd", send_id) if isinstance(send_id, int) else send_id
    return client.get(f"/api/v1/sends/{send_id}", headers=a.workspace.headers).json


def execute(client, workspace_id, actions, **kw) -> list[int]:
    with client.rt.db.session() as s:
        installation = s.get(Installation, kw.pop("installation_id")) if "installation_id" in kw else None
        executor = Executor(s, workspace_id, installation=installation, **kw)
        executor.run(actions)
    enqueue_all(client.rt, executor.jobs)
    return executor.outcome["sends"]


def test_a_reply_leaves_from_the_number_the_customer_wrote_to(client, two_numbers, simulator, run_jobs):
    a, b = two_numbers
    simulator.customer_message(b.phone_number_id, CUSTOMER, "hello B")
    run_jobs()
    r = post(client, a, text="Hi, this is B answering")
    assert r.status_code == 202, r.json
    assert (r.json["connection_id"], r.json["connection_reason"]) == (b.id, "customer_last_wrote")
    run_jobs()
    assert get_send(client, a, r.json["id"])["status"] == "sent"
    [out] = [q for q in simulator.sent(b.phone_number_id) if q["body"]["to"] == CUSTOMER]  # the simulator agrees
    assert out["body"]["text"]["body"] == "Hi, this is B answering"
    assert not [q for q in simulator.sent(a.phone_number_id) if q["body"]["to"] == CUSTOMER]
    # A has no window with this customer: free text from A is refused now, not after Meta's 131047
    from_a = post(client, a, text="from A", connection_id=a.id)
    assert from_a.status_code == 422 and from_a.json["error"]["code"] == "outside_window"
    # one truth for the window: the hub's per-number windows are the simulator's (Meta's) windows
    [contact] = client.get(f"/api/v1/contacts?q={CUSTOMER}", headers=a.workspace.headers).json
    hub_open = {w["connection_id"]: w["window_open"] for w in contact["windows"]}
    assert {n.id: hub_open.get(n.id, False) for n in (a, b)} == \
        {n.id: simulator.window_open(n.phone_number_id, CUSTOMER) for n in (a, b)} == {a.id: False, b.id: True}
    # a customer who never wrote gets the workspace's oldest number
    fresh = post(client, a, OTHER, template="order_update", params=["1"]).json
    assert (fresh["connection_id"], fresh["connection_reason"]) == (a.id, "workspace_default")
    explicit = post(client, a, template="order_update", params=["2"], connection_id=a.id).json
    assert (explicit["connection_id"], explicit["connection_reason"]) == (a.id, "requested")
    run_jobs()  # nothing left queued for later tests' scheduler ticks


def test_the_latest_number_wins_and_the_contact_shows_each_numbers_window(client, two_numbers, simulator, run_jobs):
    a, b = two_numbers
    now = int(time.time())
    simulator.customer_message(a.phone_number_id, CUSTOMER, "to A earlier", timestamp=now - 600)
    simulator.customer_message(b.phone_number_id, CUSTOMER, "to B later", timestamp=now - 60)
    run_jobs()
    [contact] = client.get(f"/api/v1/contacts?q={CUSTOMER}", headers=a.workspace.headers).json
    by_number = {w["connection_id"]: w for w in contact["windows"]}
    assert set(by_number) == {a.id, b.id} and all(w["window_open"] for w in by_number.values())
    assert by_number[b.id]["last_inbound_at"] == contact["last_inbound_at"]  # the contact keeps the latest
    assert by_number[a.id]["last_inbound_at"] < by_number[b.id]["last_inbound_at"]
    assert post(client, a, text="hi").json["connection_id"] == b.id
    simulator.customer_message(a.phone_number_id, CUSTOMER, "back to A", timestamp=now)
    run_jobs()
    assert post(client, a, text="hi again").json["connection_id"] == a.id
    run_jobs()


def test_connector_sends_prefer_the_customers_number_then_the_installation_pin(client, two_numbers, simulator,
                                                                                run_jobs, acme_installation):
    a, b = two_numbers
    inst, _ = acme_installation
    with client.rt.db.session() as s:  # what a connector's ``connection_id`` setting stores (shopify, woocommerce)
        row = s.get(Installation, inst["id"])
        row.config = {**row.config, "connection_id": b.id}
    assert client.get(f"/api/v1/installations/{inst['id']}", headers=a.workspace.headers).json["warnings"] == []
    [to_pin] = execute(client, a.workspace.id, [SendTemplate(to=OTHER, template="order_update", params=["x"])],
                       installation_id=inst["id"])
    simulator.customer_message(a.phone_number_id, CUSTOMER, "I wrote to A")
    run_jobs()
    [reply] = execute(client, a.workspace.id, [SendText(to=CUSTOMER, text="thanks for writing")],
                      installation_id=inst["id"])
    run_jobs()
    pin, answer = get_send(client, a, to_pin), get_send(client, a, reply)
    assert (pin["connection_id"], pin["connection_reason"], pin["status"]) == (b.id, "installation_pin", "sent")
    assert (answer["connection_id"], answer["connection_reason"], answer["status"]) == \
        (a.id, "customer_last_wrote", "sent")


def test_a_template_goes_from_a_number_whose_account_has_it(client, coexistence, simulator, run_jobs):
    a = coexistence
    b = second_number(client, simulator, a.workspace, templates=())  # B's account has no templates
    simulator.customer_message(b.phone_number_id, CUSTOMER, "hi B")
    run_jobs()
    r = post(client, a, template="order_update", params=["#7"])
    assert (r.json["connection_id"], r.json["connection_reason"]) == (a.id, "workspace_default")
    run_jobs()
    assert get_send(client, a, r.json["id"])["status"] == "sent"
    on_b = post(client, a, template="order_update", params=["#7"], connection_id=b.id)
    assert on_b.status_code == 422 and on_b.json["error"]["code"] == "template_unknown"


def test_the_echo_hold_is_per_number(client, two_numbers, simulator, run_jobs):
    a, b = two_numbers
    h = a.workspace.headers
    now = int(time.time())
    simulator.customer_message(b.phone_number_id, CUSTOMER, "to B", timestamp=now - 120)
    simulator.customer_message(a.phone_number_id, CUSTOMER, "to A", timestamp=now - 60)
    simulator.echo(b.phone_number_id, CUSTOMER, "the owner answers on B's phone")
    run_jobs()
    [contact] = client.get(f"/api/v1/contacts?q={CUSTOMER}", headers=h).json
    holds = {w["connection_id"]: w["hold_until"] for w in contact["windows"]}
    assert holds[a.id] is None and holds[b.id] == contact["hold_until"] is not None
    [on_a] = execute(client, a.workspace.id, [SendTemplate(to=CUSTOMER, template="order_update", params=["a"])],
                     origin="automation")
    client.patch(f"/api/v1/contacts/{contact['id']}", json={"add_tags": ["vip"]}, headers=h)
    bc = client.post("/api/v1/broadcasts", json={"template": "order_update", "params": ["b"], "connection_id": b.id,
                                                 "audience": {"tags": ["vip"]}}, headers=h)
    assert bc.status_code == 202, bc.json
    run_jobs()
    assert (get_send(client, a, on_a)["connection_id"], get_send(client, a, on_a)["status"]) == (a.id, "sent")
    [on_b] = client.get(f"/api/v1/sends?broadcast_id={bc.json['id']}", headers=h).json
    assert (on_b["connection_id"], on_b["status"], on_b["hold_reason"]) == (b.id, "scheduled", "human_took_over")
    released = client.post(f"/api/v1/contacts/{contact['id']}/release?connection_id={a.id}", headers=h).json
    assert released["hold_until"] is not None  # releasing A leaves B's hold
    released = client.post(f"/api/v1/contacts/{contact['id']}/release?connection_id={b.id}", headers=h).json
    assert released["hold_until"] is None and all(w["hold_until"] is None for w in released["windows"])
    tick(client.rt)
    run_jobs()
    assert get_send(client, a, on_b["id"])["status"] == "sent"


def test_a_broadcast_reaches_each_customer_on_their_number(client, two_numbers, simulator, run_jobs):
    a, b = two_numbers
    h = a.workspace.headers
    simulator.customer_message(b.phone_number_id, CUSTOMER, "hi B", name="")  # no profile name
    simulator.state_sync(a.phone_number_id, [("add", "+" + OTHER, "Ravi Kumar", "Ravi")])
    run_jobs()
    for c in client.get("/api/v1/contacts", headers=h).json:
        client.patch(f"/api/v1/contacts/{c['id']}", json={"add_tags": ["all"]}, headers=h)
    bc = client.post("/api/v1/broadcasts", json={"template": "order_update", "params": ["{first_name|there}"],
                                                 "audience": {"tags": ["all"]}}, headers=h).json
    run_jobs()
    sends = {s["to"]: s for s in client.get(f"/api/v1/sends?broadcast_id={bc['id']}", headers=h).json}
    assert (sends[CUSTOMER]["connection_id"], sends[CUSTOMER]["connection_reason"]) == (b.id, "customer_last_wrote")
    assert (sends[OTHER]["connection_id"], sends[OTHER]["connection_reason"]) == (a.id, "workspace_default")
    assert {s["status"] for s in sends.values()} == {"sent"}
    texts = {q["body"]["to"]: q["body"]["template"]["components"][0]["parameters"][0]["text"]
             for q in simulator.sent() if q["response"]["messages"][0]["id"] in {s["wamid"] for s in sends.values()}}
    assert texts == {OTHER: "Ravi", CUSTOMER: "there"}  # the customer has no name: the default fills in


def test_windows_survive_a_contact_merge(client, coexistence, simulator, run_jobs):
    """The same customer seen first by business-scoped id, then by number: one contact, one window."""
    from hub.core import contacts
    from hub.core.models import Contact
    from hub.core.sending import windows

    with client.rt.db.session() as s:
        hidden = contacts.upsert(s, coexistence.workspace.id, user_id="US.merge.1")
        windows.record_inbound(s, coexistence.id, hidden, contacts.utcnow())
    with client.rt.db.session() as s:
        merged = contacts.upsert(s, coexistence.workspace.id, wa_id=OTHER, user_id="US.merge.1")
        merged_id = merged.id
    with client.rt.db.session() as s:
        rows = s.scalars(select(ContactWindow).where(ContactWindow.connection_id == coexistence.id)).all()
        assert [(r.contact_id, r.last_inbound_at is not None) for r in rows] == [(merged_id, True)]
        assert s.get(Contact, merged_id).last_inbound_at is not None
    assert post(client, coexistence, OTHER, text="hello").status_code == 202
    run_jobs()


def test_concurrent_inbound_messages_keep_one_row_with_the_latest_time(client, coexistence, simulator):
    """Several jobs record the same customer's messages at once: one row, the latest time wins."""
    import datetime as dt
    import threading

    from hub.core import contacts
    from hub.core.models import Contact, utcnow
    from hub.core.sending import windows

    with client.rt.db.session() as s:
        contact_id = contacts.upsert(s, coexistence.workspace.id, wa_id="14155550999").id
    base, errors, barrier = utcnow() - dt.timedelta(hours=1), [], threading.Barrier(6)

    def record(i: int) -> None:
        try:
            barrier.wait()
            with client.rt.db.session() as s:
                windows.record_inbound(s, coexistence.id, s.get(Contact, contact_id), base + dt.timedelta(minutes=i))
        except Exception as exc:  # noqa: BLE001 — reported below
            errors.append(exc)
    threads = [threading.Thread(target=record, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with client.rt.db.session() as s:
        rows = s.scalars(select(ContactWindow).where(ContactWindow.contact_id == contact_id)).all()
    assert [r.last_inbound_at for r in rows] == [base + dt.timedelta(minutes=5)]


def test_sends_record_why_their_number_was_chosen(client, two_numbers, simulator, run_jobs):
    a, _ = two_numbers
    simulator.customer_message(a.phone_number_id, CUSTOMER, "STOP")
    run_jobs()
    with client.rt.db.session() as s:
        [confirmation] = s.scalars(select(Send).where(Send.workspace_id == a.workspace.id, Send.origin == "system"))
        assert (confirmation.connection_id, confirmation.connection_reason) == (a.id, "given")
    doc = client.get("/api/v1/openapi.json").json
    assert "customer_last_wrote" in str(doc["components"]["schemas"])


def test_a_reply_made_while_the_message_is_processed_leaves_from_the_number_written_to_last(
        client, two_numbers, simulator, run_jobs):
    """A plugin answers "reply please" in the same transaction that records the message: the
    reply goes from the number the customer wrote to last, also when an older message to the
    other number is processed after it."""
    a, b = two_numbers
    now = int(time.time())
    simulator.customer_message(b.phone_number_id, CUSTOMER, "hello B", timestamp=now - 600)
    run_jobs()
    simulator.customer_message(a.phone_number_id, CUSTOMER, "reply please", timestamp=now - 60)
    run_jobs()
    simulator.customer_message(b.phone_number_id, CUSTOMER, "reply please", timestamp=now - 300)  # arrives late
    run_jobs()
    replies = [s for s in sends(client.rt, a.workspace.id) if s.text == "here is your answer"]
    assert [(s.connection_id, s.connection_reason, s.status) for s in replies] == \
        [(a.id, "customer_last_wrote", "sent")] * 2
