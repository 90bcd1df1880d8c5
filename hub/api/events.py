"""Dead letters a user can see and replay: inbound events and outbox deliveries."""
from __future__ import annotations

from flask import g, request
from marshmallow import Schema, fields
from sqlalchemy import select

from hub.api import owned, page_args, runtime, workspace_blueprint
from hub.api.errors import ApiError
from hub.core.models import InboundEvent, OutboundDelivery, utcnow
from hub.core.ingest import process_job
from hub.core.outbox import outbox_job
from hub.core.processing import enqueue_all

bp = workspace_blueprint("events", "Inbound events and outbox deliveries (dead letters, replay)")


class EventOut(Schema):
    id = fields.Integer()
    provider = fields.String()
    scope = fields.String()
    topic = fields.String(allow_none=True)
    dedupe_key = fields.String()
    status = fields.String()
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    outcome = fields.Dict(allow_none=True)
    received_at = fields.DateTime()
    processed_at = fields.DateTime(allow_none=True)


class DeliveryOut(Schema):
    id = fields.Integer()
    kind = fields.String()
    target = fields.String()
    event_type = fields.String(allow_none=True)
    payload = fields.Dict()
    status = fields.String()
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    response_status = fields.Integer(allow_none=True)
    next_attempt_at = fields.DateTime()
    created_at = fields.DateTime()
    delivered_at = fields.DateTime(allow_none=True)


def _listing(model, order):
    limit, offset = page_args()
    query = select(model).where(model.workspace_id == g.workspace_id)
    if request.args.get("status"):
        query = query.where(model.status == request.args["status"])
    with runtime().db.session() as session:
        return session.scalars(query.order_by(order.desc()).limit(limit).offset(offset)).all()


@bp.route("/events", methods=["GET"])
@bp.response(200, EventOut(many=True))
def list_events():
    return _listing(InboundEvent, InboundEvent.id)


def _replay(model, row_id: int):
    """Put a dead, failed or unrouted row back to pending and enqueue its job."""
    with runtime().db.session() as session:
        row = owned(session, model, row_id)
        if row.status not in ("dead", "failed", "unrouted"):  # replaying finished work would repeat it
            raise ApiError(409, "conflict", f"only dead or unrouted rows are replayed; this one is {row.status}")
        row.status, row.attempts, row.next_attempt_at, row.enqueued_at = "pending", 0, utcnow(), utcnow()
        job = process_job(row_id) if model is InboundEvent else outbox_job(row)
    enqueue_all(runtime(), [job])
    return row


@bp.route("/events/<int:event_id>/replay", methods=["POST"])
@bp.response(202, EventOut)
def replay_event(event_id):
    return _replay(InboundEvent, event_id)


@bp.route("/deliveries", methods=["GET"])
@bp.response(200, DeliveryOut(many=True))
def list_deliveries():
    return _listing(OutboundDelivery, OutboundDelivery.id)


@bp.route("/deliveries/<int:delivery_id>/replay", methods=["POST"])
@bp.response(202, DeliveryOut)
def replay_delivery(delivery_id):
    return _replay(OutboundDelivery, delivery_id)
