"""Shopify: abandoned-checkout recovery, order/shipping/cancellation updates, COD confirmation.

Setup for sellers: ``docs/connectors/shopify.md``. Shopify has no abandoned-cart webhook, so a
recovery send is *scheduled* on ``checkouts/create|update`` and cancelled when the checkout
completes, becomes an order or is deleted. Ids exceed 2^53: they are kept as strings.
"""
from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, fields, validate

from connectors import (attribution_field, decimal_amount, money, money_text, order_in_reply, paid_order,
                        pay_link_fields, template_fields, template_for, text, truthy)
from connectors.shopify import writeback
from hub.connector import (
    BodyHash,
    CancelScheduled,
    Connector,
    DisableInstallation,
    Fields,
    Header,
    HmacHeader,
    RecordRevenue,
    ScheduleSend,
    SendPaymentLink,
    SendTemplate,
    Skip,
    UpsertContact,
    WriteBack,
    dig,
    hookimpl,
    on_webhook,
    on_whatsapp,
    secret,
)

PHONE_PATHS = ("sms_marketing_phone", "phone", "customer.phone", "shipping_address.phone", "billing_address.phone")
COD = re.compile(r"(\bcod\b|cash[\s_-]*on[\s_-]*delivery)", re.IGNORECASE)
KNOWN_CHECKOUTS = 500  # checkout id → token pairs remembered for checkouts/delete (it carries only the id)
# Shopify retries a failed delivery 8 times over 4 hours: a delivery whose X-Shopify-Triggered-At
# is older than 5 hours is no retry but a replay, and is refused (401). The header is not signed.
REPLAY_WINDOW = 5 * 3600
# app/uninstalled carries the shop resource; these keys belong to orders, checkouts, fulfillments
SHOP_KEYS = {"myshopify_domain", "domain", "shop_owner", "plan_name", "money_format", "iana_timezone", "primary_locale"}
NOT_SHOP_KEYS = {"line_items", "order_number", "order_id", "checkout_token", "token", "cart_token", "financial_status",
                 "fulfillment_status", "total_price", "tracking_number", "abandoned_checkout_url", "customer"}


MAX_DELAY_MINUTES = 30 * 24 * 60  # a reminder later than 30 days after the checkout is no reminder
ShopifyConfig = Schema.from_dict({
    "shop": fields.String(required=True, metadata={"description": "your-store.myshopify.com"}),
    "webhook_secret": secret(fields.String(required=True, metadata={
        "description": "the app's client secret (or the secret shown under Settings → Notifications → Webhooks)"})),
    "admin_api_token": secret(fields.String(load_default=None, allow_none=True, metadata={
        "description": "Admin API access token (shpat_…) with write_orders, for COD order tags"})),
    "default_country": fields.String(load_default="US", metadata={"description": "for numbers typed without +code"}),
    "locale": fields.String(load_default="en_US", metadata={"description": "how amounts are written (Babel locale)"}),
    "language": fields.String(load_default="en_US", metadata={"description": "default template language"}),
    **template_fields("abandoned_cart", "abandoned_cart", "marketing template: {{1}} name, {{2}} total, {{3}} checkout link"),
    **template_fields("second_reminder", None, "optional second recovery template (same parameters)"),
    **template_fields("order_confirmation", "order_confirmation", "{{1}} name, {{2}} order number, {{3}} total"),
    **template_fields("shipped", "order_shipped", "{{1}} name, {{2}} order, {{3}} tracking number, {{4}} tracking link"),
    **template_fields("cancelled", "order_cancelled", "{{1}} name, {{2}} order number"),
    **template_fields("cod_confirmation", "cod_confirmation",
                "{{1}} name, {{2}} order, {{3}} total; quick replies Confirm / Cancel"),
    **pay_link_fields("pay-now offer / unpaid-order chase: {{1}} name, {{2}} order, {{3}} total; "
                      "a URL button https://<payment provider's link prefix>{{1}} (docs/payment-links.md)",
                      fields.Integer(load_default=None, allow_none=True, validate=validate.Range(1, MAX_DELAY_MINUTES),
                                     metadata={"description": "chase an unpaid non-COD order (manual payment) with a "
                                                              "link after this long; empty: off"})),
    "abandoned_cart_delay_minutes": fields.Integer(load_default=60, validate=validate.Range(1, MAX_DELAY_MINUTES),
                                                   metadata={"description": "1 minute to 30 days"}),
    "second_reminder_delay_minutes": fields.Integer(load_default=None, allow_none=True,
                                                    validate=validate.Range(1, MAX_DELAY_MINUTES), metadata={
                                                        "description": "minutes after the checkout; empty: off"}),
    "require_marketing_consent": fields.Boolean(load_default=True, metadata={
        "description": "send cart reminders (marketing) only to buyers who accepted marketing"}),
    "cod_confirmation": fields.Boolean(load_default=True, metadata={
        "description": "ask cash-on-delivery buyers to confirm instead of a plain confirmation"}),
    "cod_cancel_order": fields.Boolean(load_default=False, metadata={
        "description": "cancel the order in Shopify when the buyer taps Cancel (else only tag it)"}),
    "admin_api_url": fields.String(load_default=None, allow_none=True, metadata={
        "description": "override of https://{shop}/admin/api/2026-04/graphql.json"}),
    "connection_id": fields.String(load_default=None, allow_none=True),
    "attribution_window_days": attribution_field("an order"),
}, name="ShopifyConfig")


