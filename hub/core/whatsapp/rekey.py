"""``user_changed_user_id``: a WhatsApp user moved to a new business-scoped user ID (BSUID).

The contact keeps its row — history, opt-outs, consent, windows and holds stay with it — and
takes the new ``user_id``; a contact the new BSUID already created (a message that overtook the
system message) is folded into it (``contacts._merge``: nothing lost). Sends still queued for
the old BSUID follow. The system message stays in the contact's history as the audit note, and
the change is logged.
"""
from __future__ import annotations

import logging

from sqlalchemy import select, update

from hub.core import contacts
from hub.core.bsuid import mask
from hub.core.db import lock
from hub.core.logs import event
from hub.core.models import Connection, Contact, Send, utcnow
from hub.core.whatsapp.events import DomainEvent
from hub.core.whatsapp.items import obj, text

log = logging.getLogger(__name__)
PENDING = ("scheduled", "queued")


def new_user_id(msg: dict) -> str | None:
    """The new BSUID a ``user_changed_user_id`` system message names."""
    system = obj(msg.get("system"))
    return text(system.get("user_id")) or text(system.get("new_user_id"))


def user_changed_user_id(session, conn: Connection, contact: Contact | None, msg: dict,
                         out: list[DomainEvent]) -> None:
    """Re-key ``contact`` (found by the message's old BSUID) to the new BSUID."""
    new, old = new_user_id(msg), text(msg.get("from_user_id"))
    if contact is None or not new:
        event(log, "user_changed_user_id ignored", level=logging.WARNING, connection_id=conn.id,
              reason="no contact" if contact is None else "no new user_id in the system message")
        return
    if contact.user_id == new:
        return  # a redelivery, or Meta told us twice
    other = session.scalars(lock(select(Contact).where(Contact.workspace_id == contact.workspace_id,
                                                       Contact.user_id == new), session)).first()
    merged = other.id if other is not None and other.id != contact.id else None
    if merged is not None:
        contacts._merge(session, contact, other)  # the newer row folds into the one with the history
    previous = contact.user_id or old
    contact.user_id, contact.updated_at = new, utcnow()
    session.flush()
    moved = 0
    if previous:
        moved = session.execute(update(Send).where(
            Send.workspace_id == contact.workspace_id, Send.to == previous, Send.status.in_(PENDING))
            .values(to=new, contact_id=contact.id, updated_at=utcnow())
            .execution_options(synchronize_session=False)).rowcount or 0
    out.append(DomainEvent("contact.user_id_changed", conn.workspace_id, conn.id,
                           {"previous_user_id": previous, "user_id": new, "wa_id": contact.wa_id,
                            "merged_contact_id": merged}, contact_id=contact.id))
    event(log, "contact re-keyed to a new BSUID", contact_id=contact.id, connection_id=conn.id,
          was=mask(previous), now=mask(new), merged=merged,
          sends_readdressed=moved)
