"""Razorpay connector through the real ingest: signed sample payloads (tests/fixtures/razorpay), the
Graph simulator, the scheduler's clock for the failed-then-captured race, and a stand-in for the
Payment Links API (fresh links for expired ones, and the ``coexhub_payment_link`` hook)."""
import copy
import datetime as dt
import json
import secrets as _secrets
from pathlib import Path

import pytest
from sqlalchemy import select

from connectors.razorpay import Razorpay, api
from hub.core.actions import (CancelScheduled, PaymentLink, PaymentReceived, ScheduleSend, SendPaymentLink,
                               SendTemplate, Skip)
from hub.core.connectors import Context
from hub.core.models import InboundEvent, OutboundDelivery, Send, utcnow
from hub.core.scheduler import tick
from hub.testing.conformance import ConnectorConformance
from tests.connectors.standin import StandIn

FIXTURES = Path(__file__).parents[1] / "fixtures" / "razorpay"
SECRETS = {"webhook_secret": "rzp_whsec_test_secret", "key_id": "rzp_test_keyid123", "key_secret": "rzp_test_keysecret"}
WA = "919876543210"        # +919876543210 / 9876543210 in the samples
LINK_WA = "919000090000"   # the payment-link samples' customer
ORDER = "order_DESlLckIVRkHWj"


