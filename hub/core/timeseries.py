"""Day-by-day analytics of one workspace (``GET /api/v1/analytics/timeseries`` and the console's
Analytics page): delivery and read rates of the hub's sends, messages by origin, spend by
pricing category (the rate card, as ``costs.spend``) and attributed revenue per connector.

Every query filters on the workspace and a time range of one indexed-friendly column
(``timestamp`` or ``created_at``) and groups by the day in SQL, so the database returns one
row per day and kind, never one per message. Days are UTC calendar days; the last is today.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import Numeric, cast, func, select
from sqlalchemy.orm import Session

from hub.core.models import Attribution, Installation, Message, Send, utcnow
from hub.core.pricing.costs import DELIVERED
from hub.core.pricing.ratecard import Card

RANGES = (7, 30, 90)
# where a message came from: the inbound origin, or for the hub's own sends the send's origin
ORIGINS = ("customer", "api", "connector", "automation", "broadcast", "system", "app_echo", "history")


def _day(value) -> str:
    """``func.date`` gives a date on PostgreSQL and text on SQLite: ISO text either way."""
    return value.isoformat() if isinstance(value, dt.date) else str(value)[:10]


def _decimal_text(value: Decimal) -> str:
    text = format(value.normalize(), "f") if value else "0"
    return text


def day_range(days: int, now: dt.datetime | None = None) -> tuple[dt.datetime, list[str]]:
    """The start (midnight UTC, ``days - 1`` days before today) and the ISO days through today."""
    today = (now or utcnow()).date()
    first = today - dt.timedelta(days=days - 1)
    return dt.datetime.combine(first, dt.time()), [(first + dt.timedelta(days=i)).isoformat() for i in range(days)]


def delivery(session: Session, workspace_id: str, since: dt.datetime, days: list[str]) -> dict:
    """Per day, the hub's outbound messages Meta accepted and how many were delivered / read
    (read implies delivered), with the rates (None on a day without messages)."""
    day = func.date(Message.timestamp)
    rows = session.execute(select(day, Message.status, func.count())
                           .where(Message.workspace_id == workspace_id, Message.timestamp >= since,
                                  Message.direction == "out", Message.origin == "api")
                           .group_by(day, Message.status)).all()
    index = {d: i for i, d in enumerate(days)}
    sent, delivered, read, failed = ([0] * len(days) for _ in range(4))
    for when, status, n in rows:
        i = index.get(_day(when))
        if i is None:
            continue
        sent[i] += n
        delivered[i] += n if status in DELIVERED else 0
        read[i] += n if status == "read" else 0
        failed[i] += n if status == "failed" else 0

    def rate(part: list[int]) -> list[float | None]:
        return [round(p / s, 4) if s else None for p, s in zip(part, sent)]
    return {"sent": sent, "delivered": delivered, "read": read, "failed": failed,
            "delivered_rate": rate(delivered), "read_rate": rate(read),
            "totals": {"sent": sum(sent), "delivered": sum(delivered), "read": sum(read), "failed": sum(failed),
                       "delivered_rate": round(sum(delivered) / sum(sent), 4) if sum(sent) else None,
                       "read_rate": round(sum(read) / sum(sent), 4) if sum(sent) else None}}


def by_origin(session: Session, workspace_id: str, since: dt.datetime, days: list[str]) -> dict:
    """Messages per day by origin: ``customer``, the phone app's echoes (``app_echo``), imported
    ``history``, and the hub's sends by who asked (``api``, ``connector``, ``broadcast``…)."""
    day = func.date(Message.timestamp)
    rows = session.execute(select(day, Message.origin, Send.origin, func.count())
                           .select_from(Message).outerjoin(Send, Send.id == Message.send_id)
                           .where(Message.workspace_id == workspace_id, Message.timestamp >= since)
                           .group_by(day, Message.origin, Send.origin)).all()
    index = {d: i for i, d in enumerate(days)}
    series: dict[str, list[int]] = {}
    for when, message_origin, send_origin, n in rows:
        i = index.get(_day(when))
        if i is None:
            continue
        origin = (send_origin or "api") if message_origin == "api" else message_origin
        series.setdefault(origin, [0] * len(days))[i] += n
    ordered = {o: series.pop(o) for o in ORIGINS if o in series}
    ordered.update(sorted(series.items()))
    return {"series": ordered, "totals": {o: sum(v) for o, v in ordered.items()}}


