"""Shopify connector through the real ingest: signed sample payloads, the simulator, an Admin API stand-in."""
import copy
import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.core import installations
from hub.core.models import InboundEvent, OutboundDelivery, Send, utcnow
from hub.core.scheduler import tick
from hub.testing import payloads as p
from tests.connectors.standin import StandIn

FIXTURES = Path(__file__).parents[1] / "fixtures" / "shopify"
SECRETS = {"webhook_secret": "shpss_test_secret", "admin_api_token": "shpat_test_token"}
ORDER_ID = "820982911946154508"  # > 2^53: must never pass through a float
CUSTOMER, WA = "+1 415-555-2671", "14155552671"


def sample(fixture: str, /, **changes) -> dict:
    data = json.loads((FIXTURES / f"{fixture}.json").read_text())
    for path, value in changes.items():
        target, *parts = path.split("__")
        node = data
        for part in [target, *parts][:-1]:
            node = node[part]
        node[[target, *parts][-1]] = value
    return data


def headers(topic: str, webhook_id: str) -> dict:
    return {"X-Shopify-Topic": topic, "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-Shop-Domain": "jsmith.myshopify.com", "X-Shopify-API-Version": "2026-04"}
    # X-Shopify-Triggered-At: set to now by the signing (a fixed date would be refused as stale)


def rows(client, model, **where):
    with client.rt.db.session() as s:
        return s.scalars(select(model).filter_by(**where).order_by(model.id)).all()


def sent(simulator, coexistence, template: str) -> list[dict]:
    return [r["body"] for r in simulator.sent(coexistence.phone_number_id)
            if r["body"].get("template", {}).get("name") == template]


@pytest.fixture
def admin():
    server = StandIn()
    server.on("POST", "/admin/api/2026-04/graphql.json",
              lambda r: ({"data": {"tagsAdd": {"node": {"id": r["json"]["variables"].get("id")}, "userErrors": []},
                                   "orderCancel": {"job": {"id": "gid://shopify/Job/1"},
                                                   "orderCancelUserErrors": []}}}, 200))
    yield server
    server.close()


@pytest.fixture
def shop(client, coexistence, simulator, admin):
    waba = coexistence.waba_id
    simulator.add_template(waba, "abandoned_cart", category="MARKETING", body_params=3)
    simulator.add_template(waba, "order_confirmation", body_params=3)
    simulator.add_template(waba, "order_shipped", body_params=4)
    simulator.add_template(waba, "order_cancelled", body_params=2)
    simulator.add_template(waba, "cod_confirmation", body_params=3, buttons=["Confirm order", "Cancel order"])
    assert client.post("/api/v1/templates/sync", headers=coexistence.workspace.headers).status_code == 200
    config = {**SECRETS, "shop": "jsmith.myshopify.com", "default_country": "US",
              "admin_api_url": admin.url + "/admin/api/2026-04/graphql.json"}
    inst = client.install(coexistence.workspace, "shopify", config)
    return inst


def deliver(client, inst, payload, topic, webhook_id):
    response = client.deliver("shopify", inst["id"], payload, SECRETS, headers(topic, webhook_id))
    assert response.status_code == 200, response.json
    return response


def test_bad_or_missing_signature_is_401_and_nothing_is_stored(client, shop):
    body = json.dumps(sample("orders_create")).encode()
    url = f"/webhooks/shopify/{shop['id']}"
    wrong_key = client.deliver("shopify", shop["id"], body, {"webhook_secret": "not-it"}, headers("orders/create", "a"))
    missing = client.post(url, data=body, headers=headers("orders/create", "b"))
    tampered = client.post(url, data=body.replace(b"#9999", b"#1111"),
                           headers={**headers("orders/create", "c"),
                                    **client.rt.plugins.connectors["shopify"].verify.sign(body, SECRETS)})
    for response in (wrong_key, missing, tampered):
        assert response.status_code == 401 and response.json["error"]["code"] == "bad_signature"
    assert rows(client, InboundEvent, scope=shop["id"]) == []


