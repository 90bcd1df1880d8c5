"""Pay-by-link with the real payment connectors, end to end through real HTTP: Shopify + Razorpay
(a COD buyer offered "pay now") and WooCommerce + Stripe (an unpaid order chased), both providers
in one workspace, and the same order asking for a link twice. The providers' APIs are local
stand-ins that behave like the real ones where it matters (Razorpay refuses a second
``reference_id`` and a ``reference_id`` over 40 characters; Stripe replays an idempotency key's
first answer and refuses the key with other parameters); their webhooks are the published sample
shapes (tests/fixtures/razorpay, tests/fixtures/stripe), signed as the providers sign."""
import copy
import datetime as dt
import json
import secrets as _secrets
from pathlib import Path

import pytest

from connectors.razorpay import api as rzp_api_mod
from connectors.stripe import api as stripe_api_mod
from hub.core.models import Attribution, InboundEvent, OutboundDelivery, Send, utcnow
from hub.core.scheduler import tick
from tests.connectors.standin import StandIn
from tests.connectors.test_paylinks import (ORDER_ID, SHOP_SECRETS, WA, WC_SECRETS, admin, deliver_shopify,  # noqa: F401
                                            deliver_wc, paylink_rows, rows, sent, shopify_cod_order, store,
                                            wc_order)
from tests.connectors.test_razorpay import RazorpayApi

FIXTURES = Path(__file__).parents[1] / "fixtures"
RZP_SECRETS = {"webhook_secret": "rzp_whsec_paylinks", "key_id": "rzp_test_paylinks", "key_secret": "rzp_sec_pl"}
STRIPE_SECRETS = {"webhook_secret": "whsec_paylinks_providers", "api_key": "rk_test_paylinks"}
CHECKOUT = "https://checkout.stripe.com/c/pay/"


# -- provider stand-ins ---------------------------------------------------------------------------
class Razorpay(RazorpayApi):
    """Payment Links as Razorpay answers them: list by reference_id, create (a reference_id taken or
    longer than 40 characters is a 400), and cancel."""

    def __init__(self):
        super().__init__()
        self.on("POST", "/v1/payment_links", self._create_checked)

    def _create_checked(self, record):
        if len(record["json"]["reference_id"]) > 40:
            return {"error": {"code": "BAD_REQUEST_ERROR",
                              "description": "reference_id may not be greater than 40 characters."}}, 400
        answer, status = self._create(record)
        if status == 200:  # cancel route per link
            self.on("POST", f"/v1/payment_links/{answer['id']}/cancel", lambda r, lid=answer["id"]: self._cancel(lid))
        return answer, status

    def _cancel(self, link_id):
        link = next(link for link in self.links if link["id"] == link_id)
        if link["status"] == "paid":
            return {"error": {"code": "BAD_REQUEST_ERROR", "description": "paid link"}}, 400
        link["status"] = "cancelled"
        return link, 200


class Stripe(StandIn):
    """Checkout Sessions with Stripe's idempotency: a key's first answer is replayed for the same
    parameters; the same key with other parameters is a 400 ``idempotency_error``."""

    def __init__(self):
        super().__init__()
        self.sessions: list[dict] = []
        self.keys: dict[str, tuple[dict, dict]] = {}
        self.on("POST", "/v1/checkout/sessions", self._create)

    def _create(self, record):
        form, key = record["form"], record["headers"].get("Idempotency-Key")
        if key in self.keys:
            first_form, answer = self.keys[key]
            if first_form != form:
                return {"error": {"type": "idempotency_error", "message": "Keys for idempotent requests can only "
                                  "be used with the same parameters they were first used with."}}, 400
            return answer, 200
        session_id = f"cs_test_{_secrets.token_hex(12)}"
        session = {**copy.deepcopy(checkout_fixture()), "id": session_id, "status": "open", "payment_status": "unpaid",
                   "url": f"{CHECKOUT}{session_id}#fidkdWxOYHwnPyd1blpxYHZxWjA0",
                   "metadata": {k[len("metadata["):-1]: v for k, v in form.items() if k.startswith("metadata[")},
                   "amount_total": int(form["line_items[0][price_data][unit_amount]"]),
                   "currency": form["line_items[0][price_data][currency]"],
                   "expires_at": int(form["expires_at"]), "client_reference_id": form.get("client_reference_id")}
        self.sessions.append(session)
        if key:
            self.keys[key] = (form, session)
        return session, 200


