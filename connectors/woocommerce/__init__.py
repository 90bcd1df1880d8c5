"""WooCommerce: order confirmations and status messages, COD confirmation, order notes.

Setup for sellers: ``docs/connectors/woocommerce.md``. WooCommerce does not retry webhooks
and disables one after a few failures, so the connector also *polls* orders modified since
its cursor; pushed and polled copies of an order share the dedupe key ``"{id}:{date_modified}"``
and every message has an idempotency key per order and kind, so overlap never sends twice.
"""
from __future__ import annotations

import datetime as dt
import re

from marshmallow import Schema, fields, validate

from connectors import (attribution_field, decimal_amount, money, money_text, order_in_reply, paid_order,
                        pay_link_fields, template_fields, template_for, text)
from connectors.woocommerce import writeback
from hub.connector import (
    CancelScheduled,
    Connector,
    Fields,
    Header,
    HmacHeader,
    JsonField,
    PolledEvent,
    RecordRevenue,
    ScheduleSend,
    SendPaymentLink,
    SendTemplate,
    Skip,
    WriteBack,
    dig,
    hookimpl,
    on_webhook,
    on_whatsapp,
    secret,
)

PING = re.compile(rb"\s*webhook_id=\d+\s*")
OFFLINE = ("cod", "bacs", "cheque")  # payments that leave an order on-hold (or unpaid) until settled
STATUS_USES = {"processing": "processing", "completed": "completed", "cancelled": "cancelled",
               "refunded": "refunded"}
OVERLAP = dt.timedelta(seconds=1)
PAID_BY_LINK_KEPT = 500  # order ids paid by a hub payment link, remembered per installation


WooCommerceConfig = Schema.from_dict({
    "store_url": fields.String(required=True, metadata={"description": "https://your-store.example"}),
    "webhook_secret": secret(fields.String(required=True, metadata={
        "description": "the Secret of the webhooks you create under WooCommerce → Settings → Advanced → Webhooks"})),
    "consumer_key": secret(fields.String(load_default=None, allow_none=True, metadata={
        "description": "REST API key (ck_…) with Read/Write: catch-up poll and order notes"})),
    "consumer_secret": secret(fields.String(load_default=None, allow_none=True)),
    "country": fields.String(load_default=None, allow_none=True, metadata={
        "description": "store country, for numbers typed without +code when billing.country is empty"}),
    "locale": fields.String(load_default="en_US"),
    "language": fields.String(load_default="en_US", metadata={"description": "default template language"}),
    **template_fields("order_confirmation", "order_confirmation", "{{1}} name, {{2}} order number, {{3}} total"),
    **template_fields("cod_confirmation", "cod_confirmation",
                "{{1}} name, {{2}} order number, {{3}} total; quick replies Confirm / Cancel"),
    **template_fields("on_hold", "order_on_hold", "COD/bank transfer awaiting payment: {{1}} name, {{2}} order, {{3}} total"),
    **template_fields("processing", None, "{{1}} name, {{2}} order number (the confirmation usually covers it)"),
    **template_fields("completed", "order_completed", "{{1}} name, {{2}} order number"),
    **template_fields("cancelled", "order_cancelled", "{{1}} name, {{2}} order number"),
    **template_fields("refunded", "order_refunded", "{{1}} name, {{2}} order number"),
    "cod_confirmation": fields.Boolean(load_default=True),
    **pay_link_fields("pay-now offer / unpaid-order chase: {{1}} name, {{2}} order number, "
                      "{{3}} total; a URL button https://<payment provider's link prefix>{{1}} (docs/payment-links.md)",
                      fields.Integer(load_default=60, allow_none=True, validate=validate.Range(1, 30 * 24 * 60),
                                     metadata={"description": "chase a pending / on-hold (unpaid) order with a link "
                                                              "after this long; empty: off"})),
    "cod_cancel_order": fields.Boolean(load_default=False, metadata={
        "description": "set the order to cancelled when the buyer taps Cancel (else only a note)"}),
    "order_notes": fields.Boolean(load_default=True, metadata={
        "description": "add a private order note for each WhatsApp message (needs the REST API key)"}),
    "connection_id": fields.String(load_default=None, allow_none=True),
    "attribution_window_days": attribution_field("an order"),
}, name="WooCommerceConfig")


def dedupe_key(order: dict) -> str:
    """Exactly what ``event_id`` extracts from a pushed order: ``"{id}:{date_modified}"``."""
    return f"{text(dig(order, 'id'))}:{text(dig(order, 'date_modified'))}"



def _created(order: dict) -> dt.datetime | None:
    """The order's creation time (``date_created_gmt``, naive UTC), or None when unreadable."""
    try:
        return dt.datetime.fromisoformat(text(dig(order, "date_created_gmt"))).replace(tzinfo=None)
    except ValueError:
        return None