def test_order_confirmation_is_sent_once_despite_redeliveries(client, shop, coexistence, simulator, run_jobs):
    order = sample("orders_create", phone=CUSTOMER, cancelled_at=None, cancel_reason=None)
    first = deliver(client, shop, order, "orders/create", "wh-1")
    again = deliver(client, shop, order, "orders/create", "wh-1")  # Shopify retried: same webhook id
    assert (first.json["duplicate"], again.json["duplicate"]) == (False, True)
    # a second subscription (or a replay): a new webhook id, the same signed body → a duplicate
    assert deliver(client, shop, order, "orders/create", "wh-2").json["duplicate"] is True
    run_jobs()
    [body] = sent(simulator, coexistence, "order_confirmation")
    assert body["to"] == WA
    assert body["template"]["components"] == [{"type": "body", "parameters": [
        {"type": "text", "text": "John"}, {"type": "text", "text": "#9999"}, {"type": "text", "text": "$388.00"}]}]
    [send] = rows(client, Send, workspace_id=coexistence.workspace.id)
    assert send.reference == {"order_id": ORDER_ID, "kind": "confirmation"}
    assert len(rows(client, InboundEvent, scope=shop["id"])) == 1


def test_the_documented_sample_has_no_usable_phone_and_sends_nothing(client, shop, coexistence, run_jobs):
    deliver(client, shop, sample("orders_create", cancelled_at=None), "orders/create", "sample")  # "555-555-SHIP"
    broken = sample("orders_create", customer="oops", shipping_address=[], billing_address=None, phone=12345,
                    total_price=None, name=None, payment_gateway_names=None, cancelled_at=None)
    deliver(client, shop, broken, "orders/create", "broken")
    deliver(client, shop, {"id": None}, "orders/create", "empty")
    deliver(client, shop, sample("orders_create", phone=CUSTOMER), "orders/create", "cancelled")  # as documented
    run_jobs()
    events = rows(client, InboundEvent, scope=shop["id"])
    assert [e.status for e in events] == ["processed"] * 4
    assert [e.outcome["skipped"] for e in events] == [["invalid phone number"], ["invalid phone number"],
                                                      ["order without id"], ["order already cancelled"]]
    assert rows(client, Send, workspace_id=coexistence.workspace.id) == []


def test_national_number_in_an_address_uses_the_country_and_list_addresses_do_not_crash(
        client, shop, coexistence, simulator, run_jobs):
    order = sample("orders_create", shipping_address=[], id=5551234567890123456, cancelled_at=None,
                   billing_address__phone="(415) 555-2671", customer__first_name=None)
    deliver(client, shop, order, "orders/create", "national")
    run_jobs()
    [body] = sent(simulator, coexistence, "order_confirmation")
    assert body["to"] == WA and body["template"]["components"][0]["parameters"][0]["text"] == "Steve"


def test_checkout_update_reschedules_one_reminder_which_is_sent_after_the_delay(
        client, shop, coexistence, simulator, run_jobs, run_scheduler):
    checkout = sample("checkouts_create", phone=CUSTOMER, buyer_accepts_sms_marketing=True)
    deliver(client, shop, checkout, "checkouts/create", "c1")
    deliver(client, shop, {**checkout, "total_price": "450.00", "updated_at": "2022-01-01T00:10:00-05:00"},
            "checkouts/update", "c2")
    run_jobs()
    [send] = rows(client, Send, workspace_id=coexistence.workspace.id)
    assert send.status == "scheduled" and send.cancel_key == f"shopify:{shop['id']}:checkout:123123123"
    assert send.params == ["John", "$450.00", checkout["abandoned_checkout_url"]]
    assert send.reference == {"checkout_token": "123123123", "kind": "recovery", "attributable": True}
    assert run_scheduler(now=dt.timedelta(minutes=30)) == 0  # not yet (this workspace's sends only)
    assert run_scheduler(now=dt.timedelta(minutes=61)) == 1
    [body] = sent(simulator, coexistence, "abandoned_cart")
    assert body["to"] == WA and body["template"]["components"][0]["parameters"][2]["text"] == \
        "https://checkout.local/548380009/checkouts/123123123/recover?key=example-secret-token"


