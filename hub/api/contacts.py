"""Contacts: list and search, get, tag, opt out/in, release an echo hold; a contact's thread."""
from __future__ import annotations

import json

from flask import g, request
from marshmallow import Schema, fields
from sqlalchemy import String, or_, select, update

from hub.api import owned, page_args, runtime, workspace_blueprint
from hub.core import contacts
from hub.core.models import Contact, Message, Send, utcnow

bp = workspace_blueprint("contacts", "Contacts and their message threads")


class ContactOut(Schema):
    id = fields.Integer()
    wa_id = fields.String(allow_none=True)
    user_id = fields.String(allow_none=True)
    profile_name = fields.String(allow_none=True)
    full_name = fields.String(allow_none=True)
    first_name = fields.String(allow_none=True)
    source = fields.String()
    tags = fields.List(fields.String())
    attributes = fields.Dict()
    opted_out = fields.Boolean()
    opted_out_at = fields.DateTime(allow_none=True)
    marketing_opted_out = fields.Boolean()
    marketing_consent = fields.Boolean(allow_none=True)
    app_removed_at = fields.DateTime(allow_none=True)
    last_inbound_at = fields.DateTime(allow_none=True)
    hold_until = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class ContactPatch(Schema):
    add_tags = fields.List(fields.String())
    remove_tags = fields.List(fields.String())
    attributes = fields.Dict()
    opted_out = fields.Boolean()
    marketing_opted_out = fields.Boolean()
    marketing_consent = fields.Boolean(allow_none=True)


class MessageOut(Schema):
    id = fields.Integer()
    wamid = fields.String()
    connection_id = fields.String()
    direction = fields.String()
    origin = fields.String()
    type = fields.String()
    body = fields.Dict()
    context_wamid = fields.String(allow_none=True)
    status = fields.String()
    timestamp = fields.DateTime()
    sent_at = fields.DateTime(allow_none=True)
    delivered_at = fields.DateTime(allow_none=True)
    read_at = fields.DateTime(allow_none=True)
    failed_at = fields.DateTime(allow_none=True)
    error = fields.Dict(allow_none=True)
    pricing = fields.Dict(allow_none=True)
    edited_at = fields.DateTime(allow_none=True)
    revoked_at = fields.DateTime(allow_none=True)


@bp.route("/contacts", methods=["GET"])
@bp.response(200, ContactOut(many=True))
def list_contacts():
    """``?q=`` searches number and names; ``?tag=`` filters; ``?opted_out=true``."""
    limit, offset = page_args()
    query = select(Contact).where(Contact.workspace_id == g.workspace_id)
    if request.args.get("q"):
        like = f"%{request.args['q']}%"
        query = query.where(or_(Contact.wa_id.like(like), Contact.profile_name.ilike(like),
                                Contact.full_name.ilike(like)))
    if request.args.get("opted_out"):
        query = query.where(Contact.opted_out.is_(request.args["opted_out"].lower() == "true"))
    tag = request.args.get("tag")
    with runtime().db.session() as session:
        if not tag:
            return session.scalars(query.order_by(Contact.id.desc()).limit(limit).offset(offset)).all()
        # tags are a JSON list (portable across SQLite and PostgreSQL): narrow in SQL, match exactly here
        rows = session.scalars(query.where(Contact.tags.cast(String).contains(json.dumps(tag)))
                               .order_by(Contact.id.desc())).all()
    return [c for c in rows if tag in (c.tags or [])][offset:offset + limit]


@bp.route("/contacts/<int:contact_id>", methods=["GET"])
@bp.response(200, ContactOut)
def get_contact(contact_id):
    with runtime().db.session() as session:
        return owned(session, Contact, contact_id)


@bp.route("/contacts/<int:contact_id>", methods=["PATCH"])
@bp.arguments(ContactPatch)
@bp.response(200, ContactOut)
def patch_contact(body, contact_id):
    with runtime().db.session() as session:
        contact = owned(session, Contact, contact_id)
        contacts.add_tags(contact, body.get("add_tags") or [])
        if body.get("remove_tags"):
            contact.tags = [t for t in contact.tags or [] if t not in body["remove_tags"]]
        if body.get("attributes"):
            contact.attributes = {**(contact.attributes or {}), **body["attributes"]}
        for field, marketing_only in (("opted_out", False), ("marketing_opted_out", True)):
            if field in body:
                (contacts.opt_out if body[field] else contacts.opt_in)(contact, marketing_only=marketing_only)
        if "marketing_consent" in body:
            contact.marketing_consent, contact.consent_source = body["marketing_consent"], "api"
        return contact


@bp.route("/contacts/<int:contact_id>/release", methods=["POST"])
@bp.response(200, ContactOut)
def release_hold(contact_id):
    """End the echo-aware hold: automated sends held for this contact go out now."""
    with runtime().db.session() as session:
        contact = owned(session, Contact, contact_id)
        contact.hold_until = None
        session.execute(update(Send).where(Send.contact_id == contact.id, Send.status == "scheduled",
                                           Send.hold_reason == "human_took_over")
                        .values(not_before=utcnow(), hold_reason=None))
        return contact


@bp.route("/contacts/<int:contact_id>/messages", methods=["GET"])
@bp.response(200, MessageOut(many=True))
def thread(contact_id):
    """The contact's thread, oldest first: customer, API, app-echo and history messages together."""
    limit, offset = page_args(100, 1000)
    with runtime().db.session() as session:
        owned(session, Contact, contact_id)
        return session.scalars(select(Message).where(Message.contact_id == contact_id)
                               .order_by(Message.timestamp, Message.id).limit(limit).offset(offset)).all()
