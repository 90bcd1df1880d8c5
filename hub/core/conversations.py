"""Conversations: one per customer and business number, for the console's inbox.

Messages stay where message processing and the send pipeline write them (``messages``); a
``Conversation`` row only holds what the inbox adds (open/closed, assignee, how far it was read).
``sync`` creates and moves those rows from the messages newer than the workspace's cursor (the
highest message id it has seen), re-reading the last ``MARGIN`` too, since concurrent
transactions may commit ids out of order. A customer message after a close reopens the
conversation. No hook in message processing is needed, so no writer of messages changes.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from sqlalchemy import and_, case, func, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.core.db import savepoint
from hub.core.models import Contact, Conversation, ConversationNote, Membership, Message, User, utcnow

log = logging.getLogger(__name__)
MARGIN = dt.timedelta(minutes=2)
FILTERS = ("open", "closed", "mine", "unassigned", "all")


def sync(session: Session, workspace_id: str) -> int:
    """Create or move the workspace's conversations from its newer messages; returns how many
    changed. Safe to run from several requests at once (a duplicate insert is ignored)."""
    cursor = session.scalar(select(func.max(Conversation.last_message_id))
                            .where(Conversation.workspace_id == workspace_id))
    recent = Message.created_at >= utcnow() - MARGIN
    inbound = case((and_(Message.direction == "in", Message.origin == "customer"), Message.id), else_=None)
    rows = session.execute(
        select(Message.contact_id, Message.connection_id, func.max(Message.id), func.max(Message.timestamp),
               func.max(inbound))
        .where(Message.workspace_id == workspace_id, Message.contact_id.is_not(None),
               or_(Message.id > cursor, recent) if cursor is not None else true())
        .group_by(Message.contact_id, Message.connection_id)).all()
    if not rows:
        return 0
    contact_ids = sorted({r[0] for r in rows})
    existing = {(c.contact_id, c.connection_id): c
                for chunk in range(0, len(contact_ids), 500)  # bounded IN lists (a first sync sees everything)
                for c in session.scalars(select(Conversation).where(
                    Conversation.workspace_id == workspace_id,
                    Conversation.contact_id.in_(contact_ids[chunk:chunk + 500])))}
    changed = 0
    for contact_id, connection_id, last_id, last_at, last_in in rows:
        conv = existing.get((contact_id, connection_id))
        if conv is None:
            conv = _create(session, workspace_id, contact_id, connection_id)
        changed += _advance(conv, last_id, last_at, last_in)
    session.flush()
    return changed


def _create(session: Session, workspace_id: str, contact_id: int, connection_id: str) -> Conversation:
    try:
        with savepoint(session):
            conv = Conversation(workspace_id=workspace_id, contact_id=contact_id, connection_id=connection_id,
                                status="open")
            session.add(conv)
        return conv
    except IntegrityError:  # another request created it a moment ago
        return session.scalars(select(Conversation).where(Conversation.contact_id == contact_id,
                                                          Conversation.connection_id == connection_id)).one()


def _advance(conv: Conversation, last_id: int, last_at: dt.datetime, last_in: int | None) -> int:
    moved = 0
    if conv.last_message_id is None or last_id > conv.last_message_id:
        conv.last_message_id, moved = last_id, 1
    if conv.last_message_at is None or last_at > conv.last_message_at:
        conv.last_message_at, moved = last_at, 1
    if last_in is not None and (conv.last_inbound_id is None or last_in > conv.last_inbound_id):
        conv.last_inbound_id, moved = last_in, 1
        if conv.status == "closed":  # the customer wrote again
            conv.status, conv.closed_at = "open", None
            log.info("conversation %s reopened by a customer message", conv.id)
    return moved


def unread(conv: Conversation) -> bool:
    """The customer wrote after the conversation was last opened in the console."""
    return conv.last_inbound_id is not None and (conv.read_up_to_id or 0) < conv.last_inbound_id


@dataclasses.dataclass
class Row:
    """One line of the conversation list."""
    conversation: Conversation
    contact: Contact
    last: Message | None
    unread: bool


def listing(session: Session, workspace_id: str, *, show: str = "open", user_id: str | None = None,
            q: str = "", limit: int = 100) -> list[Row]:
    """The workspace's conversations, latest first: ``show`` is one of ``FILTERS``; ``q`` matches
    the contact's names, number or username."""
    query = (select(Conversation, Contact).join(Contact, Contact.id == Conversation.contact_id)
             .where(Conversation.workspace_id == workspace_id))
    if show in ("open", "closed"):
        query = query.where(Conversation.status == show)
    elif show == "mine":
        query = query.where(Conversation.assignee_user_id == user_id, Conversation.status == "open")
    elif show == "unassigned":
        query = query.where(Conversation.assignee_user_id.is_(None), Conversation.status == "open")
    q = (q or "").strip()[:100]
    if q:
        like = f"%{q}%"
        digits = "".join(ch for ch in q if ch.isdigit())
        terms = [Contact.profile_name.ilike(like), Contact.full_name.ilike(like), Contact.username.ilike(like),
                 Contact.user_id.ilike(like)]
        if digits:
            terms.append(Contact.wa_id.like(f"%{digits}%"))
        query = query.where(or_(*terms))
    pairs = session.execute(query.order_by(Conversation.last_message_at.desc().nulls_last(),
                                           Conversation.id).limit(limit)).all()
    ids = [c.last_message_id for c, _ in pairs if c.last_message_id]
    lasts = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(ids)))} if ids else {}
    return [Row(c, contact, lasts.get(c.last_message_id), unread(c)) for c, contact in pairs]


