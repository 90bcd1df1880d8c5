"""Shopify signs the body only: a captured delivery replayed under new headers must not act.

The webhook id, topic and X-Shopify-Triggered-At headers are not covered by the HMAC, so the
hub dedupes on topic + body, refuses deliveries whose Triggered-At is older than the retry
window (5 h), and acts on app/uninstalled only for a body that is this installation's shop.
"""
import base64
import hashlib
import hmac
import json
import time

import pytest

from connectors.shopify import REPLAY_WINDOW
from hub.core.models import InboundEvent
from tests.connectors.test_shopify import FIXTURES, SECRETS, rows, sample


def signed(body: bytes) -> str:
    """Shopify's own signature, computed here by hand: base64 HMAC-SHA256 of the raw body."""
    return base64.b64encode(hmac.new(SECRETS["webhook_secret"].encode(), body, hashlib.sha256).digest()).decode()


def iso(seconds_ago: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - seconds_ago)) + ".123456789Z"


def post(client, inst, body: bytes, topic: str, webhook_id: str, triggered_at: str | None):
    headers = {"Content-Type": "application/json", "X-Shopify-Hmac-Sha256": signed(body),
               "X-Shopify-Topic": topic, "X-Shopify-Webhook-Id": webhook_id,
               "X-Shopify-Shop-Domain": "jsmith.myshopify.com", "X-Shopify-API-Version": "2026-04"}
    if triggered_at is not None:
        headers["X-Shopify-Triggered-At"] = triggered_at
    return client.post(f"/webhooks/shopify/{inst['id']}", data=body, headers=headers)


@pytest.fixture
def inst(client, workspace):
    return client.install(workspace, "shopify", {**SECRETS, "shop": "jsmith.myshopify.com"})


def enabled(client, workspace, inst) -> bool:
    return client.get(f"/api/v1/installations/{inst['id']}", headers=workspace.headers).json["enabled"]


def test_captured_order_replayed_as_app_uninstalled_does_not_disable(client, workspace, inst, run_jobs):
    order = json.dumps(sample("orders_create")).encode()
    assert post(client, inst, order, "orders/create", "wh-1", iso(0)).json["duplicate"] is False
    # the attacker's copy: same signed body, a new webhook id, then a new topic, a fresh timestamp
    assert post(client, inst, order, "orders/create", "wh-evil-1", iso(0)).json["duplicate"] is True
    evil = post(client, inst, order, "app/uninstalled", "wh-evil-2", iso(0))
    assert evil.status_code == 200 and evil.json["duplicate"] is False  # stored: it is signed
    run_jobs(queues=("ingest",))
    assert enabled(client, workspace, inst) is True
    [event] = [e for e in rows(client, InboundEvent, scope=inst["id"]) if e.topic == "app/uninstalled"]
    assert event.status == "processed"
    assert event.outcome["skipped"] == ["app/uninstalled ignored: the body is not a shop"]


def test_a_live_order_replayed_as_orders_cancelled_sends_no_cancellation(client, workspace, run_jobs):
    inst = client.install(workspace, "shopify", {**SECRETS, "shop": "jsmith.myshopify.com", "default_country": "US"})
    live = json.dumps(sample("orders_create", cancelled_at=None, phone="+1 415-555-2671")).encode()
    assert post(client, inst, live, "orders/cancelled", "wh-evil-3", iso(0)).status_code == 200
    run_jobs(queues=("ingest",))
    [event] = rows(client, InboundEvent, scope=inst["id"])
    assert event.status == "processed" and event.outcome["sends"] == []
    assert event.outcome["skipped"] == ["orders/cancelled whose order has no cancelled_at"]


def test_another_shops_uninstall_does_not_disable_this_one(client, workspace, inst, run_jobs):
    other = {**json.loads((FIXTURES / "app_uninstalled.json").read_text()), "myshopify_domain": "other.myshopify.com"}
    assert post(client, inst, json.dumps(other).encode(), "app/uninstalled", "u-other", iso(0)).status_code == 200
    run_jobs(queues=("ingest",))
    assert enabled(client, workspace, inst) is True


def test_the_documented_shop_body_disables_the_installation(client, workspace, inst, run_jobs):
    body = (FIXTURES / "app_uninstalled.json").read_bytes()
    assert post(client, inst, body, "app/uninstalled", "u-1", iso(30)).status_code == 200
    run_jobs(queues=("ingest",))
    assert enabled(client, workspace, inst) is False


@pytest.mark.parametrize("seconds_ago, reason", [  # xdist: the same test ids on every worker, no clock in them
    (REPLAY_WINDOW + 60, "min old"),
    (-3600, "in the future"),
    ("yesterday", "not a time"),
    (None, "missing"),
])
def test_stale_or_missing_triggered_at_is_401_with_a_reason(client, inst, seconds_ago, reason):
    triggered_at = iso(seconds_ago) if isinstance(seconds_ago, int) else seconds_ago
    body = json.dumps(sample("orders_create")).encode()
    response = post(client, inst, body, "orders/create", "wh-old", triggered_at)
    assert response.status_code == 401, response.json
    assert response.json["error"]["code"] == "rejected"
    assert "X-Shopify-Triggered-At" in response.json["error"]["message"] and reason in response.json["error"]["message"]
    assert rows(client, InboundEvent, scope=inst["id"]) == []


def test_a_retry_within_shopifys_four_hours_is_accepted(client, inst):
    body = json.dumps(sample("orders_create")).encode()
    response = post(client, inst, body, "orders/create", "wh-late", iso(4 * 3600))
    assert response.status_code == 200 and response.json["duplicate"] is False
    offset = time.strftime("%Y-%m-%dT%H:%M:%S-05:00", time.gmtime(time.time() - 5 * 3600 - 60))  # 1 min ago
    again = post(client, inst, body, "orders/create", "wh-late", offset)
    assert again.status_code == 200 and again.json["duplicate"] is True


def test_a_wrong_signature_is_bad_signature_before_any_timestamp_check(client, inst):
    body = json.dumps(sample("orders_create")).encode()
    headers = {"Content-Type": "application/json", "X-Shopify-Hmac-Sha256": signed(b"another body"),
               "X-Shopify-Topic": "orders/create", "X-Shopify-Triggered-At": iso(REPLAY_WINDOW + 60)}
    response = client.post(f"/webhooks/shopify/{inst['id']}", data=body, headers=headers)
    assert response.status_code == 401 and response.json["error"]["code"] == "bad_signature"


def test_the_timestamp_option_is_generic_for_any_hmac_header_connector():
    from hub.connector import HmacHeader, IncomingRequest, Rejected

    verifier = HmacHeader("X-Sig", key="k", timestamp_header="X-Sent-At", max_age=60)
    body, secrets = b'{"a": 1}', {"k": "secret"}
    fresh = verifier.sign(body, secrets)
    assert verifier.verify(IncomingRequest(fresh, body), secrets) is True
    unix = {**fresh, "X-Sent-At": str(int(time.time()) - 30)}
    assert verifier.verify(IncomingRequest(unix, body), secrets) is True
    with pytest.raises(Rejected, match="X-Sent-At is 2 min old"):
        verifier.verify(IncomingRequest({**fresh, "X-Sent-At": str(int(time.time()) - 150)}, body), secrets)
    assert verifier.verify(IncomingRequest({**fresh, "X-Sig": "wrong"}, body), secrets) is False
    assert HmacHeader("X-Sig", key="k").sign(body, secrets).keys() == {"X-Sig"}  # no option, no header