def checkout_fixture() -> dict:
    return json.loads((FIXTURES / "stripe" / "checkout_session.json").read_text())


@pytest.fixture
def razorpay():
    server = Razorpay()
    yield server
    server.close()


@pytest.fixture
def stripe_api():
    server = Stripe()
    yield server
    server.close()


# -- setup ----------------------------------------------------------------------------------------
def templates(client, coexistence, simulator, prefix: str, *names: str):
    waba = coexistence.waba_id
    simulator.add_template(waba, "pay_now", body_params=3, buttons=[
        {"type": "URL", "text": "Pay now", "url": prefix + "{{1}}"}])
    simulator.add_template(waba, "cod_confirmation", body_params=3, buttons=["Confirm", "Cancel"])
    for name in ("order_confirmation", "payment_receipt", *names):
        simulator.add_template(waba, name, body_params=3)
    assert client.post("/api/v1/templates/sync", headers=coexistence.workspace.headers).status_code == 200


def install_razorpay(client, ws, razorpay):
    return client.install(ws, "razorpay", {**RZP_SECRETS, "api_base": razorpay.url})


def install_stripe(client, ws, stripe_api):
    return client.install(ws, "stripe", {**STRIPE_SECRETS, "api_base": stripe_api.url})


def install_shop(client, ws, admin, **config):
    return client.install(ws, "shopify", {
        **SHOP_SECRETS, "shop": "jsmith.myshopify.com", "pay_link_template": "pay_now",
        "admin_api_url": admin.url + "/admin/api/2026-04/graphql.json", **config})


def install_woo(client, ws, store, **config):
    return client.install(ws, "woocommerce", {
        **WC_SECRETS, "store_url": store.url, "country": "US", "pay_link_template": "pay_now",
        "pay_link_chase_minutes": 60, **config})


def revenue(client, ws):
    return client.get("/api/v1/analytics/summary", headers=ws.headers).json["attributed_revenue"]


# -- Razorpay's webhooks, from the published samples, for one link ---------------------------------
def rzp_sample(name: str) -> dict:
    return json.loads((FIXTURES / "razorpay" / f"{name}.json").read_text())


def rzp_events(link: dict, payment_id: str = "pay_Qfldmt5StKZFCB") -> dict[str, dict]:
    """``payment.captured``, ``order.paid`` and ``payment_link.paid`` for a payment of ``link``, as
    Razorpay sends them: the link's notes copied onto the order, none on the payment, whose
    description is ``#<link id without plink_>``."""
    minor, currency, order_id = link["amount"], link["currency"], "order_" + _secrets.token_hex(7)
    payment = {**rzp_sample("payment_link_paid")["payload"]["payment"]["entity"], "id": payment_id,
               "amount": minor, "base_amount": minor, "currency": currency, "order_id": order_id,
               "description": "#" + link["id"].removeprefix("plink_"), "notes": [], "contact": "+14155552671"}
    order = {**rzp_sample("order_paid")["payload"]["order"]["entity"], "id": order_id, "amount": minor,
             "amount_paid": minor, "amount_due": 0, "currency": currency, "notes": link["notes"],
             "product_type": "payment_link_v2", "product_id": link["id"].removeprefix("plink_")}
    paid_link = {**rzp_sample("payment_link_paid")["payload"]["payment_link"]["entity"],
                 **{k: link[k] for k in ("id", "reference_id", "notes", "amount", "currency", "short_url",
                                         "description", "customer")},
                 "amount_paid": minor, "status": "paid", "order_id": order_id.removeprefix("order_")}
    captured, order_paid, link_paid = rzp_sample("payment_captured"), rzp_sample("order_paid"), \
        rzp_sample("payment_link_paid")
    captured["payload"] = {"payment": {"entity": payment}}
    order_paid["payload"] = {"payment": {"entity": payment}, "order": {"entity": order}}
    link_paid["payload"] = {"payment": {"entity": payment}, "order": {"entity": {**order, "id": order_id[6:]}},
                            "payment_link": {"entity": paid_link}}
    return {"payment.captured": captured, "order.paid": order_paid, "payment_link.paid": link_paid}


