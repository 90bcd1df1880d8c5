"""The 24-hour customer service window and the echo-aware hold, per business number and customer.

Meta keeps the window per (business number, customer): a customer who wrote to number B can be
answered with free text from B only. So does the hub (``contact_windows``). Message processing
records each customer message (``record_inbound``) and each owner reply from the phone app
(``hold``) on the number it arrived on; the send pipeline and request-time checks read them
back (``window``). ``Contact.last_inbound_at`` and ``Contact.hold_until`` are kept as the latest
across the contact's numbers, for the API and for older readers.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, or_, select, tuple_, update
from sqlalchemy.orm import Session

from hub.core.db import OPTIMISTIC, dialect_insert
from hub.core.models import Connection, Contact, ContactWindow, Send, utcnow
from hub.core.sending.sends import AUTOMATED

WINDOW = dt.timedelta(hours=24)
_WROTE_LAST = "coexhub_wrote_last"  # ``session.info``: contact id → the number it wrote to last, this pass


def window(session: Session, connection_id: str | None, contact_id: int | None) -> ContactWindow | None:
    """The row of this number and customer, or None (never written to that number, no hold)."""
    if not connection_id or not contact_id:
        return None
    return session.get(ContactWindow, (connection_id, contact_id))


def preload(session: Session, pairs: set[tuple[str, int]]) -> dict[tuple[str, int], ContactWindow | None]:
    """The rows of many (connection_id, contact_id) pairs in one query; missing pairs map to None."""
    pairs = {(c, k) for c, k in pairs if c and k}
    found: dict[tuple[str, int], ContactWindow | None] = dict.fromkeys(pairs)
    if pairs:
        rows = session.scalars(select(ContactWindow).where(
            tuple_(ContactWindow.connection_id, ContactWindow.contact_id).in_(list(pairs)))).all()
        found.update({(r.connection_id, r.contact_id): r for r in rows})
    return found


def is_open(row: ContactWindow | None, now: dt.datetime | None = None) -> bool:
    """True while the customer's last message to this number is less than 24 hours old."""
    now = now or utcnow()
    return row is not None and row.last_inbound_at is not None and now - row.last_inbound_at < WINDOW


def closes_at(row: ContactWindow | None) -> dt.datetime | None:
    return row.last_inbound_at + WINDOW if row is not None and row.last_inbound_at else None


def held_until(row: ContactWindow | None, origin: str, now: dt.datetime | None = None) -> dt.datetime | None:
    """When an automated send may go (the owner replied from the phone on this number), or None."""
    now = now or utcnow()
    if origin in AUTOMATED and row is not None and row.hold_until and row.hold_until > now:
        return row.hold_until
    return None


def _raise(session: Session, connection_id: str, contact: Contact, name: str, value: dt.datetime) -> None:
    """Set the pair's ``name`` to ``max(name, value)``, inserting the row when missing: one
    ``INSERT … ON CONFLICT DO UPDATE … WHERE``, so concurrent jobs never lower it and never
    collide on the insert."""
    column = getattr(ContactWindow, name)
    now = utcnow()
    insert = dialect_insert(session.get_bind().dialect.name)
    upsert = insert(ContactWindow).values(connection_id=connection_id, contact_id=contact.id,
                                          workspace_id=contact.workspace_id, updated_at=now, **{name: value})
    session.execute(upsert.on_conflict_do_update(
        index_elements=[ContactWindow.connection_id, ContactWindow.contact_id],
        set_={name: upsert.excluded[name], "updated_at": now}, where=or_(column.is_(None), column < value)))
    row = session.identity_map.get(session.identity_key(ContactWindow, (connection_id, contact.id)))
    if row is not None:  # loaded before: read the new values on next access
        session.expire(row, [name, "updated_at"])


def record_inbound(session: Session, connection_id: str, contact: Contact, when: dt.datetime) -> None:
    """A customer message reached ``connection_id``: it opens (or extends) that number's window.
    In an optimistic pass (no savepoint can undo this) the transaction remembers the number the
    customer wrote to last, so a reply routed in it needs no query (``last_written``)."""
    _raise(session, connection_id, contact, "last_inbound_at", when)
    if not contact.last_inbound_at or when >= contact.last_inbound_at:  # the contact's row holds the latest
        contact.last_inbound_at = when
        if session.info.get(OPTIMISTIC):
            session.info.setdefault(_WROTE_LAST, {})[contact.id] = connection_id


