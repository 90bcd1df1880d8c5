"""Pay-by-link across connectors, end to end through real HTTP: Shopify / WooCommerce ask for a
link (``SendPaymentLink``), the ``linkpay`` test plugin creates it on a provider stand-in, the
message goes out through the Graph simulator with the link in its URL button, and the
provider's signed ``link.paid`` webhook comes back as ``PaymentReceived`` to the asking store."""
import datetime as dt
import json
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.core import paylinks
from hub.core.models import InboundEvent, OutboundDelivery, Send, utcnow
from hub.core.scheduler import tick
from tests.connectors.standin import StandIn

FIXTURES = Path(__file__).parents[1] / "fixtures"
PAY_SECRETS = {"webhook_secret": "linkpay-whsec", "api_key": "lp_test_key"}
SHOP_SECRETS = {"webhook_secret": "shpss_paylink", "admin_api_token": "shpat_paylink"}
WC_SECRETS = {"webhook_secret": "wc-paylink", "consumer_key": "ck_pl", "consumer_secret": "cs_pl"}
ORDER_ID = "820982911946154508"
CUSTOMER, WA = "+1 415-555-2671", "14155552671"


# -- stand-ins ------------------------------------------------------------------------------------
@pytest.fixture
def provider():
    """The payment provider's API: POST /v1/links creates a link (``fail``/``delay`` to misbehave)."""
    server = StandIn()
    server.fail, server.delay, server.created = 0, 0.0, []

    def create(record):
        time.sleep(server.delay)
        with server.lock:
            if server.fail:
                server.fail -= 1
                return {"error": "provider unavailable"}, 503
            link_id = f"plink_{len(server.created) + 1}"
            server.created.append({"id": link_id, **record["json"]})
        return {"id": link_id, "url": f"{server.url}/pay/{link_id}"}, 200

    server.on("POST", "/v1/links", create)
    yield server
    server.close()


@pytest.fixture
def admin():
    """Shopify's Admin GraphQL API: tagsAdd, the order's note, orderUpdate."""
    server = StandIn()
    server.note = "Gift wrap, please"

    def graphql(record):
        query, variables = record["json"]["query"], record["json"]["variables"]
        if "orderUpdate" in query:
            server.note = variables["input"]["note"]
            return {"data": {"orderUpdate": {"order": {"id": variables["input"]["id"]}, "userErrors": []}}}, 200
        if "orderNote" in query:
            return {"data": {"order": {"id": variables["id"], "note": server.note}}}, 200
        return {"data": {"tagsAdd": {"node": {"id": variables["id"]}, "userErrors": []}}}, 200

    server.on("POST", "/admin/api/2026-04/graphql.json", graphql)
    yield server
    server.close()


@pytest.fixture
def store():
    """WooCommerce's REST API for order 727: notes, GET and PUT."""
    server = StandIn()
    server.status, server.notes = "on-hold", []

    def notes(record):
        if record["method"] == "GET":
            return server.notes, 200
        server.notes.append({"id": len(server.notes) + 1, "note": record["json"]["note"]})
        return server.notes[-1], 201

    def put(record):
        server.status = record["json"].get("status", server.status)
        return {"id": 727, "status": server.status}, 200

    server.on("GET", "/wp-json/wc/v3/orders/727/notes", notes)
    server.on("POST", "/wp-json/wc/v3/orders/727/notes", notes)
    server.on("GET", "/wp-json/wc/v3/orders/727", lambda r: ({"id": 727, "status": server.status}, 200))
    server.on("PUT", "/wp-json/wc/v3/orders/727", put)
    yield server
    server.close()


# -- setup --------------------------------------------------------------------------------------
def templates(client, coexistence, simulator, provider, *names):
    waba = coexistence.waba_id
    simulator.add_template(waba, "pay_now", body_params=3, buttons=[
        {"type": "URL", "text": "Pay now", "url": provider.url + "/pay/{{1}}"}])
    simulator.add_template(waba, "cod_confirmation", body_params=3, buttons=["Confirm", "Cancel"])
    for name in names:
        simulator.add_template(waba, name, body_params=3)
    assert client.post("/api/v1/templates/sync", headers=coexistence.workspace.headers).status_code == 200