def deliver_rzp(client, inst, payload, event_id):
    response = client.deliver("razorpay", inst["id"], payload, RZP_SECRETS, {"X-Razorpay-Event-Id": event_id})
    assert response.status_code == 200, response.json
    return response


# -- Stripe's webhooks ---------------------------------------------------------------------------------
def stripe_event(kind: str, obj: dict, event_id: str) -> dict:
    envelope = json.loads((FIXTURES / "stripe" / "event.json").read_text())
    return {**envelope, "id": event_id, "type": kind, "data": {"object": obj}}


def completed_session(session: dict, payment_intent: str) -> dict:
    """``checkout.session.completed``'s object for a stand-in session the buyer paid (phone collected)."""
    return {**session, "status": "complete", "payment_status": "paid", "payment_intent": payment_intent,
            "customer_details": {**(checkout_fixture().get("customer_details") or {}), "phone": "+14155552671",
                                 "name": "John Smith", "email": "john@example.com"}}


def deliver_stripe(client, inst, payload):
    response = client.deliver("stripe", inst["id"], payload, STRIPE_SECRETS)
    assert response.status_code == 200, response.json
    return response


def statuses(client, ws):
    return {s.template_name: s.status for s in rows(client, Send, workspace_id=ws.id)}


# -- 1. Shopify + Razorpay --------------------------------------------------------------------------------
def test_shopify_cod_order_paid_by_razorpay_link_cancels_cod_tags_the_order_and_counts_once(
        client, coexistence, simulator, razorpay, admin, run_jobs):
    ws = coexistence.workspace
    templates(client, coexistence, simulator, "https://rzp.io/")
    rzp = install_razorpay(client, ws, razorpay)
    shop = install_shop(client, ws, admin)
    deliver_shopify(client, shop, shopify_cod_order(), "rzp-cod-1")
    run_jobs()
    [link] = razorpay.links
    reference = f"{shop['id']}:order:{ORDER_ID}"  # 45 characters: hashed into reference_id, whole in notes
    assert len(reference) > 40 and link["reference_id"] == rzp_api_mod.reference_id(reference)
    assert len(link["reference_id"]) <= 40 and link["notes"]["coexhub_reference"] == reference
    assert (link["amount"], link["currency"], link["description"]) == (39800, "USD", "Order #9999")
    [body] = sent(simulator, coexistence, "pay_now")
    assert body["template"]["components"][-1] == {
        "type": "button", "sub_type": "url", "index": "0",
        "parameters": [{"type": "text", "text": link["short_url"].removeprefix("https://rzp.io/")}]}
    assert statuses(client, ws)["cod_confirmation"] == "scheduled"

    events = rzp_events(link)  # Razorpay sends all three for one payment, in no fixed order
    for topic in ("payment.captured", "payment_link.paid", "order.paid"):
        deliver_rzp(client, rzp, events[topic], f"evt_{topic}")
    run_jobs()
    [paid_event] = [e for e in rows(client, InboundEvent, scope=rzp["id"]) if e.topic == "payment_link.paid"]
    assert paid_event.outcome["payments"] == [{"installation_id": shop["id"], "reference": f"order:{ORDER_ID}",
                                               "provider": "razorpay", "payment_id": "pay_Qfldmt5StKZFCB"}]
    assert statuses(client, ws)["cod_confirmation"] == "cancelled"
    calls = [r["json"]["variables"] for r in admin.seen("POST", "/admin/api/2026-04/graphql.json")]
    assert {"id": f"gid://shopify/Order/{ORDER_ID}", "tags": ["paid-by-link"]} in calls
    assert admin.note.endswith("through a WhatsApp payment link (razorpay). [razorpay pay_Qfldmt5StKZFCB]")
    [receipt] = sent(simulator, coexistence, "payment_receipt")  # one receipt, labelled with the order
    assert [p["text"] for p in receipt["template"]["components"][0]["parameters"]][2] == "Order #9999"
    assert revenue(client, ws) == {"USD": {"orders": 1, "amount": "398.00"}}  # the store's order, not Razorpay's too
    with client.rt.db.session() as s:
        [credit] = s.query(Attribution).filter_by(workspace_id=ws.id).all()
        assert (credit.order_id, credit.installation_id) == (ORDER_ID, shop["id"])

    # redelivered (same event id: a duplicate) and reported again (another event id): nothing twice
    assert deliver_rzp(client, rzp, events["payment_link.paid"], "evt_payment_link.paid").json["duplicate"] is True
    deliver_rzp(client, rzp, events["payment_link.paid"], "evt_again")
    run_jobs()
    tick(client.rt, now=utcnow() + dt.timedelta(hours=3))
    run_jobs()
    assert admin.note.count("[razorpay pay_Qfldmt5StKZFCB]") == 1
    assert len(sent(simulator, coexistence, "payment_receipt")) == 1 and len(sent(simulator, coexistence, "pay_now")) == 1
    assert sent(simulator, coexistence, "cod_confirmation") == []
    assert revenue(client, ws) == {"USD": {"orders": 1, "amount": "398.00"}} and len(razorpay.links) == 1
    assert [r.status for r in paylink_rows(client, ws.id)] == ["delivered"]


