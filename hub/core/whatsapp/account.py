"""Normalize account, template, user-preference and quality webhooks."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hub.core import contacts
from hub.core.db import savepoint
from hub.core.events import emit
from hub.core.models import Connection, Template, iso_utc, utcnow
from hub.core.sending import portfolio
from hub.core.whatsapp.events import DomainEvent
from hub.core.whatsapp.items import Items, text

PAUSING_EVENTS = {"PARTNER_REMOVED", "ACCOUNT_OFFBOARDED"}
RESUMING_EVENTS = {"PARTNER_ADDED", "ACCOUNT_RECONNECTED", "PARTNER_APP_INSTALLED"}


def account_update(session, conns: list[Connection], value: dict, out: list[DomainEvent]) -> None:
    event = text(value.get("event")) or ""
    info = value.get("disconnection_info") if isinstance(value.get("disconnection_info"), dict) else {}
    reason = text(info.get("reason")) or text(value.get("reason")) or event
    for conn in conns:
        if event in PAUSING_EVENTS:
            pause(conn, f"{event}: {reason}")  # its queue is kept; sends wait for reconnection
        elif event in RESUMING_EVENTS and conn.status != "active":
            resume(conn, f"{event}: {reason}")
        limit = portfolio.limit_of_webhook(value)
        if limit is not None:  # a tier change (UPGRADE/DOWNGRADE) for the number's portfolio
            portfolio.apply_limit(conn, limit, source=f"account_update {event}")
        out.append(DomainEvent("account.updated", conn.workspace_id, conn.id,
                               {"event": event, "reason": reason, "status": conn.status, "raw": value}))


def pause(conn: Connection, reason: str) -> None:
    """Stop the number's sends; publishes ``connection.paused`` (once, when it was active)."""
    was = conn.status
    conn.status, conn.pause_reason, conn.paused_at = "paused", reason[:200], utcnow()
    if was != "paused":
        emit.connection_changed(conn, reason[:200])


def resume(conn: Connection, reason: str) -> None:
    """Let a paused number send again; publishes ``connection.resumed`` when it was paused."""
    was = conn.status
    conn.status, conn.pause_reason, conn.paused_at = "active", None, None
    if was == "paused":
        emit.connection_changed(conn, reason[:200])


def template_status(session, conns: list[Connection], waba_id: str, value: dict, out: list[DomainEvent]) -> None:
    seen = set()
    for conn in conns:
        if conn.workspace_id in seen:
            continue
        seen.add(conn.workspace_id)
        template = _template(session, conn.workspace_id, waba_id, value)
        event = text(value.get("event")) or template.status
        template.status = "APPROVED" if event in ("REINSTATED", "UNPAUSED") else event
        template.status_reason = text(value.get("reason"))
        out.append(DomainEvent("template.status", conn.workspace_id, conn.id,
                               {"name": template.name, "language": template.language, "status": template.status,
                                "reason": template.status_reason}))


def _template(session, workspace_id: str, waba_id: str, value: dict) -> Template:
    """The template a status update is about (found by Meta's id, else name and language), or
    a new row for it; a row a concurrent job inserted first is found, not duplicated."""
    meta_id = text(value.get("message_template_id")) or ""
    name, language = text(value.get("message_template_name")), text(value.get("message_template_language"))
    query = select(Template).where(Template.workspace_id == workspace_id, Template.waba_id == waba_id)
    for _ in range(2):
        template = session.scalars(query.where(Template.meta_id == meta_id)).first() if meta_id else None
        template = template or session.scalars(query.where(Template.name == (name or meta_id),
                                                           Template.language == (language or ""))).first()
        if template is not None:
            return template
        template = Template(workspace_id=workspace_id, waba_id=waba_id, meta_id=meta_id or None,
                            name=name or meta_id, language=language or "", components=[])
        try:
            with savepoint(session):
                session.add(template)
            return template
        except IntegrityError:
            continue
    raise RuntimeError("template upsert kept racing with concurrent inserts")


def user_preferences(session, conn: Connection, value: dict, out: list[DomainEvent],
                     items: Items | None = None, at: str = "value") -> None:
    items = items or Items(session, out)
    for where, pref in items.each(value, "user_preferences", at):
        if pref.get("category") != "marketing_messages":
            continue
        with items.isolated(where):
            _preference(session, conn, pref, out)


def _preference(session, conn: Connection, pref: dict, out: list[DomainEvent]) -> None:
    contact = contacts.upsert(session, conn.workspace_id, wa_id=text(pref.get("wa_id")),
                              user_id=text(pref.get("user_id")))
    if contact is None:
        return
    if pref.get("value") == "stop":
        contacts.opt_out(contact, marketing_only=True, source="whatsapp", connection_id=conn.id)
        out.append(DomainEvent("contact.opted_out", conn.workspace_id, conn.id,
                               {"wa_id": contact.wa_id, "user_id": contact.user_id, "scope": "marketing",
                                "source": "user_preferences"},
                               contact_id=contact.id))
    elif pref.get("value") == "resume":
        contacts.opt_in(contact, marketing_only=True, source="whatsapp", connection_id=conn.id)


def quality_update(session, conns: list[Connection], value: dict, out: list[DomainEvent]) -> None:
    for conn in conns:
        if value.get("display_phone_number") and conn.display_phone_number and \
                value["display_phone_number"] != conn.display_phone_number:
            continue
        conn.quality = {"event": value.get("event"), "current_limit": value.get("current_limit"),
                        "at": iso_utc(utcnow())}
        limit = portfolio.limit_of_webhook(value)
        if limit is not None:  # the portfolio's tier (shared by its numbers)
            portfolio.apply_limit(conn, limit, source=f"phone_number_quality_update {value.get('event')}")
        out.append(DomainEvent("account.updated", conn.workspace_id, conn.id,
                               {"event": "QUALITY_" + str(value.get("event")), "quality": conn.quality}))


def capability_update(session, conns: list[Connection], value: dict, out: list[DomainEvent]) -> None:
    """``business_capability_update``: the portfolio's messaging limit
    (``max_daily_conversations_per_business``; -1 unlimited) for every number of the WABA."""
    limit = portfolio.limit_of_webhook(value)
    for conn in conns:
        if limit is not None and portfolio.apply_limit(conn, limit, source="business_capability_update"):
            out.append(DomainEvent("account.updated", conn.workspace_id, conn.id,
                                   {"event": "MESSAGING_LIMIT", "messaging_limit": portfolio.tier_name(limit)}))
