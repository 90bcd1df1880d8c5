"""Cost before sending (an estimate from the rate card) and after (spend from Meta's statuses).

Both price a message with the workspace's rate card (``ratecard.current``) by its pricing
category and its recipient's country. The estimate uses the in-window price when the
recipient's customer service window is open on the sending number; actual spend counts only
messages Meta marked ``billable`` that were delivered (Meta charges delivered messages).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.core.models import Installation, Message, Send
from hub.core.pricing.ratecard import Card

GROUPS = ("category", "country", "connection", "connector", "day")
DELIVERED = ("delivered", "read")


@dataclass
class Tally:
    """Messages and cost per currency for one group; ``unpriced`` had no rate on the card."""
    messages: int = 0
    unpriced: int = 0
    cost: dict[str, Decimal] = field(default_factory=dict)

    def add(self, price: tuple[Decimal, str] | None, n: int = 1) -> None:
        self.messages += n
        if price is None:
            self.unpriced += n
        else:
            self.cost[price[1]] = self.cost.get(price[1], Decimal(0)) + price[0] * n

    def out(self) -> dict:
        costs = {currency: str(amount.normalize() if amount else Decimal(0)) for currency, amount in self.cost.items()}
        single = next(iter(costs.items())) if len(costs) == 1 else (None, None)
        return {"messages": self.messages, "unpriced": self.unpriced, "currency": single[0], "cost": single[1],
                "costs": costs}


def _report(groups: dict[str, dict[str, Tally]], total: Tally) -> dict:
    return {**total.out(), **{f"by_{name}": {key: tally.out() for key, tally in sorted(rows.items())}
                              for name, rows in groups.items()}}


def estimate(card: Card, recipients: Iterable[tuple[str | None, str | None, bool]]) -> dict:
    """Estimated cost of delivering one message to each ``(country, category, in_window)``,
    by category and by country, with the total; countries the card has no price for are
    counted as ``unpriced`` (and listed) rather than guessed."""
    total, groups = Tally(), {"category": {}, "country": {}}
    free_in_window = 0
    for country, category, in_window in recipients:
        price = card.price(country, category, in_window=in_window)
        if in_window and price is not None and price[0] == 0 and (card.price(country, category) or (0,))[0] > 0:
            free_in_window += 1
        total.add(price)
        groups["category"].setdefault(category or "unknown", Tally()).add(price)
        groups["country"].setdefault(country or "unknown", Tally()).add(price)
    report = _report(groups, total)
    report["free_in_window"] = free_in_window
    report["rate_card"] = {"origin": card.origin, "source": card.source}
    return report


def spend(session: Session, card: Card, workspace_id: str, since: dt.datetime, until: dt.datetime,
          group_by: str) -> dict:
    """Actual spend of a workspace's billable, delivered messages sent in ``[since, until)``,
    grouped by ``group_by`` (one of ``GROUPS``). ``connector`` is the connector whose
    installation made the send, else the send's origin (``api``, ``broadcast``…)."""
    day = func.date(Message.timestamp)
    columns = (Message.pricing_category, Message.pricing_country, Message.connection_id, day,
               Installation.connector, Send.origin)
    rows = session.execute(
        select(*columns, func.count())
        .select_from(Message).outerjoin(Send, Send.id == Message.send_id)
        .outerjoin(Installation, Installation.id == Send.installation_id)
        .where(Message.workspace_id == workspace_id, Message.pricing_billable.is_(True),
               Message.status.in_(DELIVERED), Message.timestamp >= since, Message.timestamp < until)
        .group_by(*columns)).all()  # one row per day and kind, not per message
    total, groups = Tally(), {group_by: {}}
    for category, country, connection_id, sent_on, connector, origin, n in rows:
        sent_on = sent_on if isinstance(sent_on, dt.date) else dt.date.fromisoformat(str(sent_on)[:10])
        price = card.price(country, category, on=sent_on)
        key = {"category": category or "unknown", "country": country or "unknown", "connection": connection_id,
               "connector": connector or origin or "unknown", "day": sent_on.isoformat()}[group_by]
        total.add(price, n)
        groups[group_by].setdefault(key, Tally()).add(price, n)
    return _report(groups, total)