# -- 2. WooCommerce + Stripe --------------------------------------------------------------------------------
def test_woocommerce_pending_order_chased_with_a_stripe_checkout_link_and_marked_paid(
        client, coexistence, simulator, stripe_api, store, run_jobs):
    ws = coexistence.workspace
    templates(client, coexistence, simulator, CHECKOUT)
    stripe = install_stripe(client, ws, stripe_api)
    woo = install_woo(client, ws, store)
    store.status = "pending"
    deliver_wc(client, woo, wc_order(status="pending", date_paid=None), "st-1", "order.created")
    run_jobs()
    [row] = paylink_rows(client, ws.id)
    assert row.status == "pending" and stripe_api.sessions == []  # the chase waits; no link yet
    tick(client.rt, now=utcnow() + dt.timedelta(minutes=30))
    run_jobs()
    assert stripe_api.sessions == []
    tick(client.rt, now=utcnow() + dt.timedelta(minutes=61))
    run_jobs()
    [session] = stripe_api.sessions
    [request] = stripe_api.seen("POST", "/v1/checkout/sessions")
    reference = f"{woo['id']}:order:727"
    assert session["metadata"] == {"coexhub_reference": reference, "coexhub_label": "Order 727"}
    assert (session["amount_total"], session["currency"]) == (2935, "usd")
    assert request["form"]["payment_intent_data[metadata][coexhub_reference]"] == reference
    [body] = sent(simulator, coexistence, "pay_now")
    assert body["template"]["components"][-1]["parameters"] == [
        {"type": "text", "text": session["url"].removeprefix(CHECKOUT)}]

    completed = completed_session(session, "pi_3MtwBwLkdIwHu7ix28a3tqPa")
    deliver_stripe(client, stripe, stripe_event("checkout.session.completed", completed, "evt_cs_1"))
    intent = {**json.loads((FIXTURES / "stripe" / "payment_intent.json").read_text()),
              "id": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "status": "succeeded", "amount": 2935, "amount_received": 2935,
              "currency": "usd", "metadata": session["metadata"], "customer": None,
              "shipping": {"phone": "+14155552671", "name": "John Smith"}}
    deliver_stripe(client, stripe, stripe_event("payment_intent.succeeded", intent, "evt_pi_1"))
    run_jobs()
    assert store.status == "processing"
    [put] = store.seen("PUT", "/wp-json/wc/v3/orders/727")
    assert put["json"] == {"set_paid": True, "transaction_id": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "status": "processing"}
    assert any("[wc-paid-by-link:stripe:pi_3MtwBwLkdIwHu7ix28a3tqPa]" in n["note"] for n in store.notes)
    [receipt] = sent(simulator, coexistence, "payment_receipt")  # Stripe's receipt: the one payment message
    assert [p["text"] for p in receipt["template"]["components"][0]["parameters"]][2] == "Order 727"
    # set_paid makes WooCommerce send order.updated (processing, paid): no second "confirmed" message
    deliver_wc(client, woo, wc_order(status="processing", date_paid="2026-11-30T12:00:00",
                                     date_modified="2026-11-30T12:00:00"), "st-2")
    deliver_stripe(client, stripe, stripe_event("checkout.session.completed", completed, "evt_cs_1"))  # retried
    run_jobs()
    assert sent(simulator, coexistence, "order_confirmation") == []
    [update] = [e for e in rows(client, InboundEvent, scope=woo["id"]) if e.topic == "order.updated"]
    assert any("paid by a WhatsApp payment link" in r for r in update.outcome["skipped"]), update.outcome
    assert len(sent(simulator, coexistence, "payment_receipt")) == 1 and len(sent(simulator, coexistence, "pay_now")) == 1
    assert len(store.seen("PUT", "/wp-json/wc/v3/orders/727")) == 1
    assert revenue(client, ws) == {"USD": {"orders": 1, "amount": "29.35"}}
    assert [r.status for r in paylink_rows(client, ws.id)] == ["delivered"]