def thread(session: Session, conv: Conversation, limit: int = 200) -> list[Message]:
    """The conversation's latest ``limit`` messages, oldest first."""
    rows = session.scalars(select(Message).where(Message.contact_id == conv.contact_id,
                                                  Message.connection_id == conv.connection_id)
                           .order_by(Message.timestamp.desc(), Message.id.desc()).limit(limit)).all()
    # Meta stamps whole seconds, the hub's own sends microseconds: within one second, the order
    # the hub recorded them in
    return sorted(rows, key=lambda m: (m.timestamp.replace(microsecond=0), m.id))


def mark_read(conv: Conversation) -> None:
    """The console showed the conversation up to its latest message."""
    if conv.last_message_id and (conv.read_up_to_id or 0) < conv.last_message_id:
        conv.read_up_to_id = conv.last_message_id


def members(session: Session, workspace_id: str) -> list[User]:
    """The people of the workspace (who a conversation can be assigned to), by name."""
    return list(session.scalars(select(User).join(Membership, Membership.user_id == User.id)
                                .where(Membership.workspace_id == workspace_id).order_by(User.name, User.email)))


def is_member(session: Session, workspace_id: str, user_id: str) -> bool:
    return session.scalar(select(Membership.id).where(Membership.workspace_id == workspace_id,
                                                      Membership.user_id == user_id)) is not None


def set_status(conv: Conversation, status: str) -> None:
    """Open or close (closing stamps ``closed_at``)."""
    if status != conv.status:
        conv.status, conv.closed_at = status, (utcnow() if status == "closed" else None)


def add_note(session: Session, conv: Conversation, user: User | None, text: str) -> ConversationNote:
    note = ConversationNote(conversation_id=conv.id, workspace_id=conv.workspace_id,
                            author_user_id=user.id if user else None,
                            author_name=(user.name or user.email) if user else "API", text=text)
    session.add(note)
    session.flush()
    return note


def notes(session: Session, conv: Conversation) -> list[ConversationNote]:
    return list(session.scalars(select(ConversationNote).where(ConversationNote.conversation_id == conv.id)
                                .order_by(ConversationNote.created_at, ConversationNote.id)))


# --- how a message reads in a list or a bubble ------------------------------------------------
MEDIA = ("image", "video", "audio", "document", "sticker")
LABELS = {"image": "Photo", "video": "Video", "audio": "Audio", "document": "Document", "sticker": "Sticker",
          "location": "Location", "contacts": "Contact card", "reaction": "Reaction", "interactive": "Reply",
          "button": "Button", "template": "Template", "unsupported": "Unsupported message",
          "system": "System message", "unknown": "Message"}


def part(message: Message) -> dict[str, Any]:
    """The type-specific object of the message's body (``{}`` when absent)."""
    value = (message.body or {}).get(message.type)
    return value if isinstance(value, dict) else {}


def text_of(message: Message) -> str | None:
    """The readable text of a message: its body, caption, button or reply title."""
    body, value = message.body or {}, part(message)
    edited = body.get("edited")
    if isinstance(edited, dict) and isinstance(edited.get("text"), dict):
        return str(edited["text"].get("body") or "") or None
    if message.type == "text":
        return value.get("body")
    if message.type in MEDIA:
        return value.get("caption") or value.get("filename")
    if message.type == "button":
        return value.get("text")
    if message.type == "interactive":
        reply = value.get("button_reply") or value.get("list_reply") or {}
        return reply.get("title") if isinstance(reply, dict) else None
    if message.type == "reaction":
        return value.get("emoji")
    if message.type == "location":
        return value.get("name") or value.get("address")
    return None


def template_of(message: Message) -> tuple[str, list[str]] | None:
    """A template message's name and its parameters' text, as sent."""
    if message.type != "template":
        return None
    value = part(message)
    params = [str(p.get("text", p.get(p.get("type", ""), ""))) for c in value.get("components") or []
              if isinstance(c, dict) for p in c.get("parameters") or [] if isinstance(p, dict)]
    return str(value.get("name") or "?"), params


def preview(message: Message | None) -> str:
    """One line for the conversation list."""
    if message is None:
        return ""
    template = template_of(message)
    if template:
        return f"Template {template[0]}"
    text = text_of(message)
    label = LABELS.get(message.type, message.type.capitalize())
    if message.type == "text":
        return (text or "")[:120]
    return f"{label}: {text}"[:120] if text else label
