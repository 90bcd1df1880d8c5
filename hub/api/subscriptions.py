"""Webhook subscriptions (``/api/v1/subscriptions``) and the event catalogue (``/event-types``).

A subscription receives the events it lists, signed per Standard Webhooks with its
``whsec_…`` secret (shown at creation and rotation only, stored encrypted). Deliveries retry
0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h, then wait as dead letters to be
replayed. Ordering between events is not promised: each carries an id and a timestamp.
"""
from __future__ import annotations

import base64
import datetime as dt
import secrets

from flask import g, request
from marshmallow import Schema, ValidationError, fields, validate, validates
from sqlalchemy import select

from hub.api import ids, owned, page_args, runtime, workspace_blueprint
from hub.api.errors import ApiError
from hub.api.events import DeliveryOut, deliveries_page
from hub.api.schema_fields import UtcDateTime
from hub.core.events import catalogue, record
from hub.core.models import OutboundDelivery, Subscription, utcnow
from hub.core.outbox import outbox_job
from hub.core.processing import enqueue_all
from hub.core.safe_http import Refused, resolve

bp = workspace_blueprint("subscriptions", "Webhook subscriptions to the hub's events, and the event catalogue")
MAX_OVERLAP = 7 * 86400


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class EventTypeOut(Schema):
    name = fields.String()
    description = fields.String()
    source = fields.String(metadata={"description": "core, or the connector that declares it"})
    schema = fields.Dict(metadata={"description": "JSON Schema of the event's data"})
    example = fields.Dict(metadata={"description": "an example of the event's data"})


class SubscriptionPatch(Schema):
    url = fields.String(validate=validate.Length(max=2000),
                        metadata={"description": "https endpoint receiving the events (POST)"})
    events = fields.List(fields.String(validate=validate.Length(min=1, max=64)),
                         validate=validate.Length(min=1, max=100),
                         metadata={"description": "event types, prefixes like message.* or *"})
    description = fields.String(allow_none=True, validate=validate.Length(max=500))
    enabled = fields.Boolean()

    @validates("events")
    def _known(self, value, **_):
        names = catalogue(runtime().plugins)
        unknown = [e for e in value if e != "*" and e not in names
                   and not (e.endswith(".*") and any(n.startswith(e[:-1]) for n in names))]
        if unknown:
            raise ValidationError(f"unknown event types: {', '.join(unknown)} (see GET /api/v1/event-types)")


class SubscriptionIn(SubscriptionPatch):
    url = fields.String(required=True, validate=validate.Length(max=2000),
                        metadata={"description": "https endpoint receiving the events (POST)"})
    events = fields.List(fields.String(validate=validate.Length(min=1, max=64)), required=True,
                         validate=validate.Length(min=1, max=100),
                         metadata={"description": "event types, prefixes like message.* or *"})
    enabled = fields.Boolean(load_default=True)


class SubscriptionOut(Schema):
    id = fields.String()
    kind = fields.String()
    url = fields.String(attribute="target_url")
    events = fields.List(fields.String())
    description = fields.String(allow_none=True)
    enabled = fields.Boolean()
    disabled_reason = fields.String(allow_none=True)
    disabled_at = UtcDateTime(allow_none=True)
    failing_since = UtcDateTime(allow_none=True, metadata={
        "description": "first failure of the current run of failures; 5 days of them disable it"})
    previous_secret_expires_at = UtcDateTime(allow_none=True, metadata={
        "description": "until then deliveries are signed with the old secret too"})
    created_at = UtcDateTime()
    updated_at = UtcDateTime(allow_none=True)


class SubscriptionCreated(SubscriptionOut):
    secret = fields.String(metadata={"description": "whsec_…: shown once; verify deliveries with it"})


class RotateIn(Schema):
    overlap_seconds = fields.Integer(load_default=86400, validate=validate.Range(min=0, max=MAX_OVERLAP),
                                     metadata={"description": "how long the old secret keeps signing too"})


class ReplayIn(Schema):
    since = fields.AwareDateTime(required=True, default_timezone=dt.timezone.utc,
                                 metadata={"description": "replay the dead deliveries created since then"})


class ReplayOut(Schema):
    replayed = fields.Integer()


class TestOut(Schema):
    event_id = fields.String()
    delivery_id = ids.PublicId("dlv")


def _check_url(url: str) -> None:
    """400 with the reason for a URL the hub will not call (checked again at each delivery)."""
    try:
        resolve(url, runtime().settings.outbound_allow_private)
    except Refused as exc:
        raise ApiError(400, "bad_url", str(exc)) from None


@bp.route("/event-types", methods=["GET"])
@bp.response(200, EventTypeOut(many=True))
def list_event_types():
    """Every event a subscription can receive: core events and connectors' own."""
    return [e.as_dict() for e in catalogue(runtime().plugins).values()]


@bp.route("/subscriptions", methods=["GET"])
@bp.response(200, SubscriptionOut(many=True))
def list_subscriptions():
    """``?kind=webhook|zapier``."""
    limit, offset = page_args()
    query = select(Subscription).where(Subscription.workspace_id == g.workspace_id)
    if request.args.get("kind"):
        query = query.where(Subscription.kind == request.args["kind"])
    with runtime().db.session() as session:
        return session.scalars(query.order_by(Subscription.created_at.desc(), Subscription.id)
                               .limit(limit).offset(offset)).all()


