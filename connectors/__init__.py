"""coexhub's built-in connectors, registered through the ``coexhub`` entry-point group.

Small helpers the store connectors share live here; everything else is per connector.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from marshmallow import fields, validate


def decimal_amount(value: Any) -> Decimal | None:
    """A provider's decimal-string amount (``"421.88"``) as a Decimal; None when absent or not a number.

    Never goes through float: ``Decimal("19.99")`` stays exact.
    """
    if value is None or isinstance(value, (bool, dict, list)):
        return None
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() else None


def money(value: Any, currency: Any, locale: Any = None) -> str | None:
    """``"$421.88"`` / ``"₹1,299.00"`` / ``"￥3,980"`` with Babel, or None when it cannot be formatted.

    ``locale`` may be ``"en"``, ``"en-US"``, ``"hi_IN"``…; an unknown one falls back to ``en_US``.
    """
    amount = decimal_amount(value)
    if amount is None or not isinstance(currency, str) or len(currency.strip()) != 3:
        return None
    code = currency.strip().upper()
    try:
        from babel.core import Locale, UnknownLocaleError
        from babel.numbers import format_currency
    except ImportError:  # babel missing: plain but correct, never a failed event
        return f"{amount} {code}"
    try:
        loc = Locale.parse(str(locale).replace("-", "_")) if locale else Locale.parse("en_US")
    except (UnknownLocaleError, ValueError, TypeError):
        loc = Locale.parse("en_US")
    try:
        return format_currency(amount, code, locale=loc)
    except Exception:  # noqa: BLE001 - an unknown currency code: show it plainly, never fail the event
        return f"{amount} {code}"


def money_text(value: Any, currency: Any, locale: Any = None) -> str:
    """``money`` for a message: ``"<value> <currency>"`` as it came when it cannot be formatted."""
    return money(value, currency, locale) or f"{value} {currency}"


def truthy(value: Any) -> bool:
    """Consent flags arrive as ``true``, ``"true"``, ``"TRUE"``, ``"subscribed"``, ``1``…"""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value == 1
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "subscribed", "confirmed_opt_in")
    return False


def text(value: Any, default: str = "") -> str:
    """A non-empty display string from an optional, possibly wrongly typed field."""
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()
    return default


def names(full: str) -> tuple[str, str | None]:
    """(first name for the greeting — ``"there"`` without one —, full name for the contact or None)."""
    return (full.split()[0] if full else "there"), (full or None)


def attribution_field(noun: str) -> fields.Field:
    """Config field ``attribution_window_days``: how long after a message a ``noun`` is credited to it."""
    return fields.Integer(load_default=None, allow_none=True, validate=validate.Range(0, 366),
                          metadata={"description": f"days {noun} after a message is attributed to it; "
                                                   "empty: the workspace's"})


def template_fields(use: str, default: str | None, description: str) -> dict[str, fields.Field]:
    """Config fields ``<use>_template`` and ``<use>_language`` for one kind of message."""
    return {f"{use}_template": fields.String(load_default=default, allow_none=True,
                                             metadata={"description": description + " (empty: off)"}),
            f"{use}_language": fields.String(load_default=None, allow_none=True,
                                             metadata={"description": "template language; default: language"})}


def pay_link_fields(template_description: str, chase: fields.Field) -> dict[str, fields.Field]:
    """A store's payment-link config: ``pay_link_template``/``_language``, ``pay_link_cod``,
    ``pay_link_cod_delay_minutes``, ``pay_link_chase_minutes`` (``chase``, per store) and ``payment_provider``."""
    return {**template_fields("pay_link", None, template_description),
            "pay_link_cod": fields.Boolean(load_default=True, metadata={
                "description": "offer cash-on-delivery buyers a payment link (needs pay_link_template)"}),
            "pay_link_cod_delay_minutes": fields.Integer(load_default=60, validate=validate.Range(0, 30 * 24 * 60),
                                                         metadata={"description": "with the pay-now offer, the COD "
                                                                   "confirmation waits this long (cancelled if the "
                                                                   "link is paid)"}),
            "pay_link_chase_minutes": chase,
            "payment_provider": fields.String(load_default=None, allow_none=True, metadata={
                "description": "the payment connector to create links with (stripe, razorpay…); empty: the oldest "
                               "installed one that can"})}


def template_for(ctx, use: str) -> tuple[str | None, str]:
    """(template name or None when that message is off, language) from the installation's config."""
    return (ctx.config.get(f"{use}_template") or None,
            ctx.config.get(f"{use}_language") or ctx.config.get("language") or "en_US")


def order_in_reply(event, ctx) -> str | None:
    """The order id in a quick-reply payload ``<action>:<order>@<installation>``; None when it is
    malformed or names another installation (another store's reply is not ours to act on)."""
    order_id, _, installation = (event.button or "").partition(":")[2].strip().partition("@")
    if installation and installation != ctx.installation_id:
        return None
    return order_id if order_id.isdigit() else None


def paid_order(payment) -> str | None:
    """The order id of a ``PaymentReceived`` for a store's ``payment_reference`` ``order:<id>``; None
    for any other reference."""
    kind, _, order_id = payment.reference.partition(":")
    return order_id if kind == "order" and order_id else None