def hold(session: Session, contact: Contact, until: dt.datetime, connection_id: str | None = None) -> int:
    """Echo-aware handoff: the owner replied from the phone on ``connection_id``, so automated
    sends to this contact from that number wait until ``until`` (an agent can release them).
    Without a connection every number's automated sends wait. Returns how many were held."""
    if connection_id:
        _raise(session, connection_id, contact, "hold_until", until)
    if contact.hold_until is None or until > contact.hold_until:
        contact.hold_until = until
    where = [Send.contact_id == contact.id, Send.origin.in_(AUTOMATED), Send.status.in_(("scheduled", "queued")),
             or_(Send.not_before.is_(None), Send.not_before < until)]
    if connection_id:
        where.append(Send.connection_id == connection_id)
    result = session.execute(update(Send).where(*where).values(
        status="scheduled", hold_reason="human_took_over", updated_at=utcnow(), not_before=until))
    return result.rowcount or 0


def release(session: Session, contact: Contact, connection_id: str | None = None) -> int:
    """End the hold on one number (or all): held automated sends go now. Returns how many."""
    scope = [ContactWindow.contact_id == contact.id]
    if connection_id:
        scope.append(ContactWindow.connection_id == connection_id)
    session.execute(update(ContactWindow).where(*scope).values(hold_until=None, updated_at=utcnow()),
                    execution_options={"synchronize_session": "fetch"})
    remaining = session.scalars(select(ContactWindow.hold_until).where(
        ContactWindow.contact_id == contact.id, ContactWindow.hold_until.is_not(None))).all()
    contact.hold_until = max(remaining) if remaining and connection_id else None
    sends = [Send.contact_id == contact.id, Send.status == "scheduled", Send.hold_reason == "human_took_over"]
    if connection_id:
        sends.append(Send.connection_id == connection_id)
    result = session.execute(update(Send).where(*sends).values(not_before=utcnow(), hold_reason=None))
    return result.rowcount or 0


def of_contacts(session: Session, contact_ids: list[int]) -> dict[int, list[ContactWindow]]:
    """Every number's row for these contacts, newest message first."""
    out: dict[int, list[ContactWindow]] = {i: [] for i in contact_ids}
    if contact_ids:
        rows = session.scalars(select(ContactWindow).where(ContactWindow.contact_id.in_(contact_ids))
                               .order_by(ContactWindow.last_inbound_at.desc())).all()
        for row in rows:
            out[row.contact_id].append(row)
    return out


def last_written(session: Session, workspace_id: str, contact_id: int | None) -> Connection | None:
    """The active number this customer wrote to most recently, or None."""
    if not contact_id:
        return None
    wrote_last = session.info.get(_WROTE_LAST, {}).get(contact_id)  # see record_inbound
    known = session.get(Connection, wrote_last) if wrote_last else None
    if known is not None and known.workspace_id == workspace_id and known.status == "active":
        return known
    return session.scalars(select(Connection).join(ContactWindow, and_(
        ContactWindow.connection_id == Connection.id, ContactWindow.contact_id == contact_id))
        .where(Connection.workspace_id == workspace_id, Connection.status == "active",
               ContactWindow.last_inbound_at.is_not(None))
        .order_by(ContactWindow.last_inbound_at.desc()).limit(1)).first()


def merge(session: Session, keep: Contact, other: Contact) -> None:
    """Fold ``other``'s windows into ``keep`` (the same person, two contact rows)."""
    for row in session.scalars(select(ContactWindow).where(ContactWindow.contact_id == other.id)).all():
        if row.last_inbound_at:
            record_inbound(session, row.connection_id, keep, row.last_inbound_at)
        if row.hold_until:
            _raise(session, row.connection_id, keep, "hold_until", row.hold_until)
        session.delete(row)
    session.flush()
