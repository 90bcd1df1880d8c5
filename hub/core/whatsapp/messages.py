"""Normalize ``messages`` (customer messages and statuses) and ``smb_message_echoes``.

Idempotent under redelivery (``wamid`` is unique per connection; a message without an id is
keyed by a hash of the whole item, so only a true redelivery matches) and reordering, also
between jobs running at once (statuses only move forward: sent < delivered < read; ``failed``
is terminal). Each item runs isolated (:mod:`hub.core.whatsapp.items`).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from hub.core import contacts
from hub.core.bsuid import SYSTEM_CHANGED
from hub.core.db import OPTIMISTIC, lock, savepoint
from hub.core.events import emit
from hub.core.models import Connection, Contact, Message, Send, Workspace, iso_utc, utcnow
from hub.core.pricing.record import record_pricing
from hub.core.sending import marketing, windows
from hub.core.sending.results import confirm_from_status
from hub.core.whatsapp import rekey
from hub.core.whatsapp.events import DomainEvent
from hub.core.whatsapp.items import Items, digest, digits, obj, text

STATUS_RANK = {"accepted": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4}
DEFAULT_STOP = ("STOP", "UNSUBSCRIBE", "STOP ALL", "CANCEL", "PARAR", "ALTO", "DETENER")
DEFAULT_START = ("START", "SUBSCRIBE", "UNSTOP")
NO_WINDOW = ("system", "unsupported", "revoke")  # customer messages that open no 24-hour window


def ts(value: Any) -> dt.datetime:
    """A Meta timestamp (unix seconds, as a string or an int) as naive UTC; now if absent."""
    try:
        return dt.datetime.fromtimestamp(int(value), dt.timezone.utc).replace(tzinfo=None)
    except (TypeError, ValueError, OverflowError):
        return utcnow()


def message_content(msg: dict) -> dict:
    """The type-specific part of a message plus context, referral and errors."""
    kind = text(msg.get("type")) or "unknown"
    body = {kind: msg.get(kind)} if kind in msg else {}
    for extra in ("context", "referral", "errors", "identity"):
        if msg.get(extra) is not None:
            body[extra] = msg[extra]
    return body


def button_of(msg: dict) -> str | None:
    """The payload or id of a quick-reply, button or list reply."""
    if msg.get("type") == "button":
        button = obj(msg.get("button"))
        return text(button.get("payload")) or text(button.get("text"))
    if msg.get("type") == "interactive":
        inter = obj(msg.get("interactive"))
        reply = obj(inter.get("button_reply")) or obj(inter.get("list_reply"))
        return text(reply.get("id"))
    return None


def text_of(msg: dict) -> str | None:
    if msg.get("type") == "text":
        return text(obj(msg.get("text")).get("body"))
    if msg.get("type") == "button":
        return text(obj(msg.get("button")).get("text"))
    return None


def insert_message(session, *, rarely_seen: bool = False, **values) -> Message | None:
    """Insert unless ``(connection_id, wamid)`` exists; None for a redelivered message.
    ``rarely_seen``: in an optimistic pass (``hub.core.db.savepoint``) insert without looking
    first; a copy already stored fails the pass, which runs again with savepoints and looks."""
    if not (rarely_seen and session.info.get(OPTIMISTIC)) and session.scalar(select(Message.id).where(
            Message.connection_id == values["connection_id"], Message.wamid == values["wamid"])):
        return None
    message = Message(**values)
    try:
        with savepoint(session):
            session.add(message)
    except IntegrityError:  # a concurrent job inserted it first
        return None
    return message


def find_message(session, conn: Connection, wamid: str | None) -> Message | None:
    """The connection's message ``wamid``, locked for update (see :func:`hub.core.db.lock`)."""
    if not wamid:
        return None
    return session.scalars(lock(select(Message).where(Message.connection_id == conn.id, Message.wamid == wamid),
                                session)).first()


