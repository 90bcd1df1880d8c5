"""Send messages, follow sends (cancel, replay dead ones) and manage templates."""
from __future__ import annotations

import datetime as dt
import logging

from flask import g, request
from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema
from sqlalchemy import select, update

from hub.api import cursors, ids, owned, page_args, runtime, workspace_blueprint
from hub.api.errors import ApiError
from hub.api.schema_fields import UtcDateTime
from hub.core import bsuid, contacts
from hub.core.connectors import normalize_phone
from hub.core.models import Connection, Contact, Message, Send, Template, utcnow
from hub.core.processing import enqueue_all
from hub.core.sending import checks, routing
from hub.core.sending.pipeline import delivery_job, jobs_for
from hub.core.sending.routing import REASONS
from hub.core.sending.sends import create_send, find_idempotent
from hub.core.sending.templates import params_problem, upsert_templates
from hub.core.whatsapp import reads
from hub.core.whatsapp.graph import Graph, GraphError

log = logging.getLogger(__name__)
bp = workspace_blueprint("sending", "Messages, sends and templates")


class MessageIn(Schema):
    to = fields.String(load_default=None, metadata={"description": "E.164 number (or WhatsApp digits)"})
    to_user_id = fields.String(load_default=None, validate=validate.Length(1, 160), metadata={
        "description": "a business-scoped user ID (BSUID, e.g. US.13491208655302741918): for users "
                       "known without a phone number"})
    contact_id = ids.PublicId("ct", load_default=None, allow_none=True, metadata={
        "description": "a contact of this workspace (ct_…): its phone number if known, else its BSUID"})
    connection_id = fields.String(load_default=None)
    text = fields.String(load_default=None, validate=validate.Length(1, 4096))
    template = fields.String(load_default=None)
    language = fields.String(load_default="en_US")
    params = fields.Raw(load_default=list)
    idempotency_key = fields.String(load_default=None)
    send_at = UtcDateTime(load_default=None)
    cancel_key = fields.String(load_default=None)
    reply_to = fields.String(load_default=None, validate=validate.Length(1, 200), metadata={
        "description": "the wamid of the customer's message this answers: sent as a reply (context) from the "
                       "number it came in on; marks it read first when the number's read_receipts policy is "
                       "agent_replied or on"})
    typing = fields.Boolean(load_default=False, metadata={
        "description": "show the typing indicator (sent with the read receipt) before the reply; needs reply_to "
                       "and a read_receipts policy other than off"})

    @validates_schema
    def one_kind(self, data, **_):
        if sum(data.get(k) is not None for k in ("to", "to_user_id", "contact_id")) != 1:
            raise ValidationError("give exactly one recipient: to, to_user_id or contact_id")
        if bool(data.get("text")) == bool(data.get("template")):
            raise ValidationError("give either text or template")
        if data.get("typing") and not data.get("reply_to"):
            raise ValidationError("the typing indicator goes only with a reply: give reply_to", "typing")
        problem = params_problem(data.get("params"))
        if problem:
            raise ValidationError(problem, "params")

    @post_load
    def naive_utc(self, data, **_):
        when = data.get("send_at")
        if when is not None and when.tzinfo is not None:  # stored as naive UTC
            try:
                data["send_at"] = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
            except OverflowError as exc:  # 9999-12-31T23:00-05:00, 0001-01-01T00:00+05:00
                raise ValidationError("send_at is out of range once converted to UTC", "send_at") from exc
        return data


class SendOut(Schema):
    id = ids.PublicId("snd")
    connection_id = fields.String(allow_none=True)
    contact_id = ids.PublicId("ct", allow_none=True)
    to = fields.String()
    kind = fields.String()
    text = fields.String(allow_none=True)
    template_name = fields.String(allow_none=True)
    template_language = fields.String(allow_none=True)
    params = fields.Raw()
    category = fields.String(allow_none=True)
    origin = fields.String()
    installation_id = fields.String(allow_none=True)
    connection_reason = fields.String(allow_none=True, metadata={
        "description": "why the send leaves from connection_id: " + "; ".join(f"{k}: {v}" for k, v in REASONS.items())})
    broadcast_id = fields.String(allow_none=True)
    idempotency_key = fields.String(allow_none=True)
    cancel_key = fields.String(allow_none=True)
    reply_to = fields.String(allow_none=True)
    typing = fields.Boolean(allow_none=True)
    reference = fields.Dict()
    not_before = UtcDateTime(allow_none=True)
    status = fields.String()
    hold_reason = fields.String(allow_none=True)
    attempts = fields.Integer()
    error_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    wamid = fields.String(allow_none=True)
    created_at = UtcDateTime()
    sent_at = UtcDateTime(allow_none=True)


class TemplateOut(Schema):
    id = ids.PublicId("tpl")
    waba_id = fields.String()
    meta_id = fields.String(allow_none=True)
    name = fields.String()
    language = fields.String()
    category = fields.String(allow_none=True)
    status = fields.String()
    status_reason = fields.String(allow_none=True)
    components = fields.List(fields.Dict())


