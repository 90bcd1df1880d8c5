"""``GET /api/v1/analytics/summary``: delivery rates, messages by origin, spend by category."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from flask import g, request
from sqlalchemy import func, select

from hub.api import runtime, workspace_blueprint
from hub.api.errors import ApiError
from hub.core.models import Attribution, Message, Send, Workspace, utcnow

bp = workspace_blueprint("analytics", "Workspace analytics")


@bp.route("/analytics/summary", methods=["GET"])
def summary():
    """``?days=30``. Spend uses the workspace setting ``prices`` ({category: price per message}).
    Reads only the period's rows (indexes on time): the cost follows the period's volume, not
    the workspace's history."""
    try:
        days = max(1, min(int(request.args.get("days", 30)), 366))
    except ValueError as exc:
        raise ApiError(400, "bad_request", "days must be an integer") from exc
    since = utcnow() - dt.timedelta(days=days)
    with runtime().db.session() as session:
        recent = (Message.workspace_id == g.workspace_id, Message.timestamp >= since)
        by_origin: dict[str, int] = {}
        out_status: dict[str, int] = {}
        for origin, direction, status, n in session.execute(  # one pass over the window (ix_messages_list)
                select(Message.origin, Message.direction, Message.status, func.count()).where(*recent)
                .group_by(Message.origin, Message.direction, Message.status)).all():
            by_origin[origin] = by_origin.get(origin, 0) + n
            if direction == "out" and origin == "api":
                out_status[status] = out_status.get(status, 0) + n
        outcomes = send_outcomes(session, g.workspace_id, since)
        priced = session.scalars(select(Message.pricing).where(*recent, Message.pricing.is_not(None))).all()
        sends = dict(session.execute(select(Send.status, func.count()).where(
            Send.workspace_id == g.workspace_id, Send.created_at >= since).group_by(Send.status)).all())
        prices = (session.get(Workspace, g.workspace_id).settings or {}).get("prices", {})
        attributed = session.execute(select(Attribution.currency, Attribution.amount).where(
            Attribution.workspace_id == g.workspace_id, Attribution.created_at >= since)).all()
    total = sum(out_status.values())
    rates = rates_of(outcomes)
    spend: dict[str, dict] = {}
    for pricing in priced:
        category = pricing.get("category") or "unknown"
        row = spend.setdefault(category, {"messages": 0, "billable": 0, "cost": 0.0})
        row["messages"] += 1
        if pricing.get("billable"):
            row["billable"] += 1
            row["cost"] = round(row["cost"] + float(prices.get(category, 0)), 4)
    revenue: dict[str, dict] = {}
    for currency, amount in attributed:
        row = revenue.setdefault(currency, {"orders": 0, "amount": Decimal(0)})
        row["orders"] += 1
        row["amount"] += Decimal(amount)
    revenue = {c: {"orders": r["orders"], "amount": str(r["amount"])} for c, r in revenue.items()}
    return {"days": days, "attributed_revenue": revenue, "api_messages": total, "rates": rates,
            "rates_basis": {"attempted_sends": sum(outcomes.values()),
                            "meaning": "shares of the sends that reached an outcome (sent, failed or dead) in "
                                       "the period; failed counts sends refused before Meta, refused by Meta and "
                                       "failed after it, as sends_by_status does"},
            "messages_by_origin": by_origin, "sends_by_status": sends, "spend_by_category": spend}


REACHED = {"sent": ("sent", "delivered", "read"), "delivered": ("delivered", "read"), "read": ("read",),
           "failed": ("failed",)}


def send_outcomes(session, workspace_id: str, since: dt.datetime) -> dict[str, int]:
    """How far each finished send got: its message's status once Meta accepted it (sent,
    delivered, read or failed), ``failed`` when it failed or died without reaching a message."""
    rows = session.execute(select(Send.status, Message.status, func.count())
                           .select_from(Send).outerjoin(Message, Message.send_id == Send.id)
                           .where(Send.workspace_id == workspace_id, Send.created_at >= since,
                                  Send.status.in_(("sent", "failed", "dead")))
                           .group_by(Send.status, Message.status)).all()
    out: dict[str, int] = {}
    for send_status, message_status, n in rows:
        if send_status in ("failed", "dead") or message_status == "failed":
            key = "failed"
        else:
            key = message_status if message_status in ("delivered", "read") else "sent"
        out[key] = out.get(key, 0) + n
    return out


def rates_of(outcomes: dict[str, int]) -> dict[str, float | None]:
    """Sent/delivered/read/failed as shares of the attempted sends (None when there were none)."""
    total = sum(outcomes.values())
    return {name: round(sum(outcomes.get(s, 0) for s in states) / total, 4) if total else None
            for name, states in REACHED.items()}


@bp.route("/analytics/timeseries", methods=["GET"])
def timeseries():
    """``?days=30`` (1–366): per UTC day through today, the hub's outbound messages with delivered
    and read rates, messages by origin, spend by pricing category (the rate card) and attributed
    revenue per connector (``hub/core/timeseries.py``)."""
    from hub.core import timeseries as series
    from hub.core.pricing import ratecard

    try:
        days = int(request.args.get("days", 30))
    except ValueError as exc:
        raise ApiError(400, "bad_request", "days must be an integer") from exc
    if not 1 <= days <= 366:
        raise ApiError(400, "bad_request", "days must be between 1 and 366")
    with runtime().db.session() as session:
        card = ratecard.current(session, g.workspace_id)
        return series.timeseries(session, card, g.workspace_id, days)
