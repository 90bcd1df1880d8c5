"""The hub's own emitters: each builds one catalogue event from a row and ``publish``es it in
the session (hence the transaction) that changed the row."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import object_session

from hub.api.ids import encode
from hub.core.events.publish import publish
from hub.core.models import Connection, Contact, Send, iso_utc


def public(prefix: str, row_id: int | None) -> str | None:
    """The id the API shows for a row (``ct_…``, ``snd_…``): events carry the same ids."""
    return encode(prefix, row_id) if row_id else None


def contact_ref(contact: Contact | None) -> dict[str, Any] | None:
    if contact is None:
        return None
    return {"id": public("ct", contact.id), "wa_id": contact.wa_id, "user_id": contact.user_id,
            "name": contact.profile_name or contact.full_name}


def contact_created(session, contact: Contact) -> None:
    publish(session, contact.workspace_id, "contact.created", {"contact": contact_ref(contact),
                                                               "source": contact.source})


def opted(contact: Contact, opted_out: bool, *, marketing_only: bool, source: str,
          connection_id: str | None = None) -> None:
    session = object_session(contact)
    if session is None:
        return
    session.flush()
    publish(session, contact.workspace_id, "contact.opted_out" if opted_out else "contact.opted_in",
            {"contact": contact_ref(contact), "scope": "marketing" if marketing_only else "all",
             "source": source, "connection_id": connection_id})


def connection_changed(conn: Connection, reason: str | None) -> None:
    """``connection.paused`` or ``connection.resumed``, after its status changed."""
    session = object_session(conn)
    if session is None:
        return
    publish(session, conn.workspace_id, "connection.paused" if conn.status == "paused" else "connection.resumed",
            {"connection_id": conn.id, "phone_number_id": conn.phone_number_id,
             "display_phone_number": conn.display_phone_number, "status": conn.status, "reason": reason})


def inactivity_warning(session, conn: Connection, days_idle: int, message: str) -> None:
    publish(session, conn.workspace_id, "connection.inactivity_warning",
            {"connection_id": conn.id, "phone_number_id": conn.phone_number_id,
             "display_phone_number": conn.display_phone_number, "status": conn.status, "reason": None,
             "last_app_activity_at": iso_utc(conn.last_app_activity_at), "days_idle": days_idle,
             "message": message})


def send_ended(send: Send) -> None:
    """``send.failed`` or ``send.dead`` for a send that just reached that status."""
    session = object_session(send)
    if session is None or send.status not in ("failed", "dead"):
        return
    session.flush()
    publish(session, send.workspace_id, f"send.{send.status}",
            {"send_id": public("snd", send.id), "connection_id": send.connection_id, "to": send.to, "kind": send.kind,
             "template": send.template_name, "origin": send.origin, "attempts": send.attempts,
             "error_code": send.error_code, "error": (send.last_error or "")[:500] or None,
             "reference": send.reference or {}}, installation_id=send.installation_id)


def whatsapp(session, item) -> None:
    """The outward events of one WhatsApp domain event (``hub.core.whatsapp.events.DomainEvent``):
    messages, echoes, statuses, button clicks and contact syncs. (Opt-outs, contacts and
    connections publish where they change, in ``contacts`` and ``account``.)"""
    data, ws = dict(item.data), item.workspace_id
    if isinstance(data.get("contact"), dict) and isinstance(data["contact"].get("id"), int):
        data["contact"] = {**data["contact"], "id": public("ct", data["contact"]["id"])}
    if item.type == "message.received":
        publish(session, ws, "message.received", {"connection_id": item.connection_id, **data})
        if item.button:
            text = _button_text(data.get("body"))
            publish(session, ws, "button.clicked",
                    {"connection_id": item.connection_id, "wamid": data.get("wamid"), "payload": item.button,
                     "text": text, "context_wamid": data.get("context_wamid"), "contact": data.get("contact")})
    elif item.type == "message.echoed":
        contact = session.get(Contact, item.contact_id) if item.contact_id else None
        publish(session, ws, "message.echoed", {"connection_id": item.connection_id, "contact": contact_ref(contact),
                                                **data})
    elif item.type == "message.status":
        status = {"connection_id": item.connection_id, **data, "contact_id": public("ct", item.contact_id)}
        if data.get("send_id"):
            status["send_id"] = public("snd", data["send_id"])
        publish(session, ws, "message.status", status)
        if data.get("status") == "failed":
            publish(session, ws, "message.failed", status)
    elif item.type == "contact.synced":
        contact = session.get(Contact, item.contact_id) if item.contact_id else None
        publish(session, ws, "contact.synced", {"connection_id": item.connection_id, "action": data.get("action"),
                                                "contact": contact_ref(contact), "full_name": data.get("full_name"),
                                                "first_name": data.get("first_name")})


def _button_text(body: Any) -> str | None:
    body = body if isinstance(body, dict) else {}
    if isinstance(body.get("button"), dict):
        return body["button"].get("text")
    inter = body.get("interactive")
    for value in inter.values() if isinstance(inter, dict) else ():
        if isinstance(value, dict) and value.get("title"):
            return value["title"]
    return None
