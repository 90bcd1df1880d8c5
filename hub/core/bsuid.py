"""Business-scoped user IDs (BSUIDs): WhatsApp users who reach a business without a phone number.

Meta gives every WhatsApp user a BSUID per business portfolio (``user_id`` in webhooks,
``recipient_user_id`` in statuses); users who adopt a username may arrive with no phone number
at all. The hub keys such a contact by its ``user_id`` and sends to it through Meta's
``recipient`` field (``to`` stays for phone numbers and takes precedence when both are given).
Sources and what is unconfirmed: docs/whatsapp.md, section "BSUID-only recipients".
"""
from __future__ import annotations

import re
from typing import Any

SEND_FIELD = "recipient"  # the Messages API field that addresses a BSUID (the one place it is named)
SYSTEM_CHANGED = "user_changed_user_id"  # system message: the user moved to a new BSUID
PATTERN = re.compile(r"^[A-Z]{2}(\.ENT)?\.[A-Za-z0-9]{1,128}$")  # "US.13491208655302741918", parent "US.ENT.…"
AUTH_CATEGORY = "authentication"


def is_bsuid(value: Any) -> bool:
    """True for a BSUID (two-letter country code, a period, up to 128 alphanumerics); phone
    numbers never match (they have no letters)."""
    return isinstance(value, str) and bool(PATTERN.match(value))


def address(to: str) -> dict[str, str]:
    """The Graph payload's recipient part for ``to`` (a phone number or a BSUID)."""
    return {SEND_FIELD: to} if is_bsuid(to) else {"to": to}


def mask(value: str | None) -> str | None:
    """A BSUID for logs: the country code and the last four characters."""
    if not value:
        return value
    return f"{value[:3]}…{value[-4:]}"


AUTH_MESSAGE = ("authentication templates cannot be sent to a WhatsApp user known only by a business-scoped "
                "user ID (BSUID): Meta requires a phone number for them (error 131062). Ask the customer "
                "for their number, or use a utility template")