def spend(session: Session, card: Card, workspace_id: str, since: dt.datetime, days: list[str]) -> dict:
    """Spend per day by pricing category: billable, delivered messages priced by ``card`` (as
    ``costs.spend``). Amounts are decimal text; ``unpriced`` counts messages the card has no
    price for. With several currencies each series is ``category (CUR)``."""
    day = func.date(Message.timestamp)
    rows = session.execute(select(day, Message.pricing_category, Message.pricing_country, func.count())
                           .where(Message.workspace_id == workspace_id, Message.timestamp >= since,
                                  Message.pricing_billable.is_(True), Message.status.in_(DELIVERED))
                           .group_by(day, Message.pricing_category, Message.pricing_country)).all()
    index = {d: i for i, d in enumerate(days)}
    cost: dict[tuple[str, str], list[Decimal]] = {}
    messages, unpriced = 0, 0
    for when, category, country, n in rows:
        i = index.get(_day(when))
        if i is None:
            continue
        messages += n
        price = card.price(country, category, on=dt.date.fromisoformat(days[i]))
        if price is None:
            unpriced += n
            continue
        cost.setdefault((category or "unknown", price[1]), [Decimal(0)] * len(days))[i] += price[0] * n
    currencies = sorted({currency for _, currency in cost})
    name = (lambda c, cur: c) if len(currencies) <= 1 else (lambda c, cur: f"{c} ({cur})")
    series = {name(c, cur): [_decimal_text(v) for v in values] for (c, cur), values in sorted(cost.items())}
    totals: dict[str, Decimal] = {}
    for (_, currency), values in cost.items():
        totals[currency] = totals.get(currency, Decimal(0)) + sum(values, Decimal(0))
    return {"currency": currencies[0] if len(currencies) == 1 else None, "series": series,
            "totals": {"messages": messages, "unpriced": unpriced,
                       "cost": {cur: _decimal_text(v) for cur, v in sorted(totals.items())}}}


def revenue(session: Session, workspace_id: str, since: dt.datetime, days: list[str]) -> dict:
    """Attributed revenue per day by connector (the installation's connector that made the
    credited send), as decimal text; with several currencies each series is ``connector (CUR)``."""
    day = func.date(Attribution.created_at)
    rows = session.execute(select(day, Installation.connector, Attribution.currency, func.count(),
                                  func.sum(cast(Attribution.amount, Numeric(18, 4))))
                           .select_from(Attribution)
                           .outerjoin(Installation, Installation.id == Attribution.installation_id)
                           .where(Attribution.workspace_id == workspace_id, Attribution.created_at >= since)
                           .group_by(day, Installation.connector, Attribution.currency)).all()
    index = {d: i for i, d in enumerate(days)}
    amounts: dict[tuple[str, str], list[Decimal]] = {}
    orders: dict[str, int] = {}
    for when, connector, currency, n, total in rows:
        i = index.get(_day(when))
        if i is None:
            continue
        key = (connector or "unknown", currency)
        amount = Decimal(str(total or 0)).quantize(Decimal("0.0001"))
        amounts.setdefault(key, [Decimal(0)] * len(days))[i] += amount
        orders[key[0]] = orders.get(key[0], 0) + n
    currencies = sorted({currency for _, currency in amounts})
    name = (lambda c, cur: c) if len(currencies) <= 1 else (lambda c, cur: f"{c} ({cur})")
    totals: dict[str, Decimal] = {}
    for (_, currency), values in amounts.items():
        totals[currency] = totals.get(currency, Decimal(0)) + sum(values, Decimal(0))
    return {"currency": currencies[0] if len(currencies) == 1 else None,
            "series": {name(c, cur): [_decimal_text(v) for v in values]
                       for (c, cur), values in sorted(amounts.items())},
            "totals": {"orders": orders, "amount": {cur: _decimal_text(v) for cur, v in sorted(totals.items())}}}


def timeseries(session: Session, card: Card, workspace_id: str, days: int,
               now: dt.datetime | None = None) -> dict:
    """Everything the Analytics page charts, for the last ``days`` UTC days (today included)."""
    since, labels = day_range(days, now)
    return {"days": labels, "delivery": delivery(session, workspace_id, since, labels),
            "origins": by_origin(session, workspace_id, since, labels),
            "spend": spend(session, card, workspace_id, since, labels),
            "revenue": revenue(session, workspace_id, since, labels)}