def touch_app_activity(session, conn: Connection, when: dt.datetime) -> None:
    """Move ``last_app_activity_at`` forward to ``when`` (never back, whatever the job order)."""
    session.execute(update(Connection).where(
        Connection.id == conn.id,
        or_(Connection.last_app_activity_at.is_(None), Connection.last_app_activity_at < when))
        .values(last_app_activity_at=when).execution_options(synchronize_session=False))
    if conn.last_app_activity_at is None or conn.last_app_activity_at < when:
        set_committed_value(conn, "last_app_activity_at", when)


def customer_messages(session, conn: Connection, value: dict, out: list[DomainEvent], opt,
                      items: Items | None = None, at: str = "value") -> None:
    items = items or Items(session, out)
    names = {}
    for _, c in items.each(value, "contacts", at):
        profile = obj(c.get("profile"))
        for key in {text(c.get("wa_id")), text(c.get("user_id"))} - {None}:  # found by either id
            names[key] = (text(profile.get("name")), text(c.get("user_id")), text(profile.get("username")),
                          text(c.get("wa_id")))
    for where, msg in items.each(value, "messages", at, order=lambda m: digits(m.get("from")) or
                                 text(m.get("from_user_id")) or ""):
        with items.isolated(where):
            _customer_message(session, conn, msg, names, out, opt)


def _sender_of(msg: dict, names: dict) -> tuple:
    """``(wa_id, name, user_id, username)`` of the message's sender, from ``from`` /
    ``from_user_id`` and the change's ``contacts``. A message naming no sender (a user known only
    by a BSUID may arrive without ``from``) is the single contact's of the change."""
    wa_id = text(msg.get("from")) or None
    key = wa_id or text(msg.get("from_user_id"))
    if key is None and len(set(names.values())) == 1:
        name, user_id, username, wa_id = next(iter(names.values()))
        return wa_id, name, user_id, username
    name, user_id, username, _ = names.get(key, (None, None, None, None))
    return wa_id, name, user_id, username


def _customer_message(session, conn: Connection, msg: dict, names: dict, out: list[DomainEvent], opt) -> None:
    wa_id, name, user_id, username = _sender_of(msg, names)
    user_id = user_id or text(msg.get("from_user_id"))
    kind, when = text(msg.get("type")) or "unknown", ts(msg.get("timestamp"))
    opens_window = kind not in NO_WINDOW
    contact = contacts.upsert(session, conn.workspace_id, wa_id=wa_id, user_id=user_id, profile_name=name,
                              username=username,
                              created_with={"last_inbound_at": when} if opens_window else None)
    if kind == "revoke":  # the customer deleted a message (perhaps before we saw it)
        original = _original(session, conn, text(obj(msg.get("revoke")).get("original_message_id")),
                             contact, "in", "customer", when)
        if original is not None:
            original.revoked_at = when
    message = insert_message(  # seen again only in a new envelope (ingest dedupes a redelivered one)
        session, rarely_seen=True, workspace_id=conn.workspace_id, connection_id=conn.id,
        contact_id=contact.id if contact else None, wamid=text(msg.get("id")) or f"noid:{digest(msg)}",
        direction="in", origin="customer", type=kind, body=message_content(msg),
        context_wamid=text(obj(msg.get("context")).get("id")), status="received", timestamp=when)
    if message is None:
        return  # redelivery: already normalized and dispatched
    if kind == "system" and text(obj(msg.get("system")).get("type")) == SYSTEM_CHANGED:
        rekey.user_changed_user_id(session, conn, contact, msg, out)
    if contact is not None and opens_window:
        windows.record_inbound(session, conn.id, contact, when)  # opens this number's 24-hour window
        opt(contact, text_of(msg))
    out.append(DomainEvent("message.received", conn.workspace_id, conn.id, _message_data(message, contact),
                           contact_id=contact.id if contact else None, button=button_of(msg)))


