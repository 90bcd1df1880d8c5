"""Dead letters a user can see and replay: inbound events and outbox deliveries.

A Meta delivery can hold several workspaces' numbers: each of them lists, reads and replays
it (``hub.core.tenancy``), and what one reads of a shared delivery holds nothing of the
others — its outcome keeps only counts and the reader's own sends. Error texts are stored
without SQL parameters or payload values (``hub.core.public_errors``).
"""
from __future__ import annotations

from typing import Any

from flask import g, request
from marshmallow import Schema, fields
from sqlalchemy import select

from hub.api import ids, owned, page_args, runtime, workspace_blueprint
from hub.api.errors import ApiError
from hub.api.schema_fields import UtcDateTime
from hub.core import tenancy
from hub.core.ingest import process_job
from hub.core.models import InboundEvent, InboundEventWorkspace, OutboundDelivery, Send, utcnow
from hub.core.outbox import outbox_job
from hub.core.processing import enqueue_all
from hub.core.public_errors import redact

bp = workspace_blueprint("events", "Inbound events and outbox deliveries (dead letters, replay)")
REPLAYABLE = ("dead", "failed", "unrouted")


class EventOut(Schema):
    id = ids.PublicId("evt")
    provider = fields.String()
    scope = fields.String()
    topic = fields.String(allow_none=True)
    dedupe_key = fields.String()
    status = fields.String()
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    outcome = fields.Dict(allow_none=True)
    shared = fields.Boolean(metadata={"description": "the delivery also concerns other workspaces; "
                                                     "what is theirs is not shown"})
    received_at = UtcDateTime()
    processed_at = UtcDateTime(allow_none=True)


class DeliveryOut(Schema):
    id = ids.PublicId("dlv")
    kind = fields.String()
    target = fields.String()
    event_type = fields.String(allow_none=True)
    event_id = fields.String(allow_none=True, metadata={"description": "evt_…: the webhook-id of every attempt"})
    payload = fields.Dict()
    status = fields.String()
    attempts = fields.Integer()
    last_error = fields.Function(lambda row: public_text(row.last_error), allow_none=True)
    response_status = fields.Integer(allow_none=True)
    next_attempt_at = UtcDateTime()
    created_at = UtcDateTime()
    delivered_at = UtcDateTime(allow_none=True)


def public_text(stored: str | None) -> str | None:
    """A stored error as the API shows it (rows written before errors were stored safely
    may still carry SQL or a traceback: only their first line is shown, redacted)."""
    if not stored:
        return stored
    first = stored.strip().splitlines()[-1] if stored.lstrip().startswith("Traceback") else stored.splitlines()[0]
    return redact(first.split("[SQL:")[0].strip())[:300]


def _event_views(session, events: list[InboundEvent]) -> list[dict[str, Any]]:
    """What the calling workspace may read of these events."""
    event_ids = [e.id for e in events]
    linked = set(session.scalars(select(InboundEventWorkspace.event_id).where(
        InboundEventWorkspace.event_id.in_(event_ids), InboundEventWorkspace.workspace_id != g.workspace_id))) \
        if event_ids else set()
    views = []
    for event in events:
        shared = event.id in linked or event.workspace_id not in (None, g.workspace_id)
        view = {name: getattr(event, name) for name in EventOut().fields if name not in ("shared",)}
        view["last_error"], view["shared"] = public_text(event.last_error), shared
        view["outcome"] = _public_outcome(_own_outcome(session, event.outcome) if shared else event.outcome)
        views.append(view)
    return views


def _public_outcome(outcome: dict | None) -> dict | None:
    """The outcome with its send ids as public ids (``sends``, ``attributed``)."""
    if not isinstance(outcome, dict):
        return outcome
    shown = dict(outcome)
    if "sends" in outcome:
        shown["sends"] = [ids.encode("snd", s) for s in _list(outcome["sends"]) if _is_id(s)]
    if "attributed" in outcome:
        attributed = outcome["attributed"]
        shown["attributed"] = ids.encode("snd", attributed) if _is_id(attributed) else None
    return shown


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def _own_outcome(session, outcome: dict | None) -> dict | None:
    """Of a shared delivery's outcome: the counts and the caller's own sends, nothing else."""
    if not isinstance(outcome, dict):
        return outcome
    mine = {k: v for k, v in outcome.items()
            if isinstance(v, int) and not isinstance(v, bool) and k != "attributed"}
    send_ids = [s for s in [*_list(outcome.get("sends")), outcome.get("attributed")] if _is_id(s)]
    own = set(session.scalars(select(Send.id).where(Send.id.in_(send_ids), Send.workspace_id == g.workspace_id)))
    mine["sends"] = [s for s in _list(outcome.get("sends")) if s in own]
    if _is_id(outcome.get("attributed")) and outcome["attributed"] in own:
        mine["attributed"] = outcome["attributed"]
    return mine


