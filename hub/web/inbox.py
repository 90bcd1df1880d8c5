"""The team inbox: conversations (one per customer and business number), their threads, the
contact panel and the reply box. Pages read through the core, filtered by the viewer's
workspace; actions (reply, assign, close, note, resume automations) are data-api forms on the
JSON API. Live updates: ``hub.web.inbox_stream`` (server-sent events, polling as a fallback).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from flask import abort, current_app, render_template, request
from sqlalchemy import select

from hub.api import ids
from hub.core import conversations
from hub.core.models import (Connection, Contact, Conversation, Installation, Message,
                             OutboundEvent, Send, Template, utcnow)
from hub.core.sending import windows
from hub.core.sending.templates import placeholders
from hub.web.access import console_blueprint, console_page, current

log = logging.getLogger(__name__)
bp = console_blueprint("inbox", __name__)
CONSENT_EVENTS = ("contact.opted_out", "contact.opted_in")
OPEN_SENDS = ("scheduled", "queued", "sending", "failed", "dead")


def rt():
    return current_app.extensions["coexhub"]


@bp.app_template_filter("when")
def when(value: dt.datetime | None) -> str:
    """A stored (naive UTC) time as the console shows it: ``30 Nov 21:40 UTC``."""
    return value.strftime("%-d %b %H:%M UTC") if value else ""


@bp.app_template_filter("iso")
def iso(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


def _filters() -> tuple[str, str]:
    show = request.args.get("show", "open")
    return (show if show in conversations.FILTERS else "open"), request.args.get("q", "")[:100]


def _list(session, current_id: str | None = None) -> dict[str, Any]:
    viewer = current()
    show, q = _filters()
    conversations.sync(session, viewer.workspace_id)
    rows = conversations.listing(session, viewer.workspace_id, show=show, user_id=viewer.user_id, q=q)
    numbers = {c.id: c for c in session.scalars(select(Connection).where(
        Connection.workspace_id == viewer.workspace_id))}
    users = {u.id: u for u in conversations.members(session, viewer.workspace_id)}
    return {"rows": rows, "show": show, "q": q, "numbers": numbers, "users": users, "current_id": current_id,
            "filters": conversations.FILTERS, "preview": conversations.preview}


@bp.get("/inbox")
@console_page("agent")
def index():
    with rt().db.session() as session:
        return render_template("console/inbox/index.html", conv=None, **_list(session))


@bp.get("/inbox/list")
@console_page("agent")
def list_fragment():
    """The conversation list alone (htmx refresh on a live event or by polling)."""
    with rt().db.session() as session:
        return render_template("console/inbox/_list.html", **_list(session, request.args.get("current")))


def _conversation(session, conversation_id: str) -> Conversation:
    conv = session.get(Conversation, conversation_id)
    if conv is None or conv.workspace_id != current().workspace_id:
        abort(404)  # another workspace's conversation does not exist
    return conv


@bp.get("/inbox/c/<conversation_id>")
@console_page("agent")
def conversation(conversation_id: str):
    with rt().db.session() as session:
        listing = _list(session, conversation_id)
        conv = _conversation(session, conversation_id)
        return render_template("console/inbox/index.html", conv=conv, **listing, **_thread(session, conv),
                               **_panel(session, conv))


@bp.get("/inbox/c/<conversation_id>/messages")
@console_page("agent")
def messages_fragment(conversation_id: str):
    """The thread alone (htmx refresh)."""
    with rt().db.session() as session:
        conversations.sync(session, current().workspace_id)
        conv = _conversation(session, conversation_id)
        return render_template("console/inbox/_messages.html", conv=conv, **_thread(session, conv))


@bp.get("/inbox/c/<conversation_id>/hold")
@console_page("agent")
def hold_fragment(conversation_id: str):
    """The contact's echo-aware hold on this number alone (htmx refresh)."""
    with rt().db.session() as session:
        conv = _conversation(session, conversation_id)
        return render_template("console/inbox/_hold.html", conv=conv, hold_until=_hold_until(session, conv),
                               contact_pid=ids.encode("ct", conv.contact_id))


def _hold_until(session, conv: Conversation) -> dt.datetime | None:
    window = windows.window(session, conv.connection_id, conv.contact_id)
    now = utcnow()
    return window.hold_until if window is not None and window.hold_until and window.hold_until > now else None


@dataclasses.dataclass
class Bubble:
    """A message as the thread shows it."""
    message: Message | None
    side: str  # in|out
    source: str  # who sent it, in words
    echo: bool
    text: str | None
    template: tuple[str, list[str]] | None
    media: dict[str, Any] | None
    at: dt.datetime
    status: str
    error: str | None = None


