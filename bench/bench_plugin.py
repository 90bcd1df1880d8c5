"""The benchmark's connector: like ``tests/acme.py``, registered by ``bench/hub_app.py``.

HMAC-SHA256 of the raw body in a base64 header, the event id and the topic in headers, and
one handler that returns no actions (the web process never runs it: it only stores and enqueues).
"""
from __future__ import annotations

from marshmallow import Schema, fields

from hub.connector import Connector, Header, HmacHeader, Skip, hookimpl, on_webhook, secret


class BenchConfig(Schema):
    webhook_secret = secret(fields.String(required=True))


class Bench(Connector):
    name = "bench"
    title = "Benchmark store"
    config_schema = BenchConfig
    verify = HmacHeader("X-Bench-Hmac-Sha256", key="webhook_secret", encoding="base64")
    event_id = Header("X-Bench-Webhook-Id")
    topic = Header("X-Bench-Topic")

    @on_webhook("order.created")
    def order_created(self, payload, ctx):
        return [Skip("benchmark")]


@hookimpl
def coexhub_connectors():
    return [Bench]
