"""The generic connector conformance suite (``hub.testing.conformance``), run on every connector we ship."""
import json
from pathlib import Path

from hub.testing.conformance import ConnectorConformance, check_action, nulled

FIXTURES = Path(__file__).parent / "fixtures"
CUSTOMER = "+1 415-555-2671"  # the documented samples carry unusable numbers; a valid one exercises the sends


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def shopify(name: str, **changes) -> dict:
    return {**fixture(f"shopify/{name}.json"), **changes}


class TestShopifyConformance(ConnectorConformance):
    connector = "shopify"
    config = {"shop": "jsmith.myshopify.com", "webhook_secret": "shpss_conformance_secret",
              "admin_api_token": "shpat_conformance_token"}
    sample = shopify("orders_create", cancelled_at=None, phone=CUSTOMER)
    samples = {
        "orders/create": sample,
        "orders/paid": sample,
        "orders/cancelled": shopify("orders_create", phone=CUSTOMER),
        "checkouts/create": shopify("checkouts_create", phone=CUSTOMER, buyer_accepts_marketing=True),
        "checkouts/update": shopify("checkouts_create", phone=CUSTOMER, buyer_accepts_marketing=True),
        "checkouts/delete": shopify("checkouts_delete"),
        "fulfillments/create": shopify("fulfillments_create", phone=CUSTOMER),
        "fulfillments/update": shopify("fulfillments_create", phone=CUSTOMER),
    }
    topic_headers = {"X-Shopify-Topic": "orders/create", "X-Shopify-Shop-Domain": "jsmith.myshopify.com",
                     "X-Shopify-API-Version": "2026-04"}
    event_id_header = "X-Shopify-Webhook-Id"


class TestWooCommerceConformance(ConnectorConformance):
    connector = "woocommerce"
    config = {"store_url": "https://example.com", "webhook_secret": "wc_conformance_secret",
              "consumer_key": "ck_conformance_key", "consumer_secret": "cs_conformance_secret"}
    sample = {**fixture("woocommerce/order.json")}
    sample["billing"] = {**sample["billing"], "phone": CUSTOMER}
    topic_headers = {"X-WC-Webhook-Topic": "order.created", "X-WC-Webhook-Resource": "order",
                     "X-WC-Webhook-Event": "created", "X-WC-Webhook-Source": "https://example.com/"}
    event_id_header = None  # the dedupe key is "{id}:{date_modified}" from the body


class TestAcmeConformance(ConnectorConformance):
    connector = "acme"
    config = {"webhook_secret": "acme-conformance-secret", "api_token": "acme-conformance-token",
              "default_country": "IN"}
    sample = {"id": 820982911946154508, "name": "#9999", "phone": "090909 09090", "checkout_token": "tok-1",
              "customer": {"phone": None}, "shipping_address": {"country_code": "IN"}}
    samples = {"cart.updated": {"token": "tok-9", "phone": "+91 90909 09090", "total_price": "10.00",
                                "completed_at": None},
               "order.paid": {"id": 42}}
    topic_headers = {"X-Acme-Topic": "order.created"}
    event_id_header = "X-Acme-Webhook-Id"
    handler_exemptions = {"explode": "raises on purpose (the retry and dead-letter tests use it)",
                          ("order.paid", "{}"): "the minimal test connector reads payload['id'] unchecked"}


# -- the suite's own helpers -----------------------------------------------------------------
def test_nulled_keeps_the_shape():
    assert nulled({"a": 1, "b": {"c": "x"}, "d": [1, {"e": 2}]}) == {"a": None, "b": {"c": None},
                                                                    "d": [None, {"e": None}]}


def test_check_action_names_what_is_wrong():
    from hub.core.actions import CancelScheduled, SendTemplate, Skip, WriteBack

    assert check_action(Skip("no phone")) == []
    assert check_action(SendTemplate(to="14155552671", template="t")) == []
    assert check_action({"to": "1"}) and "not an action" in check_action({"to": "1"})[0]
    assert "WhatsApp digits" in check_action(SendTemplate(to="+1 415", template="t"))[0]
    assert check_action(CancelScheduled(""))
    assert "cannot be resolved" in check_action(WriteBack(lambda ctx: None))[0]
    assert check_action(WriteBack("tests.acme:tag_order", order_id="1", tag="x")) == []


def test_check_action_checks_payment_links():
    from hub.core.actions import PaymentReceived, SendPaymentLink

    good = SendPaymentLink(to="14155552671", template="pay_now", amount="499.00", currency="INR",
                           payment_reference="order:1", after=3600)
    assert check_action(good) == []
    bad = SendPaymentLink(to="14155552671", template="pay_now", amount="abc", currency="RUPEES")
    assert [p.split("=")[0].split(" ")[0] for p in check_action(bad)] == \
        ["SendPaymentLink.amount", "SendPaymentLink.currency", "SendPaymentLink.payment_reference"]
    assert check_action(PaymentReceived("ins_1:order:1", "499.00", "INR", "stripe", "pi_1")) == []
    assert check_action(PaymentReceived("", "499.00", "INR", "stripe", "pi_1"))
