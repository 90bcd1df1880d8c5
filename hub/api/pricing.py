"""The rate card (``/api/v1/rate-card``) and actual spend (``/api/v1/analytics/spend``).

A workspace API key reads the card that prices its messages and may load its own override
(``PUT``) or drop it (``DELETE``, back to the instance's card); the instance's card is loaded
with ``coexhub rate-card load FILE``. See ``hub/core/pricing/ratecard.py`` for the format.
"""
from __future__ import annotations

import datetime as dt
import logging

from flask import g, request
from marshmallow import Schema, fields, validate
from sqlalchemy import delete

from hub.api import runtime, workspace_blueprint
from hub.api.errors import ApiError
from hub.core.logs import event
from hub.core.models import RateCard, iso_utc, utcnow
from hub.core.pricing import costs, ratecard

bp = workspace_blueprint("pricing", "Rate card and spend")
log = logging.getLogger(__name__)
MAX_CSV = 2_000_000


class RateCardIn(Schema):
    csv = fields.String(required=True, validate=validate.Length(min=1, max=MAX_CSV),
                        metadata={"description": "the rate card as CSV text: market,category,price,"
                                                 "price_in_window,currency,effective_from,source"})
    markets_csv = fields.String(load_default=None, validate=validate.Length(min=1, max=MAX_CSV),
                                metadata={"description": "optional country,market CSV (default: the shipped "
                                                         "mapping of countries to Meta's markets)"})
    source = fields.String(load_default=None, validate=validate.Length(max=200))


def _card_out(card: ratecard.Card) -> dict:
    out = card.describe()
    out["loaded_at"] = iso_utc(out["loaded_at"])
    return out


@bp.route("/rate-card", methods=["GET"])
def get_rate_card():
    """The rate card that prices this workspace's messages (``origin``: workspace, instance or shipped)."""
    with runtime().db.session() as session:
        return _card_out(ratecard.current(session, g.workspace_id))


@bp.route("/rate-card", methods=["PUT"])
@bp.arguments(RateCardIn)
def put_rate_card(body):
    """Load this workspace's own rate card (validated: 422 names the wrong line)."""
    try:
        rates, markets = ratecard.parse(body["csv"], body["markets_csv"])
    except ratecard.RateCardError as exc:
        raise ApiError(422, "invalid_rate_card", str(exc), file=exc.file, line=exc.line, problem=exc.problem) from exc
    with runtime().db.session() as session:
        ratecard.store(session, rates, markets, workspace_id=g.workspace_id, source=body["source"] or "api")
        session.flush()
        card = ratecard.current(session, g.workspace_id)
        event(log, "rate card loaded", workspace_id=g.workspace_id, rows=len(rates), countries=len(markets))
        return _card_out(card)


@bp.route("/rate-card", methods=["DELETE"])
def delete_rate_card():
    """Drop this workspace's own rate card: the instance's card prices its messages again."""
    with runtime().db.session() as session:
        session.execute(delete(RateCard).where(RateCard.workspace_id == g.workspace_id))
        event(log, "rate card override removed", workspace_id=g.workspace_id)
        return _card_out(ratecard.current(session, g.workspace_id))


def _day(name: str, default: dt.datetime) -> dt.datetime:
    value = request.args.get(name)
    if not value:
        return default
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ApiError(400, "bad_request", f"{name} must be an ISO 8601 date or time (e.g. 2026-11-01)") from exc
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return parsed


@bp.route("/analytics/spend", methods=["GET"])
def spend():
    """``?from=&to=&group_by=category|country|connection|connector|day``: what the workspace's
    billable, delivered messages cost (the statuses' ``pricing`` × the rate card). ``from``
    defaults to 30 days ago, ``to`` (exclusive) to now; a bare date ``to`` includes that day."""
    group_by = request.args.get("group_by", "category")
    if group_by not in costs.GROUPS:
        raise ApiError(400, "bad_request", f"group_by must be one of {', '.join(costs.GROUPS)}")
    now = utcnow()
    since = _day("from", now - dt.timedelta(days=30))
    until = _day("to", now)
    if request.args.get("to") and len(request.args["to"]) == 10:  # a date: through the end of that day
        until += dt.timedelta(days=1)
    if until <= since:
        raise ApiError(400, "bad_request", "to must be after from")
    with runtime().db.session() as session:
        card = ratecard.current(session, g.workspace_id)
        report = costs.spend(session, card, g.workspace_id, since, until, group_by)
    return {"from": iso_utc(since), "to": iso_utc(until), "group_by": group_by,
            "basis": "messages Meta marked billable and delivered (or read), priced by the rate card for their "
                     "pricing category and recipient country on the day sent",
            "rate_card": {"origin": card.origin, "source": card.source}, **report}
