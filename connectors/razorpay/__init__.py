"""Razorpay: payment receipts, failed-payment messages after a grace period, fresh links for expired
payment links, refund notices, and the payment links other connectors put in their messages.

Setup for sellers: ``docs/connectors/razorpay.md``. Amounts arrive in minor units (paise) with the
currency beside them. One payment can arrive as ``payment.captured``, ``order.paid`` and
``payment_link.paid``: the receipt's idempotency key is the payment id, so it is sent once.
Razorpay lets a buyer retry a failed card on the same order, so ``payment.failed`` only
*schedules* its message (``failure_grace_minutes``, cancel key per order) and a capture for that
order cancels it; captured orders are remembered in the installation's state so that a failure
delivered *after* the capture schedules nothing.
"""
from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, fields, validate

from connectors import attribution_field, money, money_text, names, template_fields, template_for, text
from connectors.razorpay import api
from hub.connector import (
    CancelScheduled,
    Connector,
    Header,
    IncomingRequest,
    JsonField,
    PaymentLink,
    PaymentReceived,
    RecordRevenue,
    Rejected,
    ScheduleSend,
    SendPaymentLink,
    SendTemplate,
    Skip,
    Verifier,
    dig,
    hookimpl,
    installed,
    on_webhook,
    secret,
)

NAME = "razorpay"
KNOWN_RENEWALS = 200  # expired links whose notes wait for their successor (created within seconds)
RENEWAL_PREFIX = "renewal:"  # payment_reference of an expired link's successor: renewal:<expired link id>
KNOWN_PAID = 1000  # captured order ids remembered per installation (a late payment.failed is then ignored)
MAX_GRACE = 24 * 60
PHONE_PATHS = ("payload.payment.entity.contact", "payload.payment_link.entity.customer.contact",
               "payload.payment.entity.notes.whatsapp", "payload.payment.entity.notes.phone",
               "payload.payment_link.entity.notes.whatsapp", "payload.payment_link.entity.notes.phone",
               "payload.order.entity.notes.whatsapp", "payload.order.entity.notes.phone",
               "payload.refund.entity.notes.whatsapp", "payload.refund.entity.notes.phone")

RazorpayConfig = Schema.from_dict({
    "webhook_secret": secret(fields.String(required=True, metadata={
        "description": "the Secret you type when creating the webhook (Dashboard → Account & Settings → Webhooks)"})),
    "key_id": secret(fields.String(load_default=None, allow_none=True, metadata={
        "description": "API key id (rzp_live_…): needed for fresh links and pay-by-link"})),
    "key_secret": secret(fields.String(load_default=None, allow_none=True, metadata={
        "description": "API key secret, shown once when the key is generated"})),
    "api_base": fields.String(load_default=None, allow_none=True, metadata={
        "description": "override of https://api.razorpay.com (tests, a proxy)"}),
    "default_country": fields.String(load_default="IN", metadata={
        "description": "for numbers without +code (Razorpay often sends 10 bare Indian digits)"}),
    "locale": fields.String(load_default="en_IN", metadata={"description": "how amounts are written (Babel locale)"}),
    "language": fields.String(load_default="en_US", metadata={"description": "default template language"}),
    **template_fields("receipt", "payment_receipt", "{{1}} name, {{2}} amount, {{3}} order/receipt reference"),
    **template_fields("payment_failed", "payment_failed", "{{1}} name, {{2}} amount, {{3}} order/receipt reference"),
    **template_fields("link_reminder", "payment_link_reminder", "{{1}} name, {{2}} amount, {{3}} fresh payment link"),
    **template_fields("refund", "refund_processed", "{{1}} name, {{2}} refunded amount, {{3}} order/receipt reference"),
    "failure_grace_minutes": fields.Integer(load_default=10, validate=validate.Range(0, MAX_GRACE), metadata={
        "description": "wait this long before telling a buyer a payment failed (a retry may succeed)"}),
    "link_expiry_minutes": fields.Integer(load_default=1440, validate=validate.Range(16, 180 * 24 * 60), metadata={
        "description": "how long the links the hub creates stay payable"}),
    "connection_id": fields.String(load_default=None, allow_none=True),
    "attribution_window_days": attribution_field("a payment"),
}, name="RazorpayConfig")


