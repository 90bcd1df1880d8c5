"""Stripe amounts are integers in the currency's smallest unit; how many digits that unit has
is Stripe's own list (https://docs.stripe.com/currencies#minor-units), not ISO 4217's.

- zero-decimal: ``JPY 3980`` is ¥3,980 (BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF);
- three-decimal: ``KWD 12345`` is 12.345 KD (BHD JOD KWD OMR TND);
- every other currency, including Stripe's special cases ISK, HUF and TWD (represented with
  two decimals in the API even where the currency has none), has two.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())


def exponent(currency: str) -> int:
    """Digits after the point in Stripe's minor unit of ``currency`` (0, 2 or 3)."""
    code = currency.strip().upper()
    return 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2


def from_minor(amount: Any, currency: Any) -> Decimal | None:
    """``(3980, "jpy")`` → ``Decimal("3980")``; ``(1099, "usd")`` → ``Decimal("10.99")``; None when unusable."""
    if isinstance(amount, bool) or not isinstance(amount, int) or not isinstance(currency, str) \
            or len(currency.strip()) != 3:
        return None
    return Decimal(amount).scaleb(-exponent(currency))


def to_minor(amount: Any, currency: str) -> int:
    """``("10.99", "usd")`` → 1099; raises ``ValueError`` for an amount the currency cannot hold."""
    value = Decimal(str(amount).strip()).scaleb(exponent(currency))
    if not value.is_finite() or value <= 0 or value != value.to_integral_value():
        raise ValueError(f"{amount} {currency.upper()} is not a positive amount in whole minor units")
    return int(value)