def _visible_event(session, event_id: int) -> InboundEvent:
    """The event if it concerns the caller's workspace, else 404 (as if it did not exist)."""
    visible = 0 < event_id < 2**63 and session.scalar(select(InboundEvent.id).where(
        InboundEvent.id == event_id, tenancy.visible_to(g.workspace_id)))
    if not visible:
        raise ids.not_found("evt", ids.encode("evt", event_id) if _is_id(event_id) else event_id)
    return session.get(InboundEvent, event_id)


@bp.route("/events", methods=["GET"])
@bp.response(200, EventOut(many=True))
def list_events():
    """Newest first; ``?status=dead`` lists dead letters. Includes deliveries shared with other workspaces."""
    limit, offset = page_args()
    status = [InboundEvent.status == request.args["status"]] if request.args.get("status") else []
    newest = limit + offset
    # two index-backed queries merged here: one OR across both tables scans the whole event table
    own = select(InboundEvent.id).where(InboundEvent.workspace_id == g.workspace_id, *status)
    linked = select(InboundEventWorkspace.event_id).join(InboundEvent, InboundEvent.id == InboundEventWorkspace.event_id) \
        .where(InboundEventWorkspace.workspace_id == g.workspace_id, *status)
    with runtime().db.session() as session:
        ids = set(session.scalars(own.order_by(InboundEvent.id.desc()).limit(newest)))
        ids |= set(session.scalars(linked.order_by(InboundEventWorkspace.event_id.desc()).limit(newest)))
        page = sorted(ids, reverse=True)[offset:offset + limit]
        events = session.scalars(select(InboundEvent).where(InboundEvent.id.in_(page))
                                 .order_by(InboundEvent.id.desc())).all() if page else []
        return _event_views(session, events)


@bp.route("/events/<pid(evt):event_id>", methods=["GET"])
@bp.response(200, EventOut)
def get_event(event_id):
    with runtime().db.session() as session:
        return _event_views(session, [_visible_event(session, event_id)])[0]


def _replay_check(row) -> None:
    if row.status not in REPLAYABLE:  # replaying finished work would repeat it
        raise ApiError(409, "conflict", f"only dead or unrouted rows are replayed; this one is {row.status}")
    row.status, row.attempts, row.next_attempt_at, row.enqueued_at = "pending", 0, utcnow(), utcnow()


@bp.route("/events/<pid(evt):event_id>/replay", methods=["POST"])
@bp.response(202, EventOut)
def replay_event(event_id):
    """Put a dead, failed or unrouted event back to pending and enqueue it (for every workspace it concerns)."""
    with runtime().db.session() as session:
        event = _visible_event(session, event_id)
        _replay_check(event)
        session.flush()
        view = _event_views(session, [event])[0]
    enqueue_all(runtime(), [process_job(event_id)])
    return view


@bp.route("/deliveries", methods=["GET"])
@bp.response(200, DeliveryOut(many=True))
def list_deliveries():
    limit, offset = page_args()
    with runtime().db.session() as session:
        return deliveries_page(session, limit, offset)


def deliveries_page(session, limit: int, offset: int, *where) -> list[OutboundDelivery]:
    """The workspace's deliveries matching ``where`` and ``?status=``, newest first, one page."""
    query = select(OutboundDelivery).where(OutboundDelivery.workspace_id == g.workspace_id, *where)
    if request.args.get("status"):
        query = query.where(OutboundDelivery.status == request.args["status"])
    return session.scalars(query.order_by(OutboundDelivery.id.desc()).limit(limit).offset(offset)).all()


@bp.route("/deliveries/<pid(dlv):delivery_id>", methods=["GET"])
@bp.response(200, DeliveryOut)
def get_delivery(delivery_id):
    with runtime().db.session() as session:
        return owned(session, OutboundDelivery, delivery_id)


@bp.route("/deliveries/<pid(dlv):delivery_id>/replay", methods=["POST"])
@bp.response(202, DeliveryOut)
def replay_delivery(delivery_id):
    """Put a dead or failed delivery back to pending and enqueue it."""
    with runtime().db.session() as session:
        row = owned(session, OutboundDelivery, delivery_id)
        _replay_check(row)
        job = outbox_job(row)
    enqueue_all(runtime(), [job])
    return row