class RazorpaySignature(Verifier):
    """``X-Razorpay-Signature``: hex HMAC-SHA256 of the raw body, checked with
    ``razorpay.Utility.verify_webhook_signature`` (which wants ``str``; a body that is not UTF-8
    cannot be Razorpay's)."""
    header = "X-Razorpay-Signature"
    key = "webhook_secret"

    def verify(self, request: IncomingRequest, secrets) -> bool:
        import razorpay

        secret_, given = secrets.get(self.key), request.header(self.header)
        if not secret_ or not given:
            return False
        try:
            body = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected("the body is not UTF-8") from None
        try:
            return bool(razorpay.Utility(None).verify_webhook_signature(body, given.strip(), str(secret_)))
        except razorpay.errors.SignatureVerificationError:
            return False

    def sign(self, body: bytes, secrets, **options) -> dict[str, str]:
        import hashlib
        import hmac

        return {self.header: hmac.new(str(secrets[self.key]).encode(), body, hashlib.sha256).hexdigest()}


# -- payload helpers (every field optional, any type) ----------------------------------------
def _entity(payload: Any, kind: str) -> dict:
    value = dig(payload, f"payload.{kind}.entity")
    return value if isinstance(value, dict) else {}


def _notes(*entities: dict) -> dict:
    """Merged ``notes`` of the entities (Razorpay sends ``{}``, ``[]`` or null for none)."""
    merged: dict = {}
    for entity in reversed(entities):
        notes = entity.get("notes")
        if isinstance(notes, dict):
            merged.update({k: v for k, v in notes.items() if isinstance(k, str)})
    return merged


def order_key(value: Any) -> str | None:
    """``order_X``; ``payment_link.paid`` sometimes sends the order entity's id without the prefix."""
    value = text(value)
    if not value:
        return None
    return value if value.startswith("order_") else f"order_{value}"


def _currency(*entities: dict) -> str:
    for entity in entities:
        code = text(entity.get("currency")).upper()
        if len(code) == 3 and code.isalpha():
            return code
    return "INR"  # Razorpay's default; the field is sometimes blank


def _amount(ctx, minor: Any, currency: str) -> tuple[str | None, str]:
    """(decimal string in the major unit or None, display text) for an amount in minor units."""
    major = api.to_major(minor, currency)
    if major is None:
        return None, "-"
    return str(major), money_text(major, currency, ctx.config.get("locale"))


def _name(payload: Any, notes: dict) -> tuple[str, str | None]:
    full = text(dig(payload, "payload.payment_link.entity.customer.name")) or text(notes.get("name")) \
        or text(notes.get("customer_name"))
    return names(full)


def _reference(payload: Any, order_id: str | None, payment_id: str | None) -> str:
    """What the buyer knows the purchase by: the merchant's receipt, the link's reference, else ids.
    For a link the hub created, its description (the asking connector's, e.g. "Order #1001"): its
    ``reference_id`` may be a hash."""
    link = _entity(payload, "payment_link")
    if _notes(link).get(api.REFERENCE_NOTE) and text(link.get("description")):
        return text(link.get("description"))
    return (text(dig(payload, "payload.order.entity.receipt"))
            or text(link.get("reference_id")) or order_id or payment_id or "-")


def _paid_by_link(payment: dict, order: dict) -> bool:
    """Whether a ``payment.captured`` / ``order.paid`` belongs to a Payment Link: its order's
    ``product_type`` is ``payment_link…``, or the payment's description is ``#<link id without
    plink_>`` (both as in Razorpay's published ``payment_link.paid`` samples)."""
    if text(order.get("product_type")).startswith("payment_link"):
        return True
    return re.fullmatch(r"#[A-Za-z0-9]{14}", text(payment.get("description"))) is not None


