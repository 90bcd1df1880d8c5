"""Find or create contacts by WhatsApp id (``wa_id``) or business-scoped user id."""
from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.core.bsuid import is_bsuid
from hub.core.db import OPTIMISTIC, lock, savepoint
from hub.core.events import emit
from hub.core.models import Attribution, Contact, Message, Send, utcnow

_LOCKED = "coexhub_contacts"  # ``session.info``: the contacts an optimistic pass has locked


def upsert(session: Session, workspace_id: str, *, wa_id: str | None = None, user_id: str | None = None,
           source: str = "customer", created_with: dict | None = None, **values) -> Contact | None:
    """The contact for ``wa_id``/``user_id`` (merging the two when both are known), updated
    with the non-None ``values``; None when neither id is given. ``created_with``: values a
    new contact gets (an existing one keeps its own).

    Safe when jobs run at once: the rows are locked for the rest of the transaction on
    PostgreSQL (SQLite runs one writer at a time), and a contact another job inserted first
    is found and used instead of failing on the unique key."""
    if not wa_id and not user_id:
        return None
    contact = _locked_already(session, workspace_id, wa_id, user_id) or \
        _find_or_add(session, workspace_id, wa_id, user_id, source, {**(created_with or {}), **values})
    for key, value in values.items():
        if value is not None:
            setattr(contact, key, value)
    session.flush()
    return contact


def _locked_already(session: Session, workspace_id: str, wa_id: str | None, user_id: str | None) -> Contact | None:
    """The contact this transaction already found (and locked) by these ids, when nothing can
    have changed it since: only in an optimistic pass (``hub.core.db.savepoint``), where no
    savepoint can roll an insert back. A merge or a new id goes to the database."""
    if not session.info.get(OPTIMISTIC):
        return None
    contact = session.info.get(_LOCKED, {}).get((workspace_id, "wa", wa_id) if wa_id else (workspace_id, "user", user_id))
    if contact is not None and (not wa_id or contact.wa_id == wa_id) and (not user_id or contact.user_id == user_id):
        return contact
    return None


def _remember(session: Session, contact: Contact) -> Contact:
    if session.info.get(OPTIMISTIC):
        known = session.info.setdefault(_LOCKED, {})
        for kind, key in (("wa", contact.wa_id), ("user", contact.user_id)):
            if key:
                known[contact.workspace_id, kind, key] = contact
    return contact


def recipient_keys(to: str | None) -> dict[str, str | None]:
    """``{"wa_id": …}`` or ``{"user_id": …}``: how a send's ``to`` (a number or a BSUID) names a contact."""
    return {"wa_id": None, "user_id": to} if is_bsuid(to) else {"wa_id": to or None, "user_id": None}


def find_recipient(session: Session, workspace_id: str, to: str | None) -> Contact | None:
    """The contact a send's ``to`` names (by phone number or BSUID), without creating one."""
    if not to:
        return None
    column = Contact.user_id if is_bsuid(to) else Contact.wa_id
    return session.scalars(select(Contact).where(Contact.workspace_id == workspace_id, column == to)).first()


def _find_or_add(session: Session, workspace_id: str, wa_id: str | None, user_id: str | None,
                 source: str, values: dict) -> Contact:
    """The contact, found (locked) or inserted with ``values`` already set (one INSERT, no UPDATE)."""
    conds = [Contact.wa_id == wa_id] if wa_id else []
    conds += [Contact.user_id == user_id] if user_id else []
    found = session.scalars(lock(select(Contact).where(Contact.workspace_id == workspace_id, or_(*conds))
                                 .order_by(Contact.id), session)).all()
    contact = next((c for c in found if wa_id and c.wa_id == wa_id), None) or (found[0] if found else None)
    for other in found:
        if other is not contact:  # the same person seen first by user_id, later by wa_id
            _merge(session, contact, other)
    if contact is not None:
        contact.wa_id = contact.wa_id or wa_id
        contact.user_id = contact.user_id or user_id
        return _remember(session, contact)
    contact = Contact(workspace_id=workspace_id, wa_id=wa_id, user_id=user_id, source=source,
                      tags=[], attributes={}, **{k: v for k, v in values.items() if v is not None})
    try:
        with savepoint(session):
            session.add(contact)
    except IntegrityError:  # a concurrent job inserted this person first: use theirs
        theirs = session.scalars(lock(select(Contact).where(Contact.workspace_id == workspace_id, or_(*conds))
                                      .order_by(Contact.id), session)).first()
        if theirs is None:  # not a race: a real constraint failure
            raise
        return _find_or_add(session, workspace_id, wa_id, user_id, source, values)
    emit.contact_created(session, contact)
    return _remember(session, contact)


def add_tags(contact: Contact, tags: list[str]) -> None:
    new = [t for t in tags if t not in (contact.tags or [])]
    if new:
        contact.tags = [*(contact.tags or []), *new]


def _merge(session: Session, keep: Contact, other: Contact) -> None:
    """Fold ``other`` into ``keep``: its history, tags and — never lost — its opt-outs."""
    for model in (Message, Send, Attribution):
        session.query(model).filter(model.contact_id == other.id).update({"contact_id": keep.id})
    user_id, other.user_id = other.user_id, None
    wa_id, other.wa_id = other.wa_id, None
    session.flush()  # free the unique (workspace, user_id / wa_id) before ``keep`` takes them
    keep.user_id = keep.user_id or user_id
    keep.wa_id = keep.wa_id or wa_id
    for name in ("profile_name", "username", "full_name", "first_name", "marketing_consent", "consent_source"):
        if getattr(keep, name) is None:
            setattr(keep, name, getattr(other, name))
    add_tags(keep, other.tags or [])
    keep.attributes = {**(other.attributes or {}), **(keep.attributes or {})}
    keep.opted_out, keep.marketing_opted_out = keep.opted_out or other.opted_out, \
        keep.marketing_opted_out or other.marketing_opted_out
    for name in ("opted_out_at", "marketing_opted_out_at", "last_inbound_at", "hold_until"):
        theirs, mine = getattr(other, name), getattr(keep, name)
        if theirs and (not mine or theirs > mine):
            setattr(keep, name, theirs)
    from hub.core.sending import windows  # windows → sends → contacts: imported when needed

    windows.merge(session, keep, other)
    session.delete(other)
    session.flush()


def opt_in(contact: Contact, *, marketing_only: bool = False, source: str = "api",
           connection_id: str | None = None) -> None:
    """Lift an opt-out (START, WhatsApp's own "resume", or the API); publishes
    ``contact.opted_in`` when it changed anything."""
    if marketing_only:
        changed = contact.marketing_opted_out
        contact.marketing_opted_out, contact.marketing_opted_out_at = False, None
    else:
        changed = contact.opted_out
        contact.opted_out, contact.opted_out_at = False, None
    if changed:
        emit.opted(contact, False, marketing_only=marketing_only, source=source, connection_id=connection_id)


def opt_out(contact: Contact, *, marketing_only: bool = False, source: str = "api",
            connection_id: str | None = None) -> None:
    """Opt a contact out (of everything, or of marketing); publishes ``contact.opted_out``
    when it changed anything."""
    now = utcnow()
    if marketing_only:
        changed = not contact.marketing_opted_out
        contact.marketing_opted_out, contact.marketing_opted_out_at = True, now
    else:
        changed = not contact.opted_out
        contact.opted_out, contact.opted_out_at = True, now
    if changed:
        emit.opted(contact, True, marketing_only=marketing_only, source=source, connection_id=connection_id)