# -- payload helpers (every field optional, any type) ----------------------------------------
def _id(value: Any) -> str | None:
    return text(value) or None  # ints stay exact: str(820982911946154508), never via float


def _checkout_id(payload: Any) -> str | None:
    """The checkout's id; Shopify's documented checkout samples carry it only in ``name`` ("#<id>")."""
    match = re.fullmatch(r"#(\d+)", text(dig(payload, "name")))
    return _id(dig(payload, "id")) or (match.group(1) if match else None)


def _name(payload: Any) -> tuple[str, str | None]:
    """(first name for the greeting, full name for the contact)."""
    for prefix in ("customer", "billing_address", "shipping_address", "destination"):
        first = text(dig(payload, f"{prefix}.first_name"))
        if first:
            full = " ".join(p for p in (first, text(dig(payload, f"{prefix}.last_name"))) if p)
            return first, full
    return "there", None


def _phone(ctx, payload: Any, *paths: str) -> str | None:
    country = "shipping_address.country_code" if isinstance(dig(payload, "shipping_address"), dict) \
        else "billing_address.country_code"
    return ctx.phone(payload, *(paths or PHONE_PATHS), country=country)



def _key(ctx, order_id: str, kind: str) -> str:
    return f"shopify:{ctx.installation_id}:order:{order_id}:{kind}"


def _total(ctx, payload: Any) -> str:
    currency = dig(payload, "presentment_currency") or dig(payload, "currency")
    amount = dig(payload, "total_price")
    if dig(payload, "presentment_currency") and dig(payload, "total_price_set.presentment_money.amount"):
        amount = dig(payload, "total_price_set.presentment_money.amount")
    return money(amount, currency, dig(payload, "customer_locale") or ctx.config.get("locale")) or text(amount, "-")


def _consents(payload: Any) -> bool:
    return any(truthy(dig(payload, path)) for path in (
        "buyer_accepts_sms_marketing", "buyer_accepts_marketing", "customer.accepts_marketing",
        "customer.sms_marketing_consent.state", "customer.email_marketing_consent.state"))


