"""Stripe connector through the real ingest: Stripe's published example objects (tests/fixtures/stripe),
signed with stripe-python's own header generator, the simulator, and a Stripe API stand-in."""
import copy
import datetime as dt
import json
import secrets as _secrets
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.core.actions import CancelScheduled, PaymentLink, PaymentReceived, ScheduleSend, SendTemplate, Skip, WriteBack
from hub.core.connectors import Context
from hub.core.models import InboundEvent, Send, utcnow
from hub.core.scheduler import tick
from hub.testing.conformance import ConnectorConformance
from tests.connectors.standin import StandIn

FIXTURES = Path(__file__).parents[1] / "fixtures" / "stripe"
SECRETS = {"webhook_secret": "whsec_test_stripe_secret", "api_key": "rk_test_restricted_key"}
RECOVERY_URL = "https://buy.stripe.com/r/live_recovery_example"


def number() -> tuple[str, str]:
    """A unique valid US number per test (shared database): (as typed, WhatsApp digits)."""
    line = 2000 + _secrets.randbelow(7000)
    return f"+1 415-555-{line}", f"1415555{line}"


def obj(fixture: str, /, **changes) -> dict:
    data = json.loads((FIXTURES / f"{fixture}.json").read_text())
    for path, value in changes.items():
        parts = path.split("__")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {}) if node.get(part) is None else node[part]
        node[parts[-1]] = value
    return data


def event(kind: str, data: dict, event_id: str | None = None, **top) -> dict:
    envelope = obj("event")
    envelope.update(id=event_id or f"evt_{_secrets.token_hex(12)}", type=kind, data={"object": data}, **top)
    return envelope


def rows(client, model, **where):
    with client.rt.db.session() as s:
        return s.scalars(select(model).filter_by(**where).order_by(model.id)).all()


def sent(simulator, coexistence, template: str) -> list[dict]:
    return [r["body"] for r in simulator.sent(coexistence.phone_number_id)
            if r["body"].get("template", {}).get("name") == template]


def texts(body: dict) -> list[str]:
    return [p["text"] for p in body["template"]["components"][0]["parameters"]]


@pytest.fixture
def api():
    server = StandIn()
    yield server
    server.close()


@pytest.fixture
def stripe_inst(client, coexistence, simulator, api):
    waba = coexistence.waba_id
    for name in ("payment_receipt", "payment_failed", "refund_notice"):
        simulator.add_template(waba, name, body_params=3)
    simulator.add_template(waba, "checkout_recovery", category="MARKETING", body_params=3)
    assert client.post("/api/v1/templates/sync", headers=coexistence.workspace.headers).status_code == 200
    return client.install(coexistence.workspace, "stripe", {**SECRETS, "api_base": api.url,
                                                             "retry_url": "https://shop.example/pay-again"})


def deliver(client, inst, payload, **sign):
    response = client.deliver("stripe", inst["id"], payload, SECRETS, **sign)
    assert response.status_code == 200, response.json
    return response


def paid_session(phone: str, **changes) -> dict:
    return obj("checkout_session", **{"customer_details__phone": phone, "customer_details__name": "Jenny Rosen",
               "payment_status": "paid", "status": "complete", "amount_total": 3980, "currency": "jpy", **changes})


def test_bad_missing_or_stale_signature_is_401_and_nothing_is_stored(client, stripe_inst):
    payload = event("checkout.session.completed", paid_session("+1 415 555 2671"))
    body = json.dumps(payload).encode()
    url = f"/webhooks/stripe/{stripe_inst['id']}"
    verifier = client.rt.plugins.connectors["stripe"].verify
    wrong = client.deliver("stripe", stripe_inst["id"], body, {"webhook_secret": "whsec_not_it"})
    missing = client.post(url, data=body, headers={"Content-Type": "application/json"})
    tampered = client.post(url, data=body.replace(b"Jenny", b"Jonny"), headers=verifier.sign(body, SECRETS))
    garbage = client.post(url, data=body, headers={"Stripe-Signature": "t=notanumber,v1=zz"})
    for response in (wrong, missing, tampered, garbage):
        assert response.status_code == 401 and response.json["error"]["code"] == "bad_signature"
    stale = client.deliver("stripe", stripe_inst["id"], body, SECRETS, timestamp=int(time.time()) - 301)
    future = client.deliver("stripe", stripe_inst["id"], body, SECRETS, timestamp=int(time.time()) + 400)
    for response in (stale, future):
        assert response.status_code == 401 and response.json["error"]["code"] == "rejected"
        assert "tolerance is 300 s" in response.json["error"]["message"]
    assert deliver(client, stripe_inst, payload, timestamp=int(time.time()) - 290).json["duplicate"] is False
    assert len(rows(client, InboundEvent, scope=stripe_inst["id"])) == 1