def _key(ctx, *parts: str) -> str:
    return ":".join(["rzp", str(ctx.installation_id), *parts])


def _failure_key(ctx, order_id: str | None, payment_id: str | None) -> str:
    return (_key(ctx, "order", order_id) if order_id else _key(ctx, "payment", payment_id or "-")) + ":failed"


class Razorpay(Connector):
    name = NAME
    title = "Razorpay"
    config_schema = RazorpayConfig
    verify = RazorpaySignature()
    # Razorpay's body has no event id; the header has it and is the same on every retry. Without
    # the header the core falls back to a hash of the body (an identical redelivery). The header
    # is not signed: a captured body replayed under a new id is processed again, and every send
    # has an idempotency key per payment/refund/link, so it still sends nothing twice.
    event_id = Header("X-Razorpay-Event-Id")
    topic = JsonField("event")

    # -- money in ---------------------------------------------------------------------------
    @on_webhook("payment.captured", "order.paid", "payment_link.paid")
    def paid(self, payload, ctx):
        payment, order, link = (_entity(payload, k) for k in ("payment", "order", "payment_link"))
        payment_id = text(payment.get("id")) or None
        order_id = order_key(payment.get("order_id")) or order_key(order.get("id")) or order_key(link.get("order_id"))
        if not (payment_id or order_id):
            return [Skip("payment without id or order id")]
        if payment and text(payment.get("status")).lower() not in ("captured", ""):
            return [Skip(f"payment is {text(payment.get('status'))}, not captured")]
        actions: list = []
        if order_id:  # a buyer who paid on a retry is not told the first attempt failed
            actions.append(CancelScheduled(_failure_key(ctx, order_id, None)))
            self._remember_paid(ctx, order_id)
        notes = _notes(payment, link, order)
        currency = _currency(payment, link, order)
        minor = payment.get("amount") if payment else (link.get("amount_paid") or order.get("amount_paid"))
        major, shown = _amount(ctx, minor, currency)
        hub_reference = text(notes.get(api.REFERENCE_NOTE))
        if hub_reference and link and major is not None:
            actions.append(PaymentReceived(reference=hub_reference, amount=major, currency=currency,
                                           provider=NAME, payment_id=payment_id or text(link.get("id"))))
        to = ctx.phone(payload, *PHONE_PATHS)
        if not to:
            return actions  # ctx.notes says why
        # a hub link's order is credited by the connector that asked for it; any link's payment is
        # credited from payment_link.paid, the one event that says which link (and whose) it was
        if major is not None and not hub_reference and (link or not _paid_by_link(payment, order)):
            actions.append(RecordRevenue(to=to, order_id=order_id or payment_id, amount=major, currency=currency))
        template, language = template_for(ctx, "receipt")
        if not template:
            return [*actions, Skip("receipts are off")]
        if not link and _paid_by_link(payment, order):  # only payment_link.paid says which link (its label)
            return [*actions, Skip("a payment link's payment: its receipt goes out with payment_link.paid")]
        first, full = _name(payload, notes)
        actions.append(SendTemplate(
            to=to, template=template, language=language, name=full,
            params=[first, shown, _reference(payload, order_id, payment_id)],
            idempotency_key=_key(ctx, "payment", payment_id) + ":receipt" if payment_id
            else _key(ctx, "order", order_id) + ":receipt",
            reference={"order_id": order_id, "payment_id": payment_id, "kind": "receipt"}))
        return actions

    @staticmethod
    def _remember_paid(ctx, order_id: str) -> None:
        paid = [o for o in (ctx.state.get("paid_orders") or []) if isinstance(o, str)]
        if order_id in paid:
            return
        ctx.state = {**ctx.state, "paid_orders": [*paid, order_id][-KNOWN_PAID:]}

    @on_webhook("payment.failed")
    def failed(self, payload, ctx):
        payment = _entity(payload, "payment")
        payment_id, order_id = text(payment.get("id")) or None, order_key(payment.get("order_id"))
        if not (payment_id or order_id):
            return [Skip("failed payment without id or order id")]
        if order_id and order_id in (ctx.state.get("paid_orders") or []):
            return [Skip(f"order {order_id} was paid already (this failure came before the capture)")]
        template, language = template_for(ctx, "payment_failed")
        if not template:
            return [Skip("failed-payment messages are off")]
        to = ctx.phone(payload, *PHONE_PATHS)
        if not to:
            return []
        currency = _currency(payment)
        _, shown = _amount(ctx, payment.get("amount"), currency)
        first, full = _name(payload, _notes(payment))
        grace = int(ctx.config.get("failure_grace_minutes", 10) or 0)
        key = _failure_key(ctx, order_id, payment_id)
        # one cancel key per order: a second failed attempt moves the message, never doubles it
        return [ScheduleSend(to=to, template=template, language=language, name=full, after=grace * 60,
                             params=[first, shown, _reference(payload, order_id, payment_id)],
                             cancel_key=key, group=key.removesuffix(":failed"),
                             reference={"order_id": order_id, "payment_id": payment_id, "kind": "payment_failed",
                                        "reason": text(payment.get("error_reason")) or None})]

    # -- links ------------------------------------------------------------------------------
    @on_webhook("payment_link.expired")
    def link_expired(self, payload, ctx):
        link = _entity(payload, "payment_link")
        link_id = text(link.get("id"))
        if not link_id:
            return [Skip("expired payment link without id")]
        notes = _notes(link)
        if notes.get(api.RENEWAL_NOTE):
            return [Skip("a renewed link expired too: one reminder per purchase")]
        template, language = template_for(ctx, "link_reminder")
        if not template:
            return [Skip("expired-link reminders are off")]
        if not (ctx.config.get("key_id") and ctx.config.get("key_secret")):
            return [Skip("no API key (key_id/key_secret): a fresh link cannot be created")]
        currency = _currency(link)
        remaining = api.to_major(link.get("amount"), currency)
        paid = api.to_major(link.get("amount_paid") or 0, currency) or 0
        if remaining is None or remaining - paid <= 0:
            return [Skip("expired link without an amount left to pay")]
        remaining -= paid
        to = ctx.phone(payload, *PHONE_PATHS)
        if not to:
            return []
        first, full = _name(payload, notes)
        customer = link.get("customer") if isinstance(link.get("customer"), dict) else {}
        # the fresh link is the hub's pay-by-link (hub.core.paylinks), asked of this installation;
        # the hook knows a renewal by its reference and gives it the expired link's notes, kept here
        self._remember_renewal(ctx, link_id, {k: str(v) for k, v in notes.items() if isinstance(v, (str, int, float))})
        return [SendPaymentLink(to=to, template=template, language=language, name=full,
                                params=[first, money(remaining, currency, ctx.config.get("locale")) or str(remaining)],
                                amount=str(remaining), currency=currency, provider=NAME,
                                payment_reference=RENEWAL_PREFIX + link_id,
                                description=text(link.get("description"), "Payment"),
                                email=text(customer.get("email")) or None,
                                idempotency_key=_key(ctx, "link", link_id) + ":reminder",
                                reference={"expired_link_id": link_id, "kind": "link_reminder", "attributable": True})]

    @staticmethod
    def _remember_renewal(ctx, link_id: str, notes: dict[str, str]) -> None:
        kept = {k: v for k, v in (ctx.state.get("renewal_notes") or {}).items() if k != link_id}
        ctx.state = {**ctx.state, "renewal_notes": dict([*kept.items(), (link_id, notes)][-KNOWN_RENEWALS:])}

    # -- money out --------------------------------------------------------------------------
    @on_webhook("refund.processed")
    def refunded(self, payload, ctx):
        refund, payment = _entity(payload, "refund"), _entity(payload, "payment")
        refund_id = text(refund.get("id"))
        if not refund_id:
            return [Skip("refund without id")]
        template, language = template_for(ctx, "refund")
        if not template:
            return [Skip("refund notices are off")]
        to = ctx.phone(payload, *PHONE_PATHS)
        if not to:
            return []
        currency = _currency(refund, payment)
        _, shown = _amount(ctx, refund.get("amount"), currency)
        payment_id = text(refund.get("payment_id")) or text(payment.get("id")) or None
        order_id = order_key(payment.get("order_id"))
        first, full = _name(payload, _notes(refund, payment))
        return [SendTemplate(to=to, template=template, language=language, name=full,
                             params=[first, shown, _reference(payload, order_id, payment_id)],
                             idempotency_key=_key(ctx, "refund", refund_id),
                             reference={"order_id": order_id, "payment_id": payment_id, "refund_id": refund_id,
                                        "kind": "refund"})]


