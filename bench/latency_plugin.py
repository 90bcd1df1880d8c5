"""The latency benchmark's reply connector: answers a quick-reply tap with a text, as a
connector's ``on_whatsapp`` handler would (no shipped connector replies to an inbound message
with a send: Shopify's and WooCommerce's COD buttons only tag the order).

Registered by ``bench/latency_app.py`` in the web app and in the bench's workers.
"""
from __future__ import annotations

from marshmallow import Schema, fields

from hub.connector import Connector, Header, HmacHeader, SendText, Skip, hookimpl, on_whatsapp, secret

BUTTON = "bench_yes:"


class ReplyConfig(Schema):
    webhook_secret = secret(fields.String(required=True))


class BenchReply(Connector):
    name = "benchreply"
    title = "Benchmark reply"
    config_schema = ReplyConfig
    verify = HmacHeader("X-Bench-Hmac-Sha256", key="webhook_secret", encoding="base64")
    event_id = Header("X-Bench-Webhook-Id")
    topic = Header("X-Bench-Topic")

    @on_whatsapp("message.received", button=BUTTON)
    def confirmed(self, event, ctx):
        wa_id = (event.data.get("contact") or {}).get("wa_id")
        if not wa_id:
            return [Skip("reply without a wa_id")]
        order = (event.button or "")[len(BUTTON):]
        return [SendText(to=wa_id, text=f"Thanks, order {order} is confirmed.",
                         idempotency_key=f"benchreply:{ctx.installation_id}:{order}")]


@hookimpl
def coexhub_connectors():
    return [BenchReply]
