"""WooCommerce connector through the real ingest: signed order payloads, the ping, the catch-up
poll against a REST API stand-in, order-note write-backs and COD replies."""
import base64
import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.core.models import InboundEvent, Installation, OutboundDelivery, Send, utcnow
from hub.core.scheduler import tick
from hub.testing import payloads as p
from tests.connectors.standin import StandIn

FIXTURES = Path(__file__).parents[1] / "fixtures" / "woocommerce"
SECRETS = {"webhook_secret": "wc-secret", "consumer_key": "ck_test", "consumer_secret": "cs_test"}
CUSTOMER, WA = "(415) 555-2671", "14155552671"


def order(**changes) -> dict:
    data = json.loads((FIXTURES / "order.json").read_text())
    billing = changes.pop("billing", {})
    data["billing"] = None if billing is None else {**data["billing"], "phone": CUSTOMER, **billing}
    data.update(changes)
    return data


def headers(topic: str, delivery: str = "1") -> dict:
    resource, _, event = topic.partition(".")
    return {"X-WC-Webhook-Topic": topic, "X-WC-Webhook-Resource": resource, "X-WC-Webhook-Event": event,
            "X-WC-Webhook-Source": "https://example.com/", "X-WC-Webhook-ID": "15",
            "X-WC-Webhook-Delivery-ID": delivery}


def rows(client, model, **where):
    with client.rt.db.session() as s:
        return s.scalars(select(model).filter_by(**where).order_by(model.id)).all()


def sent(simulator, coexistence, template=None) -> list[dict]:
    return [r["body"] for r in simulator.sent(coexistence.phone_number_id)
            if template is None or r["body"].get("template", {}).get("name") == template]


@pytest.fixture
def store():
    server = StandIn()
    server.notes = {}

    def notes(record):
        order_id = record["path"].split("/")[-2]
        if record["method"] == "GET":
            return server.notes.get(order_id, []), 200
        note = {"id": len(server.notes.get(order_id, [])) + 1, "note": record["json"]["note"],
                "customer_note": record["json"]["customer_note"]}
        server.notes.setdefault(order_id, []).append(note)
        return note, 201

    for order_id in ("727", "728"):
        server.on("GET", f"/wp-json/wc/v3/orders/{order_id}/notes", notes)
        server.on("POST", f"/wp-json/wc/v3/orders/{order_id}/notes", notes)
    server.on("PUT", "/wp-json/wc/v3/orders/727", lambda r: ({"id": 727, **r["json"]}, 200))
    yield server
    server.close()


@pytest.fixture
def woo(client, coexistence, simulator, store):
    waba = coexistence.waba_id
    for name, n in (("order_confirmation", 3), ("order_on_hold", 3), ("order_completed", 2),
                    ("order_cancelled", 2), ("order_refunded", 2)):
        simulator.add_template(waba, name, body_params=n)
    simulator.add_template(waba, "cod_confirmation", body_params=3, buttons=["Confirm", "Cancel"])
    assert client.post("/api/v1/templates/sync", headers=coexistence.workspace.headers).status_code == 200
    return client.install(coexistence.workspace, "woocommerce", {**SECRETS, "store_url": store.url, "country": "US"})


def deliver(client, inst, payload, topic, delivery="1"):
    response = client.deliver("woocommerce", inst["id"], payload, SECRETS, headers(topic, delivery))
    assert response.status_code == 200, response.json
    return response


