"""Razorpay Payment Links API calls, made in workers only, by the ``coexhub_payment_link`` hook (the
hub's pay-by-link, and the fresh link that replaces an expired one).

Uses the official ``razorpay`` client (``client.payment_link.create`` / ``.all``) with its base URL
taken from the installation (``api_base``, for a local stand-in in tests) and a timeout on every
call (the client sets none by itself). Failures raise, so the hub's paylink job is retried with backoff.

Creating a link is idempotent: Razorpay refuses a second link with the same ``reference_id``, so
each link's ``reference_id`` is derived from what it is for, looked up first, and reused while it
is still payable. ``reference_id`` holds at most 40 characters: a longer reference is hashed and
the full one is kept in ``notes.coexhub_reference``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import razorpay

from hub.connector import outbound_url

log = logging.getLogger(__name__)
DEFAULT_BASE = "https://api.razorpay.com"
TIMEOUT = 15.0
REFERENCE_ID_MAX = 40   # Razorpay's limit on payment_link.reference_id
NOTE_MAX = 256          # and on each notes value
PAYABLE = ("created", "partially_paid")
MIN_LEFT_MINUTES = 60   # a payable link with less time left is replaced, not sent again
REFERENCE_NOTE = "coexhub_reference"
RENEWAL_NOTE = "coexhub_renewal"


class RazorpayApiError(RuntimeError):
    pass


def minor_units(currency: str) -> int:
    """Digits after the decimal point Razorpay uses for ``currency`` (INR 2, JPY 0, KWD 3)."""
    try:
        from babel.numbers import get_currency_precision

        return get_currency_precision(currency.upper())
    except Exception:  # noqa: BLE001 - an unknown code: Razorpay's common case
        return 2


def to_minor(amount: Any, currency: str) -> int:
    """``"499.00"`` INR → ``49900`` paise; ValueError when it is not a positive amount in that precision."""
    try:
        value = Decimal(str(amount).strip())
    except (InvalidOperation, ValueError):
        raise ValueError(f"not an amount: {amount!r}") from None
    scaled = value * (10 ** minor_units(currency))
    if not value.is_finite() or value <= 0 or scaled != scaled.to_integral_value():
        raise ValueError(f"{amount!r} is not a positive amount in {currency}")
    return int(scaled)


def to_major(minor: Any, currency: str) -> Decimal | None:
    """``49900`` paise → ``Decimal("499.00")``; None when ``minor`` is not a whole number."""
    if isinstance(minor, bool) or not isinstance(minor, (int, str)) or not str(minor).strip().lstrip("-").isdigit():
        return None
    places = minor_units(currency)
    return (Decimal(int(str(minor).strip())) / (10 ** places)).quantize(Decimal(1).scaleb(-places),
                                                                          rounding=ROUND_HALF_UP)


def reference_id(reference: str) -> str:
    """``reference`` as a ``reference_id`` (≤ 40 characters): as is when it fits, else a stable hash."""
    if len(reference) <= REFERENCE_ID_MAX:
        return reference
    return "cx-" + hashlib.sha256(reference.encode()).hexdigest()[:REFERENCE_ID_MAX - 3]


def client(ctx) -> razorpay.Client:
    key_id, key_secret = ctx.config.get("key_id"), ctx.config.get("key_secret")
    if not (key_id and key_secret):
        raise RazorpayApiError("key_id and key_secret are required to create payment links")
    base = str(ctx.config.get("api_base") or DEFAULT_BASE).rstrip("/")
    return razorpay.Client(auth=(key_id, key_secret), base_url=outbound_url(base))


def find_link(rzp: razorpay.Client, ref_id: str) -> dict | None:
    """The newest link with this ``reference_id``, or None."""
    answer = rzp.payment_link.all({"reference_id": ref_id}, timeout=TIMEOUT)
    links = [link for link in (answer or {}).get("payment_links") or [] if isinstance(link, dict)]
    return max(links, key=lambda link: link.get("created_at") or 0) if links else None


def create_link(ctx, *, amount_minor: int, currency: str, ref_id: str, description: str,
                customer: dict[str, Any], notes: dict[str, str], expire_minutes: int) -> dict:
    """A payable link for ``ref_id``: the existing one while it can still be paid, else a new one.

    A link with that ``reference_id`` that expired or was cancelled cannot be reused (Razorpay
    keeps the id taken), so the next one is derived from it: ``reference_id(f"{ref_id}~{link id}")``,
    deterministically, which keeps a retried job from creating two links. A payable link that
    expires within ``MIN_LEFT_MINUTES`` (the same order asking again late: a chase after a COD
    offer) is cancelled first and replaced the same way, so a message never carries a link about
    to die and the buyer cannot pay twice.
    """
    rzp = client(ctx)
    soon = int((dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=MIN_LEFT_MINUTES)).timestamp())
    for _ in range(5):  # a chain longer than this is not a retry but a loop
        existing = find_link(rzp, ref_id)
        if existing is None:
            break
        expires = existing.get("expire_by") if isinstance(existing.get("expire_by"), int) else 0
        if existing.get("status") == "paid" or (existing.get("status") in PAYABLE and not 0 < expires < soon):
            return existing
        if existing.get("status") in PAYABLE:  # about to expire: cancelled, so only the new link can be paid
            rzp.payment_link.cancel(existing["id"], timeout=TIMEOUT)
            log.info("razorpay payment link %s expires within %s minutes: cancelled, a new one follows",
                     existing["id"], MIN_LEFT_MINUTES)
        ref_id = reference_id(f"{ref_id}~{existing.get('id')}")
    else:
        raise RazorpayApiError(f"too many expired links for reference {ref_id!r}")
    expire_by = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=expire_minutes)
    body = {"amount": amount_minor, "currency": currency.upper(), "accept_partial": False,
            "reference_id": ref_id, "description": description[:2048],
            "customer": {k: v for k, v in customer.items() if v},
            "notify": {"sms": False, "email": False}, "reminder_enable": False,
            "notes": {k: str(v)[:NOTE_MAX] for k, v in notes.items() if v not in (None, "")},
            "expire_by": int(expire_by.timestamp())}
    link = rzp.payment_link.create(body, timeout=TIMEOUT)
    if not isinstance(link, dict) or not link.get("short_url") or not link.get("id"):
        raise RazorpayApiError(f"unexpected payment link answer: {str(link)[:200]}")
    log.info("razorpay payment link %s created for reference_id %s", link["id"], ref_id)
    return link
