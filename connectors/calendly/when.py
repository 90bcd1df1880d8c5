"""Calendly times: ``start_time`` is UTC ISO 8601 (``Z`` or an offset); the invitee's ``timezone``
(IANA) is only for writing the time in the message."""
from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def parse_start(value: Any) -> dt.datetime | None:
    """An aware datetime from ``"2023-07-25T16:30:00.000000Z"`` / ``"…+05:30"``; None when it is not one.

    A time without an offset is taken as UTC (Calendly's API speaks UTC)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def zone(name: Any, fallback: Any = "UTC") -> ZoneInfo:
    """The IANA zone ``name``, else ``fallback``, else UTC (unknown names never fail an event)."""
    for candidate in (name, fallback, "UTC"):
        if isinstance(candidate, str) and candidate.strip():
            try:
                return ZoneInfo(candidate.strip())
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def format_when(start: dt.datetime, timezone: Any, fallback_zone: Any = "UTC", locale: Any = None) -> str:
    """``"Tue, Jul 25, 2023, 9:30 AM PDT"`` in the invitee's zone and the installation's locale (Babel)."""
    local = start.astimezone(zone(timezone, fallback_zone))
    try:
        from babel.core import Locale, UnknownLocaleError
        from babel.dates import format_date, format_time, get_timezone_name
    except ImportError:  # babel missing: plain but correct
        return local.strftime("%Y-%m-%d %H:%M %Z")
    try:
        loc = Locale.parse(str(locale).replace("-", "_")) if locale else Locale.parse("en_US")
    except (UnknownLocaleError, ValueError, TypeError):
        loc = Locale.parse("en_US")
    day = format_date(local.date(), format="medium", locale=loc)
    weekday = format_date(local.date(), format="EEE", locale=loc)
    clock = format_time(local.timetz(), format="short", locale=loc)
    abbreviation = local.tzname() or ""
    if not abbreviation or abbreviation[0] in "+-":  # zones without an abbreviation: "GMT+05:30"
        abbreviation = get_timezone_name(local, width="short", locale=loc)
    return f"{weekday}, {day}, {clock} {abbreviation}".strip()