class WooCommerce(Connector):
    name = "woocommerce"
    title = "WooCommerce"
    config_schema = WooCommerceConfig
    verify = HmacHeader("X-WC-Webhook-Signature", key="webhook_secret", encoding="base64")
    event_id = Fields(JsonField("id"), JsonField("date_modified"))
    topic = Header("X-WC-Webhook-Topic")
    poll_every = 300

    def is_ping(self, request) -> bool:
        """The unsigned ``webhook_id=N`` form post WooCommerce sends when a webhook is saved."""
        return request.header("X-WC-Webhook-Signature") is None and PING.fullmatch(request.body or b"") is not None

    # -- orders --------------------------------------------------------------------------------
    @on_webhook("order.created", "order.updated", "order.restored")
    def order(self, payload, ctx):
        order_id, status = text(dig(payload, "id")), text(dig(payload, "status")).lower()
        if not order_id or not status:
            return [Skip("order without id or status")]
        method = text(dig(payload, "payment_method")).lower()
        chase = ctx.config.get("pay_link_chase_minutes") if template_for(ctx, "pay_link")[0] and method != "cod" \
            and status in ("pending", "on-hold") else None
        unpaid = f"wc:{ctx.installation_id}:{order_id}:unpaid"
        settled = [] if status in ("pending", "on-hold") else \
            [CancelScheduled(f"wc:{ctx.installation_id}:{order_id}:paychase")]  # paid (or gone): no chase
        if status in ("pending", "failed", "checkout-draft", "draft", "trash") and not chase:
            return [*settled, Skip(f"order {status}: nothing to tell the customer")]
        to = ctx.phone(payload, "billing.phone", "shipping.phone", country="billing.country")
        if not to:
            return settled  # ctx.notes says why
        first = text(dig(payload, "billing.first_name"), "there")
        full = " ".join(p for p in (text(dig(payload, "billing.first_name")), text(dig(payload, "billing.last_name"))) if p)
        number = text(dig(payload, "number")) or order_id
        total = money(dig(payload, "total"), dig(payload, "currency"), ctx.config.get("locale")) or \
            text(dig(payload, "total"), "-")
        actions: list = list(settled)

        def after_order(minutes: int) -> dict:
            """A time counted from the order's creation, so later updates of the order do not move it."""
            created = _created(payload)
            return {"at": created + dt.timedelta(minutes=minutes)} if created else {"after": minutes * 60}

        def send(kind: str, use: str, params, when: dict | None = None):
            template, language = template_for(ctx, use)
            if not template:
                actions.append(Skip(f"{use.replace('_', ' ')} messages are off"))
                return
            key = f"wc:{ctx.installation_id}:{order_id}:{kind}"
            fields_ = dict(to=to, template=template, language=language, params=params, name=full or None,
                           idempotency_key=key, reference={"order_id": order_id, "kind": kind})
            actions.append(SendTemplate(**fields_) if when is None else
                           ScheduleSend(**fields_, **when, cancel_key=key, group=unpaid))
            if ctx.config.get("order_notes", True) and ctx.config.get("consumer_key"):
                actions.append(WriteBack(writeback.add_order_note, order_id=order_id, marker=key,
                                         note=f"WhatsApp message '{template}' ({kind}) queued for +{to}."))

        def pay_link(kind: str, when: dict | None = None) -> bool:
            template, language = template_for(ctx, "pay_link")
            amount, currency = decimal_amount(dig(payload, "total")), text(dig(payload, "currency"))
            if not template or not amount or amount <= 0 or len(currency) != 3:
                return False
            key = f"wc:{ctx.installation_id}:{order_id}:{kind}"
            actions.append(SendPaymentLink(
                to=to, template=template, language=language, params=[first, number, total], name=full or None,
                amount=str(amount), currency=currency.upper(), payment_reference=f"order:{order_id}",
                email=text(dig(payload, "billing.email")) or None, description=f"Order {number}",
                provider=ctx.config.get("payment_provider") or None, idempotency_key=key, cancel_key=key,
                group=unpaid, **(when or {}), reference={"order_id": order_id, "kind": kind, "attributable": True}))
            return True

        if chase:
            pay_link("paychase", after_order(int(chase)))
        if status in ("processing", "on-hold"):
            if method == "cod" and ctx.config.get("cod_confirmation", True) and template_for(ctx, "cod_confirmation")[0]:
                ours = f"{order_id}@{ctx.installation_id}"  # order ids repeat across stores
                offered = ctx.config.get("pay_link_cod", True) and pay_link("paynow")
                send("cod", "cod_confirmation", {"body": [first, number, total], "buttons": [
                    {"index": 0, "sub_type": "quick_reply", "params": [f"wc_cod_confirm:{ours}"]},
                    {"index": 1, "sub_type": "quick_reply", "params": [f"wc_cod_cancel:{ours}"]}]},
                     when=after_order(int(ctx.config.get("pay_link_cod_delay_minutes") or 0)) if offered else None)
            elif status == "on-hold" and method in OFFLINE:
                send("on-hold", "on_hold", [first, number, total])
            elif status == "processing" and order_id in (ctx.state.get("paid_by_link") or []):
                # the payment connector's receipt told the buyer; set_paid's order.updated says nothing more
                actions.append(Skip(f"order {order_id} was paid by a WhatsApp payment link: the receipt was sent"))
            elif status == "processing":
                send("confirmation", "order_confirmation", [first, number, total])
            else:
                actions.append(Skip("on-hold order paid online: waiting for the payment"))
        if status == "processing" and template_for(ctx, "processing")[0]:
            send("processing", "processing", [first, number])
        if status in ("completed", "cancelled", "refunded"):
            send(status, STATUS_USES[status], [first, number])
        amount, currency = decimal_amount(dig(payload, "total")), text(dig(payload, "currency"))
        if status in ("processing", "completed") and dig(payload, "date_paid") and amount is not None and currency:
            actions.append(RecordRevenue(to=to, order_id=order_id, amount=str(amount), currency=currency.upper()))
        return actions

    # -- catch-up poll (the one place a connector does I/O; runs in a worker) ----------------------
    def poll(self, ctx) -> list[PolledEvent]:
        if not (ctx.config.get("consumer_key") and ctx.config.get("consumer_secret")):
            return []  # no REST API key: webhooks only
        cursor = ctx.state.get("modified_after")
        if not cursor:  # first poll: start from now, never replay the store's history
            start = (ctx.now - OVERLAP).astimezone(dt.UTC).replace(microsecond=0, tzinfo=None)
            ctx.state["modified_after"] = start.isoformat()  # naive UTC, like date_modified_gmt
            return []
        orders = writeback.orders_modified_after(ctx, cursor)
        latest = max((text(dig(o, "date_modified_gmt")) for o in orders), default="")
        if latest > cursor:
            moved = dt.datetime.fromisoformat(latest) - OVERLAP  # same-second changes are not lost
            ctx.state["modified_after"] = max(cursor, moved.isoformat())
        return [PolledEvent("order.updated", o, dedupe_key(o)) for o in orders if text(dig(o, "id"))]

    # -- a payment link this installation sent was paid (hub.core.paylinks) -----------------------
    def on_payment(self, payment, ctx):
        order_id = paid_order(payment)
        if not order_id:
            return [Skip(f"payment for an unknown reference {payment.reference!r}")]
        amount = money_text(payment.amount, payment.currency, ctx.config.get("locale"))
        marker = f"wc-paid-by-link:{payment.provider}:{payment.payment_id}"
        paid = [o for o in (ctx.state.get("paid_by_link") or []) if o != order_id]
        ctx.state = {**ctx.state, "paid_by_link": [*paid, order_id][-PAID_BY_LINK_KEPT:]}
        return [CancelScheduled(group=f"wc:{ctx.installation_id}:{order_id}:unpaid"),  # COD confirmation, chase
                WriteBack(writeback.add_order_note, order_id=order_id, marker=marker,
                          note=f"Paid {amount} through a WhatsApp payment link ({payment.provider}, "
                               f"payment {payment.payment_id})."),
                WriteBack(writeback.mark_paid, order_id=order_id, transaction_id=payment.payment_id),
                *([RecordRevenue(to=payment.phone, order_id=order_id, amount=payment.amount,
                                 currency=payment.currency.upper())] if payment.phone else [])]

    # -- COD replies ------------------------------------------------------------------------------
    @on_whatsapp("message.received", button="wc_cod_confirm:")
    def cod_confirmed(self, event, ctx):
        order_id = order_in_reply(event, ctx)
        if not order_id:
            return []  # another store's order (or a malformed payload): not this installation's reply
        return [WriteBack(writeback.add_order_note, order_id=order_id, marker=f"wc-cod-confirmed:{order_id}",
                          note="The customer confirmed this cash-on-delivery order on WhatsApp.")]

    @on_whatsapp("message.received", button="wc_cod_cancel:")
    def cod_cancelled(self, event, ctx):
        order_id = order_in_reply(event, ctx)
        if not order_id:
            return []
        actions = [WriteBack(writeback.add_order_note, order_id=order_id, marker=f"wc-cod-cancelled:{order_id}",
                             note="The customer cancelled this cash-on-delivery order on WhatsApp.")]
        if ctx.config.get("cod_cancel_order"):
            actions.append(WriteBack(writeback.set_order_status, order_id=order_id, status="cancelled"))
        return actions


@hookimpl
def coexhub_connectors():
    return [WooCommerce]
