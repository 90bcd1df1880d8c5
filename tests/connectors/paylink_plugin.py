"""A third-party-style payment plugin, as a stranger would write one from docs/payment-links.md:
a ``linkpay`` connector whose signed ``link.paid`` webhook returns ``PaymentReceived``, and a
``coexhub_payment_link`` implementation that creates links through the provider's API (a local
stand-in in the tests, ``api_url``). Registered through ``coexhub_extra_plugins``."""
from __future__ import annotations

import httpx
from marshmallow import Schema, fields

from hub.connector import (Connector, Header, HmacHeader, PaymentLink, PaymentReceived, Skip, dig, hookimpl,
                           installed, on_webhook, outbound_url, secret)

NAME = "linkpay"


class LinkpayConfig(Schema):
    webhook_secret = secret(fields.String(required=True))
    api_key = secret(fields.String(required=True))
    api_url = fields.String(required=True)


class Linkpay(Connector):
    name = NAME
    title = "Linkpay (test payment provider)"
    config_schema = LinkpayConfig
    verify = HmacHeader("X-Linkpay-Signature", key="webhook_secret", encoding="hex")
    event_id = Header("X-Linkpay-Event-Id")
    topic = Header("X-Linkpay-Event")

    @on_webhook("link.paid")
    def paid(self, payload, ctx):
        reference, payment_id = dig(payload, "link.reference"), dig(payload, "payment.id")
        if not reference or not payment_id:
            return [Skip("link.paid without link.reference or payment.id")]
        return [PaymentReceived(reference=str(reference), amount=str(dig(payload, "payment.amount")),
                                currency=str(dig(payload, "payment.currency")).upper(), provider=NAME,
                                payment_id=str(payment_id))]


@hookimpl
def coexhub_connectors():
    return [Linkpay]


@hookimpl
def coexhub_payment_link(workspace_id, amount, currency, reference, customer, description, provider):
    if provider not in (None, NAME):
        return None
    contexts = installed(workspace_id, NAME)
    if not contexts:
        return None
    config = contexts[0].config
    with httpx.Client(timeout=10) as http:
        response = http.post(outbound_url(config["api_url"].rstrip("/") + "/v1/links"),
                             headers={"Authorization": f"Bearer {config['api_key']}"},
                             json={"amount": amount, "currency": currency, "reference": reference,
                                   "description": description, "customer": customer})
    response.raise_for_status()  # the hub retries the job with backoff
    body = response.json()
    return PaymentLink(url=body["url"], provider=NAME, link_id=body["id"])