@bp.route("/subscriptions", methods=["POST"])
@bp.arguments(SubscriptionIn)
@bp.response(201, SubscriptionCreated)
def create_subscription(body):
    """Subscribe a URL; the answer holds the signing secret, never shown again."""
    _check_url(body["url"])
    secret = new_secret()
    with runtime().db.session() as session:
        sub = Subscription(workspace_id=g.workspace_id, kind="webhook", target_url=body["url"],
                           events=list(dict.fromkeys(body["events"])), description=body.get("description"),
                           enabled=body["enabled"], secret=secret)
        session.add(sub)
        session.flush()
        return sub  # its ``secret`` (decrypted in memory) is shown this once


@bp.route("/subscriptions/<sub_id>", methods=["GET"])
@bp.response(200, SubscriptionOut)
def get_subscription(sub_id):
    with runtime().db.session() as session:
        return owned(session, Subscription, sub_id)


@bp.route("/subscriptions/<sub_id>", methods=["PATCH"])
@bp.arguments(SubscriptionPatch)
@bp.response(200, SubscriptionOut)
def patch_subscription(body, sub_id):
    """Change the URL, events, description; ``enabled: true`` turns a disabled one back on."""
    if "url" in body:
        _check_url(body["url"])
    with runtime().db.session() as session:
        sub = owned(session, Subscription, sub_id)
        if "url" in body:
            sub.target_url = body["url"]
        if "events" in body:
            sub.events = list(dict.fromkeys(body["events"]))
        if "description" in body:
            sub.description = body["description"]
        if "enabled" in body and body["enabled"] != sub.enabled:
            sub.enabled = body["enabled"]
            sub.disabled_reason, sub.disabled_at = (None, None) if sub.enabled else ("disabled through the API",
                                                                                     utcnow())
            sub.failing_since = None
        return sub


@bp.route("/subscriptions/<sub_id>", methods=["DELETE"])
@bp.response(204)
def delete_subscription(sub_id):
    """Remove it; deliveries still pending for it go dead (nothing more is sent)."""
    with runtime().db.session() as session:
        session.delete(owned(session, Subscription, sub_id))


@bp.route("/subscriptions/<sub_id>/rotate-secret", methods=["POST"])
@bp.arguments(RotateIn)
@bp.response(200, SubscriptionCreated)
def rotate_secret(body, sub_id):
    """A new secret (shown once); the old one also signs for ``overlap_seconds`` (default a day),
    so receivers can switch without losing a delivery."""
    secret = new_secret()
    with runtime().db.session() as session:
        sub = owned(session, Subscription, sub_id)
        sub.previous_secret, sub.secret = sub.secret, secret
        sub.previous_secret_expires_at = utcnow() + dt.timedelta(seconds=body["overlap_seconds"])
        session.flush()
        return sub


@bp.route("/subscriptions/<sub_id>/test", methods=["POST"])
@bp.response(202, TestOut)
def send_test(sub_id):
    """Send a ``test.event`` to this subscription only (whatever events it lists)."""
    with runtime().db.session() as session:
        sub = owned(session, Subscription, sub_id)
        if not sub.enabled:
            raise ApiError(409, "conflict", "the subscription is disabled: enable it first")
        evt, [row] = record(session, g.workspace_id, "test.event",
                            {"message": "Hello from coexhub", "subscription_id": sub.id}, only=[sub])
        return {"event_id": evt.id, "delivery_id": row.id}


@bp.route("/subscriptions/<sub_id>/deliveries", methods=["GET"])
@bp.response(200, DeliveryOut(many=True))
def list_subscription_deliveries(sub_id):
    """Its deliveries, newest first; ``?status=dead`` lists the dead letters."""
    limit, offset = page_args()
    with runtime().db.session() as session:
        owned(session, Subscription, sub_id)
        return deliveries_page(session, limit, offset,
                               OutboundDelivery.kind == "webhook", OutboundDelivery.target == sub_id)


@bp.route("/subscriptions/<sub_id>/replay", methods=["POST"])
@bp.arguments(ReplayIn)
@bp.response(202, ReplayOut)
def replay_since(body, sub_id):
    """Replay every dead delivery of this subscription created since ``since`` (one delivery:
    ``POST /deliveries/{id}/replay``)."""
    since = body["since"].astimezone(dt.timezone.utc).replace(tzinfo=None)
    now = utcnow()
    with runtime().db.session() as session:
        sub = owned(session, Subscription, sub_id)
        if not sub.enabled:
            raise ApiError(409, "conflict", "the subscription is disabled: enable it first")
        rows = session.scalars(select(OutboundDelivery).where(
            OutboundDelivery.workspace_id == g.workspace_id, OutboundDelivery.kind == "webhook",
            OutboundDelivery.target == sub_id, OutboundDelivery.status == "dead",
            OutboundDelivery.created_at >= since).order_by(OutboundDelivery.id)).all()
        for row in rows:
            row.status, row.attempts, row.next_attempt_at, row.enqueued_at = "pending", 0, now, now
        jobs = [outbox_job(row) for row in rows]
    enqueue_all(runtime(), jobs)
    return {"replayed": len(jobs)}