def test_abandoned_cart_then_order_sends_no_recovery(client, shop, coexistence, simulator, run_jobs):
    checkout = sample("checkouts_create", phone=CUSTOMER, buyer_accepts_marketing=True)
    deliver(client, shop, checkout, "checkouts/create", "c1")
    run_jobs()
    order = sample("orders_create", phone=CUSTOMER, checkout_token="123123123", cancelled_at=None)
    deliver(client, shop, order, "orders/create", "o1")
    run_jobs()
    tick(client.rt, now=utcnow() + dt.timedelta(hours=2))
    run_jobs()
    assert sent(simulator, coexistence, "abandoned_cart") == []
    assert len(sent(simulator, coexistence, "order_confirmation")) == 1
    statuses = {s.template_name: s.status for s in rows(client, Send, workspace_id=coexistence.workspace.id)}
    assert statuses["abandoned_cart"] == "cancelled"


def test_completed_or_deleted_checkouts_cancel_the_reminder(client, shop, coexistence, simulator, run_jobs):
    checkout = sample("checkouts_create", phone=CUSTOMER, buyer_accepts_marketing=True)
    other = {**checkout, "token": "456456456", "name": "#981820079255243999", "phone": "+1 415 555 2672"}
    deliver(client, shop, checkout, "checkouts/create", "c1")
    deliver(client, shop, other, "checkouts/create", "c2")
    run_jobs()
    deliver(client, shop, {**checkout, "completed_at": "2022-01-01T00:05:00-05:00"}, "checkouts/update", "c3")
    deliver(client, shop, sample("checkouts_delete", id=981820079255243999), "checkouts/delete", "d1")  # id only
    run_jobs()
    assert [s.status for s in rows(client, Send, workspace_id=coexistence.workspace.id)] == ["cancelled"] * 2
    tick(client.rt, now=utcnow() + dt.timedelta(hours=2))
    run_jobs()
    assert sent(simulator, coexistence, "abandoned_cart") == []


def test_reminders_need_marketing_consent_unless_turned_off(client, shop, coexistence, workspace, run_jobs):
    deliver(client, shop, sample("checkouts_create", phone=CUSTOMER), "checkouts/create", "c1")  # both flags false
    run_jobs()
    [event] = rows(client, InboundEvent, scope=shop["id"])
    assert event.outcome["skipped"] == ["no marketing consent"]
    assert rows(client, Send, workspace_id=workspace.id) == []
    patched = client.patch(f"/api/v1/installations/{shop['id']}", headers=workspace.headers,
                           json={"config": {"require_marketing_consent": False, "second_reminder_delay_minutes": 1440}})
    assert patched.status_code == 200, patched.json
    deliver(client, shop, sample("checkouts_create", phone=CUSTOMER), "checkouts/update", "c2")
    run_jobs()
    sends = rows(client, Send, workspace_id=workspace.id)
    assert [(s.status, s.cancel_key.rsplit(":", 1)[-1]) for s in sends] == [("scheduled", "123123123"),
                                                                             ("scheduled", "2")]


def test_fulfillment_sends_tracking_once(client, shop, coexistence, simulator, run_jobs):
    fulfillment = sample("fulfillments_create", destination__phone=CUSTOMER)
    deliver(client, shop, {**fulfillment, "tracking_number": None, "tracking_numbers": []}, "fulfillments/create", "f0")
    deliver(client, shop, fulfillment, "fulfillments/update", "f1")
    deliver(client, shop, {**fulfillment, "status": "success"}, "fulfillments/update", "f2")
    run_jobs()
    [body] = sent(simulator, coexistence, "order_shipped")
    assert [x["text"] for x in body["template"]["components"][0]["parameters"]] == [
        "Steve", "#9999", "1z827wk74630", "https://www.ups.com/WebTracking?loc=en_US&requester=ST&trackNums=1z827wk74630"]
    assert rows(client, InboundEvent, scope=shop["id"])[0].outcome["skipped"] == ["fulfillment has no tracking number yet"]