def test_woocommerce_cod_offer_paid_by_stripe_cancels_the_cod_confirmation(
        client, coexistence, simulator, stripe_api, store, run_jobs):
    ws = coexistence.workspace
    templates(client, coexistence, simulator, CHECKOUT)
    stripe = install_stripe(client, ws, stripe_api)
    woo = install_woo(client, ws, store)
    store.status = "processing"
    deliver_wc(client, woo, wc_order(status="processing", payment_method="cod", date_paid=None), "sc-1",
               "order.created")
    run_jobs()
    [session] = stripe_api.sessions
    assert statuses(client, ws)["cod_confirmation"] == "scheduled"
    deliver_stripe(client, stripe, stripe_event("checkout.session.completed",
                                                completed_session(session, "pi_cod_1"), "evt_cod_1"))
    run_jobs()
    assert statuses(client, ws)["cod_confirmation"] == "cancelled"
    tick(client.rt, now=utcnow() + dt.timedelta(hours=2))
    run_jobs()
    assert sent(simulator, coexistence, "cod_confirmation") == []
    assert len(sent(simulator, coexistence, "payment_receipt")) == 1
    assert revenue(client, ws) == {"USD": {"orders": 1, "amount": "29.35"}}


# -- 3. Both providers in one workspace ----------------------------------------------------------------------
def test_payment_provider_picks_one_and_without_it_the_oldest_installation_answers(
        client, coexistence, simulator, razorpay, stripe_api, admin, run_jobs):
    ws = coexistence.workspace
    templates(client, coexistence, simulator, "https://")  # a prefix both providers' links start with
    install_razorpay(client, ws, razorpay)
    install_stripe(client, ws, stripe_api)  # installed after Razorpay
    shop = install_shop(client, ws, admin, cod_confirmation=False)
    deliver_shopify(client, shop, shopify_cod_order(), "both-1")
    run_jobs()
    assert len(razorpay.links) == 1 and stripe_api.sessions == []  # no choice made: the oldest installation
    assert paylink_rows(client, ws.id)[-1].payload["link"]["provider"] == "razorpay"

    client.patch(f"/api/v1/installations/{shop['id']}", headers=ws.headers,
                 json={"config": {"payment_provider": " Stripe"}})  # as a seller may type it
    second = {**shopify_cod_order(), "id": 820982911946154599, "name": "#10001"}
    deliver_shopify(client, shop, second, "both-2")
    run_jobs()
    assert len(razorpay.links) == 1 and len(stripe_api.sessions) == 1
    assert paylink_rows(client, ws.id)[-1].payload["link"]["provider"] == "stripe"
    assert stripe_api.sessions[0]["metadata"]["coexhub_reference"] == f"{shop['id']}:order:820982911946154599"