def install_linkpay(client, workspace, provider):
    return client.install(workspace, "linkpay", {**PAY_SECRETS, "api_url": provider.url})


@pytest.fixture
def shop(client, coexistence, simulator, provider, admin):
    templates(client, coexistence, simulator, provider, "order_confirmation")
    install_linkpay(client, coexistence.workspace, provider)
    return client.install(coexistence.workspace, "shopify", {
        **SHOP_SECRETS, "shop": "jsmith.myshopify.com", "pay_link_template": "pay_now",
        "admin_api_url": admin.url + "/admin/api/2026-04/graphql.json"})


@pytest.fixture
def woo(client, coexistence, simulator, provider, store):
    templates(client, coexistence, simulator, provider, "order_confirmation", "order_on_hold")
    install_linkpay(client, coexistence.workspace, provider)
    return client.install(coexistence.workspace, "woocommerce", {
        **WC_SECRETS, "store_url": store.url, "country": "US", "pay_link_template": "pay_now",
        "pay_link_chase_minutes": 60})


def shopify_cod_order() -> dict:
    data = json.loads((FIXTURES / "shopify" / "orders_create.json").read_text())
    return {**data, "phone": CUSTOMER, "payment_gateway_names": ["Cash on Delivery (COD)"],
            "financial_status": "pending", "cancelled_at": None}


def wc_order(**changes) -> dict:
    data = json.loads((FIXTURES / "woocommerce" / "order.json").read_text())
    data["billing"] = {**data["billing"], "phone": "(415) 555-2671"}
    data["date_created_gmt"] = utcnow().replace(microsecond=0).isoformat()  # delays count from the creation
    return {**data, **changes}


def deliver_shopify(client, inst, payload, webhook_id, topic="orders/create"):
    response = client.deliver("shopify", inst["id"], payload, SHOP_SECRETS,
                              {"X-Shopify-Topic": topic, "X-Shopify-Webhook-Id": webhook_id})
    assert response.status_code == 200, response.json
    return response


def deliver_wc(client, inst, payload, delivery, topic="order.updated"):
    response = client.deliver("woocommerce", inst["id"], payload, WC_SECRETS,
                              {"X-WC-Webhook-Topic": topic, "X-WC-Webhook-Delivery-ID": delivery})
    assert response.status_code == 200, response.json
    return response


def paid(client, pay_inst_id, reference, event_id, payment_id="pay_1", amount="398.00", currency="USD"):
    """The provider's signed ``link.paid`` webhook to the linkpay installation."""
    payload = {"type": "link.paid", "link": {"id": "plink_1", "reference": reference},
               "payment": {"id": payment_id, "amount": amount, "currency": currency}}
    response = client.deliver("linkpay", pay_inst_id, payload, PAY_SECRETS,
                              {"X-Linkpay-Event-Id": event_id, "X-Linkpay-Event": "link.paid"})
    assert response.status_code == 200, response.json
    return response


def rows(client, model, **where):
    with client.rt.db.session() as s:
        return s.scalars(select(model).filter_by(**where).order_by(model.id)).all()


def paylink_rows(client, workspace_id):
    return rows(client, OutboundDelivery, workspace_id=workspace_id, kind="paylink")


def linkpay_id(client, workspace) -> str:
    listed = client.get("/api/v1/installations", headers=workspace.headers).json
    items = listed["items"] if isinstance(listed, dict) else listed
    return next(i["id"] for i in items if i["connector"] == "linkpay")


def sent(simulator, coexistence, template):
    return [r["body"] for r in simulator.sent(coexistence.phone_number_id)
            if r["body"].get("template", {}).get("name") == template]


