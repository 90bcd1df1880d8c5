"""Stripe: receipts, failed-payment retries, Checkout recovery, refund notices, payment links.

Setup for sellers: ``docs/connectors/stripe.md``. The webhook body is a Stripe Event; handlers
read ``data.object``. The buyer's number comes from the object (``customer_details.phone``…),
then from the Customer object — fetched once in a ``WriteBack`` job (``api.lookup_customer``)
that stores the event again with the number, so handlers stay pure — then from
``metadata.whatsapp`` / ``metadata.phone``. Amounts are minor units (``amounts``).
"""
from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from connectors import attribution_field, money, names, template_fields, template_for, text
from connectors.stripe import api
from connectors.stripe.amounts import from_minor
from connectors.stripe.verify import StripeSignature
from hub.connector import (CancelScheduled, Connector, JsonField, PaymentReceived, RecordRevenue, ScheduleSend,
                           SendPaymentLink, SendTemplate, Skip, UpsertContact, WriteBack, dig, hookimpl, installed,
                           on_webhook, secret)

KNOWN_CUSTOMERS = 500  # Customer id → phone pairs remembered, so a Customer is fetched once
DIRECT_PHONES = ("customer_details.phone", "customer_phone", "billing_details.phone", "shipping.phone",
                 "shipping_details.phone")
METADATA_PHONES = ("metadata.whatsapp", "metadata.phone")
COUNTRIES = ("customer_details.address.country", "billing_details.address.country", "customer_address.country",
             "shipping.address.country", "shipping_details.address.country")
MAX_DELAY_MINUTES = 30 * 24 * 60

StripeConfig = Schema.from_dict({
    "webhook_secret": secret(fields.String(required=True, metadata={
        "description": "the endpoint's signing secret (whsec_…), Developers → Webhooks → the endpoint"})),
    "api_key": secret(fields.String(load_default=None, allow_none=True, metadata={
        "description": "restricted key (rk_…): Customers read, Checkout Sessions write — for the Customer "
                       "phone lookup and payment links; empty: neither"})),
    "account": fields.String(load_default=None, allow_none=True, metadata={
        "description": "a Connect account id (acct_…) whose events this installation handles; empty: the "
                       "platform's own events only"}),
    "api_base": fields.String(load_default=None, allow_none=True, metadata={
        "description": "override of https://api.stripe.com (tests, proxies)"}),
    "default_country": fields.String(load_default="US", metadata={"description": "for numbers typed without +code"}),
    "locale": fields.String(load_default="en_US", metadata={"description": "how amounts are written (Babel locale)"}),
    "language": fields.String(load_default="en_US", metadata={"description": "default template language"}),
    **template_fields("receipt", "payment_receipt", "utility: {{1}} name, {{2}} amount, {{3}} reference"),
    **template_fields("payment_failed", "payment_failed", "utility: {{1}} name, {{2}} amount, {{3}} retry link"),
    **template_fields("recovery", "checkout_recovery", "marketing: {{1}} name, {{2}} amount, {{3}} checkout link"),
    **template_fields("refund", "refund_notice", "utility: {{1}} name, {{2}} refunded amount, {{3}} reference"),
    "recovery_enabled": fields.Boolean(load_default=True, metadata={
        "description": "remind buyers of expired Checkout Sessions (needs Stripe's recovery URL)"}),
    "recovery_delay_minutes": fields.Integer(load_default=60, validate=validate.Range(0, MAX_DELAY_MINUTES),
                                             metadata={"description": "minutes after expiry; 0 to 30 days"}),
    "require_marketing_consent": fields.Boolean(load_default=True, metadata={
        "description": "send recovery (marketing) only when Checkout collected promotional consent"}),
    "payment_failed_delay_minutes": fields.Integer(load_default=10, validate=validate.Range(0, 24 * 60), metadata={
        "description": "grace before a failed PaymentIntent is reported (cancelled if it then succeeds)"}),
    "retry_url": fields.String(load_default=None, allow_none=True, metadata={
        "description": "where buyers retry a failed payment (else metadata.retry_url of the PaymentIntent)"}),
    "payment_failed_fresh_link": fields.Boolean(load_default=False, metadata={
        "description": "with no retry URL, send a new Stripe payment link right away (for PaymentIntents "
                       "charged off-session, where no checkout page is open)"}),
    "link_success_url": fields.String(load_default=None, allow_none=True, metadata={
        "description": "where payment-link buyers land after paying; empty: Stripe's page"}),
    "link_expires_hours": fields.Integer(load_default=24, validate=validate.Range(1, 24), metadata={
        "description": "payment links (Checkout Sessions) expire after 1-24 hours"}),
    "attribution_window_days": attribution_field("a payment"),
}, name="StripeConfig")