def test_without_a_choice_a_disabled_or_keyless_provider_gives_way_to_the_next(
        client, coexistence, simulator, razorpay, stripe_api, admin, run_jobs):
    ws = coexistence.workspace
    templates(client, coexistence, simulator, "https://")
    client.install(ws, "razorpay", {"webhook_secret": "rzp_whsec_nokeys", "api_base": razorpay.url})  # no API key
    install_stripe(client, ws, stripe_api)
    shop = install_shop(client, ws, admin, cod_confirmation=False)
    deliver_shopify(client, shop, shopify_cod_order(), "next-1")
    run_jobs()
    assert razorpay.links == [] and len(stripe_api.sessions) == 1


# -- 4. The same order asking twice ----------------------------------------------------------------------------
def test_razorpay_second_ask_for_the_same_order_reuses_a_live_link_and_replaces_a_dying_one(
        client, coexistence, razorpay):
    ws = coexistence.workspace
    install_razorpay(client, ws, razorpay)
    hook = client.rt.plugins.hook.coexhub_payment_link
    reference = "ins_0123456789abcdef:order:820982911946154508"
    ask = dict(workspace_id=ws.id, amount="398.00", currency="USD", reference=reference,
               customer={"phone": WA, "name": "John Smith", "email": None}, description="Order #9999",
               provider="razorpay")
    offer = hook(**ask)
    chase = hook(**ask)  # a chase an hour later: the offer's link is still payable for a day
    assert chase == offer and len(razorpay.links) == 1
    assert len(razorpay.seen("POST", "/v1/payment_links")) == 1  # no second create: no reused reference_id error
    razorpay.links[0]["expire_by"] = int((utcnow() + dt.timedelta(minutes=5)).replace(
        tzinfo=dt.timezone.utc).timestamp())  # about to expire when the chase is due
    late = hook(**ask)
    assert late.link_id != offer.link_id and razorpay.links[0]["status"] == "cancelled"
    assert len(razorpay.links[1]["reference_id"]) <= 40 and razorpay.links[1]["notes"]["coexhub_reference"] == reference
    assert hook(**ask) == late and len(razorpay.links) == 2  # a retry of the late ask: the same new link
    razorpay.links[1]["status"] = "expired"
    fresh = hook(**ask)
    assert fresh.link_id not in (offer.link_id, late.link_id) and len(razorpay.links) == 3


def test_stripe_second_ask_for_the_same_order_gets_an_open_session_not_an_idempotency_error(
        client, coexistence, stripe_api):
    ws = coexistence.workspace
    inst = install_stripe(client, ws, stripe_api)
    hook = client.rt.plugins.hook.coexhub_payment_link
    ask = dict(workspace_id=ws.id, amount="29.35", currency="USD", reference="ins_0123456789abcdef:order:727",
               customer={"phone": WA, "name": "John Smith", "email": "john@example.com"},
               description="Order 727", provider="stripe")
    first = hook(**ask)
    assert hook(**ask) == first and len(stripe_api.sessions) == 1  # a retried job: Stripe replays the session
    # the chase asks for the same order with other parameters (a later expiry, an edited total): the
    # key follows the parameters, so Stripe creates a session instead of refusing a reused key
    client.patch(f"/api/v1/installations/{inst['id']}", headers=ws.headers, json={"config": {"link_expires_hours": 12}})
    later = hook(**ask)
    edited = hook(**{**ask, "amount": "31.00"})
    assert len({first.link_id, later.link_id, edited.link_id}) == 3 and len(stripe_api.sessions) == 3
    assert all(s["metadata"]["coexhub_reference"] == ask["reference"] for s in stripe_api.sessions)
    assert len(stripe_api.keys) == 3  # every request with new parameters had its own key
    expiries = [s["expires_at"] for s in stripe_api.sessions]
    now = int(utcnow().replace(tzinfo=dt.timezone.utc).timestamp())
    assert all(now + 30 * 60 <= e <= now + 24 * 3600 and e % stripe_api_mod.EXPIRY_STEP == 0 for e in expiries)


