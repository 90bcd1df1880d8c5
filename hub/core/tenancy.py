"""Which workspaces a Meta delivery concerns, and which events a workspace may see.

One Meta app webhook serves every workspace, and Meta may batch several numbers' changes in
one delivery. Each change is routed to connections (by ``metadata.phone_number_id``, by WABA
for account and template fields); the event row names the first workspace
(``InboundEvent.workspace_id``) and ``inbound_event_workspaces`` the others, so each of them
lists, reads and replays the delivery. Fields that could show another workspace's data are
cut from what a workspace reads of a shared delivery (see ``hub.api.events``).
"""
from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import exists, or_, select

from hub.core.models import Connection, InboundEvent, InboundEventWorkspace

WABA_FIELDS = frozenset({"account_update", "message_template_status_update", "phone_number_quality_update",
                         "message_template_quality_update", "template_category_update",
                         "business_capability_update"})
NUMBER_FIELDS = frozenset({"messages", "smb_message_echoes", "smb_app_state_sync", "history", "user_preferences"})


def change_connections(session, entry: Any, field: Any, value: Any) -> list[Connection]:
    """The connections one change of a Meta envelope is for.

    WABA-wide fields (templates, account, quality) go to every connection of that WABA — the
    WABA is checked to hold the number when it is connected, so these are its legitimate
    holders. Number fields go to the number's connection; without a ``phone_number_id`` they
    fall back to the WABA only when a single workspace holds it (never guess between tenants)."""
    entry = entry if isinstance(entry, dict) else {}
    value = value if isinstance(value, dict) else {}
    if field in WABA_FIELDS:
        info = value.get("waba_info") if isinstance(value.get("waba_info"), dict) else {}
        waba_id = ident(info.get("waba_id")) or ident(entry.get("id"))
        return list(session.scalars(select(Connection).where(Connection.waba_id == waba_id)
                                    .order_by(Connection.created_at))) if waba_id else []
    metadata = value.get("metadata") if isinstance(value.get("metadata"), dict) else {}
    number = ident(metadata.get("phone_number_id"))
    if number:
        conn = session.scalars(select(Connection).where(Connection.phone_number_id == number)).first()
        return [conn] if conn else []
    waba_id = ident(entry.get("id"))
    if field not in NUMBER_FIELDS or not waba_id:
        return []
    conns = session.scalars(select(Connection).where(Connection.waba_id == waba_id)
                            .order_by(Connection.created_at)).all()
    return [conns[0]] if len({c.workspace_id for c in conns}) == 1 else []


def envelope_workspaces(session, envelope: Any) -> list[str]:
    """Every workspace the changes of ``envelope`` route to, in order of appearance."""
    found: dict[str, None] = {}
    entries = envelope.get("entry") if isinstance(envelope, dict) else None
    for entry in entries if isinstance(entries, list) else ():
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else ():
            if isinstance(change, dict):
                for conn in change_connections(session, entry, change.get("field"), change.get("value")):
                    found.setdefault(conn.workspace_id)
    return list(found)


def link(session, event: InboundEvent, workspace_ids: Iterable[str]) -> None:
    """Record that ``event`` also concerns ``workspace_ids`` (its own workspace is implied)."""
    wanted = {w for w in workspace_ids if w and w != event.workspace_id}
    if event.workspace_id is None and wanted:
        event.workspace_id = sorted(wanted)[0]
        wanted.discard(event.workspace_id)
    if not wanted:
        return
    known = set(session.scalars(select(InboundEventWorkspace.workspace_id)
                                .where(InboundEventWorkspace.event_id == event.id)))
    for workspace_id in sorted(wanted - known):
        session.add(InboundEventWorkspace(event_id=event.id, workspace_id=workspace_id))


def link_ids(conn, event_id: int, workspace_ids: Iterable[str]) -> None:
    """``link`` at ingest time, on a plain connection (the event row was just inserted)."""
    rows = [{"event_id": event_id, "workspace_id": w} for w in dict.fromkeys(workspace_ids) if w]
    if rows:
        conn.execute(InboundEventWorkspace.__table__.insert(), rows)


def visible_to(workspace_id: str):
    """SQL condition: the inbound event concerns ``workspace_id``."""
    linked = exists().where(InboundEventWorkspace.event_id == InboundEvent.id,
                            InboundEventWorkspace.workspace_id == workspace_id)
    return or_(InboundEvent.workspace_id == workspace_id, linked)


def others(session, event: InboundEvent, workspace_id: str) -> bool:
    """True when ``event`` also concerns a workspace other than ``workspace_id``."""
    if event.workspace_id not in (None, workspace_id):
        return True
    return session.scalars(select(InboundEventWorkspace.workspace_id).where(
        InboundEventWorkspace.event_id == event.id, InboundEventWorkspace.workspace_id != workspace_id)
        .limit(1)).first() is not None


def ident(value: Any) -> str | None:
    """A Meta id as text (ids arrive as strings, sometimes as numbers); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    return text if text and len(text) <= 64 and text.isascii() and text.isprintable() else None