# -- payload helpers (every field optional, any type) ----------------------------------------
def _obj(payload: Any) -> dict:
    obj = dig(payload, "data.object")
    return obj if isinstance(obj, dict) else {}


def _id(value: Any) -> str | None:
    """An id, or the id of an expanded object (``customer`` may be ``"cus_…"`` or ``{"id": …}``)."""
    return text(value.get("id") if isinstance(value, dict) else value) or None


def _amount(ctx, obj: dict, field: str) -> tuple[str | None, str | None, str]:
    """(major-unit decimal string, upper-case currency, display text) of ``obj[field]``."""
    currency = text(obj.get("currency")).upper()
    value = from_minor(obj.get(field), currency)
    if value is None:
        return None, currency or None, "-"
    return str(value), currency, money(value, currency, obj.get("locale") or ctx.config.get("locale")) or str(value)


def _name(obj: dict, payload: Any) -> tuple[str, str | None]:
    full = text(dig(obj, "customer_details.name")) or text(obj.get("customer_name")) or \
        text(dig(obj, "billing_details.name")) or text(dig(obj, "shipping.name")) or \
        text(dig(payload, "coexhub_customer.name"))
    return names(full)


def _key(ctx, *parts: Any) -> str:
    return ":".join(["stripe", str(ctx.installation_id), *map(str, parts)])


def _recovery_groups(ctx, customer: str | None, email: str | None) -> list[str]:
    return [_key(ctx, "recovery", kind, value) for kind, value in (("customer", customer), ("email", email)) if value]


def _email(obj: dict) -> str | None:
    email = text(dig(obj, "customer_details.email")) or text(obj.get("customer_email")) or \
        text(obj.get("receipt_email")) or text(dig(obj, "billing_details.email"))
    return email.lower() or None


