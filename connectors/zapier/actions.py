"""What a Zap (or Make, n8n, any client) can do with a workspace API key, keyed by phone number:
send a template or a text, upsert a contact, tag/untag, opt out/in; plus the auth test
(``GET /api/v1/me``) and the dropdown sources (``GET /api/v1/zapier/templates``).

Sends go through exactly what ``POST /api/v1/messages`` runs (``MessageIn`` validation, then
``queue_checked``: routing and the request-time checks — opt-out, template approval and
parameters, the 24-hour window — each answered 422 with its reason). Contact changes go
through ``ContactPatch`` and ``apply_patch``, as ``PATCH /api/v1/contacts/{id}`` does.
"""
from __future__ import annotations

import logging

from flask import g
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import select

from hub.api import ids, owned, runtime, workspace_blueprint
from hub.api.auth import bearer, hash_key
from hub.api.contacts import ContactOut, ContactPatch, _with_windows, apply_patch
from hub.api.errors import ApiError
from hub.api.sending import MessageIn, SendOut, queue_checked
from hub.core import contacts
from hub.core.connectors import normalize_phone
from hub.core.models import ApiKey, Template, Workspace
from hub.core.processing import enqueue_all
from hub.core.sending.pipeline import delivery_job
from hub.core.sending.templates import _component, placeholders

log = logging.getLogger(__name__)
bp = workspace_blueprint("zapier_actions", "Zapier: auth test, actions keyed by phone number, dropdowns")


class SendTemplateIn(Schema):
    to = fields.String(required=True, metadata={"description": "E.164 number"})
    template_id = ids.PublicId("tpl", load_default=None, allow_none=True,
                               metadata={"description": "from GET /api/v1/zapier/templates"})
    template = fields.String(load_default=None, metadata={"description": "template name (with language)"})
    language = fields.String(load_default=None)
    params = fields.List(fields.Raw(), load_default=list, metadata={"description": "body parameters, in order"})
    connection_id = fields.String(load_default=None)
    idempotency_key = fields.String(load_default=None)


class SendTextIn(Schema):
    to = fields.String(required=True)
    text = fields.String(required=True)
    connection_id = fields.String(load_default=None)
    idempotency_key = fields.String(load_default=None)


class ContactIn(ContactPatch):
    phone = fields.String(required=True, metadata={"description": "E.164 number: the contact is found or created"})
    full_name = fields.String(load_default=None, validate=validate.Length(max=200))
    first_name = fields.String(load_default=None, validate=validate.Length(max=200))


class TemplateChoice(Schema):
    id = ids.PublicId("tpl")
    name = fields.String()
    language = fields.String()
    category = fields.String(allow_none=True)
    waba_id = fields.String()
    param_count = fields.Integer(metadata={"description": "body parameters the template expects"})
    header_param_count = fields.Integer()
    label = fields.String()


class MeOut(Schema):
    workspace = fields.Dict(metadata={"description": "{id, name}"})
    api_key = fields.Dict(metadata={"description": "{id, name, prefix} of the key used"})


@bp.route("/me", methods=["GET"])
@bp.response(200, MeOut)
def me():
    """The auth test: the workspace this API key belongs to (and which key it is)."""
    with runtime().db.session() as session:
        ws = session.get(Workspace, g.workspace_id)
        key = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(bearer()))).first()
        return {"workspace": {"id": ws.id, "name": ws.name},
                "api_key": {"id": key.id, "name": key.name, "prefix": key.prefix}}


def _send(body: dict):
    """Validate ``body`` as ``POST /api/v1/messages`` does and queue it the same way."""
    try:
        loaded = MessageIn().load(body)
    except ValidationError as exc:
        raise ApiError(422, "validation_error", "the request body is not valid", fields=exc.messages) from exc
    to = normalize_phone(loaded["to"])
    if not to:
        raise ApiError(422, "invalid_phone", f"{loaded['to']!r} is not a valid phone number")
    with runtime().db.session() as session:
        send, created = queue_checked(session, loaded, to)
        job = [delivery_job(send.id)] if created and send.status == "queued" else []
    enqueue_all(runtime(), job)
    return send


def _clean(body: dict) -> dict:
    return {k: v for k, v in body.items() if v is not None}


@bp.route("/actions/send-template", methods=["POST"])
@bp.arguments(SendTemplateIn)
@bp.response(202, SendOut)
def send_template(body):
    """Send an approved template; ``template_id`` (the dropdown) or ``template`` + ``language``."""
    if body["template_id"] is not None:
        with runtime().db.session() as session:
            found = owned(session, Template, body["template_id"])
            body["template"], body["language"] = found.name, found.language
    if not body["template"]:
        raise ApiError(422, "validation_error", "give template_id, or template and language")
    return _send(_clean({**{k: v for k, v in body.items() if k != "template_id"},
                         "language": body["language"] or "en_US"}))


@bp.route("/actions/send-text", methods=["POST"])
@bp.arguments(SendTextIn)
@bp.response(202, SendOut)
def send_text(body):
    """Send free text: only inside the 24-hour window of the customer's last message (else 422)."""
    return _send(_clean(body))


@bp.route("/actions/contact", methods=["POST"])
@bp.arguments(ContactIn)
@bp.response(200, ContactOut)
def upsert_contact(body):
    """Find or create the contact by phone, then apply names, attributes, tags, opt-out/in."""
    wa_id = normalize_phone(body["phone"])
    if not wa_id:
        raise ApiError(422, "invalid_phone", f"{body['phone']!r} is not a valid phone number")
    with runtime().db.session() as session:
        contact = contacts.upsert(session, g.workspace_id, wa_id=wa_id, source="api",
                                  full_name=body.get("full_name"), first_name=body.get("first_name"))
        apply_patch(contact, body)
        log.info("contact %s upserted through the actions API (…%s)", contact.id, wa_id[-4:])
        return _with_windows(session, [contact])[0]


@bp.route("/zapier/templates", methods=["GET"])
@bp.response(200, TemplateChoice(many=True))
def template_choices():
    """Approved templates with their parameter counts (the send-template dropdown)."""
    with runtime().db.session() as session:
        rows = session.scalars(select(Template).where(Template.workspace_id == g.workspace_id,
                                                      Template.status == "APPROVED")
                               .order_by(Template.name, Template.language)).all()
        out = []
        for t in rows:
            body = len(placeholders(_component(t, "BODY").get("text")))
            header = _component(t, "HEADER")
            head = len(placeholders(header.get("text"))) if header.get("format", "TEXT").upper() == "TEXT" else 0
            out.append({"id": t.id, "name": t.name, "language": t.language, "category": t.category,
                        "waba_id": t.waba_id, "param_count": body, "header_param_count": head,
                        "label": f"{t.name} ({t.language}, {body} parameter{'s' if body != 1 else ''})"})
        return out