def sample(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def rows(client, model, **where):
    with client.rt.db.session() as s:
        return s.scalars(select(model).filter_by(**where).order_by(model.id)).all()


def sent(simulator, coexistence, template: str) -> list[dict]:
    return [r["body"] for r in simulator.sent(coexistence.phone_number_id)
            if r["body"].get("template", {}).get("name") == template]


def params(body: dict) -> list[str]:
    return [p["text"] for p in body["template"]["components"][0]["parameters"]]


class RazorpayApi(StandIn):
    """The Payment Links endpoints the connector uses: create, and list by ``reference_id``."""

    def __init__(self):
        super().__init__()
        self.links: list[dict] = []
        self.on("POST", "/v1/payment_links", self._create)
        self.on("GET", "/v1/payment_links",
                lambda r: ({"payment_links": [link for link in self.links
                                              if link["reference_id"] == r["args"].get("reference_id")]}, 200))

    def _create(self, record):
        body = record["json"]
        if any(link["reference_id"] == body["reference_id"] for link in self.links):
            return {"error": {"code": "BAD_REQUEST_ERROR", "description": "reference_id already exists"}}, 400
        link_id = "plink_" + _secrets.token_hex(7)
        link = {**body, "id": link_id, "entity": "payment_link", "status": "created", "amount_paid": 0,
                "created_at": 1748424975 + len(self.links), "short_url": f"https://rzp.io/rzp/{link_id[-7:]}"}
        self.links.append(link)
        return link, 200


@pytest.fixture
def rzp_api():
    server = RazorpayApi()
    yield server
    server.close()


@pytest.fixture
def rzp(client, coexistence, simulator, rzp_api):
    waba = coexistence.waba_id
    for name in ("payment_receipt", "payment_failed", "payment_link_reminder", "refund_processed"):
        simulator.add_template(waba, name, body_params=3)
    assert client.post("/api/v1/templates/sync", headers=coexistence.workspace.headers).status_code == 200
    return client.install(coexistence.workspace, "razorpay", {**SECRETS, "api_base": rzp_api.url})


def deliver(client, inst, payload, event_id=None):
    event_id = event_id or "evt_" + _secrets.token_hex(6)
    response = client.deliver("razorpay", inst["id"], payload, SECRETS, {"X-Razorpay-Event-Id": event_id})
    assert response.status_code == 200, response.json
    return response


# -- verification and dedupe -------------------------------------------------------------------
def test_bad_missing_or_tampered_signature_is_401_and_nothing_is_stored(client, rzp):
    body = json.dumps(sample("payment_captured")).encode()
    url, event = f"/webhooks/razorpay/{rzp['id']}", {"X-Razorpay-Event-Id": "evt_sig"}
    wrong = client.deliver("razorpay", rzp["id"], body, {"webhook_secret": "not-it"}, event)
    missing = client.post(url, data=body, headers={"Content-Type": "application/json", **event})
    signed = Razorpay.verify.sign(body, SECRETS)
    tampered = client.post(url, data=body.replace(b"129900", b"100"), headers={**signed, **event})
    uppercase = client.post(url, data=body, headers={"X-Razorpay-Signature": signed["X-Razorpay-Signature"].upper(),
                                                     **event})
    latin1 = "{\"event\": \"payment.captured\", \"x\": \"é\"}".encode("latin-1")
    not_utf8 = client.post(url, data=latin1, headers={**Razorpay.verify.sign(latin1, SECRETS), **event})
    for response in (wrong, missing, tampered, uppercase):
        assert response.status_code == 401 and response.json["error"]["code"] == "bad_signature", response.json
    assert (not_utf8.status_code, not_utf8.json["error"]) == (401, {"code": "rejected",
                                                                   "message": "the body is not UTF-8"})
    assert rows(client, InboundEvent, scope=rzp["id"]) == []


def test_receipt_once_for_redeliveries_and_for_captured_plus_order_paid(client, rzp, coexistence, simulator, run_jobs):
    captured = sample("payment_captured")
    assert deliver(client, rzp, captured, "evt_1").json["duplicate"] is False
    assert deliver(client, rzp, captured, "evt_1").json["duplicate"] is True  # a Razorpay retry
    deliver(client, rzp, sample("order_paid"), "evt_2")  # the same payment, told as order.paid
    run_jobs()
    [body] = sent(simulator, coexistence, "payment_receipt")
    assert body["to"] == WA and params(body) == ["Gaurav", "₹1,299.00", ORDER]
    events = rows(client, InboundEvent, scope=rzp["id"])
    assert [e.status for e in events] == ["processed", "processed"]
    [send] = rows(client, Send, workspace_id=coexistence.workspace.id)
    assert send.reference == {"order_id": ORDER, "payment_id": "pay_DESlfW9H8K9uqM", "kind": "receipt"}


def test_without_the_event_id_header_an_identical_body_is_a_duplicate(client, rzp, run_jobs):
    body = json.dumps(sample("refund_processed")).encode()
    first = client.deliver("razorpay", rzp["id"], body, SECRETS)
    again = client.deliver("razorpay", rzp["id"], body, SECRETS)
    assert (first.json["duplicate"], again.json["duplicate"]) == (False, True)


def test_order_paid_with_bare_national_contact_uses_india_and_the_receipt_number(
        client, rzp, coexistence, simulator, run_jobs):
    deliver(client, rzp, sample("order_paid"))
    run_jobs()
    [body] = sent(simulator, coexistence, "payment_receipt")
    assert body["to"] == WA and params(body) == ["there", "₹1,299.00", "rcpt-1042"]


def test_payment_link_paid_sample_with_unprefixed_order_and_null_notes(client, rzp, coexistence, simulator, run_jobs):
    paid = sample("payment_link_paid")
    deliver(client, rzp, paid)
    captured = copy.deepcopy(paid)  # Razorpay also sends payment.captured for the link's payment
    captured.update(event="payment.captured", contains=["payment"])
    captured["payload"] = {"payment": paid["payload"]["payment"]}
    deliver(client, rzp, captured)
    run_jobs()
    [body] = sent(simulator, coexistence, "payment_receipt")
    assert body["to"] == LINK_WA and params(body) == ["there", "₹10.00", "23"]
    [send] = rows(client, Send, workspace_id=coexistence.workspace.id)
    assert send.reference["order_id"] == "order_QflczVVaNJciLq"


def test_odd_and_broken_payloads_are_processed_with_a_reason(client, rzp, coexistence, run_jobs):
    no_contact = sample("payment_captured")
    no_contact["payload"]["payment"]["entity"].update(contact="", email="", notes=None, currency="")
    bad_contact = sample("payment_captured")
    bad_contact["payload"]["payment"]["entity"].update(id="pay_bad", contact="12345", notes=[])
    for payload in (no_contact, bad_contact, {"event": "payment.captured", "payload": []},
                    {"event": "refund.processed", "payload": {"refund": {"entity": None}}},
                    {"event": "payment.authorized", "payload": {}}, {"event": None}):
        deliver(client, rzp, payload)
    run_jobs()
    events = rows(client, InboundEvent, scope=rzp["id"])
    assert [e.status for e in events] == ["processed"] * 6
    assert [e.outcome["skipped"] for e in events] == [
        ["no phone number"], ["invalid phone number"], ["payment without id or order id"], ["refund without id"],
        ["no handler for topic 'payment.authorized'"], ["no handler for topic None"]]
    assert rows(client, Send, workspace_id=coexistence.workspace.id) == []


# -- failed payments: the grace period and the retry race ----------------------------------------
def test_failure_is_sent_after_the_grace_period(client, rzp, coexistence, simulator, run_jobs, run_scheduler):
    deliver(client, rzp, sample("payment_failed"))
    run_jobs()
    [send] = rows(client, Send, workspace_id=coexistence.workspace.id)
    assert send.status == "scheduled" and send.cancel_key == f"rzp:{rzp['id']}:order:{ORDER}:failed"
    assert run_scheduler(now=dt.timedelta(minutes=9), jobs=False) == 0  # this workspace's sends only
    tick(client.rt, now=utcnow() + dt.timedelta(minutes=11))
    run_jobs()
    [body] = sent(simulator, coexistence, "payment_failed")
    assert body["to"] == WA and params(body) == ["there", "₹1,299.00", ORDER]


def test_capture_within_the_grace_period_cancels_the_failure(client, rzp, coexistence, simulator, run_jobs,
                                                             run_scheduler):
    deliver(client, rzp, sample("payment_failed"))
    second = sample("payment_failed")  # the card failed twice: still one message, moved
    second["payload"]["payment"]["entity"]["id"] = "pay_DESbm7fWA6uhdJ"
    deliver(client, rzp, second)
    run_jobs()
    assert run_scheduler(now=dt.timedelta(minutes=5), jobs=False) == 0  # this workspace's sends only
    deliver(client, rzp, sample("payment_captured"))  # the buyer paid on the third try
    run_jobs()
    tick(client.rt, now=utcnow() + dt.timedelta(minutes=30))
    run_jobs()
    assert sent(simulator, coexistence, "payment_failed") == []
    assert len(sent(simulator, coexistence, "payment_receipt")) == 1
    statuses = {s.template_name: s.status for s in rows(client, Send, workspace_id=coexistence.workspace.id)}
    assert statuses == {"payment_failed": "cancelled", "payment_receipt": "sent"}


def test_failure_delivered_after_the_capture_schedules_nothing(client, rzp, coexistence, simulator, run_jobs):
    deliver(client, rzp, sample("order_paid"))
    run_jobs()
    deliver(client, rzp, sample("payment_failed"))  # Razorpay delivers out of order
    run_jobs()
    tick(client.rt, now=utcnow() + dt.timedelta(minutes=30))
    run_jobs()
    assert sent(simulator, coexistence, "payment_failed") == []
    last = rows(client, InboundEvent, scope=rzp["id"])[-1]
    assert last.outcome["skipped"] == [f"order {ORDER} was paid already (this failure came before the capture)"]


def test_grace_period_is_configurable(client, rzp, coexistence, run_jobs):
    patched = client.patch(f"/api/v1/installations/{rzp['id']}", headers=coexistence.workspace.headers,
                           json={"config": {"failure_grace_minutes": 60}})
    assert patched.status_code == 200, patched.json
    deliver(client, rzp, sample("payment_failed"))
    run_jobs()
    [send] = rows(client, Send, workspace_id=coexistence.workspace.id)
    assert dt.timedelta(minutes=59) < send.not_before - utcnow() <= dt.timedelta(minutes=60)
    bad = client.patch(f"/api/v1/installations/{rzp['id']}", headers=coexistence.workspace.headers,
                       json={"config": {"failure_grace_minutes": -1}})
    assert bad.status_code == 422


# -- expired links: a fresh link through the API, then the reminder --------------------------------
def test_expired_link_gets_a_fresh_link_and_one_reminder(client, rzp, rzp_api, coexistence, simulator, run_jobs):
    expired = sample("payment_link_expired")
    deliver(client, rzp, expired, "evt_exp")
    run_jobs()
    [create] = rzp_api.seen("POST", "/v1/payment_links")
    body = create["json"]
    assert (body["amount"], body["currency"], body["reference_id"]) == (1000, "INR", "plink_QaIlOGFf8KZNF8:renewal")
    assert body["customer"] == {"name": "Gaurav Kumar", "contact": "+919000090000", "email": "gaurav.kumar@example.com"}
    assert body["notes"] == {"policy_name": "Jeevan Bima", "coexhub_renewal": "plink_QaIlOGFf8KZNF8"}
    assert body["notify"] == {"sms": False, "email": False} and body["expire_by"] > utcnow().timestamp() + 3600
    assert create["authorization"].username == SECRETS["key_id"]
    [reminder] = sent(simulator, coexistence, "payment_link_reminder")
    assert reminder["to"] == LINK_WA and params(reminder) == ["Gaurav", "₹10.00", rzp_api.links[0]["short_url"]]

    # the same expiry again (a replay under a new event id, or the write-back retried): no new link, no new send
    deliver(client, rzp, expired, "evt_exp_again")
    run_jobs()
    assert len(rzp_api.seen("POST", "/v1/payment_links")) == 1
    assert len(sent(simulator, coexistence, "payment_link_reminder")) == 1
    assert [r.status for r in rows(client, OutboundDelivery, installation_id=rzp["id"])] == ["delivered"]

    # the renewed link expiring too sends nothing more; paying it is attributed to the reminder
    renewed = copy.deepcopy(expired)
    renewed["payload"]["payment_link"]["entity"].update(id=rzp_api.links[0]["id"], notes=body["notes"])
    deliver(client, rzp, renewed)
    paid = sample("payment_link_paid")
    paid["payload"]["payment_link"]["entity"].update(id=rzp_api.links[0]["id"], notes=body["notes"])
    deliver(client, rzp, paid)
    run_jobs()
    assert rows(client, InboundEvent, scope=rzp["id"])[-2].outcome["skipped"] == [
        "a renewed link expired too: one reminder per purchase"]
    summary = client.get("/api/v1/analytics/summary", headers=coexistence.workspace.headers).json
    assert summary["attributed_revenue"] == {"INR": {"orders": 1, "amount": "10.00"}}


def test_expired_link_partly_paid_asks_for_the_rest_and_api_failures_are_retried(
        client, rzp, rzp_api, coexistence, simulator, run_jobs):
    expired = sample("payment_link_expired")
    expired["payload"]["payment_link"]["entity"].update(amount=250000, amount_paid=100000)
    rzp_api.on("POST", "/v1/payment_links", {"error": {"code": "SERVER_ERROR", "description": "down"}}, status=500)
    deliver(client, rzp, expired)
    run_jobs()
    [row] = rows(client, OutboundDelivery, installation_id=rzp["id"])
    assert row.status == "pending" and row.attempts == 1  # retried with backoff, nothing sent
    assert sent(simulator, coexistence, "payment_link_reminder") == []
    rzp_api.on("POST", "/v1/payment_links", rzp_api._create)
    tick(client.rt, now=utcnow() + dt.timedelta(minutes=1))
    run_jobs()
    assert rzp_api.seen("POST", "/v1/payment_links")[-1]["json"]["amount"] == 150000
    [reminder] = sent(simulator, coexistence, "payment_link_reminder")
    assert params(reminder)[1] == "₹1,500.00"


def test_expired_link_without_api_keys_is_skipped_with_the_reason(client, coexistence, simulator, run_jobs):
    inst = client.install(coexistence.workspace, "razorpay", {"webhook_secret": SECRETS["webhook_secret"]})
    deliver(client, inst, sample("payment_link_expired"))
    run_jobs()
    [event] = rows(client, InboundEvent, scope=inst["id"])
    assert event.outcome["skipped"] == ["no API key (key_id/key_secret): a fresh link cannot be created"]


# -- refunds and revenue ---------------------------------------------------------------------------
def test_refund_notice(client, rzp, coexistence, simulator, run_jobs):
    deliver(client, rzp, sample("refund_processed"), "evt_r1")
    deliver(client, rzp, sample("refund_processed"), "evt_r2")  # replayed under a new id: still one notice
    run_jobs()
    [body] = sent(simulator, coexistence, "refund_processed")
    assert body["to"] == WA and params(body) == ["there", "₹500.00", "order_FPoIeimWki9j8A"]


# -- the pay-by-link hook and PaymentReceived -------------------------------------------------------
def test_payment_link_hook_creates_a_link_through_the_api(client, rzp, rzp_api, coexistence):
    reference = "shopify:inst_0123456789abcdef:order:820982911946154508:cod"  # > 40 characters
    hook = client.rt.plugins.hook.coexhub_payment_link
    ask = dict(workspace_id=coexistence.workspace.id, amount="499.50", currency="inr", reference=reference,
               customer={"phone": "919876543210", "name": "Gaurav Kumar", "email": None},
               description="Order #1001", provider=None)
    link = hook(**ask)
    assert isinstance(link, PaymentLink) and link.provider == "razorpay"
    [created] = rzp_api.links
    assert (link.url, link.link_id) == (created["short_url"], created["id"])
    assert created["amount"] == 49950 and created["currency"] == "INR" and created["description"] == "Order #1001"
    assert len(created["reference_id"]) <= 40 and created["reference_id"] == api.reference_id(reference)
    assert created["notes"] == {"coexhub_reference": reference, "whatsapp": "919876543210"}
    assert created["customer"] == {"name": "Gaurav Kumar", "contact": "+919876543210"}
    assert hook(**ask) == link and len(rzp_api.seen("POST", "/v1/payment_links")) == 1  # a retried job: same link
    rzp_api.links[0]["status"] = "expired"  # asked again after it expired: a new link, a new reference_id
    again = hook(**ask)
    assert again.link_id != link.link_id and rzp_api.links[1]["reference_id"] != rzp_api.links[0]["reference_id"]
    assert hook(**{**ask, "provider": "stripe"}) is None
    assert hook(**{**ask, "workspace_id": client.new_workspace().id}) is None


def test_payment_link_hook_needs_an_enabled_installation_with_a_key(client, coexistence, rzp_api):
    ws = coexistence.workspace
    client.install(ws, "razorpay", {"webhook_secret": "rzp_whsec_nokeys", "api_base": rzp_api.url})
    ask = dict(workspace_id=ws.id, amount="10", currency="INR", reference="r-1", customer=None, description="",
               provider="razorpay")
    assert client.rt.plugins.hook.coexhub_payment_link(**ask) is None
    with_keys = client.install(ws, "razorpay", {**SECRETS, "api_base": rzp_api.url})
    assert client.rt.plugins.hook.coexhub_payment_link(**ask).provider == "razorpay"
    client.patch(f"/api/v1/installations/{with_keys['id']}", headers=ws.headers, json={"enabled": False})
    assert client.rt.plugins.hook.coexhub_payment_link(**ask) is None
    client.install(ws, "razorpay", {**SECRETS, "api_base": rzp_api.url})
    with pytest.raises(ValueError):  # a third decimal of a rupee cannot be charged: the job fails visibly
        client.rt.plugins.hook.coexhub_payment_link(**{**ask, "amount": "10.001"})


def test_paid_hub_link_returns_payment_received_and_cancels_nothing_else():
    ctx = Context(workspace_id="w", installation_id="i", config={"default_country": "IN",
                                                                  "receipt_template": "payment_receipt"})
    paid = sample("payment_link_paid")
    paid["payload"]["payment_link"]["entity"].update(notes={"coexhub_reference": "shopify:i9:order:1001"},
                                                     description="Order #1001", reference_id="cx-0123abcd")
    paid["payload"]["order"]["entity"]["receipt"] = "cx-0123abcd"
    actions = Razorpay().handle_webhook("payment_link.paid", paid, ctx)
    assert PaymentReceived(reference="shopify:i9:order:1001", amount="10.00", currency="INR", provider="razorpay",
                           payment_id="pay_Qfldmt5StKZFCB") in actions
    assert CancelScheduled("rzp:i:order:order_QflczVVaNJciLq:failed") in actions
    assert not any(type(a).__name__ == "RecordRevenue" for a in actions)  # the asking connector owns the order
    [receipt] = [a for a in actions if isinstance(a, SendTemplate)]
    assert receipt.params == ["there", "₹10.00", "Order #1001"]  # not the hashed reference_id
    assert ctx.state == {"paid_orders": ["order_QflczVVaNJciLq"]}
    # a link the hub did not create (reference_id "23", no coexhub_reference) is no PaymentReceived
    plain = Razorpay().handle_webhook("payment_link.paid", sample("payment_link_paid"), ctx)
    assert not any(isinstance(a, PaymentReceived) for a in plain)


def test_handlers_are_pure_and_survive_odd_payloads():
    ctx = Context(workspace_id="w", installation_id="i",
                  config={"default_country": "IN", "payment_failed_template": "payment_failed",
                          "link_reminder_template": "payment_link_reminder", "key_id": "k", "key_secret": "s",
                          "failure_grace_minutes": 10})
    failed = sample("payment_failed")
    failed["payload"]["payment"]["entity"].update(order_id=None, contact="09876543210", currency=None, amount="x")
    [action] = Razorpay().handle_webhook("payment.failed", failed, ctx)
    assert isinstance(action, ScheduleSend) and action.to == WA and action.after == 600
    assert action.cancel_key == "rzp:i:payment:pay_DESbm7fWA6uhdI:failed" and action.params[1] == "-"
    expired = sample("payment_link_expired")
    expired["payload"]["payment_link"]["entity"].update(customer=[], notes={"whatsapp": "+91 90000 90000"})
    [ask] = Razorpay().handle_webhook("payment_link.expired", expired, ctx)
    assert isinstance(ask, SendPaymentLink) and ask.to == LINK_WA and ask.name is None
    assert (ask.provider, ask.payment_reference, ask.amount) == ("razorpay", "renewal:plink_QaIlOGFf8KZNF8", "10.00")
    paid_up = copy.deepcopy(expired)
    paid_up["payload"]["payment_link"]["entity"]["amount_paid"] = 1000
    assert Razorpay().handle_webhook("payment_link.expired", paid_up, ctx) == [
        Skip("expired link without an amount left to pay")]
    assert api.to_major(True, "INR") is None and api.to_major("12", "JPY") == 12
    with pytest.raises(ValueError):
        api.to_minor("0", "INR")


SAMPLES = {topic: sample(name) for topic, name in (
    ("payment.captured", "payment_captured"), ("order.paid", "order_paid"), ("payment_link.paid", "payment_link_paid"),
    ("payment.failed", "payment_failed"), ("payment_link.expired", "payment_link_expired"),
    ("refund.processed", "refund_processed"))}


class TestRazorpayConformance(ConnectorConformance):
    connector = "razorpay"
    config = {**SECRETS, "api_base": "http://127.0.0.1:9"}
    sample = SAMPLES["payment.captured"]
    samples = SAMPLES
    event_id_header = "X-Razorpay-Event-Id"