# -- the pay-by-link contract (coexhub_payment_link) -------------------------------------------
def payment_link(workspace_id: str, amount: str, currency: str, reference: str, customer: dict | None,
                 description: str = "", provider: str | None = None) -> PaymentLink | None:
    """A Razorpay payment link for ``amount`` (major unit) carrying ``reference`` in its notes (and,
    up to 40 characters, as its ``reference_id``); None when the workspace has no enabled Razorpay
    installation with an API key, or ``provider`` names another connector."""
    if provider and provider != NAME:
        return None
    installation_id, _, key = (reference or "").partition(":")
    renewal = key.removeprefix(RENEWAL_PREFIX) if key.startswith(RENEWAL_PREFIX) else None
    ctx = next((c for c in installed(workspace_id, NAME) if c.config.get("key_id") and c.config.get("key_secret")
                and (renewal is None or c.installation_id == installation_id)), None)
    if ctx is None:
        return None
    if not reference or len(reference) > api.NOTE_MAX:
        raise ValueError(f"a payment reference of 1 to {api.NOTE_MAX} characters is required")
    currency = (currency or "INR").upper()
    customer = customer or {}
    phone = text(customer.get("phone"))
    if renewal:  # an expired link's successor: its own reference_id and the expired link's notes
        ref_id = api.reference_id(f"{renewal}:renewal")
        notes = {**((ctx.state.get("renewal_notes") or {}).get(renewal) or {}), api.RENEWAL_NOTE: renewal}
    else:
        ref_id, notes = api.reference_id(reference), {api.REFERENCE_NOTE: reference, "whatsapp": phone.lstrip("+") or None}
    link = api.create_link(
        ctx, amount_minor=api.to_minor(amount, currency), currency=currency, ref_id=ref_id,
        description=description or f"Payment {reference}"[:2048],
        customer={"name": text(customer.get("name")) or None, "email": text(customer.get("email")) or None,
                  "contact": ("+" + phone.lstrip("+")) if phone else None},
        notes=notes, expire_minutes=int(ctx.config.get("link_expiry_minutes") or 1440))
    if link.get("status") not in api.PAYABLE and renewal:
        from hub.core.paylinks import Refused  # final: the row fails with the reason, nothing is sent

        raise Refused(f"the renewed payment link {link.get('id')} is {link.get('status')}: no reminder")
    if link.get("status") not in api.PAYABLE:
        # paid already (its payment_link.paid is on its way and will cancel this message): an error,
        # retried with backoff, never None — None would let another payment connector take the ask
        # and the buyer be asked to pay twice
        raise api.RazorpayApiError(f"the payment link {link.get('id')} for this reference is {link.get('status')}: "
                                   "no new link (the payment's webhook cancels this message)")
    return PaymentLink(url=link["short_url"], provider=NAME, link_id=link["id"])


@hookimpl
def coexhub_payment_link(workspace_id, amount, currency, reference, customer, description, provider):
    return payment_link(workspace_id, amount, currency, reference, customer, description, provider)


@hookimpl
def coexhub_connectors():
    return [Razorpay]