def statuses(session, conn: Connection, value: dict, out: list[DomainEvent],
             items: Items | None = None, at: str = "value") -> None:
    """Apply delivery statuses. Each message row is locked while its status moves (PostgreSQL;
    SQLite runs one writer at a time), so parallel jobs cannot move it backwards."""
    items = items or Items(session, out)
    usernames = {}  # delivered/read statuses name the user's current username in ``contacts``
    for c in value.get("contacts") if isinstance(value.get("contacts"), list) else ():  # judged by the messages
        username = text(obj(obj(c).get("profile")).get("username"))
        ids = (text(obj(c).get("wa_id")), text(obj(c).get("user_id")))
        usernames.update({key: username for key in ids if key and username})
    for where, st in items.each(value, "statuses", at, order=lambda st: text(st.get("id")) or ""):
        with items.isolated(where):
            _status(session, conn, st, out, usernames)


def _status(session, conn: Connection, st: dict, out: list[DomainEvent],
            usernames: dict | None = None) -> None:
    new, when, wamid = text(st.get("status")), ts(st.get("timestamp")), text(st.get("id"))
    if not wamid:
        raise ValueError("a status without a message id")
    message = find_message(session, conn, wamid)
    if message is None:  # a status before (or without) our own record of the send
        contact = contacts.upsert(session, conn.workspace_id, wa_id=text(st.get("recipient_id")),
                                  user_id=text(st.get("recipient_user_id")))
        insert_message(session, workspace_id=conn.workspace_id, connection_id=conn.id,
                       contact_id=contact.id if contact else None, wamid=wamid, direction="out",
                       origin="api", type="unknown", body={}, status="accepted", timestamp=when)
        message = find_message(session, conn, wamid)  # ours, or the one a parallel job inserted
    confirm_from_status(session, conn, st, message)  # a send whose result was never written
    username = (usernames or {}).get(text(st.get("recipient_user_id")) or "") or \
        (usernames or {}).get(text(st.get("recipient_id")) or "")
    if username and message.contact_id:  # users may change their username (their BSUID stays)
        contact = session.get(Contact, message.contact_id)
        if contact is not None and contact.username != username:
            contact.username = username
    stamp = f"{new}_at" if new in ("sent", "delivered", "read", "failed") else None
    if stamp and getattr(message, stamp) is None:
        setattr(message, stamp, when)
    if STATUS_RANK.get(new, -1) > STATUS_RANK.get(message.status, 0) and message.status != "failed":
        message.status = new
    if isinstance(st.get("pricing"), dict):
        message.pricing = {**(message.pricing or {}), **st["pricing"]}
        recipient = text(st.get("recipient_id")) or \
            (session.get(Contact, message.contact_id).wa_id if message.contact_id else None)
        record_pricing(message, st["pricing"], recipient)  # a BSUID-only status: the contact's number
    if new == "failed":
        error = next((e for e in st.get("errors") or [] if isinstance(e, dict)), {}) \
            if isinstance(st.get("errors"), list) else {}
        message.error = error
        _failed_send(session, conn, wamid, error)
    out.append(DomainEvent("message.status", conn.workspace_id, conn.id,
                           {"wamid": wamid, "status": new, "message_status": message.status,
                            "timestamp": iso_utc(when), "pricing": st.get("pricing"),
                            "error": message.error if new == "failed" else None,
                            "biz_opaque_callback_data": st.get("biz_opaque_callback_data")},
                           contact_id=message.contact_id))


def _failed_send(session, conn: Connection, wamid: str, error: dict) -> None:
    send = session.scalars(select(Send).where(Send.connection_id == conn.id, Send.wamid == wamid)).first()
    if send is not None:
        ended = send.status != "failed"
        send.status, send.error_code = "failed", error.get("code")
        send.last_error = error.get("title") or error.get("message")
        if ended:
            emit.send_ended(send)
    if error.get("code") == 131050 and send is not None and send.contact_id:
        contacts.opt_out(session.get(Contact, send.contact_id), marketing_only=True, source="meta_error",
                         connection_id=conn.id)
    if error.get("code") == 131049 and send is not None and send.contact_id:
        marketing.note_limited(session, session.get(Contact, send.contact_id), send_id=send.id)