def test_checkout_and_payment_intent_give_one_receipt_in_yen(client, stripe_inst, coexistence, simulator, run_jobs):
    typed, wa = number()
    session = paid_session(typed)
    completed = event("checkout.session.completed", session)
    assert deliver(client, stripe_inst, completed).json["duplicate"] is False
    assert deliver(client, stripe_inst, completed).json["duplicate"] is True  # Stripe retried the same evt_
    intent = obj("payment_intent", id=session["payment_intent"], status="succeeded", amount=3980,
                 amount_received=3980, currency="jpy", metadata={"phone": typed})
    deliver(client, stripe_inst, event("payment_intent.succeeded", intent))
    run_jobs()
    [body] = sent(simulator, coexistence, "payment_receipt")
    assert body["to"] == wa
    assert texts(body) == ["Jenny", "¥3,980", session["id"]]
    sends = [s for s in rows(client, Send, workspace_id=coexistence.workspace.id) if s.template_name == "payment_receipt"]
    assert len(sends) == 1 and sends[0].idempotency_key == f"stripe:{stripe_inst['id']}:receipt:{session['payment_intent']}"
    assert [e.status for e in rows(client, InboundEvent, scope=stripe_inst["id"])] == ["processed", "processed"]


def test_unpaid_sample_and_odd_payloads_send_nothing_with_reasons(client, stripe_inst, coexistence, run_jobs):
    deliver(client, stripe_inst, event("checkout.session.completed", obj("checkout_session")))  # as published
    deliver(client, stripe_inst, event("payment_intent.succeeded", obj("payment_intent")))  # no phone anywhere
    deliver(client, stripe_inst, event("charge.refunded", obj("charge")))  # amount_refunded 0
    deliver(client, stripe_inst, {"id": "evt_x1", "type": "charge.refunded", "data": None})
    deliver(client, stripe_inst, event("customer.created", obj("customer")))
    run_jobs()
    events = rows(client, InboundEvent, scope=stripe_inst["id"])
    assert [e.status for e in events] == ["processed"] * 5
    assert [e.outcome["skipped"] for e in events] == [
        ["checkout session cs_test_a1YS1URlnyQCN5fUUduORoQ7Pw41PJqDWkIVQCpJPqkfIhd6tVY8XB1OLY is unpaid "
         "(an async payment's result follows)"],
        ["no phone number"], ["charge ch_1PgafuB7WZ01zgkWXYmPNZs8 has no amount_refunded"],
        ["not a Stripe event (no data.object)"], ["no handler for topic 'customer.created'"]]
    assert rows(client, Send, workspace_id=coexistence.workspace.id) == []


def test_refund_notice_in_a_three_decimal_currency_once_per_amount(client, stripe_inst, coexistence, simulator,
                                                                   run_jobs):
    typed, wa = number()
    charge = obj("charge", amount=20000, amount_refunded=12345, refunded=False, currency="kwd",
                 billing_details__phone=typed, billing_details__address__country="KW")
    deliver(client, stripe_inst, event("charge.refunded", charge))
    deliver(client, stripe_inst, event("charge.refunded", charge))  # another evt_ for the same refund state
    run_jobs()
    [body] = sent(simulator, coexistence, "refund_notice")
    assert body["to"] == wa
    assert texts(body) == ["Jenny", "KWD12.345", "My First Test Charge (created for API docs)"]


def test_expired_checkout_schedules_recovery_cancelled_by_a_completed_session(
        client, stripe_inst, coexistence, simulator, run_jobs):
    typed, _ = number()
    expired = obj("checkout_session", customer_details__phone=typed, customer_details__email="Jenny@Example.com",
                  status="expired", amount_total=1099, currency="usd", consent__promotions="opt_in",
                  after_expiration__recovery__url=RECOVERY_URL)
    deliver(client, stripe_inst, event("checkout.session.expired", expired))
    run_jobs()
    [send] = rows(client, Send, workspace_id=coexistence.workspace.id)
    assert send.status == "scheduled" and send.params == ["there", "$10.99", RECOVERY_URL]
    assert send.cancel_group == f"stripe:{stripe_inst['id']}:recovery:email:jenny@example.com"
    # the buyer came back as a guest (no phone collected this time), same email
    completed = obj("checkout_session", id="cs_test_second", customer_details__email="jenny@example.com",
                    payment_status="paid", amount_total=1099, currency="usd")
    deliver(client, stripe_inst, event("checkout.session.completed", completed))
    run_jobs()
    tick(client.rt, now=utcnow() + dt.timedelta(minutes=61))
    run_jobs()
    assert sent(simulator, coexistence, "checkout_recovery") == []
    [send] = rows(client, Send, workspace_id=coexistence.workspace.id)
    assert send.status == "cancelled"


