"""Contacts: list and search, get, tag, opt out/in, release an echo hold; a contact's thread;
the workspace's messages (``GET /messages``)."""
from __future__ import annotations

import datetime as dt
import json

from flask import g, request
from marshmallow import Schema, fields
from sqlalchemy import String, or_, select, tuple_

from hub.api import cursors, ids, owned, page_args, runtime, workspace_blueprint
from hub.api.errors import ApiError
from hub.api.schema_fields import UtcDateTime
from hub.core import contacts
from hub.core.models import Connection, Contact, Message, utcnow
from hub.core.sending import windows

bp = workspace_blueprint("contacts", "Contacts and their message threads")


class WindowOut(Schema):
    connection_id = fields.String()
    last_inbound_at = UtcDateTime(allow_none=True)
    window_open = fields.Boolean()
    window_closes_at = UtcDateTime(allow_none=True)
    hold_until = UtcDateTime(allow_none=True)


class ContactOut(Schema):
    id = ids.PublicId("ct")
    wa_id = fields.String(allow_none=True)
    user_id = fields.String(allow_none=True, metadata={"description": "business-scoped user ID (BSUID)"})
    username = fields.String(allow_none=True, metadata={"description": "the user's WhatsApp username"})
    profile_name = fields.String(allow_none=True)
    full_name = fields.String(allow_none=True)
    first_name = fields.String(allow_none=True)
    source = fields.String()
    tags = fields.List(fields.String())
    attributes = fields.Dict()
    opted_out = fields.Boolean()
    opted_out_at = UtcDateTime(allow_none=True)
    marketing_opted_out = fields.Boolean()
    marketing_consent = fields.Boolean(allow_none=True)
    marketing_limited_until = UtcDateTime(allow_none=True, metadata={
        "description": "Meta refused marketing to this contact (131049): no marketing templates until then"})
    app_removed_at = UtcDateTime(allow_none=True)
    last_inbound_at = UtcDateTime(allow_none=True, metadata={"description": "latest across the numbers"})
    hold_until = UtcDateTime(allow_none=True, metadata={"description": "latest across the numbers"})
    windows = fields.List(fields.Nested(WindowOut), attribute="number_windows", metadata={
        "description": "per business number: the 24-hour window and the echo-aware hold"})
    created_at = UtcDateTime()


class ContactPatch(Schema):
    add_tags = fields.List(fields.String())
    remove_tags = fields.List(fields.String())
    attributes = fields.Dict()
    opted_out = fields.Boolean()
    marketing_opted_out = fields.Boolean()
    marketing_consent = fields.Boolean(allow_none=True)
    marketing_limited_until = UtcDateTime(allow_none=True, metadata={
        "description": "null lifts the marketing cool-down Meta's 131049 started; a time sets it"})


class MessageOut(Schema):
    id = ids.PublicId("msg")
    wamid = fields.String()
    connection_id = fields.String()
    direction = fields.String()
    origin = fields.String()
    type = fields.String()
    body = fields.Dict()
    context_wamid = fields.String(allow_none=True)
    status = fields.String()
    timestamp = UtcDateTime()
    sent_at = UtcDateTime(allow_none=True)
    delivered_at = UtcDateTime(allow_none=True)
    read_at = UtcDateTime(allow_none=True)
    failed_at = UtcDateTime(allow_none=True)
    error = fields.Dict(allow_none=True)
    pricing = fields.Dict(allow_none=True)
    edited_at = UtcDateTime(allow_none=True)
    revoked_at = UtcDateTime(allow_none=True)


@bp.route("/contacts", methods=["GET"])
@bp.response(200, ContactOut(many=True))
def list_contacts():
    """``?q=`` searches number, BSUID, username and names (substring); ``?tag=`` filters;
    ``?opted_out=true``. Newest first; paging with ``?cursor=`` (``X-Next-Cursor``) or ``offset``."""
    limit, offset = page_args()
    after = cursors.cursor_arg("ct")
    query = select(Contact).where(Contact.workspace_id == g.workspace_id)
    if after is not None:
        query = query.where(Contact.id < after)
    if request.args.get("q"):
        like = f"%{request.args['q']}%"
        query = query.where(or_(Contact.wa_id.like(like), Contact.user_id.like(like), Contact.username.ilike(like),
                                Contact.profile_name.ilike(like), Contact.full_name.ilike(like)))
    if request.args.get("opted_out"):
        query = query.where(Contact.opted_out.is_(request.args["opted_out"].lower() == "true"))
    tag = request.args.get("tag")
    with runtime().db.session() as session:
        if not tag:
            rows = session.scalars(query.order_by(Contact.id.desc()).limit(limit).offset(offset)).all()
        else:
            rows = _tagged(session, query, tag, limit, offset)
        return cursors.page(_with_windows(session, rows), limit, "ct")


def _tagged(session, query, tag: str, limit: int, offset: int) -> list[Contact]:
    """Tags are a JSON list (portable across SQLite and PostgreSQL): narrow in SQL, match exactly
    here, reading in keyset batches until the page is full (cost follows offset + limit)."""
    query = query.where(Contact.tags.cast(String).contains(json.dumps(tag))).order_by(Contact.id.desc())
    found: list[Contact] = []
    batch = max(limit + offset, 100)
    while True:
        rows = session.scalars(query.limit(batch)).all()
        found += [c for c in rows if tag in (c.tags or [])]
        if len(found) >= offset + limit or len(rows) < batch:
            return found[offset:offset + limit]
        query = query.where(Contact.id < rows[-1].id)


