"""Conversations of the inbox (one per customer and business number): list, assign, open/close,
internal notes. Their messages are ``GET /contacts/{id}/messages``; replies are ``POST /messages``."""
from __future__ import annotations

import logging

from flask import g, request
from marshmallow import Schema, fields, validate

from hub.api import ids, owned, page_args, runtime, workspace_blueprint
from hub.api.errors import ApiError
from hub.api.schema_fields import UtcDateTime
from hub.core import conversations
from hub.core.models import Conversation, User

log = logging.getLogger(__name__)
bp = workspace_blueprint("conversations", "Inbox conversations: assignment, open/closed, internal notes")


class ConversationOut(Schema):
    id = fields.String()
    contact_id = ids.PublicId("ct")
    connection_id = fields.String()
    status = fields.String(metadata={"description": "open or closed (a customer message reopens it)"})
    assignee_user_id = fields.String(allow_none=True)
    unread = fields.Boolean(metadata={"description": "the customer wrote after it was last opened in the console"})
    last_message_at = UtcDateTime(allow_none=True)
    closed_at = UtcDateTime(allow_none=True)
    created_at = UtcDateTime()
    updated_at = UtcDateTime()


class ConversationPatch(Schema):
    status = fields.String(validate=validate.OneOf(("open", "closed")))
    assignee_user_id = fields.String(allow_none=True, validate=validate.Length(1, 40), metadata={
        "description": "a member of the workspace (usr_…), or null to unassign"})


class NoteIn(Schema):
    text = fields.String(required=True, validate=validate.Length(1, 4000))


class NoteOut(Schema):
    id = fields.String()
    conversation_id = fields.String()
    author_user_id = fields.String(allow_none=True)
    author_name = fields.String()
    text = fields.String()
    created_at = UtcDateTime()


def _out(conv: Conversation) -> Conversation:
    conv.unread = conversations.unread(conv)
    return conv


@bp.route("/conversations", methods=["GET"])
@bp.response(200, ConversationOut(many=True))
def list_conversations():
    """Latest first. ``?status=open|closed|mine|unassigned|all`` (default open; ``mine`` needs a
    console session), ``?q=`` searches the contact's names, number and username."""
    show = request.args.get("status", "open")
    if show not in conversations.FILTERS:
        raise ApiError(422, "invalid_filter", f"status must be one of {', '.join(conversations.FILTERS)}")
    user_id = g.get("user_id")
    if show == "mine" and not user_id:
        raise ApiError(422, "invalid_filter", "status=mine needs a console session: an API key is no person")
    limit, _ = page_args(100, 500)
    with runtime().db.session() as session:
        conversations.sync(session, g.workspace_id)
        rows = conversations.listing(session, g.workspace_id, show=show, user_id=user_id,
                                     q=request.args.get("q", ""), limit=limit)
        return [_out(r.conversation) for r in rows]


@bp.route("/conversations/<conversation_id>", methods=["GET"])
@bp.response(200, ConversationOut)
def get_conversation(conversation_id):
    with runtime().db.session() as session:
        conversations.sync(session, g.workspace_id)
        return _out(owned(session, Conversation, conversation_id))


@bp.route("/conversations/<conversation_id>", methods=["PATCH"])
@bp.arguments(ConversationPatch)
@bp.response(200, ConversationOut)
def patch_conversation(body, conversation_id):
    """Assign (``assignee_user_id``: a member of the workspace, or null) and open or close."""
    with runtime().db.session() as session:
        conv = owned(session, Conversation, conversation_id)
        if "assignee_user_id" in body:
            user_id = body["assignee_user_id"]
            if user_id is not None and not conversations.is_member(session, g.workspace_id, user_id):
                raise ApiError(422, "not_a_member", f"{user_id} is not a member of this workspace")
            conv.assignee_user_id = user_id
        if "status" in body:
            conversations.set_status(conv, body["status"])
        session.flush()
        log.info("conversation %s: status %s, assignee %s (by %s)", conv.id, conv.status, conv.assignee_user_id,
                 g.get("user_id") or "an API key")
        return _out(conv)


@bp.route("/conversations/<conversation_id>/notes", methods=["GET"])
@bp.response(200, NoteOut(many=True))
def list_notes(conversation_id):
    """Internal notes, oldest first: shown in the console only, never sent to the customer."""
    with runtime().db.session() as session:
        return conversations.notes(session, owned(session, Conversation, conversation_id))


@bp.route("/conversations/<conversation_id>/notes", methods=["POST"])
@bp.arguments(NoteIn)
@bp.response(201, NoteOut)
def add_note(body, conversation_id):
    with runtime().db.session() as session:
        conv = owned(session, Conversation, conversation_id)
        user = session.get(User, g.user_id) if g.get("user_id") else None
        return conversations.add_note(session, conv, user, body["text"].strip() or body["text"])