class Stripe(Connector):
    name = "stripe"
    title = "Stripe"
    config_schema = StripeConfig
    verify = StripeSignature(key="webhook_secret", tolerance=300)
    event_id = JsonField("id")  # evt_…: retries (for up to 3 days) carry the same id
    topic = JsonField("type")

    def handle_webhook(self, topic, payload, ctx):
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            return [Skip("not a Stripe event (no data.object)")]
        wanted, got = text(ctx.config.get("account")) or None, text(payload.get("account")) or None
        if wanted != got:  # Connect: an endpoint may receive every connected account's events
            return [Skip(f"event for {'account ' + got if got else 'the platform account'}; this installation "
                         f"handles {'account ' + wanted if wanted else 'the platform account only'}")]
        return super().handle_webhook(topic, payload, ctx)

    # -- the buyer's number --------------------------------------------------------------------
    def _phone(self, ctx, payload: dict, obj: dict) -> tuple[str | None, list]:
        """(WhatsApp number or None, actions): ``actions`` is a Customer lookup when the number must
        come from the Customer object first (the handler then stops; the event comes back with it)."""
        country = next((dig(obj, p) for p in COUNTRIES if isinstance(dig(obj, p), str)), None)
        to = ctx.phone(obj, *DIRECT_PHONES, country=country) if any(dig(obj, p) for p in DIRECT_PHONES) else None
        if to:
            return to, []
        customer = _id(obj.get("customer"))
        known = ctx.state.get("customers") if isinstance(ctx.state.get("customers"), dict) else {}
        looked_up = payload.get("coexhub_customer") if isinstance(payload.get("coexhub_customer"), dict) else None
        if looked_up is not None and _id(looked_up.get("id")) == customer:
            phone = text(looked_up.get("phone")) or None
            if looked_up.get("error"):  # not remembered: the next event tries again (a key fixed meanwhile)
                ctx.notes.append(text(looked_up["error"]))
            else:
                known = {k: v for k, v in known.items() if k != customer}
                ctx.state = {**ctx.state, "customers": dict(list({**known, customer: phone}.items())[-KNOWN_CUSTOMERS:])}
            to = ctx.phone(looked_up, "phone", country=text(looked_up.get("country")) or country) if phone else None
        elif customer and customer in known:
            to = ctx.phone({"phone": known[customer]}, "phone", country=country) if known[customer] else None
        elif customer and ctx.config.get("api_key") and customer.startswith("cus_"):
            return None, [WriteBack(api.lookup_customer, customer=customer, event=payload)]
        if to:
            return to, []
        if any(dig(obj, p) for p in METADATA_PHONES):
            ctx.notes.clear()
            return ctx.phone(obj, *METADATA_PHONES, country=country), []
        if not {"no phone number", "invalid phone number"} & set(ctx.notes):
            ctx.notes.append("no phone number")
        return None, []

    # -- payments ------------------------------------------------------------------------------
    def _receipt(self, ctx, payload: dict, obj: dict, payment_id: str, amount_field: str,
                 reference: str, revenue: bool = True) -> list:
        """Receipt for one payment (idempotency key per PaymentIntent). ``revenue`` False for a
        hub payment link's payment: the store that asked for the link credits its order."""
        amount, currency, shown = _amount(ctx, obj, amount_field)
        to, lookup = self._phone(ctx, payload, obj)
        if lookup:
            return lookup
        if not to:
            return []
        first, full = _name(obj, payload)
        actions: list = [UpsertContact(wa_id=to, name=full),
                         CancelScheduled(cancel_key=_key(ctx, "failed", payment_id))]
        if amount is not None and revenue:
            actions.append(RecordRevenue(to=to, order_id=payment_id, amount=amount, currency=currency))
        template, language = template_for(ctx, "receipt")
        if not template:
            return [*actions, Skip("receipts are off")]
        return [*actions, SendTemplate(to=to, template=template, language=language, params=[first, shown, reference],
                                       name=full, idempotency_key=_key(ctx, "receipt", payment_id),
                                       reference={"payment_id": payment_id, "kind": "receipt"})]

    @on_webhook("checkout.session.completed", "checkout.session.async_payment_succeeded")
    def checkout_completed(self, payload, ctx):
        obj = _obj(payload)
        session_id = _id(obj.get("id"))
        if not session_id:
            return [Skip("checkout session without id")]
        actions: list = [CancelScheduled(group=g)
                         for g in _recovery_groups(ctx, _id(obj.get("customer")), _email(obj))]
        if text(obj.get("payment_status")) != "paid":
            return [*actions, Skip(f"checkout session {session_id} is {text(obj.get('payment_status'), 'not paid')}"
                                   " (an async payment's result follows)")]
        payment_id = _id(obj.get("payment_intent")) or session_id  # pi_…: the same key as payment_intent.succeeded
        reference = text(dig(obj, f"metadata.{api.REFERENCE_KEY}"))
        if reference and "coexhub_customer" not in payload:  # once: not again on the Customer-lookup pass
            amount, currency, _ = _amount(ctx, obj, "amount_total")
            actions.append(PaymentReceived(reference=reference, amount=amount or "0", currency=currency or "",
                                           provider="stripe", payment_id=payment_id))
        if text(obj.get("mode")) == "subscription" and not _id(obj.get("payment_intent")):
            # the first invoice's PaymentIntent (payment_intent.succeeded) is the payment: one receipt, from there
            return [*actions, Skip(f"subscription checkout {session_id}: the receipt follows with the first "
                                   "invoice's payment_intent.succeeded")]
        label = text(dig(obj, f"metadata.{api.LABEL_KEY}")) or text(obj.get("client_reference_id")) or \
            reference or session_id
        return [*actions, *self._receipt(ctx, payload, obj, payment_id, "amount_total", label, revenue=not reference)]

    @on_webhook("payment_intent.succeeded")
    def payment_succeeded(self, payload, ctx):
        obj = _obj(payload)
        payment_id = _id(obj.get("id"))
        if not payment_id:
            return [Skip("payment intent without id")]
        field = "amount_received" if isinstance(obj.get("amount_received"), int) and obj["amount_received"] else "amount"
        reference = text(dig(obj, f"metadata.{api.REFERENCE_KEY}"))
        label = text(obj.get("description")) or text(dig(obj, f"metadata.{api.LABEL_KEY}")) or reference or payment_id
        return self._receipt(ctx, payload, obj, payment_id, field, label, revenue=not reference)

    @on_webhook("payment_intent.payment_failed")
    def payment_failed(self, payload, ctx):
        obj = _obj(payload)
        payment_id = _id(obj.get("id"))
        template, language = template_for(ctx, "payment_failed")
        if not payment_id or not template:
            return [Skip("payment intent without id" if not payment_id else "failed-payment messages are off")]
        url = text(dig(obj, "metadata.retry_url")) or text(ctx.config.get("retry_url"))
        fresh = not url and ctx.config.get("payment_failed_fresh_link")
        if not (url or fresh):
            return [Skip("no retry link: set retry_url in the installation or metadata.retry_url on the "
                         "PaymentIntent, or turn on payment_failed_fresh_link")]
        to, lookup = self._phone(ctx, payload, obj)
        if lookup or not to:
            return lookup
        first, full = _name(obj, payload)
        amount, currency, shown = _amount(ctx, obj, "amount")
        if fresh:  # a new Checkout Session through coexhub_payment_link; its URL becomes the last parameter
            if amount is None:
                return [Skip(f"payment intent {payment_id} has no amount/currency for a new link")]
            return [SendPaymentLink(
                to=to, template=template, language=language, params=[first, shown], name=full,
                idempotency_key=_key(ctx, "failed", payment_id), amount=amount, currency=currency,
                payment_reference=text(dig(obj, f"metadata.{api.REFERENCE_KEY}")) or f"stripe:{payment_id}",
                description=text(obj.get("description")), provider="stripe",
                reference={"payment_id": payment_id, "kind": "payment_failed"})]
        # Checkout and Elements retry on the page: a decline followed by success within the grace
        # period cancels this (payment_intent.succeeded / checkout.session.completed).
        return [ScheduleSend(to=to, template=template, language=language, params=[first, shown, url], name=full,
                             after=int(ctx.config.get("payment_failed_delay_minutes") or 0) * 60,
                             cancel_key=_key(ctx, "failed", payment_id),
                             reference={"payment_id": payment_id, "kind": "payment_failed"})]

    @on_webhook("invoice.payment_failed")
    def invoice_failed(self, payload, ctx):
        obj = _obj(payload)
        invoice_id = _id(obj.get("id"))
        template, language = template_for(ctx, "payment_failed")
        if not invoice_id or not template:
            return [Skip("invoice without id" if not invoice_id else "failed-payment messages are off")]
        url = text(obj.get("hosted_invoice_url"))
        if not url:
            return [Skip(f"invoice {invoice_id} has no hosted_invoice_url (a draft?)")]
        to, lookup = self._phone(ctx, payload, obj)
        if lookup or not to:
            return lookup
        first, full = _name(obj, payload)
        _, _, shown = _amount(ctx, obj, "amount_remaining" if obj.get("amount_remaining") else "amount_due")
        attempt = obj.get("attempt_count") if isinstance(obj.get("attempt_count"), int) else 0
        return [SendTemplate(to=to, template=template, language=language, params=[first, shown, url], name=full,
                             idempotency_key=_key(ctx, "invoice_failed", invoice_id, attempt),
                             reference={"invoice_id": invoice_id, "kind": "payment_failed"})]

    # -- recovery --------------------------------------------------------------------------------
    @on_webhook("checkout.session.expired")
    def checkout_expired(self, payload, ctx):
        obj = _obj(payload)
        session_id = _id(obj.get("id"))
        template, language = template_for(ctx, "recovery")
        if not session_id:
            return [Skip("checkout session without id")]
        if not (template and ctx.config.get("recovery_enabled", True)):
            return [Skip("checkout recovery is off")]
        url = text(dig(obj, "after_expiration.recovery.url"))
        if not url:
            return [Skip("expired session has no recovery URL (enable after_expiration.recovery on the session)")]
        if ctx.config.get("require_marketing_consent", True) and text(dig(obj, "consent.promotions")) != "opt_in":
            return [Skip("no promotional consent (consent.promotions is not opt_in)")]
        to, lookup = self._phone(ctx, payload, obj)
        if lookup or not to:
            return lookup
        groups = _recovery_groups(ctx, _id(obj.get("customer")), _email(obj))
        first, full = _name(obj, payload)
        _, _, shown = _amount(ctx, obj, "amount_total")
        send = ScheduleSend(to=to, template=template, language=language, params=[first, shown, url], name=full,
                            after=int(ctx.config.get("recovery_delay_minutes") or 0) * 60,
                            cancel_key=_key(ctx, "recovery", session_id), group=groups[0] if groups else None,
                            reference={"checkout_session": session_id, "kind": "recovery", "attributable": True})
        # one pending reminder per buyer: an earlier expired session's reminder gives way to this one
        return [*(CancelScheduled(group=g) for g in groups), UpsertContact(wa_id=to, name=full,
                marketing_consent=True if text(dig(obj, "consent.promotions")) == "opt_in" else None), send]

    # -- refunds ---------------------------------------------------------------------------------
    @on_webhook("charge.refunded")
    def refunded(self, payload, ctx):
        obj = _obj(payload)
        charge_id = _id(obj.get("id"))
        template, language = template_for(ctx, "refund")
        if not charge_id or not template:
            return [Skip("charge without id" if not charge_id else "refund notices are off")]
        amount, _, shown = _amount(ctx, obj, "amount_refunded")
        if amount is None or obj.get("amount_refunded", 0) <= 0:
            return [Skip(f"charge {charge_id} has no amount_refunded")]
        to, lookup = self._phone(ctx, payload, obj)
        if lookup or not to:
            return lookup
        first, full = _name(obj, payload)
        label = text(obj.get("description")) or text(obj.get("receipt_number")) or \
            _id(obj.get("payment_intent")) or charge_id
        return [SendTemplate(to=to, template=template, language=language, params=[first, shown, label], name=full,
                             idempotency_key=_key(ctx, "refund", charge_id, obj["amount_refunded"]),
                             reference={"charge_id": charge_id, "kind": "refund"})]


@hookimpl
def coexhub_connectors():
    return [Stripe]


@hookimpl
def coexhub_payment_link(workspace_id, amount, currency, reference, customer, description, provider):
    """A Checkout Session from the workspace's first enabled Stripe installation with an API key;
    None when there is none or ``provider`` names another payment connector."""
    if provider not in (None, "", "stripe"):
        return None
    for ctx in installed(workspace_id, "stripe"):
        if ctx.config.get("api_key"):
            return api.create_payment_link(ctx, amount=amount, currency=currency, reference=reference,
                                           customer=customer, description=description or "")
    return None