# -- Shopify: COD buyer offered "pay now instead" -------------------------------------------------
def test_shopify_cod_order_gets_a_pay_now_link_and_paying_it_cancels_the_cod_confirmation_and_tags_the_order(
        client, shop, coexistence, simulator, provider, admin, run_jobs):
    ws = coexistence.workspace
    deliver_shopify(client, shop, shopify_cod_order(), "cod-1")
    run_jobs()
    assert deliver_shopify(client, shop, shopify_cod_order(), "cod-2").json["duplicate"] is True  # redelivered
    run_jobs()
    [link] = provider.created
    assert (link["amount"], link["currency"]) == ("398.00", "USD")  # total_outstanding, in the shop's currency
    assert link["reference"] == f"{shop['id']}:order:{ORDER_ID}"
    assert link["customer"] == {"phone": WA, "name": "John Smith", "email": "jon@example.com"}
    [body] = sent(simulator, coexistence, "pay_now")
    assert body["template"]["components"] == [
        {"type": "body", "parameters": [{"type": "text", "text": "John"}, {"type": "text", "text": "#9999"},
                                        {"type": "text", "text": "$388.00"}]},
        {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "plink_1"}]}]
    assert sent(simulator, coexistence, "cod_confirmation") == []  # waits: the buyer may pay by link
    sends = {s.template_name: s for s in rows(client, Send, workspace_id=ws.id)}
    assert sends["cod_confirmation"].status == "scheduled"
    assert sends["pay_now"].reference["payment_link"] == "plink_1"
    [row] = paylink_rows(client, ws.id)
    assert row.status == "delivered" and row.payload["send_id"] == sends["pay_now"].id

    pay_inst = linkpay_id(client, ws)
    paid(client, pay_inst, link["reference"], "evt_1")
    assert paid(client, pay_inst, link["reference"], "evt_1").json["duplicate"] is True  # redelivered
    run_jobs()
    event = rows(client, InboundEvent, scope=pay_inst)[-1]
    assert event.outcome["payments"] == [{"installation_id": shop["id"], "reference": f"order:{ORDER_ID}",
                                          "provider": "linkpay", "payment_id": "pay_1"}]
    assert {s.template_name: s.status for s in rows(client, Send, workspace_id=ws.id)}["cod_confirmation"] == \
        "cancelled"
    calls = [r["json"] for r in admin.seen("POST", "/admin/api/2026-04/graphql.json")]
    assert {"id": f"gid://shopify/Order/{ORDER_ID}", "tags": ["paid-by-link"]} in [c["variables"] for c in calls]
    assert admin.note == "Gift wrap, please\nPaid $398.00 through a WhatsApp payment link (linkpay). " \
                         "[linkpay pay_1]"
    assert len(provider.created) == 1 and len(sent(simulator, coexistence, "pay_now")) == 1
    summary = client.get("/api/v1/analytics/summary", headers=ws.headers).json  # the link message earned it
    assert summary["attributed_revenue"] == {"USD": {"orders": 1, "amount": "398.00"}}
    # a second report of the same payment (another event of the provider) changes nothing more
    paid(client, pay_inst, link["reference"], "evt_2")
    run_jobs()
    assert admin.note.count("[linkpay pay_1]") == 1
    summary = client.get("/api/v1/analytics/summary", headers=ws.headers).json
    assert summary["attributed_revenue"] == {"USD": {"orders": 1, "amount": "398.00"}}
    assert all(r.status == "delivered" for r in rows(client, OutboundDelivery, workspace_id=ws.id))


def test_shopify_unpaid_manual_payment_order_is_chased_and_orders_paid_cancels_the_chase(
        client, shop, coexistence, simulator, provider, run_jobs):
    ws = coexistence.workspace
    client.patch(f"/api/v1/installations/{shop['id']}", headers=ws.headers,
                 json={"config": {"pay_link_chase_minutes": 120}})
    order = {**shopify_cod_order(), "payment_gateway_names": ["Bank Deposit"], "gateway": "Bank Deposit"}
    deliver_shopify(client, shop, order, "manual-1")
    second = {**order, "id": 820982911946154509, "name": "#10000"}
    deliver_shopify(client, shop, second, "manual-2")
    run_jobs()
    assert len(sent(simulator, coexistence, "order_confirmation")) == 2 and provider.created == []
    chases = paylink_rows(client, ws.id)
    assert [r.status for r in chases] == ["pending", "pending"]
    assert all(r.next_attempt_at > utcnow() + dt.timedelta(minutes=115) for r in chases)
    deliver_shopify(client, shop, {**order, "financial_status": "paid"}, "paid-1", topic="orders/paid")
    run_jobs()
    assert [r.status for r in paylink_rows(client, ws.id)] == ["cancelled", "pending"]
    tick(client.rt, now=utcnow() + dt.timedelta(minutes=121))
    run_jobs()
    [link] = provider.created  # only the order still unpaid is chased
    assert link["reference"] == f"{shop['id']}:order:820982911946154509"
    [body] = sent(simulator, coexistence, "pay_now")
    assert body["template"]["components"][0]["parameters"][1] == {"type": "text", "text": "#10000"}