def test_cancelled_order_notice_once(client, shop, coexistence, simulator, run_jobs):
    order = sample("orders_create", phone=CUSTOMER)
    deliver(client, shop, order, "orders/cancelled", "x1")
    deliver(client, shop, order, "orders/cancelled", "x2")
    run_jobs()
    [body] = sent(simulator, coexistence, "order_cancelled")
    assert [x["text"] for x in body["template"]["components"][0]["parameters"]] == ["John", "#9999"]


def test_cod_order_asks_to_confirm_and_the_reply_tags_the_order(client, shop, coexistence, simulator, admin, run_jobs):
    order = sample("orders_create", phone=CUSTOMER, payment_gateway_names=["Cash on Delivery (COD)"],
                   financial_status="pending", cancelled_at=None)
    deliver(client, shop, order, "orders/create", "cod-1")
    run_jobs()
    assert sent(simulator, coexistence, "order_confirmation") == []
    [body] = sent(simulator, coexistence, "cod_confirmation")
    buttons = [c for c in body["template"]["components"] if c["type"] == "button"]
    assert buttons == [
        {"type": "button", "sub_type": "quick_reply", "index": "0",
         "parameters": [{"type": "payload", "payload": f"cod_confirm:{ORDER_ID}@{shop['id']}"}]},
        {"type": "button", "sub_type": "quick_reply", "index": "1",
         "parameters": [{"type": "payload", "payload": f"cod_cancel:{ORDER_ID}@{shop['id']}"}]}]
    reply = p.template_button_reply(coexistence.waba_id, coexistence.phone_number_id, coexistence.display, WA,
                                    payload=f"cod_confirm:{ORDER_ID}@{shop['id']}", text="Confirm order")
    assert simulator.deliver(reply).status_code == 200
    run_jobs()
    [request] = admin.seen("POST", "/admin/api/2026-04/graphql.json")
    assert request["headers"]["X-Shopify-Access-Token"] == "shpat_test_token"
    assert request["headers"]["Content-Type"] == "application/json"
    assert "tagsAdd(id: $id, tags: $tags)" in request["json"]["query"]
    assert "userErrors" in request["json"]["query"]
    assert request["json"]["variables"] == {"id": f"gid://shopify/Order/{ORDER_ID}", "tags": ["cod-confirmed"]}
    [row] = rows(client, OutboundDelivery, workspace_id=coexistence.workspace.id)
    assert (row.kind, row.status) == ("writeback", "delivered")


def test_another_stores_cod_reply_is_ignored(client, shop, coexistence, simulator, admin, run_jobs):
    reply = p.template_button_reply(coexistence.waba_id, coexistence.phone_number_id, coexistence.display, WA,
                                    payload=f"cod_confirm:{ORDER_ID}@ins_someone_else", text="Confirm order")
    simulator.deliver(reply)
    run_jobs()
    assert admin.seen("POST") == []


def test_cod_cancel_reply_tags_and_cancels_when_configured(client, shop, coexistence, simulator, admin, run_jobs):
    client.patch(f"/api/v1/installations/{shop['id']}", headers=coexistence.workspace.headers,
                 json={"config": {"cod_cancel_order": True}})
    reply = p.interactive_reply(coexistence.waba_id, coexistence.phone_number_id, coexistence.display, WA,
                                reply_id=f"cod_cancel:{ORDER_ID}", title="Cancel order")
    simulator.deliver(reply)
    run_jobs()
    requests = admin.seen("POST")
    assert [r["json"]["variables"] for r in requests if "tagsAdd" in r["json"]["query"]] == [
        {"id": f"gid://shopify/Order/{ORDER_ID}", "tags": ["cod-cancelled"]}]
    [cancel] = [r for r in requests if "orderCancel" in r["json"]["query"]]
    assert cancel["json"]["variables"] == {"orderId": f"gid://shopify/Order/{ORDER_ID}"}


