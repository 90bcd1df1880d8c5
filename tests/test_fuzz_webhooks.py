"""Fuzzing the webhook routes with hypothesis: Meta envelopes and Shopify / WooCommerce payloads,
well-formed and broken, signed, through ingest and processing (jobs run in-process).

Asserted for every example: no 5xx; every 2xx has its stored row (nothing signed is lost);
processing never lets an exception escape its job (no failed RQ job). Well-formed payloads are
processed (or unrouted); broken provider payloads end processed or rejected, never as a recorded
error. ``COEXHUB_FUZZ_EXAMPLES`` sets how many examples each test draws (default small, to keep
the suite fast).
"""
from __future__ import annotations

import copy
import json
import os
import secrets
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from hub.core.models import InboundEvent
from hub.testing import payloads as p

EXAMPLES = int(os.environ.get("COEXHUB_FUZZ_EXAMPLES", "20"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
FIXTURES = Path(__file__).parent / "fixtures"
DONE = {"processed", "unrouted", "rejected"}

# -- JSON values, including the odd ones -----------------------------------------------------------
ODD_TEXT = st.sampled_from(["\ud800", "a\x00b", "²", "١٢", "9" * 400, "", " ", "🙂" * 50, "\u202e", "null",
                            "+1 (415) 555-2671", "wamid.x", "1e999", "-1", "true", "<b>x</b>"])
LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63, max_value=2**80),
                 st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20), ODD_TEXT)
JSON = st.recursive(LEAF, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids,
                                                                                     max_size=3), max_leaves=6)


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    """Every path into ``node`` (dict keys and list indexes)."""
    out = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*path, index))
    return out


@st.composite
def mutated(draw, document: Any, max_changes: int = 3) -> Any:
    """``document`` with 1..max_changes nodes replaced by odd JSON, deleted or wrapped in a list."""
    doc = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, max_changes))):
        paths = [path for path in _paths(doc) if path]
        if not paths:
            return draw(JSON)
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        how = draw(st.sampled_from(["replace", "replace", "delete", "wrap"]))
        if how == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif how == "wrap":
            parent[path[-1]] = [parent[path[-1]]]
        else:
            parent[path[-1]] = draw(JSON)
    return doc


def raw_garbage() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=64), st.just(b'{"a": ' * 3000 + b"1" + b"}" * 3000),
                     st.just(b"[" * 100_000), JSON.map(lambda v: json.dumps(v).encode()))


# -- Meta envelopes ----------------------------------------------------------------------------------
WA_IDS = st.sampled_from(["919876543210", "14155552671", "447700900123"])
WORDS = st.text(min_size=1, max_size=40).filter(lambda s: s.strip())


@st.composite
def meta_envelope(draw, waba: str, pnid: str, display: str) -> dict:
    """A well-formed envelope of one of the fields a Coexistence number receives."""
    wa, text = draw(WA_IDS), draw(WORDS)
    c = (waba, pnid, display)
    kind = draw(st.sampled_from(["text", "media", "location", "reaction", "status", "echo", "edit", "sync",
                                 "history", "template", "interactive", "unsupported", "prefs", "account"]))
    if kind == "text":
        return p.text_message(*c, wa, text, name=draw(WORDS))
    if kind == "media":
        return p.media_message(*c, wa, kind=draw(st.sampled_from(["image", "video", "audio", "document",
                                                                   "sticker"])), caption=text)
    if kind == "location":
        return p.location_message(*c, wa, latitude=draw(st.floats(-90, 90)), longitude=draw(st.floats(-180, 180)))
    if kind == "reaction":
        return p.reaction(*c, wa, message_id=p.new_wamid(), emoji=draw(st.sampled_from(["👍", None])))
    if kind == "status":
        return p.status(*c, p.new_wamid(), draw(st.sampled_from(["sent", "delivered", "read", "failed"])), wa)
    if kind == "echo":
        return p.echo(*c, wa, text)
    if kind == "edit":
        return p.echo_edit(*c, wa, original_message_id=p.new_wamid(), new_body=text)
    if kind == "sync":
        return p.state_sync(*c, [(draw(st.sampled_from(["add", "edit", "remove"])), wa, text, text[:5])])
    if kind == "history":
        return p.history_chunk(*c, threads={wa: [(p.new_wamid(), draw(st.booleans()), text, None)]})
    if kind == "template":
        return p.template_status(waba, draw(st.sampled_from(["APPROVED", "REJECTED", "PAUSED"])),
                                 draw(st.integers(1, 10**15)), "order_update", "en_US")
    if kind == "interactive":
        return p.interactive_reply(*c, wa, reply_id=text, title=text)
    if kind == "unsupported":
        return p.unsupported_message(*c, wa)
    if kind == "prefs":
        return p.user_preferences(*c, wa, draw(st.sampled_from(["stop", "resume"])))
    return p.account_update(waba, draw(st.sampled_from(["ACCOUNT_UPDATE", "PARTNER_REMOVED", "DISABLED_UPDATE"])))


