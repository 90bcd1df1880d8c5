"""Zapier REST hooks: subscribe, unsubscribe, perform-list samples.

A hook is a ``Subscription`` with ``kind="zapier"`` and exactly one event, so it is delivered
by the hub's single fan-out (``hub.core.events.publish``) and outbox like any webhook
subscription: the same envelope (``id``, ``type``, ``timestamp``, ``workspace_id``, ``data``),
the same Standard Webhooks signature and retries. A delivery answered 410 removes the hook
(``hub.core.outbox``). Samples are the workspace's recently published events of that type
(``OutboundEvent``), newest first, or the catalogue's example when there are none yet.
"""
from __future__ import annotations

import logging

from flask import g
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from hub.api import runtime, workspace_blueprint
from hub.api.errors import ApiError
from hub.api.subscriptions import new_secret
from hub.core.events import catalogue, envelope
from hub.core.logs import event as log_event
from hub.core.models import OutboundEvent, Subscription, iso_utc, utcnow
from hub.core.safe_http import Refused, resolve

log = logging.getLogger(__name__)
bp = workspace_blueprint("zapier_hooks", "Zapier REST hooks")
SAMPLES = 10


class HookIn(Schema):
    target_url = fields.String(required=True, validate=validate.Length(1, 2000),
                               metadata={"description": "Zapier's URL for this Zap (bundle.targetUrl)"})
    event = fields.String(required=True, metadata={"description": "one event type of GET /api/v1/event-types"})


class HookOut(Schema):
    id = fields.String()
    event = fields.Function(lambda sub: sub.events[0])
    target_url = fields.String()
    secret = fields.String(metadata={"description": "signs the deliveries (Standard Webhooks); shown once"})
    created_at = fields.Function(lambda sub: iso_utc(sub.created_at))


def _known(event_type: str):
    found = catalogue(runtime().plugins).get(event_type)
    if found is None:
        raise ApiError(422, "unknown_event", f"{event_type!r} is not an event type of this hub "
                                             "(GET /api/v1/event-types lists them)")
    return found


@bp.route("/hooks", methods=["POST"])
@bp.arguments(HookIn)
@bp.response(201, HookOut)
def subscribe(body):
    """Subscribe a Zap (REST hook ``performSubscribe``) to one event type."""
    _known(body["event"])
    try:  # the same guard as every delivery (which resolves again and pins what it vetted)
        resolve(body["target_url"], runtime().settings.outbound_allow_private)
    except Refused as exc:
        raise ApiError(400, "bad_url", f"this target URL is refused: {exc}") from exc
    with runtime().db.session() as session:
        sub = Subscription(workspace_id=g.workspace_id, kind="zapier", target_url=body["target_url"],
                           events=[body["event"]], description="Zapier REST hook",
                           secret=new_secret())
        session.add(sub)
        session.flush()
        log_event(log, "zapier hook subscribed", hook_id=sub.id, event=body["event"], workspace_id=g.workspace_id)
        return sub


@bp.route("/hooks/<hook_id>", methods=["DELETE"])
@bp.response(204)
def unsubscribe(hook_id):
    """Remove a Zap's hook (``performUnsubscribe``); another workspace's hook is 404."""
    with runtime().db.session() as session:
        sub = session.get(Subscription, hook_id)
        if sub is None or sub.workspace_id != g.workspace_id or sub.kind != "zapier":
            raise ApiError(404, "not_found", f"no hook {hook_id}")
        session.delete(sub)
        log_event(log, "zapier hook unsubscribed", hook_id=hook_id, workspace_id=g.workspace_id)
    return ""


class HookEventOut(Schema):
    id = fields.String()
    type = fields.String()
    timestamp = fields.String(metadata={"description": "ISO 8601 UTC"})
    workspace_id = fields.String()
    data = fields.Dict(metadata={"description": "per the event type's schema (GET /api/v1/event-types)"})


@bp.route("/hooks/samples/<event_type>", methods=["GET"])
@bp.response(200, HookEventOut(many=True))
def samples(event_type):
    """``performList``: the workspace's latest events of this type, newest first, as delivered;
    the catalogue's example (in the same envelope) when none happened yet."""
    known = _known(event_type)
    with runtime().db.session() as session:
        rows = session.scalars(select(OutboundEvent).where(
            OutboundEvent.workspace_id == g.workspace_id, OutboundEvent.type == event_type)
            .order_by(OutboundEvent.created_at.desc()).limit(SAMPLES)).all()
        found = [envelope(row) for row in rows]
    if found:
        return found
    return [{"id": f"evt_example_{event_type.replace('.', '_')}", "type": event_type,
             "timestamp": iso_utc(utcnow()), "workspace_id": g.workspace_id, "data": known.example}]