def test_graphql_user_errors_are_retried_then_succeed(client, shop, coexistence, simulator, admin, run_jobs):
    calls = []

    def flaky(record):
        calls.append(record)
        if len(calls) == 1:
            return {"data": {"tagsAdd": {"node": None, "userErrors": [{"field": ["id"], "message": "Order busy"}]}}}, 200
        return {"data": {"tagsAdd": {"node": {"id": "x"}, "userErrors": []}}}, 200

    admin.on("POST", "/admin/api/2026-04/graphql.json", flaky)
    simulator.deliver(p.template_button_reply(coexistence.waba_id, coexistence.phone_number_id, coexistence.display,
                                              WA, payload=f"cod_confirm:{ORDER_ID}", text="Confirm order"))
    run_jobs()
    [row] = rows(client, OutboundDelivery, workspace_id=coexistence.workspace.id)
    assert row.status == "pending" and "Order busy" in row.last_error
    tick(client.rt, now=row.next_attempt_at)
    run_jobs()
    [row] = rows(client, OutboundDelivery, workspace_id=coexistence.workspace.id)
    assert (row.status, row.attempts) == ("delivered", 2)


def test_paid_order_after_a_recovery_send_is_attributed(client, shop, coexistence, simulator, run_jobs):
    deliver(client, shop, sample("checkouts_create", phone=CUSTOMER, buyer_accepts_sms_marketing=True),
            "checkouts/create", "c1")
    run_jobs()
    tick(client.rt, now=utcnow() + dt.timedelta(minutes=61))
    run_jobs()
    assert len(sent(simulator, coexistence, "abandoned_cart")) == 1
    paid = sample("orders_create", phone=CUSTOMER, financial_status="paid", cancelled_at=None)
    deliver(client, shop, paid, "orders/paid", "p1")
    deliver(client, shop, {**paid, "total_price": "not a number"}, "orders/paid", "p2")
    run_jobs()
    summary = client.get("/api/v1/analytics/summary", headers=coexistence.workspace.headers).json
    assert summary["attributed_revenue"] == {"USD": {"orders": 1, "amount": "388.00"}}


def test_app_uninstalled_disables_the_installation(client, shop, coexistence, run_jobs):
    deliver(client, shop, {"id": 548380009, "name": "Super Toys", "domain": None}, "app/uninstalled", "u1")
    run_jobs()
    got = client.get(f"/api/v1/installations/{shop['id']}", headers=coexistence.workspace.headers).json
    assert (got["enabled"], got["disabled_reason"]) == (False, "app uninstalled")
    installations.forget(shop["id"])
    again = client.deliver("shopify", shop["id"], sample("orders_create"), SECRETS, headers("orders/create", "late"))
    assert again.status_code == 404


def test_handlers_are_pure_and_survive_odd_payloads():
    from connectors.shopify import Shopify, is_cod
    from hub.core.connectors import Context

    ctx = Context(workspace_id="w", installation_id="i", config={"default_country": "US", "language": "en_US",
                                                                  "abandoned_cart_template": "abandoned_cart"})
    connector = Shopify()
    for topic in ("orders/create", "orders/paid", "orders/cancelled", "checkouts/create", "checkouts/update",
                  "checkouts/delete", "fulfillments/create"):
        for payload in ({}, [], "x", {"id": {"nested": 1}, "customer": [], "shipping_address": []}, None):
            connector.handle_webhook(topic, copy.deepcopy(payload), ctx)
    assert is_cod({"payment_gateway_names": ["Cash on Delivery (COD)"]})
    assert is_cod({"gateway": "cash_on_delivery"}) and is_cod({"payment_gateway_names": ["COD"]})
    assert not is_cod({"payment_gateway_names": ["shopify_payments", None, 3]}) and not is_cod({"gateway": "codeshop"})