# -- WooCommerce: unpaid orders chased -------------------------------------------------------------
def test_woocommerce_pending_order_chase_is_scheduled_and_cancelled_when_paid_before_it_is_due(
        client, woo, coexistence, simulator, provider, run_jobs):
    ws = coexistence.workspace
    deliver_wc(client, woo, wc_order(status="pending", date_paid=None), "d1", "order.created")
    deliver_wc(client, woo, wc_order(status="pending", date_paid=None, date_modified="2017-03-22T16:30:00"), "d2")
    run_jobs()
    [row] = paylink_rows(client, ws.id)  # the update asked again: still one chase
    assert row.status == "pending" and row.next_attempt_at > utcnow() + dt.timedelta(minutes=55)
    assert provider.created == []  # the link is created when the chase is due, never before
    tick(client.rt, now=utcnow() + dt.timedelta(minutes=30))
    run_jobs()
    assert provider.created == []
    # paid at the store before the chase: the order moves on, the chase is cancelled
    deliver_wc(client, woo, wc_order(status="processing", date_modified="2017-03-22T16:40:00"), "d3")
    run_jobs()
    [row] = paylink_rows(client, ws.id)
    assert row.status == "cancelled"
    tick(client.rt, now=utcnow() + dt.timedelta(hours=3))
    run_jobs()
    assert provider.created == [] and sent(simulator, coexistence, "pay_now") == []


def test_woocommerce_on_hold_order_is_chased_with_a_link_and_the_payment_marks_it_paid(
        client, woo, coexistence, simulator, provider, store, run_jobs):
    ws = coexistence.workspace
    deliver_wc(client, woo, wc_order(status="on-hold", payment_method="bacs", date_paid=None), "h1", "order.created")
    run_jobs()
    assert [r["body"]["template"]["name"] for r in simulator.sent(coexistence.phone_number_id)] == ["order_on_hold"]
    tick(client.rt, now=utcnow() + dt.timedelta(minutes=61))
    run_jobs()
    [link] = provider.created
    assert link["reference"] == f"{woo['id']}:order:727" and (link["amount"], link["currency"]) == ("29.35", "USD")
    [body] = sent(simulator, coexistence, "pay_now")
    assert body["template"]["components"][-1]["parameters"] == [{"type": "text", "text": "plink_1"}]
    paid(client, linkpay_id(client, ws), link["reference"], "evt_wc", payment_id="pay_wc", amount="29.35")
    run_jobs()
    assert store.status == "processing"
    [put] = store.seen("PUT", "/wp-json/wc/v3/orders/727")
    assert put["json"] == {"set_paid": True, "transaction_id": "pay_wc", "status": "processing"}
    assert any("[wc-paid-by-link:linkpay:pay_wc]" in n["note"] for n in store.notes)


def test_woocommerce_cod_order_offer_paid_cancels_the_delayed_cod_confirmation(
        client, woo, coexistence, simulator, provider, store, run_jobs):
    ws = coexistence.workspace
    store.status = "processing"
    deliver_wc(client, woo, wc_order(status="processing", payment_method="cod", date_paid=None), "c1",
               "order.created")
    run_jobs()
    [link] = provider.created
    assert len(sent(simulator, coexistence, "pay_now")) == 1 and sent(simulator, coexistence, "cod_confirmation") == []
    paid(client, linkpay_id(client, ws), link["reference"], "evt_cod", payment_id="pay_cod", amount="29.35")
    run_jobs()
    statuses = {s.template_name: s.status for s in rows(client, Send, workspace_id=ws.id)}
    assert statuses["cod_confirmation"] == "cancelled"
    assert store.seen("PUT", "/wp-json/wc/v3/orders/727") == []  # already processing: only the note
    tick(client.rt, now=utcnow() + dt.timedelta(hours=2))
    run_jobs()
    assert sent(simulator, coexistence, "cod_confirmation") == []