@bp.route("/messages", methods=["POST"])
@bp.arguments(MessageIn)
@bp.response(202, SendOut)
def send_message(body):
    """Queue a text (inside the 24-hour window) or template message; ``send_at`` schedules it.

    The recipient is ``to`` (a phone number), ``to_user_id`` (a BSUID, for users known without a
    number) or ``contact_id``; authentication templates need a phone number (422 otherwise).

    Without ``connection_id`` it leaves from the number the customer last wrote to, else the
    workspace's oldest active number (``connection_reason`` on the send says which applied).
    What is knowable now is answered with 422: no number, an opted-out contact, a template not
    approved for that number's account and language or with the wrong parameters, free text
    outside that number's 24-hour window."""
    with runtime().db.session() as session:
        send, created = queue_checked(session, body, recipient(session, body))
        jobs = jobs_for(send) if created else []
    enqueue_all(runtime(), jobs)
    return send


def recipient(session, body: dict) -> str:
    """The send's ``to``: a normalized phone number, or a BSUID (``to_user_id``, or the BSUID of a
    ``contact_id`` that has no phone number); 422 when it cannot be addressed."""
    if body["contact_id"] is not None:
        contact = owned(session, Contact, body["contact_id"])
        if not (contact.wa_id or contact.user_id):
            raise ApiError(422, "contact_unreachable", f"contact {contact.id} has neither a phone number nor a BSUID")
        return contact.wa_id or contact.user_id
    if body["to_user_id"] is not None:
        if not bsuid.is_bsuid(body["to_user_id"]):
            raise ApiError(422, "invalid_user_id", f"{body['to_user_id']!r} is not a business-scoped user ID "
                                                   "(a two-letter country code, a period, then letters and digits)")
        return body["to_user_id"]
    to = normalize_phone(body["to"])
    if not to:
        raise ApiError(422, "invalid_phone", f"{body['to']!r} is not a valid phone number")
    return to


def queue_checked(session, body: dict, to: str) -> tuple[Send, bool]:
    """Choose the number (``routing``), answer what is knowable now with 422 (``checks``), and
    insert the send. A repeated idempotency key returns the first send unchecked."""
    existing = find_idempotent(session, g.workspace_id, body["idempotency_key"])
    if existing is not None:
        return existing, False
    kind = "template" if body["template"] else "text"
    language = body["language"] if body["template"] else None
    replied = _replied(session, body, to)
    route = routing.requested(owned(session, Connection, body["connection_id"])) if body["connection_id"] \
        else routing.Route(session.get(Connection, replied.connection_id), "reply_to") if replied is not None \
        else routing.choose(session, g.workspace_id, to=to, template=body["template"], language=language)
    if replied is not None and route.connection_id != replied.connection_id:
        raise ApiError(422, "reply_to_other_number", "a reply leaves from the number the customer wrote to "
                                                     f"({replied.connection_id}); drop connection_id or use that one")
    if replied is not None and body["typing"]:
        try:
            reads.check(route.connection, reply=True)
        except reads.ReadRefused as refused:
            raise ApiError(422, refused.code, "the typing indicator is sent with a read receipt, which this number's "
                                              f"policy forbids: {refused.message}") from refused
    contact = contacts.find_recipient(session, g.workspace_id, to)
    try:
        checks.check_request(session, workspace_id=g.workspace_id, conn=route.connection, contact=contact,
                             kind=kind, origin="api", template=body["template"], language=language,
                             params=body["params"], scheduled=bool(body["send_at"] and body["send_at"] > utcnow()),
                             to=to)
    except checks.SendProblem as problem:
        log.info("send to …%s refused at request time: %s", to[-4:], problem.code)
        raise ApiError(422, problem.code, problem.message, connection_id=route.connection_id,
                       connection_reason=route.reason) from problem
    send, created = create_send(
        session, workspace_id=g.workspace_id, connection=route.connection, to=to, origin="api", kind=kind,
        text=body["text"], template=body["template"], language=language, params=body["params"],
        idempotency_key=body["idempotency_key"], cancel_key=body["cancel_key"], not_before=body["send_at"],
        connection_reason=route.reason)
    if created and replied is not None:
        send.reply_to, send.typing = replied.wamid, bool(body["typing"])
    session.flush()
    log.info("send %s to …%s queued from %s (%s)", send.id, to[-4:], route.connection_id, route.reason)
    return send, created


def _replied(session, body: dict, to: str) -> Message | None:
    """The customer message ``reply_to`` names (422 when it is not this workspace's, not inbound or
    not from ``to``)."""
    if not body.get("reply_to"):
        return None
    message = session.scalars(select(Message).where(Message.workspace_id == g.workspace_id,
                                                    Message.wamid == body["reply_to"])).first()
    if message is None or message.direction != "in":
        raise ApiError(422, "unknown_reply_to", f"reply_to: no message {body['reply_to']!r} from a customer "
                                                "in this workspace")
    contact = session.get(Contact, message.contact_id) if message.contact_id else None
    if contact is None or contact.wa_id != to:
        raise ApiError(422, "reply_to_other_contact", "reply_to names a message from another customer than `to`")
    return message


