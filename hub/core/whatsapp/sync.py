"""Normalize ``smb_app_state_sync`` (the owner's app contacts) and ``history`` imports."""
from __future__ import annotations

from sqlalchemy import select

from hub.core import contacts
from hub.core.connectors import normalize_phone
from hub.core.models import Connection, Message
from hub.core.whatsapp.events import DomainEvent
from hub.core.whatsapp.messages import insert_message, message_content, ts

HISTORY_DECLINED = 2593109


def state_sync(session, conn: Connection, value: dict, out: list[DomainEvent]) -> None:
    for item in value.get("state_sync") or []:
        if item.get("type") != "contact":
            continue
        person, action = item.get("contact") or {}, item.get("action")
        when = ts((item.get("metadata") or {}).get("timestamp"))
        conn.last_app_activity_at = max(conn.last_app_activity_at or when, when)
        raw = person.get("phone_number")
        digits = "".join(ch for ch in str(raw or "") if ch.isdigit())
        wa_id = (normalize_phone(str(raw)) or digits or None) if raw else None  # the app's own format
        contact = contacts.upsert(session, conn.workspace_id, wa_id=wa_id, user_id=person.get("user_id"),
                                  source="app_sync")
        if contact is None:
            continue
        if action == "remove":  # marks the contact; its history stays
            contact.app_removed_at = when
        else:  # "add" also means edit
            contact.full_name = person.get("full_name") or contact.full_name
            contact.first_name = person.get("first_name") or contact.first_name
            contact.app_removed_at = None
        out.append(DomainEvent("contact.synced", conn.workspace_id, conn.id,
                               {"action": action or "add", "wa_id": contact.wa_id, "full_name": contact.full_name,
                                "first_name": contact.first_name}, contact_id=contact.id))


def history(session, conn: Connection, value: dict, out: list[DomainEvent]) -> None:
    status = dict(conn.history_status or {})
    for chunk in value.get("history") or []:
        errors = chunk.get("errors") or []
        if any(e.get("code") == HISTORY_DECLINED for e in errors):
            status.update(state="declined", error=errors[0])
            out.append(DomainEvent("history.chunk", conn.workspace_id, conn.id, {"declined": True, "error": errors[0]}))
            continue
        if not conn.history_opt_in:
            status["ignored_chunks"] = status.get("ignored_chunks", 0) + 1
            continue
        meta = chunk.get("metadata") or {}
        key = f"{meta.get('phase')}:{meta.get('chunk_order')}"
        seen = set(status.get("chunks", []))
        imported = 0
        for thread in chunk.get("threads") or []:
            customer = thread.get("id")
            contact = contacts.upsert(session, conn.workspace_id, wa_id=customer, source="history")
            for msg in thread.get("messages") or []:
                mine = msg.get("from") in (conn.display_phone_number, None) and msg.get("from") != customer
                message = insert_message(
                    session, workspace_id=conn.workspace_id, connection_id=conn.id,
                    contact_id=contact.id if contact else None, wamid=msg.get("id"),
                    direction="out" if mine else "in", origin="history", type=msg.get("type") or "unknown",
                    body={**message_content(msg), "history_context": msg.get("history_context")},
                    status=((msg.get("history_context") or {}).get("status") or "received").lower(),
                    timestamp=ts(msg.get("timestamp")))
                imported += message is not None  # live messages already stored are not duplicated
        seen.add(key)
        status.update(state="importing", chunks=sorted(seen), phase=max(status.get("phase", 0), meta.get("phase") or 0),
                      progress=max(status.get("progress", 0), meta.get("progress") or 0),
                      messages=status.get("messages", 0) + imported)
        if status["progress"] >= 100 and status["phase"] >= 2:
            status["state"] = "complete"
        out.append(DomainEvent("history.chunk", conn.workspace_id, conn.id,
                               {"phase": meta.get("phase"), "chunk_order": meta.get("chunk_order"),
                                "progress": meta.get("progress"), "imported": imported}))
    media_updates = value.get("messages") or []  # media of history threads arrives later here
    for msg in media_updates:
        existing = session.scalars(select(Message).where(Message.connection_id == conn.id,
                                                         Message.wamid == msg.get("id"))).first()
        if existing is not None:
            existing.body = {**(existing.body or {}), **message_content(msg)}
    conn.history_status = status