def post_meta(client, body: bytes):
    return client.post("/webhooks/whatsapp", data=body,
                       headers={"Content-Type": "application/json", **p.sign(body, "test-app-secret")})


def stored(client, provider: str, response) -> InboundEvent:
    """The row behind a 2xx answer (its own, or the first copy's for a duplicate)."""
    assert response.status_code < 300, (response.status_code, response.get_data(as_text=True)[:300])
    with client.rt.db.session() as s:
        if response.json.get("duplicate"):
            return None
        row = s.scalars(select(InboundEvent).where(InboundEvent.id == client.row_id(response.json["event_id"]))).one()
        assert row.provider == provider
        return row


def settle(client, run_jobs, row: InboundEvent | None) -> InboundEvent | None:
    """Run the ingest jobs in-process; no job may fail in RQ (an exception escaping process_event)."""
    failed = client.rt.queues["ingest"].failed_job_registry
    before = set(failed.get_job_ids())  # other tests of this worker share the queue
    run_jobs(queues=("ingest",))
    assert set(failed.get_job_ids()) <= before, set(failed.get_job_ids()) - before
    if row is None:
        return None
    with client.rt.db.session() as s:
        return s.get(InboundEvent, row.id)


def settled_cleanly(row: InboundEvent | None) -> bool:
    """Processed, unrouted or rejected (kept unprocessed on purpose), with no error recorded."""
    return row is None or row.status == "rejected" or (row.status in DONE and row.last_error is None)


@FUZZ
@given(data=st.data())
def test_fuzz_meta_well_formed_envelopes_are_stored_and_processed(client, coexistence, run_jobs, data):
    number = data.draw(st.sampled_from([(coexistence.phone_number_id, coexistence.waba_id),
                                        ("1" + secrets.token_hex(6), "2" + secrets.token_hex(6))]))
    env = data.draw(meta_envelope(number[1], number[0], coexistence.display))
    row = stored(client, "whatsapp", post_meta(client, json.dumps(env).encode()))
    row = settle(client, run_jobs, row)
    assert row is None or (row.status in ("processed", "unrouted") and row.last_error is None), \
        (row.status, row.last_error, env)


def broken_meta(client, coexistence, run_jobs, data, garbage: bool = True) -> InboundEvent | None:
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    mutants = meta_envelope(*c).flatmap(mutated).map(lambda e: json.dumps(e).encode())
    body = data.draw(st.one_of(mutants, raw_garbage()) if garbage else mutants)
    row = stored(client, "whatsapp", post_meta(client, body))
    assert row is None or row.body == body
    return settle(client, run_jobs, row)


@FUZZ
@given(data=st.data())
def test_fuzz_meta_broken_envelopes_are_never_a_500_nor_lost(client, coexistence, run_jobs, data):
    row = broken_meta(client, coexistence, run_jobs, data)
    assert row is None or row.status in DONE | {"pending", "dead"}