@pytest.mark.parametrize("provider", ["razorpay", "stripe"])
def test_shopify_offer_then_chase_for_one_order_through_the_hub_get_working_links(
        client, coexistence, simulator, razorpay, stripe_api, admin, run_jobs, provider):
    """The COD offer and, for the same order later, a chase (the order edited to a manual gateway):
    two rows, two sends, no provider error. Razorpay's second link is the first one while it is
    payable; Stripe's is the same open session (same parameters within the quarter hour)."""
    ws = coexistence.workspace
    templates(client, coexistence, simulator, "https://")
    install_razorpay(client, ws, razorpay) if provider == "razorpay" else install_stripe(client, ws, stripe_api)
    shop = install_shop(client, ws, admin, cod_confirmation=False, pay_link_chase_minutes=90)
    deliver_shopify(client, shop, shopify_cod_order(), f"twice-1-{provider}")
    manual = {**shopify_cod_order(), "payment_gateway_names": ["Bank Deposit"], "gateway": "Bank Deposit"}
    deliver_shopify(client, shop, manual, f"twice-2-{provider}")
    run_jobs()
    tick(client.rt, now=utcnow() + dt.timedelta(minutes=91))
    run_jobs()
    done = paylink_rows(client, ws.id)
    assert [r.status for r in done] == ["delivered", "delivered"], [r.last_error for r in done]
    assert done[0].payload["link"] == done[1].payload["link"]
    assert len(razorpay.links if provider == "razorpay" else stripe_api.sessions) == 1
    assert len(sent(simulator, coexistence, "pay_now")) == 2
    assert rows(client, OutboundDelivery, workspace_id=ws.id, status="dead") == []


def test_a_razorpay_link_paid_before_the_chase_is_due_never_gives_way_to_stripe(
        client, coexistence, simulator, razorpay, stripe_api, admin, run_jobs):
    """Both providers, Razorpay first: the chase comes due while the offer's link is paid but its
    webhook has not arrived. Razorpay refuses with an error (retried), not None — Stripe is not
    asked for a second link — and the late webhook then cancels the chase."""
    ws = coexistence.workspace
    templates(client, coexistence, simulator, "https://")
    rzp = install_razorpay(client, ws, razorpay)
    install_stripe(client, ws, stripe_api)
    shop = install_shop(client, ws, admin, cod_confirmation=False, pay_link_chase_minutes=90)
    deliver_shopify(client, shop, shopify_cod_order(), "paid-early-1")
    manual = {**shopify_cod_order(), "payment_gateway_names": ["Bank Deposit"], "gateway": "Bank Deposit"}
    deliver_shopify(client, shop, manual, "paid-early-2")
    run_jobs()
    [link] = razorpay.links
    link["status"] = "paid"  # paid at Razorpay; payment_link.paid not delivered yet
    tick(client.rt, now=utcnow() + dt.timedelta(minutes=91))
    run_jobs()
    offer, chase = paylink_rows(client, ws.id)
    assert offer.status == "delivered" and chase.status == "pending" and "is paid" in chase.last_error
    assert stripe_api.sessions == [] and len(sent(simulator, coexistence, "pay_now")) == 1
    deliver_rzp(client, rzp, rzp_events(link)["payment_link.paid"], "evt_late")
    run_jobs()
    assert paylink_rows(client, ws.id)[1].status == "cancelled"
    tick(client.rt, now=utcnow() + dt.timedelta(days=2))
    run_jobs()
    assert stripe_api.sessions == [] and len(sent(simulator, coexistence, "pay_now")) == 1
