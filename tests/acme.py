"""A small connector used by the hub's own tests (registered through ``coexhub_extra_plugins``)."""
from __future__ import annotations

from marshmallow import Schema, fields

from hub.connector import (CancelScheduled, Connector, DisableInstallation, Emit, Header, HmacHeader, PolledEvent,
                           RecordRevenue, ScheduleSend, SendTemplate, SendText, Skip, UpsertContact, WriteBack,
                           hookimpl, on_webhook, secret)

WRITTEN: list[dict] = []
FAIL_WRITES: dict[str, int] = {}  # order id → failures still to simulate


class AcmeConfig(Schema):
    webhook_secret = secret(fields.String(required=True))
    api_token = secret(fields.String(load_default=None))
    default_country = fields.String(load_default="IN")
    template = fields.String(load_default="order_confirmation")
    delay_minutes = fields.Integer(load_default=60)


def tag_order(ctx, order_id: str, tag: str) -> None:
    """The write-back: fails FAIL_WRITES[order_id] times first, to exercise retries."""
    if FAIL_WRITES.get(order_id, 0) > 0:
        FAIL_WRITES[order_id] -= 1
        raise ConnectionError("store API unreachable")
    WRITTEN.append({"order_id": order_id, "tag": tag, "token": ctx.config.get("api_token")})


class OrderConfirmed(Schema):
    order_id = fields.String(required=True, metadata={"description": "the store's order id"})


class Acme(Connector):
    name = "acme"
    title = "Acme Store"
    events = {"order.confirmed": (OrderConfirmed, {"order_id": "77"}, "A customer confirmed an order")}
    config_schema = AcmeConfig
    verify = HmacHeader("X-Acme-Hmac-Sha256", key="webhook_secret", encoding="base64")
    event_id = Header("X-Acme-Webhook-Id")
    topic = Header("X-Acme-Topic")

    @on_webhook("order.created")
    def order_created(self, payload, ctx):
        to = ctx.phone(payload, "phone", "customer.phone", "shipping_address.phone",
                       country="shipping_address.country_code")
        if not to:
            return []
        order_id = str(payload["id"])
        return [SendTemplate(to=to, template=ctx.config["template"], params=[payload.get("name") or order_id],
                             idempotency_key=f"acme:order:{order_id}", reference={"order_id": order_id}),
                CancelScheduled(f"cart:{payload.get('checkout_token')}"),
                Emit("order.confirmed", {"order_id": order_id})]

    @on_webhook("cart.updated")
    def cart(self, payload, ctx):
        to = ctx.phone(payload, "phone")
        if payload.get("completed_at"):
            return [CancelScheduled(f"cart:{payload['token']}")]
        return [ScheduleSend(to=to, template="cart_reminder", after=ctx.config["delay_minutes"] * 60,
                             params=[payload.get("total_price")], cancel_key=f"cart:{payload['token']}")] \
            if to else [Skip("cart without phone")]

    @on_webhook("order.paid")
    def paid(self, payload, ctx):
        return [WriteBack(tag_order, order_id=str(payload["id"]), tag="paid-notified")]

    @on_webhook("explode")
    def explode(self, payload, ctx):
        raise RuntimeError("handler bug")




class AcmePolling(Acme):
    """Acme with a catch-up poll: returns the orders put in ``PENDING_POLL``."""
    name = "acme-poll"
    poll_every = 60

    def poll(self, ctx):
        ctx.state["polls"] = ctx.state.get("polls", 0) + 1
        return [PolledEvent("order.created", order, f"poll:{order['id']}") for order in PENDING_POLL]

    @on_webhook("app.uninstalled")
    def uninstalled(self, payload, ctx):
        return [DisableInstallation("app uninstalled")]

    @on_webhook("order.paid")
    def paid(self, payload, ctx):
        return [RecordRevenue(to=ctx.phone(payload, "phone"), order_id=str(payload["id"]),
                              amount=payload["total"], currency=payload["currency"])]


PENDING_POLL: list[dict] = []


@hookimpl
def coexhub_connectors():
    return [Acme, AcmePolling]


SEEN_EVENTS: list[tuple[str, str]] = []


@hookimpl
def coexhub_whatsapp_event(event, workspace):
    """Every domain event reaches plugins; one that says "tag me" gets its contact tagged, one
    that says "reply please" gets a text back."""
    SEEN_EVENTS.append((event.type, workspace.id))
    text = ((event.data.get("body") or {}).get("text") or {}).get("body", "")
    if event.type == "message.received" and text == "tag me":
        return [UpsertContact(wa_id=event.data["contact"]["wa_id"], tags=["tagged-by-plugin"])]
    if event.type == "message.received" and text == "reply please":
        return [SendText(to=event.data["contact"]["wa_id"], text="here is your answer")]
    return None
