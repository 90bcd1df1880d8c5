"""Keep the ``pricing`` object of a status webhook on its message, as columns.

Meta's statuses carry ``pricing {billable, category, pricing_model, type}`` (``type``:
``regular``, ``free_customer_service`` or ``free_entry_point``) on ``sent`` and on one of
``delivered``/``read``. The later object wins field by field; a missing ``billable`` is read
from ``type`` (only ``regular`` messages are charged).
"""
from __future__ import annotations

from typing import Any

from hub.core.models import Message
from hub.core.pricing.ratecard import country_of, normalize_category

FREE_TYPES = ("free_customer_service", "free_entry_point")


def record_pricing(message: Message, pricing: dict[str, Any], recipient_id: str | None) -> None:
    """Set the message's pricing columns from one status's ``pricing`` (same transaction)."""
    category = normalize_category(pricing.get("category"))
    kind = pricing.get("type") if isinstance(pricing.get("type"), str) else None
    billable = pricing.get("billable")
    if not isinstance(billable, bool):
        billable = None if kind is None else kind not in FREE_TYPES
    if category:
        message.pricing_category = category[:40]
    if kind:
        message.pricing_type = kind[:40]
    if isinstance(pricing.get("pricing_model"), str):
        message.pricing_model = pricing["pricing_model"][:16]
    if billable is not None:
        message.pricing_billable = billable
    country = country_of(recipient_id)
    if country:
        message.pricing_country = country
