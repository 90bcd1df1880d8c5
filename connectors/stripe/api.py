"""Calls to the Stripe API (in workers only): payment links and the Customer lookup.

``stripe.StripeClient`` per call — no process-global ``stripe.api_key``, so two installations
never share a key — on ``stripe.HTTPXClient``, with the installation's ``api_base`` (a local
stand-in in tests) checked by the outbound guard ``outbound_url``. No SDK retries: the job is
retried by the hub (outbox backoff), with the same idempotency key.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from typing import Any

import stripe

from connectors.stripe.amounts import to_minor
from hub.connector import PaymentLink, dig, outbound_url

log = logging.getLogger(__name__)
API_BASE = "https://api.stripe.com"
TIMEOUT = 10.0
REFERENCE_KEY = "coexhub_reference"  # metadata key carrying a SendPaymentLink's reference
LABEL_KEY = "coexhub_label"  # metadata key carrying the asking connector's description ("Order #1001")
EXPIRY_STEP = 15 * 60  # seconds expires_at is rounded down to (Stripe wants it 30 min to 24 h ahead)


class StripeNotConfigured(RuntimeError):
    """The installation has no API key for the call."""


def client(config: dict[str, Any]) -> stripe.StripeClient:
    """A client for one installation (restricted key, API base, connected account)."""
    key = config.get("api_key")
    if not key:
        raise StripeNotConfigured("no api_key (restricted key) configured for this Stripe installation")
    base = outbound_url((config.get("api_base") or API_BASE).rstrip("/"))
    return stripe.StripeClient(key, base_addresses={"api": base}, stripe_account=config.get("account") or None,
                               http_client=stripe.HTTPXClient(timeout=TIMEOUT, allow_sync_methods=True),
                               max_network_retries=0)


def create_payment_link(ctx, *, amount: str, currency: str, reference: str, customer: dict | None,
                        description: str = "") -> PaymentLink:
    """A single-use Checkout Session for ``amount`` (major units) with ``reference`` in its metadata
    and its PaymentIntent's (``description``, the store's label such as "Order #1001", beside it).

    The idempotency key is a hash of the request's parameters, whose ``expires_at`` is rounded down
    to ``EXPIRY_STEP``: a job retried soon after a lost answer gets the same session back, while
    the same order asking again later (a COD offer, then a chase) gets a new session that is still
    open — never Stripe's replay of an older one, nor an idempotency error for changed parameters
    (Stripe refuses a reused key with different parameters)."""
    customer = customer or {}
    minor = to_minor(amount, currency)
    hours = int(ctx.config.get("link_expires_hours") or 24)
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [{"quantity": 1, "price_data": {
            "currency": currency.strip().lower(), "unit_amount": minor,
            "product_data": {"name": (description or f"Order {reference}")[:250]}}}],
        "metadata": {REFERENCE_KEY: reference},
        "payment_intent_data": {"metadata": {REFERENCE_KEY: reference}},
        "client_reference_id": reference[:200],
        "phone_number_collection": {"enabled": True},  # the receipt then finds the buyer's number
        "expires_at": int((dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=hours)).timestamp())
        // EXPIRY_STEP * EXPIRY_STEP,
    }
    if description:
        params["metadata"][LABEL_KEY] = params["payment_intent_data"]["metadata"][LABEL_KEY] = description[:500]
    if customer.get("email"):
        params["customer_email"] = customer["email"]
    if ctx.config.get("link_success_url"):
        params["success_url"] = ctx.config["link_success_url"]
    session = client(ctx.config).v1.checkout.sessions.create(
        params, options={"idempotency_key": idempotency_key(ctx.workspace_id, params)})
    log.info("stripe checkout session %s created for reference %s (installation %s)",
             session.id, reference, ctx.installation_id)
    return PaymentLink(url=session.url, provider="stripe", link_id=session.id)


def idempotency_key(workspace_id: str, params: dict[str, Any]) -> str:
    """``coexhub-<workspace>-<sha256 of the parameters>``: equal requests share a key, others never."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:40]
    return f"coexhub-{workspace_id}-{digest}"


def lookup_customer(ctx, customer: str, event: dict) -> None:
    """WriteBack: fetch the Customer once, then store the event again as a derived inbound event
    (dedupe key ``<event id>:customer``) carrying ``coexhub_customer = {id, phone, country}``;
    the handler runs on it with the number (or records that there is none). A Customer Stripe
    does not know (deleted, 404) counts as one without a phone; other errors raise (retried)."""
    from hub.core import ingest
    from hub.core.runtime import current

    phone = country = error = None
    try:
        found = client(ctx.config).v1.customers.retrieve(customer).to_dict()
        if not found.get("deleted"):
            phone = found.get("phone") or None
            country = dig(found, "address.country") or dig(found, "shipping.address.country")
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:  # retrying cannot help: say so
        error = f"Customer lookup refused by Stripe ({exc.http_status}): the api_key needs Customers: Read"
        log.warning("stripe customer %s: %s (installation %s)", customer, error, ctx.installation_id)
    except stripe.InvalidRequestError as exc:
        if exc.http_status != 404:
            raise
        log.info("stripe customer %s not found (installation %s)", customer, ctx.installation_id)
    looked_up = {"id": customer, "phone": phone, "country": country, **({"error": error} if error else {})}
    body = json.dumps({**event, "coexhub_customer": looked_up}).encode()
    event_id, duplicate = ingest.store(current(), provider="stripe", scope=ctx.installation_id,
                                       dedupe_key=f"{event.get('id')}:customer", body=body, headers={},
                                       topic=event.get("type"), workspace_id=ctx.workspace_id)
    log.info("stripe event %s re-stored with customer %s (%s)", event.get("id"), customer,
             "duplicate" if duplicate else f"inbound event {event_id}")