def test_recovery_is_sent_after_the_delay_and_the_payment_it_brings_is_attributed(
        client, stripe_inst, coexistence, simulator, run_jobs):
    typed, wa = number()
    expired = obj("checkout_session", customer_details__phone=typed, customer="cus_QXg1o8vcGmoR32",
                  status="expired", amount_total=1099, currency="usd", consent__promotions="opt_in",
                  after_expiration__recovery__url=RECOVERY_URL)
    no_consent = {**expired, "id": "cs_no_consent", "consent": {"promotions": None, "terms_of_service": None}}
    deliver(client, stripe_inst, event("checkout.session.expired", no_consent))
    deliver(client, stripe_inst, event("checkout.session.expired", expired))
    run_jobs()
    tick(client.rt, now=utcnow() + dt.timedelta(minutes=30))  # before the delay: still waiting
    run_jobs()
    assert [s.status for s in rows(client, Send, workspace_id=coexistence.workspace.id)] == ["scheduled"]
    tick(client.rt, now=utcnow() + dt.timedelta(minutes=61))
    run_jobs()
    [body] = sent(simulator, coexistence, "checkout_recovery")
    assert body["to"] == wa and texts(body)[2] == RECOVERY_URL
    assert rows(client, InboundEvent, scope=stripe_inst["id"])[0].outcome["skipped"] == [
        "no promotional consent (consent.promotions is not opt_in)"]
    recovered = obj("checkout_session", id="cs_recovered", customer_details__phone=typed, payment_status="paid",
                    amount_total=1099, currency="usd", recovered_from=expired["id"])
    deliver(client, stripe_inst, event("checkout.session.completed", recovered))
    run_jobs()
    summary = client.get("/api/v1/analytics/summary", headers=coexistence.workspace.headers).json
    assert summary["attributed_revenue"] == {"USD": {"orders": 1, "amount": "10.99"}}


def test_failed_payment_waits_and_is_cancelled_when_the_retry_succeeds(
        client, stripe_inst, coexistence, simulator, run_jobs):
    typed, wa = number()
    failed = obj("payment_intent", id="pi_retry_ok", amount=2500, currency="eur", metadata={"whatsapp": typed})
    deliver(client, stripe_inst, event("payment_intent.payment_failed", failed))
    other = obj("payment_intent", id="pi_retry_never", amount=2500, currency="eur", metadata={"whatsapp": typed})
    deliver(client, stripe_inst, event("payment_intent.payment_failed", other))
    run_jobs()
    assert {s.status for s in rows(client, Send, workspace_id=coexistence.workspace.id)} == {"scheduled"}
    deliver(client, stripe_inst, event("payment_intent.succeeded", {**failed, "status": "succeeded",
                                                                    "amount_received": 2500}))
    run_jobs()
    tick(client.rt, now=utcnow() + dt.timedelta(minutes=11))
    run_jobs()
    [body] = sent(simulator, coexistence, "payment_failed")
    assert body["to"] == wa and texts(body) == ["there", "€25.00", "https://shop.example/pay-again"]
    assert len(sent(simulator, coexistence, "payment_receipt")) == 1
    statuses = {s.reference["payment_id"]: s.status for s in rows(client, Send, workspace_id=coexistence.workspace.id)
                if s.template_name == "payment_failed"}
    assert statuses == {"pi_retry_ok": "cancelled", "pi_retry_never": "sent"}