# -- failures ------------------------------------------------------------------------------------
def test_provider_down_is_retried_then_dead_lettered_visible_and_replayable(
        client, shop, coexistence, simulator, provider, run_jobs):
    ws = coexistence.workspace
    provider.fail = 100
    deliver_shopify(client, shop, shopify_cod_order(), "down-1")
    run_jobs()
    [row] = paylink_rows(client, ws.id)
    assert (row.status, row.attempts) == ("pending", 1) and "503" in row.last_error
    assert row.next_attempt_at > utcnow()  # backoff: not before the outbox's next retry time
    for days in range(1, 40):
        tick(client.rt, now=utcnow() + dt.timedelta(days=days))
        run_jobs()
        if paylink_rows(client, ws.id)[0].status == "dead":
            break
    [row] = paylink_rows(client, ws.id)
    assert row.status == "dead" and row.attempts == 10
    dead = client.get("/api/v1/deliveries?status=dead", headers=ws.headers).json
    assert [d["id"] for d in dead] == [client.public_id("dlv", row.id)] and dead[0]["kind"] == "paylink" and dead[0]["last_error"]
    assert provider.created == [] and sent(simulator, coexistence, "pay_now") == []
    provider.fail = 0
    assert client.post(f"/api/v1/deliveries/{client.public_id('dlv', row.id)}/replay", headers=ws.headers).status_code == 202
    run_jobs()
    [row] = paylink_rows(client, ws.id)
    assert row.status == "delivered" and len(provider.created) == 1
    assert len(sent(simulator, coexistence, "pay_now")) == 1


def test_without_a_payment_connector_the_row_fails_with_a_visible_reason_and_is_not_retried(
        client, coexistence, simulator, provider, admin, run_jobs):
    ws = coexistence.workspace
    templates(client, coexistence, simulator, provider, "order_confirmation")
    shop = client.install(ws, "shopify", {**SHOP_SECRETS, "shop": "jsmith.myshopify.com",
                                          "pay_link_template": "pay_now", "pay_link_cod_delay_minutes": 0})
    deliver_shopify(client, shop, shopify_cod_order(), "none-1")
    run_jobs()
    [row] = paylink_rows(client, ws.id)
    assert (row.status, row.attempts) == ("failed", 1)
    failed = client.get(f"/api/v1/deliveries/{client.public_id('dlv', row.id)}", headers=ws.headers).json
    assert failed["last_error"] == "no payment connector is installed and enabled in this workspace"
    tick(client.rt, now=utcnow() + dt.timedelta(days=3))
    run_jobs()
    assert paylink_rows(client, ws.id)[0].attempts == 1
    assert len(sent(simulator, coexistence, "cod_confirmation")) == 1  # the buyer is still asked to confirm
    assert sent(simulator, coexistence, "pay_now") == []
    install_linkpay(client, ws, provider)  # installed later: the failed row is replayable
    assert client.post(f"/api/v1/deliveries/{client.public_id('dlv', row.id)}/replay", headers=ws.headers).status_code == 202
    run_jobs()
    assert len(sent(simulator, coexistence, "pay_now")) == 1


def test_a_link_the_templates_button_cannot_hold_fails_with_the_reason(
        client, coexistence, simulator, provider, admin, run_jobs):
    ws = coexistence.workspace
    simulator.add_template(coexistence.waba_id, "pay_elsewhere", body_params=3, buttons=[
        {"type": "URL", "text": "Pay", "url": "https://pay.example.com/{{1}}"}])
    templates(client, coexistence, simulator, provider)
    install_linkpay(client, ws, provider)
    shop = client.install(ws, "shopify", {**SHOP_SECRETS, "shop": "jsmith.myshopify.com",
                                          "pay_link_template": "pay_elsewhere", "cod_confirmation": False})
    deliver_shopify(client, shop, shopify_cod_order(), "mismatch")
    run_jobs()
    [row] = paylink_rows(client, ws.id)
    assert row.status == "failed" and "does not start with the template's button URL" in row.last_error
    assert row.payload["link"]["link_id"] == "plink_1"  # kept: a replay after fixing the template reuses it