def echoes(session, conn: Connection, value: dict, out: list[DomainEvent],
           items: Items | None = None, at: str = "value") -> None:
    items = items or Items(session, out)
    workspace = session.get(Workspace, conn.workspace_id)
    hold = dt.timedelta(minutes=float((workspace.settings or {}).get("echo_hold_minutes", 30)))
    latest = None
    for where, echo in items.each(value, "message_echoes", at,
                                  order=lambda e: digits(e.get("to")) or text(e.get("to_user_id")) or ""):
        with items.isolated(where) as run:
            when = _echo(session, conn, echo, hold, out)
        latest = max(latest or when, when) if run.ok else latest
    if latest is not None:  # last: the connection row is locked after the contacts, in every job
        touch_app_activity(session, conn, latest)


def _echo(session, conn: Connection, echo: dict, hold: dt.timedelta, out: list[DomainEvent]) -> dt.datetime:
    kind, when = text(echo.get("type")) or "unknown", ts(echo.get("timestamp"))
    contact = contacts.upsert(session, conn.workspace_id, wa_id=text(echo.get("to")) or None,
                              user_id=text(echo.get("to_user_id")))
    if kind in ("edit", "revoke"):
        change = obj(echo.get(kind))
        original = _original(session, conn, text(change.get("original_message_id")), contact, "out", "app_echo",
                             when)
        if original is not None:
            if kind == "edit":
                original.edited_at = when
                original.body = {**(original.body or {}), "edited": change.get("message")}
            else:
                original.revoked_at = when
        out.append(DomainEvent("message.echoed", conn.workspace_id, conn.id,
                               {"action": kind, "original_wamid": change.get("original_message_id"),
                                "wamid": echo.get("id"), "change": change},
                               contact_id=contact.id if contact else None))
        return when
    message = insert_message(
        session, workspace_id=conn.workspace_id, connection_id=conn.id,
        contact_id=contact.id if contact else None, wamid=text(echo.get("id")) or f"echo:{digest(echo)}",
        direction="out", origin="app_echo", type=kind, body=message_content(echo),
        context_wamid=text(obj(echo.get("context")).get("id")), status="sent", timestamp=when, sent_at=when)
    if message is None:
        return when
    if contact is not None and hold:
        hold_automations(session, contact, when + hold, conn.id)
    out.append(DomainEvent("message.echoed", conn.workspace_id, conn.id,
                           {"action": "message", **_message_data(message, contact)},
                           contact_id=contact.id if contact else None))
    return when


def _original(session, conn: Connection, wamid: str | None, contact: Contact | None, direction: str,
              origin: str, when: dt.datetime) -> Message | None:
    """The message an edit or delete refers to. Meta delivers out of order, so when it has not
    arrived yet a placeholder takes its place; the original then finds it and is not stored twice."""
    if not wamid:
        return None
    found = find_message(session, conn, wamid)
    return found or insert_message(session, workspace_id=conn.workspace_id, connection_id=conn.id,
                                   contact_id=contact.id if contact else None, wamid=wamid, direction=direction,
                                   origin=origin, type="unknown", body={}, status="received", timestamp=when) \
        or find_message(session, conn, wamid)


def hold_automations(session, contact: Contact, until: dt.datetime, connection_id: str | None = None) -> int:
    """Echo-aware handoff on the number the owner replied from (see ``windows.hold``)."""
    return windows.hold(session, contact, until, connection_id)


def _message_data(message: Message, contact: Contact | None) -> dict:
    return {"wamid": message.wamid, "type": message.type, "direction": message.direction,
            "origin": message.origin, "body": message.body, "timestamp": iso_utc(message.timestamp),
            "context_wamid": message.context_wamid,
            "contact": {"id": contact.id, "wa_id": contact.wa_id, "user_id": contact.user_id,
                        "username": contact.username, "address": contact.wa_id or contact.user_id,
                        "name": contact.profile_name or contact.full_name} if contact else None}