def test_off_session_failure_without_a_retry_url_asks_for_a_fresh_link():
    from connectors.stripe import Stripe
    from hub.core.actions import SendPaymentLink

    ctx = Context(workspace_id="w", installation_id="ins_1", config={"payment_failed_template": "payment_failed",
                                                                      "default_country": "US"})
    intent = obj("payment_intent", id="pi_off_session", amount=3980, currency="jpy", description="Plan renewal",
                 metadata={"whatsapp": "+1 415 555 2671"})
    [skip] = Stripe().handle_webhook("payment_intent.payment_failed", event("payment_intent.payment_failed", intent), ctx)
    assert "turn on payment_failed_fresh_link" in skip.reason
    ctx.config["payment_failed_fresh_link"] = True
    [send] = Stripe().handle_webhook("payment_intent.payment_failed", event("payment_intent.payment_failed", intent), ctx)
    assert send == SendPaymentLink(to="14155552671", template="payment_failed", language="en_US",
                                   params=["there", "¥3,980"], idempotency_key="stripe:ins_1:failed:pi_off_session",
                                   reference={"payment_id": "pi_off_session", "kind": "payment_failed"},
                                   amount="3980", currency="JPY", payment_reference="stripe:pi_off_session",
                                   description="Plan renewal", provider="stripe")


def test_invoice_failure_links_the_hosted_invoice(client, stripe_inst, coexistence, simulator, run_jobs):
    typed, wa = number()
    invoice = obj("invoice", status="open", attempt_count=1, customer_phone=typed, customer_name="Jenny Rosen",
                  hosted_invoice_url="https://invoice.stripe.com/i/acct_1/test_inv")
    deliver(client, stripe_inst, event("invoice.payment_failed", invoice))
    deliver(client, stripe_inst, event("invoice.payment_failed", obj("invoice")))  # as published: a draft
    run_jobs()
    [body] = sent(simulator, coexistence, "payment_failed")
    assert body["to"] == wa and texts(body) == ["Jenny", "$10.00", "https://invoice.stripe.com/i/acct_1/test_inv"]
    assert rows(client, InboundEvent, scope=stripe_inst["id"])[1].outcome["skipped"] == [
        "invoice in_1Pgc6tB7WZ01zgkWu9fdqL6I has no hosted_invoice_url (a draft?)"]


def test_phone_from_the_customer_object_is_fetched_once(client, stripe_inst, coexistence, simulator, api, run_jobs):
    typed, wa = number()
    customer_id = f"cus_{_secrets.token_hex(6)}"
    api.on("GET", f"/v1/customers/{customer_id}", obj("customer", id=customer_id, phone=typed, name="Jenny Rosen"))
    first = obj("payment_intent", id="pi_cust_1", status="succeeded", amount=1099, amount_received=1099,
                customer=customer_id, metadata={"phone": "+1 202 555 0100"})  # the Customer comes first
    deliver(client, stripe_inst, event("payment_intent.succeeded", first))
    run_jobs()
    second = {**first, "id": "pi_cust_2"}
    deliver(client, stripe_inst, event("payment_intent.succeeded", second))
    run_jobs()
    requests = api.seen("GET")
    assert [r["path"] for r in requests] == [f"/v1/customers/{customer_id}"], requests
    [request] = requests
    assert request["headers"]["Authorization"] == "Bearer rk_test_restricted_key"
    assert [b["to"] for b in sent(simulator, coexistence, "payment_receipt")] == [wa, wa]
    events = rows(client, InboundEvent, scope=stripe_inst["id"])
    assert [(e.dedupe_key.endswith(":customer"), e.status) for e in events] == [
        (False, "processed"), (True, "processed"), (False, "processed")]


def test_unknown_customer_falls_back_to_metadata(client, stripe_inst, coexistence, simulator, api, run_jobs):
    typed, wa = number()
    api.on("GET", "/v1/customers/cus_gone", {"error": {"type": "invalid_request_error", "code": "resource_missing",
                                                       "message": "No such customer: 'cus_gone'"}}, status=404)
    intent = obj("payment_intent", status="succeeded", amount=500, amount_received=500, customer="cus_gone",
                 metadata={"whatsapp": typed})
    deliver(client, stripe_inst, event("payment_intent.succeeded", intent))
    run_jobs()
    [body] = sent(simulator, coexistence, "payment_receipt")
    assert body["to"] == wa and texts(body)[1] == "$5.00"


def test_a_key_without_customer_access_is_reported_not_retried(client, stripe_inst, coexistence, api, run_jobs):
    api.on("GET", "/v1/customers/cus_locked", {"error": {"type": "invalid_request_error", "message": "The provided "
                                                         "key does not have the required permissions"}}, status=403)
    intent = obj("payment_intent", status="succeeded", amount=500, amount_received=500, customer="cus_locked")
    deliver(client, stripe_inst, event("payment_intent.succeeded", intent))
    run_jobs()
    events = rows(client, InboundEvent, scope=stripe_inst["id"])
    assert events[-1].outcome["skipped"] == [
        "Customer lookup refused by Stripe (403): the api_key needs Customers: Read", "no phone number"]
    assert rows(client, Send, workspace_id=coexistence.workspace.id) == []