def test_the_unsigned_creation_ping_is_acknowledged_and_not_stored(client, woo):
    ping = (FIXTURES / "ping.txt").read_bytes()
    response = client.post(f"/webhooks/woocommerce/{woo['id']}", data=ping,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and response.json["ping"] is True
    assert rows(client, InboundEvent, scope=woo["id"]) == []
    forged = client.post(f"/webhooks/woocommerce/{woo['id']}", data=b"webhook_id=15&status=completed",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert forged.status_code == 401  # anything beyond the bare ping must be signed


def test_bad_signature_is_401(client, woo):
    body = json.dumps(order()).encode()
    bad = client.post(f"/webhooks/woocommerce/{woo['id']}", data=body,
                      headers={**headers("order.created"), "X-WC-Webhook-Signature": base64.b64encode(b"x" * 32).decode()})
    other = client.deliver("woocommerce", woo["id"], body, {"webhook_secret": "nope"}, headers("order.created"))
    assert bad.status_code == other.status_code == 401
    assert rows(client, InboundEvent, scope=woo["id"]) == []


def test_order_created_confirms_once_and_redelivery_is_deduped_by_id_and_date_modified(
        client, woo, coexistence, simulator, store, run_jobs):
    first = deliver(client, woo, order(), "order.created", "d1")
    again = deliver(client, woo, order(), "order.updated", "d2")  # same order, same date_modified
    later = deliver(client, woo, order(date_modified="2017-03-22T16:30:00"), "order.updated", "d3")
    assert (first.json["duplicate"], again.json["duplicate"], later.json["duplicate"]) == (False, True, False)
    assert [e.dedupe_key for e in rows(client, InboundEvent, scope=woo["id"])] == \
        ["727:2017-03-22T16:28:08", "727:2017-03-22T16:30:00"]
    run_jobs()
    [body] = sent(simulator, coexistence)
    assert body["to"] == WA and body["template"]["name"] == "order_confirmation"
    assert [x["text"] for x in body["template"]["components"][0]["parameters"]] == ["John", "727", "$29.35"]
    [send] = rows(client, Send, workspace_id=coexistence.workspace.id)
    assert send.idempotency_key == f"wc:{woo['id']}:727:confirmation"
    # the order-note write-back: one note despite two events, carrying the idempotency marker
    posts = store.seen("POST", "/wp-json/wc/v3/orders/727/notes")
    assert len(posts) == 1
    assert posts[0]["json"] == {"note": f"WhatsApp message 'order_confirmation' (confirmation) queued for +{WA}. "
                                        f"[wc:{woo['id']}:727:confirmation]", "customer_note": False}
    assert (posts[0]["authorization"].username, posts[0]["authorization"].password) == ("ck_test", "cs_test")
    assert posts[0]["headers"]["Content-Type"] == "application/json"
    assert [r.status for r in rows(client, OutboundDelivery, workspace_id=coexistence.workspace.id)] == ["delivered"] * 2


def test_each_status_message_is_sent_once_per_order(client, woo, coexistence, simulator, run_jobs):
    flow = [("on-hold", "bacs"), ("processing", "bacs"), ("completed", "bacs"), ("completed", "bacs"),
            ("refunded", "bacs")]
    for i, (status, method) in enumerate(flow):
        deliver(client, woo, order(status=status, payment_method=method, date_modified=f"2017-03-23T10:00:0{i}"),
                "order.updated", f"s{i}")
    deliver(client, woo, order(id=728, number="728", status="cancelled", billing={"phone": "+1 415 555 2672"},
                               date_modified="2017-03-23T11:00:00"), "order.updated", "c1")
    run_jobs()
    sends = rows(client, Send, workspace_id=coexistence.workspace.id)
    assert [s.idempotency_key.split(":", 2)[2] for s in sends] == [
        "727:on-hold", "727:confirmation", "727:completed", "727:refunded", "728:cancelled"]
    assert [s.template_name for s in sends] == ["order_on_hold", "order_confirmation", "order_completed",
                                                "order_refunded", "order_cancelled"]


def test_missing_invalid_or_odd_fields_skip_without_crashing(client, woo, coexistence, run_jobs):
    deliver(client, woo, json.loads((FIXTURES / "order.json").read_text()), "order.created", "raw")  # (555) 555-5555
    deliver(client, woo, order(id=800, billing=None), "order.created", "nobill")
    deliver(client, woo, order(id=801, status="pending"), "order.created", "pending")
    deliver(client, woo, order(id=802, billing={"phone": "09090 909090", "country": ""}, total=None, currency=None),
            "order.created", "national")
    deliver(client, woo, {"id": 803, "status": None, "billing": "x"}, "order.updated", "junk")
    deliver(client, woo, {"id": 93, "name": "Woo Single #1"}, "product.updated", "product")
    run_jobs()
    outcomes = [e.outcome["skipped"] for e in rows(client, InboundEvent, scope=woo["id"])]
    assert outcomes == [["invalid phone number"], ["no phone number"], ["order pending: nothing to tell the customer"],
                        ["invalid phone number"], ["order without id or status"], ["no handler for topic 'product.updated'"]]
    assert rows(client, Send, workspace_id=coexistence.workspace.id) == []


def test_poll_and_push_overlap_send_once(client, woo, coexistence, simulator, store, run_jobs):
    pushed = order()
    missed = order(id=728, number="728", billing={"phone": "+1 415 555 2672"},
                   date_modified="2017-03-22T16:40:00", date_modified_gmt="2017-03-22T19:40:00")
    store.on("GET", "/wp-json/wc/v3/orders", [pushed, missed])
    deliver(client, woo, pushed, "order.created")
    run_jobs()
    assert tick(client.rt)["polls"] >= 1  # first poll: only sets the cursor, fetches nothing
    run_jobs()
    assert store.seen("GET", "/wp-json/wc/v3/orders") == []
    with client.rt.db.session() as s:
        inst = s.get(Installation, woo["id"])
        first = inst.state["modified_after"]  # from the aware ctx.now, written as naive UTC like date_modified_gmt
        assert dt.datetime.fromisoformat(first).tzinfo is None
        assert abs(dt.datetime.fromisoformat(first) - utcnow()) < dt.timedelta(hours=1)
        inst.state = {**inst.state, "modified_after": "2017-03-22T19:00:00", "last_poll_at": "2000-01-01T00:00:00"}
    tick(client.rt)
    run_jobs()
    [request] = store.seen("GET", "/wp-json/wc/v3/orders")
    assert request["args"]["modified_after"] == "2017-03-22T19:00:00" and request["args"]["per_page"] == "100"
    assert request["args"]["dates_are_gmt"] == "true"
    assert (request["authorization"].username, request["authorization"].password) == ("ck_test", "cs_test")
    events = rows(client, InboundEvent, scope=woo["id"])
    assert [(e.dedupe_key, e.topic) for e in events] == [("727:2017-03-22T16:28:08", "order.created"),
                                                        ("728:2017-03-22T16:40:00", "order.updated")]
    assert sorted(b["to"] for b in sent(simulator, coexistence, "order_confirmation")) == [WA, "14155552672"]
    with client.rt.db.session() as s:
        state = s.get(Installation, woo["id"]).state
    assert state["modified_after"] == "2017-03-22T19:39:59" and state["last_poll_new"] == 1


def test_a_failing_store_api_keeps_the_cursor(client, woo, store, run_jobs):
    store.on("GET", "/wp-json/wc/v3/orders", {"code": "woocommerce_rest_cannot_view"}, status=401)
    with client.rt.db.session() as s:
        inst = s.get(Installation, woo["id"])
        inst.state = {"modified_after": "2017-03-22T19:00:00", "last_poll_at": "2000-01-01T00:00:00"}
    tick(client.rt)
    run_jobs()
    with client.rt.db.session() as s:
        state = s.get(Installation, woo["id"]).state
    assert state["modified_after"] == "2017-03-22T19:00:00" and "401" in state["last_poll_error"]


def test_cod_order_asks_to_confirm_and_replies_become_order_notes(
        client, woo, coexistence, simulator, store, run_jobs):
    client.patch(f"/api/v1/installations/{woo['id']}", headers=coexistence.workspace.headers,
                 json={"config": {"cod_cancel_order": True}})
    deliver(client, woo, order(payment_method="cod", payment_method_title="Cash on delivery", date_paid=None),
            "order.created")
    run_jobs()
    [body] = sent(simulator, coexistence)
    assert body["template"]["name"] == "cod_confirmation"
    ours = f"727@{woo['id']}"
    assert [c["parameters"][0]["payload"] for c in body["template"]["components"] if c["type"] == "button"] == \
        [f"wc_cod_confirm:{ours}", f"wc_cod_cancel:{ours}"]
    for payload, title in ((f"wc_cod_confirm:{ours}", "Confirm"), (f"wc_cod_cancel:{ours}", "Cancel"),
                           ("wc_cod_confirm:727@ins_another_store", "Confirm")):
        simulator.deliver(p.template_button_reply(coexistence.waba_id, coexistence.phone_number_id,
                                                  coexistence.display, WA, payload=payload, text=title))
    simulator.deliver(p.template_button_reply(coexistence.waba_id, coexistence.phone_number_id,
                                              coexistence.display, WA, payload="cod_confirm:727", text="Confirm"))
    run_jobs()
    notes = [r["json"]["note"] for r in store.seen("POST", "/wp-json/wc/v3/orders/727/notes")]
    assert notes[1:] == ["The customer confirmed this cash-on-delivery order on WhatsApp. [wc-cod-confirmed:727]",
                         "The customer cancelled this cash-on-delivery order on WhatsApp. [wc-cod-cancelled:727]"]
    [put] = store.seen("PUT", "/wp-json/wc/v3/orders/727")
    assert put["json"] == {"status": "cancelled"}


def test_paid_orders_record_revenue_and_handlers_survive_junk():
    from connectors.woocommerce import WooCommerce
    from hub.core.actions import RecordRevenue
    from hub.core.connectors import Context

    ctx = Context(workspace_id="w", installation_id="i", config={"country": "US", "order_confirmation_template": "oc"})
    actions = WooCommerce().handle_webhook("order.updated", order(), ctx)
    assert RecordRevenue(to=WA, order_id="727", amount="29.35", currency="USD") in actions
    unpaid = WooCommerce().handle_webhook("order.updated", order(date_paid=None), ctx)
    assert not any(isinstance(a, RecordRevenue) for a in unpaid)
    for junk in ({}, [], None, "x", {"id": [1], "status": {"a": 1}, "billing": []}):
        WooCommerce().handle_webhook("order.updated", junk, ctx)


def test_billing_country_beats_the_store_country_for_national_numbers(client, woo, coexistence, simulator, run_jobs):
    deliver(client, woo, order(billing={"phone": "090909 09090", "country": "IN"}, currency="JPY", total="3980"),
            "order.created")
    run_jobs()
    [body] = sent(simulator, coexistence, "order_confirmation")
    assert body["to"] == "919090909090"
    assert body["template"]["components"][0]["parameters"][2]["text"] == "¥3,980"  # zero-decimal currency


def test_without_a_rest_api_key_the_poll_does_nothing(client, coexistence, store, run_jobs):
    inst = client.install(coexistence.workspace, "woocommerce",
                          {"webhook_secret": "wc-secret", "store_url": store.url})
    with client.rt.db.session() as s:
        s.get(Installation, inst["id"]).state = {"modified_after": "2017-03-22T19:00:00"}
    tick(client.rt)
    run_jobs()
    assert store.seen("GET") == []
    with client.rt.db.session() as s:
        state = s.get(Installation, inst["id"]).state
    assert state["last_poll_error"] is None and state["modified_after"] == "2017-03-22T19:00:00"