def is_cod(payload: Any) -> bool:
    names = dig(payload, "payment_gateway_names")
    names = [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
    return any(COD.search(n) for n in [*names, text(dig(payload, "gateway"))] if n)


def not_this_shop(payload: Any, ctx) -> str | None:
    """Why ``payload`` is not the shop resource of this installation's store (None when it is)."""
    if not isinstance(payload, dict) or not any(key in payload for key in SHOP_KEYS):
        return "the body is not a shop"
    if NOT_SHOP_KEYS & payload.keys():
        return f"the body looks like another resource ({', '.join(sorted(NOT_SHOP_KEYS & payload.keys()))})"
    domain, shop = text(payload.get("myshopify_domain")).lower(), text(ctx.config.get("shop")).lower()
    if domain and shop and domain != shop:
        return f"the body is the shop {domain}, not {shop}"
    return None


def _pay_link(ctx, payload: Any, order_id: str, to: str, full: str | None, body: list, kind: str,
              after: int = 0) -> SendPaymentLink | None:
    """The pay-now offer (``paynow``) or the unpaid-order chase (``paychase``), when configured."""
    template, language = template_for(ctx, "pay_link")
    amount = decimal_amount(dig(payload, "total_outstanding")) or decimal_amount(dig(payload, "total_price"))
    currency = text(dig(payload, "currency"))
    if not template or not amount or amount <= 0 or len(currency) != 3:
        return None
    return SendPaymentLink(
        to=to, template=template, language=language, params=body, name=full, amount=str(amount),
        currency=currency.upper(), payment_reference=f"order:{order_id}", email=text(dig(payload, "email")) or None,
        description=f"Order {body[1]}", provider=ctx.config.get("payment_provider") or None,
        idempotency_key=_key(ctx, order_id, kind), cancel_key=_key(ctx, order_id, kind), after=after,
        group=_key(ctx, order_id, "unpaid"), reference={"order_id": order_id, "kind": kind, "attributable": True})


class Shopify(Connector):
    name = "shopify"
    title = "Shopify"
    config_schema = ShopifyConfig
    verify = HmacHeader("X-Shopify-Hmac-Sha256", key="webhook_secret", encoding="base64",
                        timestamp_header="X-Shopify-Triggered-At", max_age=REPLAY_WINDOW)
    # The HMAC covers the body only: the webhook id and topic headers can be rewritten by anyone
    # holding a captured delivery. Deduping on topic + body makes a captured body replayed under
    # a new X-Shopify-Webhook-Id a duplicate (a real retry carries the same body anyway).
    event_id = Fields(Header("X-Shopify-Topic"), BodyHash())
    topic = Header("X-Shopify-Topic")

    # -- abandoned checkouts -----------------------------------------------------------------
    @staticmethod
    def _cancel_checkout(ctx, token: Any = None, checkout_id: Any = None) -> list:
        token, checkout_id = _id(token), _id(checkout_id)
        known = (ctx.state.get("checkouts") or {}) if isinstance(ctx.state, dict) else {}
        values = {v for v in (token, checkout_id, known.get(checkout_id or "")) if v}
        return [CancelScheduled(f"shopify:{ctx.installation_id}:checkout:{v}{suffix}")
                for v in sorted(values) for suffix in ("", ":2")]

    @staticmethod
    def _remember(ctx, checkout_id: str | None, token: str | None) -> None:
        if not (checkout_id and token):
            return
        known = dict(ctx.state.get("checkouts") or {})
        if known.get(checkout_id) == token:
            return
        known[checkout_id] = token
        ctx.state = {**ctx.state, "checkouts": dict(list(known.items())[-KNOWN_CHECKOUTS:])}

    @on_webhook("checkouts/create", "checkouts/update")
    def checkout(self, payload, ctx):
        token, checkout_id = _id(dig(payload, "token")), _checkout_id(payload)
        if not (token or checkout_id):
            return [Skip("checkout without token or id")]
        if dig(payload, "completed_at"):
            return self._cancel_checkout(ctx, token, checkout_id)
        template, language = template_for(ctx, "abandoned_cart")
        if not template:
            return [Skip("abandoned-cart reminders are off")]
        to = _phone(ctx, payload)
        if not to:
            return []  # ctx.notes says why (no or invalid phone)
        consent = _consents(payload)
        if ctx.config.get("require_marketing_consent", True) and not consent:
            return [*self._cancel_checkout(ctx, token, checkout_id), Skip("no marketing consent")]
        url = text(dig(payload, "abandoned_checkout_url"))
        if not url:
            return [Skip("checkout has no abandoned_checkout_url")]
        self._remember(ctx, checkout_id, token)
        first, full = _name(payload)
        key = f"shopify:{ctx.installation_id}:checkout:{token or checkout_id}"
        reference = {"checkout_token": token or checkout_id, "kind": "recovery", "attributable": True}
        params = [first, _total(ctx, payload), url]
        actions = [UpsertContact(wa_id=to, name=full, marketing_consent=True if consent else None),
                   ScheduleSend(to=to, template=template, language=language, params=params, name=full,
                                after=int(ctx.config.get("abandoned_cart_delay_minutes") or 60) * 60,
                                cancel_key=key, reference=reference)]
        second, second_language = template_for(ctx, "second_reminder")
        if ctx.config.get("second_reminder_delay_minutes"):
            actions.append(ScheduleSend(
                to=to, template=second or template, language=second_language if second else language,
                params=params, name=full, after=int(ctx.config["second_reminder_delay_minutes"]) * 60,
                cancel_key=key + ":2", reference={**reference, "reminder": 2}))
        return actions

    @on_webhook("checkouts/delete")
    def checkout_deleted(self, payload, ctx):
        return self._cancel_checkout(ctx, dig(payload, "token"), dig(payload, "id")) or \
            [Skip("checkout without token or id")]

    # -- orders --------------------------------------------------------------------------------
    @on_webhook("orders/create")
    def order_created(self, payload, ctx):
        actions = self._cancel_checkout(ctx, dig(payload, "checkout_token"), dig(payload, "checkout_id"))
        order_id = _id(dig(payload, "id"))
        if not order_id:
            return [*actions, Skip("order without id")]
        if dig(payload, "cancelled_at"):
            return [*actions, Skip("order already cancelled")]
        to = _phone(ctx, payload)
        if not to:
            return actions
        first, full = _name(payload)
        order_name = text(dig(payload, "name")) or text(dig(payload, "order_number")) or order_id
        body = [first, order_name, _total(ctx, payload)]
        cod = is_cod(payload)
        offer = _pay_link(ctx, payload, order_id, to, full, body, "paynow") \
            if cod and ctx.config.get("pay_link_cod", True) else None
        if cod and ctx.config.get("cod_confirmation", True):
            template, language = template_for(ctx, "cod_confirmation")
            if template:
                params = {"body": body, "buttons": [
                    {"index": 0, "sub_type": "quick_reply", "params": [f"cod_confirm:{order_id}@{ctx.installation_id}"]},
                    {"index": 1, "sub_type": "quick_reply", "params": [f"cod_cancel:{order_id}@{ctx.installation_id}"]}]}
                confirm = dict(to=to, template=template, language=language, params=params, name=full,
                               idempotency_key=_key(ctx, order_id, "cod"),
                               reference={"order_id": order_id, "kind": "cod_confirmation"})
                if offer is None:
                    return [*actions, SendTemplate(**confirm)]
                # a buyer who pays by link is not asked to confirm cash on delivery: it waits
                delay = int(ctx.config.get("pay_link_cod_delay_minutes") or 0) * 60
                return [*actions, offer, ScheduleSend(**confirm, after=delay, cancel_key=_key(ctx, order_id, "cod"),
                                                      group=_key(ctx, order_id, "unpaid"))]
        template, language = template_for(ctx, "order_confirmation")
        if not template:
            return [*actions, *([offer] if offer else []), Skip("order confirmations are off")]
        actions.append(SendTemplate(to=to, template=template, language=language, params=body, name=full,
                                    idempotency_key=_key(ctx, order_id, "confirmation"),
                                    reference={"order_id": order_id, "kind": "confirmation"}))
        chase = ctx.config.get("pay_link_chase_minutes")
        if offer is None and chase and not cod and text(dig(payload, "financial_status")).lower() == "pending":
            offer = _pay_link(ctx, payload, order_id, to, full, body, "paychase", after=int(chase) * 60)
        return [*actions, *([offer] if offer else [])]

    @on_webhook("orders/paid")
    def order_paid(self, payload, ctx):
        order_id, amount = _id(dig(payload, "id")), decimal_amount(dig(payload, "total_price"))
        currency = text(dig(payload, "currency"))
        if not order_id or amount is None or not currency:
            return [Skip("paid order without id, total_price or currency")]
        actions = self._cancel_checkout(ctx, dig(payload, "checkout_token"), dig(payload, "checkout_id"))
        actions.append(CancelScheduled(group=_key(ctx, order_id, "unpaid")))  # paid otherwise: no chase
        to = _phone(ctx, payload)
        if to:
            actions.append(RecordRevenue(to=to, order_id=order_id, amount=str(amount), currency=currency.upper()))
        return actions

    @on_webhook("orders/cancelled")
    def order_cancelled(self, payload, ctx):
        order_id = _id(dig(payload, "id"))
        template, language = template_for(ctx, "cancelled")
        if not order_id:
            return [Skip("order without id")]
        # the topic is not signed: a live order's body is no cancellation
        unpaid = [CancelScheduled(group=_key(ctx, order_id, "unpaid"))] if dig(payload, "cancelled_at") else []
        if not template:
            return [*unpaid, Skip("cancellation notices are off")]  # a waiting chase is cancelled all the same
        if not unpaid:
            return [Skip("orders/cancelled whose order has no cancelled_at")]
        to = _phone(ctx, payload)
        if not to:
            return unpaid
        first, full = _name(payload)
        order_name = text(dig(payload, "name")) or order_id
        return [*unpaid, SendTemplate(to=to, template=template, language=language, params=[first, order_name],
                                      name=full, idempotency_key=_key(ctx, order_id, "cancelled"),
                                      reference={"order_id": order_id, "kind": "cancelled"})]

    @on_webhook("fulfillments/create", "fulfillments/update")
    def fulfillment(self, payload, ctx):
        order_id, fulfillment_id = _id(dig(payload, "order_id")), _id(dig(payload, "id"))
        template, language = template_for(ctx, "shipped")
        if not order_id or not template:
            return [Skip("fulfillment without order_id" if not order_id else "shipping updates are off")]
        if text(dig(payload, "status")).lower() in ("cancelled", "error", "failure"):
            return [Skip(f"fulfillment {text(dig(payload, 'status'))}")]
        number = text(dig(payload, "tracking_number")) or text(dig(payload, "tracking_numbers.0"))
        if not number:
            return [Skip("fulfillment has no tracking number yet")]
        to = ctx.phone(payload, "destination.phone", "phone", "shipping_address.phone",
                       country="destination.country_code")
        if not to:
            return []
        url = text(dig(payload, "tracking_url")) or text(dig(payload, "tracking_urls.0")) or "-"
        first, full = _name(payload)
        order_name = text(dig(payload, "name")).split(".")[0] or order_id  # "#9999.1" → "#9999"
        return [SendTemplate(to=to, template=template, language=language, params=[first, order_name, number, url],
                             name=full, idempotency_key=_key(ctx, order_id, f"shipped:{fulfillment_id or number}"),
                             reference={"order_id": order_id, "kind": "shipped"})]

    @on_webhook("app/uninstalled")
    def uninstalled(self, payload, ctx):
        problem = not_this_shop(payload, ctx)
        if problem:  # destructive: acted on only for a body that is this shop (the topic is not signed)
            return [Skip(f"app/uninstalled ignored: {problem}")]
        return [DisableInstallation("app uninstalled")]

    # -- a payment link this installation sent was paid (hub.core.paylinks) -------------------
    def on_payment(self, payment, ctx):
        order_id = paid_order(payment)
        if not order_id:
            return [Skip(f"payment for an unknown reference {payment.reference!r}")]
        amount = money_text(payment.amount, payment.currency, ctx.config.get("locale"))
        revenue = [RecordRevenue(to=payment.phone, order_id=order_id, amount=payment.amount,
                                 currency=payment.currency.upper())] if payment.phone else []
        return [CancelScheduled(group=_key(ctx, order_id, "unpaid")),  # the COD confirmation, the chase
                WriteBack(writeback.add_order_tag, order_id=order_id, tag="paid-by-link"),
                WriteBack(writeback.add_order_note, order_id=order_id, marker=f"{payment.provider} {payment.payment_id}",
                          note=f"Paid {amount} through a WhatsApp payment link ({payment.provider})."), *revenue]

    # -- COD replies (WhatsApp quick-reply buttons) ------------------------------------------
    @on_whatsapp("message.received", button="cod_confirm:")
    def cod_confirmed(self, event, ctx):
        order_id = order_in_reply(event, ctx)
        if not order_id:
            return [Skip(f"COD reply without an order id: {event.button!r}")]
        return [WriteBack(writeback.add_order_tag, order_id=order_id, tag="cod-confirmed")]

    @on_whatsapp("message.received", button="cod_cancel:")
    def cod_cancelled(self, event, ctx):
        order_id = order_in_reply(event, ctx)
        if not order_id:
            return [Skip(f"COD reply without an order id: {event.button!r}")]
        actions = [WriteBack(writeback.add_order_tag, order_id=order_id, tag="cod-cancelled")]
        if ctx.config.get("cod_cancel_order"):
            actions.append(WriteBack(writeback.cancel_order, order_id=order_id))
        return actions


@hookimpl
def coexhub_connectors():
    return [Shopify]