@bp.route("/contacts/<pid(ct):contact_id>", methods=["GET"])
@bp.response(200, ContactOut)
def get_contact(contact_id):
    with runtime().db.session() as session:
        return _with_windows(session, [owned(session, Contact, contact_id)])[0]


@bp.route("/contacts/<pid(ct):contact_id>", methods=["PATCH"])
@bp.arguments(ContactPatch)
@bp.response(200, ContactOut)
def patch_contact(body, contact_id):
    with runtime().db.session() as session:
        contact = owned(session, Contact, contact_id)
        apply_patch(contact, body)
        return _with_windows(session, [contact])[0]


def apply_patch(contact: Contact, body: dict) -> None:
    """Apply a loaded ``ContactPatch`` (tags, attributes, opt-out/in, consent) to ``contact``."""
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
    if "marketing_limited_until" in body:
        contact.marketing_limited_until = body["marketing_limited_until"]


@bp.route("/contacts/<pid(ct):contact_id>/release", methods=["POST"])
@bp.response(200, ContactOut)
def release_hold(contact_id):
    """End the echo-aware hold: automated sends held for this contact go out now.
    ``?connection_id=`` ends it on one number only (the hold is per number)."""
    with runtime().db.session() as session:
        contact = owned(session, Contact, contact_id)
        connection_id = request.args.get("connection_id")
        if connection_id:
            owned(session, Connection, connection_id)
        windows.release(session, contact, connection_id)
        return _with_windows(session, [contact])[0]


def _with_windows(session, rows: list[Contact]) -> list[Contact]:
    """Attach each contact's per-number windows (``ContactOut.windows``) with one query."""
    found, now = windows.of_contacts(session, [c.id for c in rows]), utcnow()
    for contact in rows:
        contact.number_windows = [
            {"connection_id": w.connection_id, "last_inbound_at": w.last_inbound_at,
             "window_open": windows.is_open(w, now), "window_closes_at": windows.closes_at(w),
             "hold_until": w.hold_until if w.hold_until and w.hold_until > now else None}
            for w in found[contact.id]]
    return rows


@bp.route("/contacts/<pid(ct):contact_id>/messages", methods=["GET"])
@bp.response(200, MessageOut(many=True))
def thread(contact_id):
    """The contact's thread, oldest first: customer, API, app-echo and history messages together.
    Paging with ``?cursor=`` (``X-Next-Cursor``) or ``offset``."""
    limit, offset = page_args(100, 1000)
    after = cursors.cursor_arg("msg")
    query = select(Message).where(Message.contact_id == contact_id)
    with runtime().db.session() as session:
        owned(session, Contact, contact_id)
        if after is not None:
            last = session.get(Message, after)
            if last is None or last.contact_id != contact_id:
                raise cursors.invalid("msg")
            query = query.where(tuple_(Message.timestamp, Message.id) > (last.timestamp, last.id))
        return cursors.page(session.scalars(query.order_by(Message.timestamp, Message.id)
                                            .limit(limit).offset(offset)).all(), limit, "msg")


MESSAGE_FILTERS = {"direction": ("in", "out"), "origin": ("customer", "api", "app_echo", "history"),
                   "status": ("received", "accepted", "sent", "delivered", "read", "failed")}


@bp.route("/messages", methods=["GET"])
@bp.response(200, MessageOut(many=True))
def list_messages():
    """The workspace's messages, newest first. Filters: ``contact_id``, ``connection_id``,
    ``direction`` (in|out), ``origin`` (customer|api|app_echo|history), ``status``, ``type``,
    ``since`` and ``until`` (ISO 8601); paging with ``limit`` and ``cursor`` (``X-Next-Cursor``) or ``offset``."""
    limit, offset = page_args()
    after = cursors.cursor_arg("msg")
    query = select(Message).where(Message.workspace_id == g.workspace_id)
    for arg, allowed in MESSAGE_FILTERS.items():
        value = request.args.get(arg)
        if value and value not in allowed:
            raise ApiError(422, "invalid_filter", f"{arg} must be one of {', '.join(allowed)}")
        if value:
            query = query.where(getattr(Message, arg) == value)
    contact_id = ids.query_arg("contact_id", "ct")
    if contact_id is not None:
        query = query.where(Message.contact_id == contact_id)
    for arg, column in (("connection_id", Message.connection_id), ("type", Message.type)):
        if request.args.get(arg):
            query = query.where(column == request.args[arg])
    for arg, compare in (("since", Message.timestamp.__ge__), ("until", Message.timestamp.__lt__)):
        if request.args.get(arg):
            query = query.where(compare(_instant(arg, request.args[arg])))
    with runtime().db.session() as session:
        if after is not None:
            last = session.get(Message, after)
            if last is None or last.workspace_id != g.workspace_id:
                raise cursors.invalid("msg")
            query = query.where(tuple_(Message.timestamp, Message.id) < (last.timestamp, last.id))
        return cursors.page(session.scalars(query.order_by(Message.timestamp.desc(), Message.id.desc())
                                            .limit(limit).offset(offset)).all(), limit, "msg")


def _instant(name: str, value: str) -> dt.datetime:
    """An ISO 8601 time as naive UTC (how times are stored), or 422."""
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise ApiError(422, "invalid_filter", f"{name} must be an ISO 8601 time, e.g. 2026-11-30T12:00:00Z") from exc
    return when.astimezone(dt.timezone.utc).replace(tzinfo=None) if when.tzinfo else when