def test_a_payment_for_another_workspace_or_an_unknown_reference_is_skipped_with_a_reason(
        client, shop, coexistence, provider, admin, run_jobs):
    other = client.new_workspace("Another shop")
    foreign = client.install(other, "shopify", {**SHOP_SECRETS, "shop": "other.myshopify.com"})
    pay_inst = linkpay_id(client, coexistence.workspace)
    paid(client, pay_inst, f"{foreign['id']}:order:{ORDER_ID}", "evt_foreign")
    paid(client, pay_inst, "no-colon-here", "evt_unknown")
    run_jobs()
    events = rows(client, InboundEvent, scope=pay_inst)
    assert [e.status for e in events] == ["processed", "processed"]
    assert all("is no payment link of this workspace" in e.outcome["skipped"][0] for e in events)
    assert admin.seen() == []


# -- idempotency under concurrency ------------------------------------------------------------------
def test_two_workers_running_the_same_job_create_one_link_and_one_send(
        client, shop, coexistence, simulator, provider, run_jobs):
    ws = coexistence.workspace
    provider.delay = 0.3  # both workers are inside the job while the provider answers
    deliver_shopify(client, shop, shopify_cod_order(), "race")
    run_jobs(queues=("ingest",))  # the order is processed; its paylink job waits in its queue
    with client.rt.db.session() as s:  # take the row before the queued job runs: the threads race for it
        row = s.scalars(select(OutboundDelivery).where(OutboundDelivery.workspace_id == ws.id,
                                                       OutboundDelivery.kind == "paylink")).one()
        row_id = row.id
    results, start = [], threading.Barrier(2)

    def worker():
        start.wait()
        results.append(paylinks.deliver(row_id))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == ["delivered", "skipped"]
    # the scheduler took the job for lost (a worker died after the link): it runs again
    with client.rt.db.session() as s:
        s.get(OutboundDelivery, row_id).status = "pending"
    assert paylinks.deliver(row_id) == "delivered"
    run_jobs()
    assert len(provider.created) == 1
    assert [s.template_name for s in rows(client, Send, workspace_id=ws.id)].count("pay_now") == 1
    assert len(sent(simulator, coexistence, "pay_now")) == 1


def test_a_link_cancelled_while_the_provider_creates_it_is_never_sent(
        client, shop, coexistence, simulator, provider, run_jobs):
    ws = coexistence.workspace
    provider.delay = 0.8
    deliver_shopify(client, shop, shopify_cod_order(), "slow")
    run_jobs(queues=("ingest",))
    [row] = paylink_rows(client, ws.id)
    results = []
    worker = threading.Thread(target=lambda: results.append(paylinks.deliver(row.id)))
    worker.start()
    for _ in range(100):  # until the worker is inside the provider call
        if provider.seen("POST", "/v1/links"):
            break
        time.sleep(0.02)
    deliver_shopify(client, shop, {**shopify_cod_order(), "financial_status": "paid"}, "paid", topic="orders/paid")
    run_jobs(queues=("ingest",))
    worker.join(timeout=30)
    assert results == ["cancelled"]
    [row] = paylink_rows(client, ws.id)
    assert row.status == "cancelled" and row.payload["link"]["link_id"] == "plink_1"
    run_jobs()
    assert [s.template_name for s in rows(client, Send, workspace_id=ws.id)] == ["cod_confirmation"]
    assert rows(client, Send, workspace_id=ws.id)[0].status == "cancelled"
    assert sent(simulator, coexistence, "pay_now") == []


def test_reference_round_trip():
    assert paylinks.split_reference(paylinks.reference_for("ins_abc", "order:1:2")) == ("ins_abc", "order:1:2")
    assert paylinks.split_reference("nothing") is None and paylinks.split_reference(":x") is None