def test_events_of_another_connect_account_are_skipped_visibly(client, stripe_inst, coexistence, run_jobs):
    typed, _ = number()
    deliver(client, stripe_inst, event("checkout.session.completed", paid_session(typed), account="acct_other"))
    run_jobs()
    [ev] = rows(client, InboundEvent, scope=stripe_inst["id"])
    assert ev.outcome["skipped"] == ["event for account acct_other; this installation handles the platform account only"]
    assert rows(client, Send, workspace_id=coexistence.workspace.id) == []


def test_payment_link_hook_creates_a_checkout_session(client, stripe_inst, coexistence, api):
    session = obj("checkout_session", id="cs_test_link")
    api.on("POST", "/v1/checkout/sessions", session)
    hook = client.rt.plugins.hook.coexhub_payment_link
    link = hook(workspace_id=coexistence.workspace.id, amount="3980", currency="JPY", reference="shopify:ins_1:order:42",
                customer={"phone": "14155552671", "name": "Jenny", "email": "jenny@example.com"},
                description="Order #1001", provider=None)
    assert link == PaymentLink(url=session["url"], provider="stripe", link_id="cs_test_link")
    [request] = api.seen("POST", "/v1/checkout/sessions")
    form = request["form"]
    assert request["headers"]["Authorization"] == "Bearer rk_test_restricted_key"
    key = request["headers"]["Idempotency-Key"]  # a hash of the parameters (test_paylinks_providers.py)
    assert key.startswith(f"coexhub-{coexistence.workspace.id}-") and len(key) <= 255
    assert (form["mode"], form["line_items[0][price_data][unit_amount]"], form["line_items[0][price_data][currency]"],
            form["line_items[0][price_data][product_data][name]"]) == ("payment", "3980", "jpy", "Order #1001")
    assert form["metadata[coexhub_reference]"] == form["payment_intent_data[metadata][coexhub_reference]"] == \
        "shopify:ins_1:order:42"
    assert form["customer_email"] == "jenny@example.com" and form["phone_number_collection[enabled]"] == "true"
    assert hook(workspace_id=coexistence.workspace.id, amount="1", currency="INR", reference="r", customer={},
                description="", provider="razorpay") is None
    assert hook(workspace_id=client.new_workspace().id, amount="1", currency="USD", reference="r", customer={},
                description="", provider=None) is None  # a workspace with Stripe not installed
    keyless = client.new_workspace()
    client.install(keyless, "stripe", {"webhook_secret": "whsec_only_webhooks"})
    assert hook(workspace_id=keyless.id, amount="1", currency="USD", reference="r", customer={},
                description="", provider="stripe") is None  # installed without an API key: no links
    assert len(api.seen("POST")) == 1


def test_a_paid_hub_link_reports_the_payment():
    from connectors.stripe import Stripe

    ctx = Context(workspace_id="w", installation_id="ins_1", config={"receipt_template": "payment_receipt"})
    session = paid_session("+1 415 555 2671", metadata={"coexhub_reference": "shopify:ins_9:order:42"},
                           amount_total=129900, currency="inr")
    actions = Stripe().handle_webhook("checkout.session.completed", event("checkout.session.completed", session), ctx)
    assert PaymentReceived(reference="shopify:ins_9:order:42", amount="1299.00", currency="INR", provider="stripe",
                           payment_id=session["payment_intent"]) in actions
    assert [a.params for a in actions if isinstance(a, SendTemplate)] == [["Jenny", "₹1,299.00", "shopify:ins_9:order:42"]]
    # the buyer's number comes from the Customer: the payment is reported on the first pass only
    ctx.config["api_key"] = "rk_x"
    session.update(customer_details={"phone": None, "email": None}, customer="cus_QXg1o8vcGmoR32")
    first = Stripe().handle_webhook("checkout.session.completed", event("checkout.session.completed", session), ctx)
    assert [type(a) for a in first] == [CancelScheduled, PaymentReceived, WriteBack]
    subscription = paid_session("+1 415 555 2671", mode="subscription", payment_intent=None, invoice="in_1")
    *cancels, skip = Stripe().handle_webhook("checkout.session.completed",
                                             event("checkout.session.completed", subscription), ctx)
    assert [type(a) for a in cancels] == [CancelScheduled]  # a recovery reminder by the same email
    assert skip.reason.startswith("subscription checkout cs_test_")
    again = event("checkout.session.completed", session, coexhub_customer={"id": "cus_QXg1o8vcGmoR32",
                                                                            "phone": "+1 415 555 2671"})
    assert not any(isinstance(a, PaymentReceived) for a in Stripe().handle_webhook("checkout.session.completed",
                                                                                   again, ctx))