SEND_STATUSES = ("scheduled", "queued", "sending", "sent", "failed", "dead", "cancelled")


@bp.route("/sends", methods=["GET"])
@bp.response(200, SendOut(many=True))
def list_sends():
    """``?status=scheduled|queued|sending|sent|failed|dead|cancelled``, ``?broadcast_id=``, ``?contact_id=``;
    newest first. Paging: ``?cursor=`` (the ``X-Next-Cursor`` header of the previous page) or ``offset``."""
    limit, offset = page_args()
    after = cursors.cursor_arg("snd")
    query = select(Send).where(Send.workspace_id == g.workspace_id)
    if request.args.get("status") and request.args["status"] not in SEND_STATUSES:
        raise ApiError(422, "invalid_filter", f"status must be one of {', '.join(SEND_STATUSES)}")
    for arg, column in (("status", Send.status), ("broadcast_id", Send.broadcast_id),
                        ("hold_reason", Send.hold_reason)):
        if request.args.get(arg):
            query = query.where(column == request.args[arg])
    contact_id = ids.query_arg("contact_id", "ct")
    if contact_id is not None:
        query = query.where(Send.contact_id == contact_id)
    if after is not None:
        query = query.where(Send.id < after)
    with runtime().db.session() as session:
        return cursors.page(session.scalars(query.order_by(Send.id.desc()).limit(limit).offset(offset)).all(),
                            limit, "snd")


@bp.route("/sends/<pid(snd):send_id>", methods=["GET"])
@bp.response(200, SendOut)
def get_send(send_id):
    with runtime().db.session() as session:
        return owned(session, Send, send_id)


@bp.route("/sends/<pid(snd):send_id>/cancel", methods=["POST"])
@bp.response(200, SendOut)
def cancel_send(send_id):
    with runtime().db.session() as session:
        send = owned(session, Send, send_id)
        changed = session.execute(  # conditional: a worker may claim it at this very moment
            update(Send).where(Send.id == send_id, Send.status.in_(("scheduled", "queued")))
            .values(status="cancelled", last_error="cancelled through the API", updated_at=utcnow())).rowcount
        session.refresh(send)
        if not changed:
            raise ApiError(409, "conflict", f"a {send.status} send cannot be cancelled")
        return send


@bp.route("/sends/<pid(snd):send_id>/replay", methods=["POST"])
@bp.response(202, SendOut)
def replay_send(send_id):
    """Send a dead or failed send again (after fixing what made it fail)."""
    with runtime().db.session() as session:
        send = owned(session, Send, send_id)
        if send.status not in ("dead", "failed"):
            raise ApiError(409, "conflict", f"only dead or failed sends are replayed, this one is {send.status}")
        if send.connection_id is None:
            route = routing.choose(session, g.workspace_id, contact_id=send.contact_id, to=send.to,
                                   template=send.template_name, language=send.template_language)
            send.connection_id, send.connection_reason = route.connection_id, route.reason
        send.status, send.attempts, send.not_before, send.hold_reason = "queued", 0, None, None
        send.updated_at = utcnow()
    enqueue_all(runtime(), [delivery_job(send_id)])
    return send


@bp.route("/templates", methods=["GET"])
@bp.response(200, TemplateOut(many=True))
def list_templates():
    with runtime().db.session() as session:
        return session.scalars(select(Template).where(Template.workspace_id == g.workspace_id)
                               .order_by(Template.name, Template.language)).all()


@bp.route("/templates/sync", methods=["POST"])
@bp.response(200, TemplateOut(many=True))
def sync_templates():
    """Fetch every connected WABA's templates from the Graph API."""
    rt = runtime()
    with rt.db.session() as session:
        conns = session.scalars(select(Connection).where(Connection.workspace_id == g.workspace_id)).all()
        if not conns:
            raise ApiError(422, "no_connection", "this workspace has no WhatsApp number, and templates belong to a "
                                                 "number's WhatsApp Business Account: connect a number first "
                                                 "(POST /api/v1/connections/onboard), then sync")
        graph = Graph.from_settings(rt.settings)
        for conn in {c.waba_id: c for c in conns}.values():
            try:
                upsert_templates(session, g.workspace_id, conn.waba_id, graph.templates(conn.waba_id, conn.access_token))
            except GraphError as exc:
                raise ApiError(502, "graph_error", f"listing templates of {conn.waba_id} failed: {exc}") from exc
        session.flush()
        return session.scalars(select(Template).where(Template.workspace_id == g.workspace_id)
                               .order_by(Template.name, Template.language)).all()