@settings(FUZZ, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(data=st.data())
def test_fuzz_meta_broken_changes_never_fail_their_event(client, coexistence, run_jobs, data):
    row = broken_meta(client, coexistence, run_jobs, data, garbage=False)
    assert settled_cleanly(row), (row.status, row.last_error)


# -- Shopify and WooCommerce -------------------------------------------------------------------------
SHOPIFY_SECRETS = {"webhook_secret": "shpss_fuzz"}
WOO_SECRETS = {"webhook_secret": "wc-fuzz"}
SHOPIFY_SAMPLES = {"orders/create": "orders_create", "orders/paid": "orders_create",
                   "orders/cancelled": "orders_create", "orders/fulfilled": "orders_create",
                   "checkouts/create": "checkouts_create", "checkouts/update": "checkouts_create",
                   "checkouts/delete": "checkouts_delete", "fulfillments/create": "fulfillments_create",
                   "fulfillments/update": "fulfillments_create"}


def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def stores(client, coexistence):
    shop = client.install(coexistence.workspace, "shopify",
                          {**SHOPIFY_SECRETS, "shop": "fuzz.myshopify.com", "second_reminder_delay_minutes": 120})
    woo = client.install(coexistence.workspace, "woocommerce",
                         {**WOO_SECRETS, "store_url": "https://example.com"})
    return {"shopify": shop, "woocommerce": woo}


@st.composite
def provider_delivery(draw, broken: bool) -> tuple[str, Any, dict]:
    """``(connector, payload, headers)`` of a Shopify or WooCommerce webhook."""
    if draw(st.booleans()):
        topic = draw(st.sampled_from(sorted(SHOPIFY_SAMPLES)))
        payload = _fixture(f"shopify/{SHOPIFY_SAMPLES[topic]}.json")
        headers = {"X-Shopify-Topic": topic, "X-Shopify-Webhook-Id": secrets.token_hex(8),
                   "X-Shopify-Shop-Domain": "fuzz.myshopify.com", "X-Shopify-API-Version": "2026-04"}
        # X-Shopify-Triggered-At: set to now by the signing (a fixed date is refused as a replay)
        connector = "shopify"
    else:
        topic = draw(st.sampled_from(["order.created", "order.updated", "order.restored", "order.deleted"]))
        payload = _fixture("woocommerce/order.json")
        payload["status"] = draw(st.sampled_from(["processing", "on-hold", "completed", "cancelled", "refunded"]))
        payload["payment_method"] = draw(st.sampled_from(["cod", "stripe"]))
        resource, _, event = topic.partition(".")
        headers = {"X-WC-Webhook-Topic": topic, "X-WC-Webhook-Resource": resource, "X-WC-Webhook-Event": event,
                   "X-WC-Webhook-Source": "https://example.com/", "X-WC-Webhook-ID": "15",
                   "X-WC-Webhook-Delivery-ID": secrets.token_hex(6)}
        connector = "woocommerce"
    payload["id"] = draw(st.integers(1, 2**62))
    if broken:
        payload = draw(st.one_of(mutated(payload), raw_garbage()))
        if draw(st.integers(0, 4)) == 0:
            headers = {**headers, next(iter(k for k in headers if "Topic" in k)): draw(ODD_TEXT)}
    return connector, payload, headers


def deliver(client, stores, connector, payload, headers):
    secret = SHOPIFY_SECRETS if connector == "shopify" else WOO_SECRETS
    headers = {k: v.encode("utf-8", "backslashreplace").decode("latin-1") for k, v in headers.items()}
    return client.deliver(connector, stores[connector]["id"], payload, secret, headers)


@FUZZ
@given(data=st.data())
def test_fuzz_provider_well_formed_payloads_are_stored_and_processed(client, stores, run_jobs, data):
    connector, payload, headers = data.draw(provider_delivery(broken=False))
    row = stored(client, connector, deliver(client, stores, connector, payload, headers))
    row = settle(client, run_jobs, row)
    assert row is None or (row.status == "processed" and row.last_error is None), (row.status, row.last_error)


@FUZZ
@given(data=st.data())
def test_fuzz_provider_broken_payloads_are_never_a_500_nor_lost(client, stores, run_jobs, data):
    connector, payload, headers = data.draw(provider_delivery(broken=True))
    response = deliver(client, stores, connector, payload, headers)
    row = settle(client, run_jobs, stored(client, connector, response))
    assert settled_cleanly(row), (row.status, row.last_error)
