"""Find or create contacts by WhatsApp id (``wa_id``) or business-scoped user id."""
from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from hub.core.models import Contact, utcnow


def upsert(session: Session, workspace_id: str, *, wa_id: str | None = None, user_id: str | None = None,
           source: str = "customer", **values) -> Contact | None:
    """The contact for ``wa_id``/``user_id`` (merging the two when both are known), updated
    with the non-None ``values``; None when neither id is given."""
    if not wa_id and not user_id:
        return None
    conds = [Contact.wa_id == wa_id] if wa_id else []
    conds += [Contact.user_id == user_id] if user_id else []
    found = session.scalars(select(Contact).where(Contact.workspace_id == workspace_id, or_(*conds))).all()
    contact = next((c for c in found if wa_id and c.wa_id == wa_id), None) or (found[0] if found else None)
    for other in found:
        if other is not contact:  # the same person seen first by user_id, later by wa_id
            _merge(session, contact, other)
    if contact is None:
        contact = Contact(workspace_id=workspace_id, wa_id=wa_id, user_id=user_id, source=source,
                          tags=[], attributes={})
        session.add(contact)
    else:
        contact.wa_id = contact.wa_id or wa_id
        contact.user_id = contact.user_id or user_id
    for key, value in values.items():
        if value is not None:
            setattr(contact, key, value)
    session.flush()
    return contact


def add_tags(contact: Contact, tags: list[str]) -> None:
    new = [t for t in tags if t not in (contact.tags or [])]
    if new:
        contact.tags = [*(contact.tags or []), *new]


def _merge(session: Session, keep: Contact, other: Contact) -> None:
    from hub.core.models import Message, Send

    for model in (Message, Send):
        session.query(model).filter(model.contact_id == other.id).update({"contact_id": keep.id})
    keep.user_id = keep.user_id or other.user_id
    keep.profile_name = keep.profile_name or other.profile_name
    add_tags(keep, other.tags or [])
    if other.last_inbound_at and (not keep.last_inbound_at or other.last_inbound_at > keep.last_inbound_at):
        keep.last_inbound_at = other.last_inbound_at
    session.delete(other)
    session.flush()


def opt_out(contact: Contact, *, marketing_only: bool = False) -> None:
    now = utcnow()
    if marketing_only:
        contact.marketing_opted_out, contact.marketing_opted_out_at = True, now
    else:
        contact.opted_out, contact.opted_out_at = True, now