def test_handlers_are_pure_and_survive_odd_payloads():
    from connectors.stripe import Stripe
    from connectors.stripe.amounts import from_minor, to_minor

    connector = Stripe()
    ctx = Context(workspace_id="w", installation_id="i", config={"api_key": "rk_x", "retry_url": "https://x.example",
                  "recovery_template": "r", "payment_failed_template": "f", "refund_template": "f"})
    for topic in Stripe._webhook_handlers:
        for data in ({}, [], "x", None, {"id": {"nested": 1}, "customer": [], "metadata": [], "amount_total": "12"},
                     {"id": "x", "customer": {"id": "cus_1"}, "customer_details": "oops", "currency": 3}):
            connector.handle_webhook(topic, {"id": "evt_1", "type": topic, "data": {"object": copy.deepcopy(data)}}, ctx)
    lookup = connector.handle_webhook("payment_intent.succeeded", event("payment_intent.succeeded", obj(
        "payment_intent", customer={"id": "cus_1", "object": "customer"}, amount_received=5)), ctx)
    assert [type(a) for a in lookup] == [WriteBack]  # an expanded customer is looked up by its id
    assert (str(from_minor(3980, "jpy")), str(from_minor(12345, "KWD")), str(from_minor(1099, "usd"))) == \
        ("3980", "12.345", "10.99")
    assert from_minor(True, "usd") is None and from_minor("12", "usd") is None and from_minor(1, None) is None
    assert (to_minor("3980", "JPY"), to_minor("10.99", "usd"), to_minor("1.5", "bhd")) == (3980, 1099, 1500)
    for bad in (("10.5", "JPY"), ("0", "USD"), ("-1", "USD")):
        with pytest.raises(ValueError):
            to_minor(*bad)
    assert isinstance(connector.handle_webhook("charge.refunded", {"data": 1}, ctx)[0], Skip)
    connect = Context(workspace_id="w", installation_id="i", config={"account": "acct_1", "receipt_template": "r"})
    paid = paid_session("+1 415 555 2671")
    assert any(isinstance(a, SendTemplate) for a in connector.handle_webhook(
        "checkout.session.completed", event("checkout.session.completed", paid, account="acct_1"), connect))
    [skip] = connector.handle_webhook("checkout.session.completed", event("checkout.session.completed", paid), connect)
    assert skip.reason == "event for the platform account; this installation handles account acct_1"
    assert not any(isinstance(a, ScheduleSend) for a in connector.handle_webhook(
        "checkout.session.expired", {"data": {"object": {"id": "cs", "after_expiration": {"recovery": {"url": "u"}}}}},
        ctx))


CUSTOMER = "+1 415-555-2671"


class TestStripeConformance(ConnectorConformance):
    connector = "stripe"
    config = {"webhook_secret": "whsec_conformance_secret", "api_key": "rk_test_conformance_key",
              "retry_url": "https://shop.example/pay-again"}
    sample = event("checkout.session.completed", paid_session(CUSTOMER), event_id="evt_conformance_1")
    samples = {
        "payment_intent.succeeded": event("payment_intent.succeeded", obj(
            "payment_intent", status="succeeded", amount_received=1099, metadata={"phone": CUSTOMER})),
        "payment_intent.payment_failed": event("payment_intent.payment_failed", obj(
            "payment_intent", metadata={"phone": CUSTOMER})),
        "invoice.payment_failed": event("invoice.payment_failed", obj(
            "invoice", customer_phone=CUSTOMER, hosted_invoice_url="https://invoice.stripe.com/i/x")),
        "checkout.session.expired": event("checkout.session.expired", obj(
            "checkout_session", customer_details__phone=CUSTOMER, consent__promotions="opt_in",
            after_expiration__recovery__url=RECOVERY_URL)),
        "charge.refunded": event("charge.refunded", obj("charge", amount_refunded=100, billing_details__phone=CUSTOMER)),
    }
    topic_headers = {}
    event_id_header = None  # the dedupe key is the event's id in the (signed) body
