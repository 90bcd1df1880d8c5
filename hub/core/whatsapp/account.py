"""Normalize account, template, user-preference and quality webhooks."""
from __future__ import annotations

from sqlalchemy import select

from hub.core import contacts
from hub.core.models import Connection, Template, iso_utc, utcnow
from hub.core.whatsapp.events import DomainEvent

PAUSING_EVENTS = {"PARTNER_REMOVED", "ACCOUNT_OFFBOARDED"}
RESUMING_EVENTS = {"PARTNER_ADDED", "ACCOUNT_RECONNECTED", "PARTNER_APP_INSTALLED"}


def account_update(session, conns: list[Connection], value: dict, out: list[DomainEvent]) -> None:
    event = value.get("event") or ""
    info = value.get("disconnection_info") or {}
    reason = info.get("reason") or value.get("reason") or event
    for conn in conns:
        if event in PAUSING_EVENTS:
            pause(conn, f"{event}: {reason}")  # its queue is kept; sends wait for reconnection
        elif event in RESUMING_EVENTS and conn.status != "active":
            conn.status, conn.pause_reason, conn.paused_at = "active", None, None
        out.append(DomainEvent("account.updated", conn.workspace_id, conn.id,
                               {"event": event, "reason": reason, "status": conn.status, "raw": value}))


def pause(conn: Connection, reason: str) -> None:
    conn.status, conn.pause_reason, conn.paused_at = "paused", reason[:200], utcnow()


def template_status(session, conns: list[Connection], waba_id: str, value: dict, out: list[DomainEvent]) -> None:
    seen = set()
    for conn in conns:
        if conn.workspace_id in seen:
            continue
        seen.add(conn.workspace_id)
        meta_id = str(value.get("message_template_id") or "")
        query = select(Template).where(Template.workspace_id == conn.workspace_id, Template.waba_id == waba_id)
        template = session.scalars(query.where(Template.meta_id == meta_id)).first() if meta_id else None
        template = template or session.scalars(query.where(
            Template.name == value.get("message_template_name"),
            Template.language == value.get("message_template_language"))).first()
        if template is None:
            template = Template(workspace_id=conn.workspace_id, waba_id=waba_id, meta_id=meta_id or None,
                                name=value.get("message_template_name") or meta_id,
                                language=value.get("message_template_language") or "", components=[])
            session.add(template)
        event = value.get("event") or template.status
        template.status = "APPROVED" if event in ("REINSTATED", "UNPAUSED") else event
        template.status_reason = value.get("reason")
        out.append(DomainEvent("template.status", conn.workspace_id, conn.id,
                               {"name": template.name, "language": template.language, "status": template.status,
                                "reason": template.status_reason}))


def user_preferences(session, conn: Connection, value: dict, out: list[DomainEvent]) -> None:
    for pref in value.get("user_preferences") or []:
        if pref.get("category") != "marketing_messages":
            continue
        contact = contacts.upsert(session, conn.workspace_id, wa_id=pref.get("wa_id"), user_id=pref.get("user_id"))
        if contact is None:
            continue
        if pref.get("value") == "stop":
            contacts.opt_out(contact, marketing_only=True)
            out.append(DomainEvent("contact.opted_out", conn.workspace_id, conn.id,
                                   {"wa_id": contact.wa_id, "scope": "marketing", "source": "user_preferences"},
                                   contact_id=contact.id))
        elif pref.get("value") == "resume":
            contacts.opt_in(contact, marketing_only=True)


def quality_update(session, conns: list[Connection], value: dict, out: list[DomainEvent]) -> None:
    for conn in conns:
        if value.get("display_phone_number") and conn.display_phone_number and \
                value["display_phone_number"] != conn.display_phone_number:
            continue
        conn.quality = {"event": value.get("event"), "current_limit": value.get("current_limit"),
                        "at": iso_utc(utcnow())}
        out.append(DomainEvent("account.updated", conn.workspace_id, conn.id,
                               {"event": "QUALITY_" + str(value.get("event")), "quality": conn.quality}))