def _source(origin: str, send: Send | None, installs: dict[str, Installation]) -> str:
    if origin == "customer":
        return "Customer"
    if origin == "app_echo":
        return "Sent from the WhatsApp Business app"
    if origin == "history":
        return "History (before the hub)"
    if send is None:
        return "API"
    if send.origin == "connector":
        install = installs.get(send.installation_id or "")
        return f"Connector {install.name or install.connector}" if install else "Connector"
    return {"api": "API", "broadcast": "Broadcast", "automation": "Automation", "system": "Hub"}.get(
        send.origin, send.origin.capitalize())


def _media(message: Message) -> dict[str, Any] | None:
    if message.type not in conversations.MEDIA:
        return None
    part = conversations.part(message)
    link = part.get("link") if isinstance(part.get("link"), str) and part["link"].startswith("https://") else None
    return {"kind": message.type, "label": conversations.LABELS[message.type], "id": part.get("id"),
            "link": link, "mime_type": part.get("mime_type"), "filename": part.get("filename")}


def _error(message: Message | None, send: Send | None = None) -> str | None:
    error = (message.error if message is not None else None) or {}
    if error:
        detail = (error.get("error_data") or {}).get("details") if isinstance(error.get("error_data"), dict) else None
        text = detail or error.get("message") or error.get("title") or "failed"
        return f"{text} (code {error['code']})" if error.get("code") else str(text)
    if send is not None and send.last_error:
        return f"{send.last_error} (code {send.error_code})" if send.error_code else send.last_error
    return None


def _thread(session, conv: Conversation) -> dict[str, Any]:
    messages = conversations.thread(session, conv)
    send_ids = {m.send_id for m in messages if m.send_id}
    sends = {s.id: s for s in session.scalars(select(Send).where(Send.id.in_(send_ids)))} if send_ids else {}
    pending = list(session.scalars(select(Send).where(
        Send.workspace_id == conv.workspace_id, Send.contact_id == conv.contact_id,
        Send.connection_id == conv.connection_id, Send.status.in_(OPEN_SENDS), Send.wamid.is_(None))
        .order_by(Send.id.desc()).limit(20)))[::-1]
    install_ids = {s.installation_id for s in [*sends.values(), *pending] if s.installation_id}
    installs = {i.id: i for i in session.scalars(select(Installation).where(Installation.id.in_(install_ids)))} \
        if install_ids else {}
    bubbles = [Bubble(m, "in" if m.direction == "in" else "out", _source(m.origin, sends.get(m.send_id), installs),
                      m.origin == "app_echo", conversations.text_of(m), conversations.template_of(m), _media(m),
                      m.timestamp, m.status, _error(m) if m.status == "failed" else None) for m in messages]
    for send in pending:  # not (yet) at Meta: queued, scheduled, or refused before reaching it
        template = (send.template_name, [str(p) for p in send.params]) \
            if send.kind == "template" and isinstance(send.params, list) else \
            (send.template_name, []) if send.kind == "template" else None
        bubbles.append(Bubble(None, "out", _source("api", send, installs), False, send.text, template,
                              None, send.not_before or send.created_at, send.status,
                              _error(None, send) if send.status in ("failed", "dead") else send.hold_reason))
    conversations.mark_read(conv)
    window = windows.window(session, conv.connection_id, conv.contact_id)
    return {"bubbles": bubbles, "window": window, "window_open": windows.is_open(window),
            "window_closes_at": windows.closes_at(window), "now": utcnow()}


def body_params(template: Template) -> int:
    """How many parameters the template's body takes."""
    body = next((c for c in template.components or [] if str(c.get("type", "")).upper() == "BODY"), {})
    return len(placeholders(body.get("text")))


def _panel(session, conv: Conversation) -> dict[str, Any]:
    contact = session.get(Contact, conv.contact_id)
    connection = session.get(Connection, conv.connection_id)
    hold_until = _hold_until(session, conv)
    templates = list(session.scalars(select(Template).where(
        Template.workspace_id == conv.workspace_id, Template.waba_id == connection.waba_id,
        Template.status == "APPROVED").order_by(Template.name, Template.language)))
    contact_pid = ids.encode("ct", contact.id)
    return {"contact": contact, "contact_pid": contact_pid, "connection": connection, "hold_until": hold_until,
            "templates": [(t, body_params(t)) for t in templates],
            "members": conversations.members(session, conv.workspace_id),
            "notes": conversations.notes(session, conv), "consent": _consent(session, conv.workspace_id, contact_pid)}


def _consent(session, workspace_id: str, contact_pid: str) -> list[OutboundEvent]:
    """The contact's opt-out and opt-in events, newest first (the hub keeps no other consent
    history: ``contacts`` holds the current state, ``outbound_events`` what changed it)."""
    rows = session.scalars(select(OutboundEvent).where(
        OutboundEvent.workspace_id == workspace_id, OutboundEvent.type.in_(CONSENT_EVENTS))
        .order_by(OutboundEvent.created_at.desc()).limit(500))
    return [e for e in rows if ((e.data or {}).get("contact") or {}).get("id") == contact_pid][:20]


from hub.web import inbox_stream  # noqa: E402,F401  (its route joins this blueprint)
