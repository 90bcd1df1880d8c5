"""Normalize ``smb_app_state_sync`` (the owner's app contacts) and ``history`` imports.

History bookkeeping (``connections.history_status``: chunks seen, phase, progress, message
count) is merged at the end of the job into a freshly read and locked copy, so chunks that
are processed at the same time all count.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import select

from hub.core import contacts
from hub.core.connectors import normalize_phone
from hub.core.db import lock
from hub.core.models import Connection
from hub.core.whatsapp.events import DomainEvent
from hub.core.whatsapp.items import Items, digest, digits, obj, text
from hub.core.whatsapp.messages import find_message, insert_message, message_content, touch_app_activity, ts

HISTORY_DECLINED = 2593109


def state_sync(session, conn: Connection, value: dict, out: list[DomainEvent],
               items: Items | None = None, at: str = "value") -> None:
    items = items or Items(session, out)
    latest = None
    for where, item in items.each(value, "state_sync", at,
                                  order=lambda i: digits(obj(i.get("contact")).get("phone_number"))):
        if item.get("type") != "contact":
            continue
        with items.isolated(where) as run:
            when = _sync_contact(session, conn, item, out)
        latest = max(latest or when, when) if run.ok else latest
    if latest is not None:  # last: the connection row is locked after the contacts, in every job
        touch_app_activity(session, conn, latest)


def _sync_contact(session, conn: Connection, item: dict, out: list[DomainEvent]) -> dt.datetime:
    person, action = obj(item.get("contact")), text(item.get("action"))
    when = ts(obj(item.get("metadata")).get("timestamp"))
    raw = text(person.get("phone_number"))
    wa_id = (normalize_phone(raw) or digits(raw) or None) if raw else None  # the app's own format
    contact = contacts.upsert(session, conn.workspace_id, wa_id=wa_id, user_id=text(person.get("user_id")),
                              source="app_sync")
    if contact is None:
        return when
    if action == "remove":  # marks the contact; its history stays
        contact.app_removed_at = when
    else:  # "add" also means edit
        contact.full_name = text(person.get("full_name")) or contact.full_name
        contact.first_name = text(person.get("first_name")) or contact.first_name
        contact.app_removed_at = None
    out.append(DomainEvent("contact.synced", conn.workspace_id, conn.id,
                           {"action": action or "add", "wa_id": contact.wa_id, "full_name": contact.full_name,
                            "first_name": contact.first_name}, contact_id=contact.id))
    return when


def history(session, conn: Connection, value: dict, out: list[DomainEvent],
            items: Items | None = None, at: str = "value") -> None:
    items = items or Items(session, out)
    changes: list[Callable[[dict], None]] = []  # applied to the fresh history_status at the end
    for where, chunk in items.each(value, "history", at):
        with items.isolated(where):
            _chunk(session, conn, chunk, out, changes, items, where)
    for where, msg in items.each(value, "messages", at):  # media of history threads arrives later here
        with items.isolated(where):
            existing = find_message(session, conn, text(msg.get("id")))
            if existing is not None:
                existing.body = {**(existing.body or {}), **message_content(msg)}
    if changes:
        fresh = session.scalars(lock(select(Connection).where(Connection.id == conn.id), session)).one()
        status = dict(fresh.history_status or {})
        for change in changes:
            change(status)
        fresh.history_status = status


def _chunk(session, conn: Connection, chunk: dict, out: list[DomainEvent], changes: list, items: Items,
           at: str) -> None:
    errors = [e for e in chunk.get("errors") or [] if isinstance(e, dict)] \
        if isinstance(chunk.get("errors"), list) else []
    if any(e.get("code") == HISTORY_DECLINED for e in errors):
        changes.append(lambda status: status.update(state="declined", error=errors[0]))
        out.append(DomainEvent("history.chunk", conn.workspace_id, conn.id, {"declined": True, "error": errors[0]}))
        return
    if not conn.history_opt_in:
        changes.append(lambda status: status.update(ignored_chunks=status.get("ignored_chunks", 0) + 1))
        return
    meta = obj(chunk.get("metadata"))
    phase, order, progress = (_number(meta.get(k)) for k in ("phase", "chunk_order", "progress"))
    imported = 0
    for thread_at, thread in items.each(chunk, "threads", at, order=lambda t: digits(t.get("id"))):
        with items.isolated(thread_at):
            customer = text(thread.get("id"))
            contact = contacts.upsert(session, conn.workspace_id, wa_id=customer, source="history")
            for where, msg in items.each(thread, "messages", thread_at):
                with items.isolated(where):
                    imported += _history_message(session, conn, contact, customer, msg)

    def count(status: dict) -> None:
        status.update(state="importing", chunks=sorted({*status.get("chunks", []), f"{phase}:{order}"}),
                      phase=max(status.get("phase", 0), phase or 0),
                      progress=max(status.get("progress", 0), progress or 0),
                      messages=status.get("messages", 0) + imported)
        if status["progress"] >= 100 and status["phase"] >= 2:
            status["state"] = "complete"

    changes.append(count)
    out.append(DomainEvent("history.chunk", conn.workspace_id, conn.id,
                           {"phase": phase, "chunk_order": order, "progress": progress, "imported": imported}))


def _history_message(session, conn: Connection, contact, customer: str | None, msg: dict) -> int:
    """Store one message of a history thread; 1 if it was new (live messages are not duplicated)."""
    sender = text(msg.get("from"))
    mine = sender in (conn.display_phone_number, None) and sender != customer
    message = insert_message(
        session, workspace_id=conn.workspace_id, connection_id=conn.id,
        contact_id=contact.id if contact else None, wamid=text(msg.get("id")) or f"noid:{digest(msg)}",
        direction="out" if mine else "in", origin="history", type=text(msg.get("type")) or "unknown",
        body={**message_content(msg), "history_context": msg.get("history_context")},
        status=(text(obj(msg.get("history_context")).get("status")) or "received").lower()[:16],
        timestamp=ts(msg.get("timestamp")))
    return int(message is not None)


def _number(value) -> int | None:
    """A number in a chunk's metadata (Meta sends integers); anything else counts as absent."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
