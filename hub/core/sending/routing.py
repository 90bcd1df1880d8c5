"""Which of a workspace's numbers a send goes out from, and why.

In order: the number given with the send (``requested``); the active number the customer last
wrote to (``customer_last_wrote`` — its 24-hour window is the one that may be open, and the
customer expects the answer there); the number the installation pins with its ``connection_id``
setting (``installation_pin``); the workspace's oldest active number (``workspace_default``).
For a template send a number whose WhatsApp Business Account lacks the approved template is
passed over when a later choice has it. The reason is stored on the send
(``Send.connection_reason``) and shown by the API.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.core.bsuid import is_bsuid
from hub.core.models import Connection, Contact, ContactWindow, Installation
from hub.core.sending.sends import sending_connection
from hub.core.sending.templates import find_template
from hub.core.sending.windows import last_written

REASONS = {
    "requested": "the connection_id given with the send",
    "given": "chosen by the hub itself (a STOP confirmation goes back on the number it came in on)",
    "customer_last_wrote": "the number the customer last wrote to",
    "reply_to": "the number the replied-to customer message came in on",
    "installation_pin": "the number the installation pins (its connection_id setting)",
    "workspace_default": "the workspace's oldest active number",
}


@dataclass(frozen=True)
class Route:
    """The chosen number (None: the workspace has none) and the reason code (see ``REASONS``)."""
    connection: Connection | None
    reason: str | None

    @property
    def connection_id(self) -> str | None:
        return self.connection.id if self.connection is not None else None


def contact_id_for(session: Session, workspace_id: str, to: str | None) -> int | None:
    """The id of the contact with this WhatsApp number or BSUID, without creating one."""
    if not to:
        return None
    column = Contact.user_id if is_bsuid(to) else Contact.wa_id
    return session.scalars(select(Contact.id).where(Contact.workspace_id == workspace_id, column == to)).first()


def choose(session: Session, workspace_id: str, *, to: str | None = None, contact_id: int | None = None,
           installation: Installation | None = None, template: str | None = None,
           language: str | None = None, contact: Contact | None = None) -> Route:
    """The number to send from (see the module docstring). ``contact``: the recipient's row when
    the caller has it (no query for it; one that never wrote in has no window to prefer). Each
    choice is looked up only when the ones before it fall through."""
    if contact is not None:
        contact_id = contact.id if contact.last_inbound_at is not None else None
    else:
        contact_id = contact_id or contact_id_for(session, workspace_id, to)

    def candidates() -> Iterator[Route]:
        last = last_written(session, workspace_id, contact_id)
        if last is not None:
            yield Route(last, "customer_last_wrote")
        pinned = (installation.config or {}).get("connection_id") if installation is not None else None
        if pinned:
            conn = session.scalars(select(Connection).where(Connection.workspace_id == workspace_id,
                                                            Connection.id == pinned)).first()
            if conn is not None:
                yield Route(conn, "installation_pin")
        default = sending_connection(session, workspace_id)
        if default is not None:
            yield Route(default, "workspace_default")
    return _pick(candidates(), _approved(session, workspace_id, template, language))


def choose_many(session: Session, workspace_id: str, contact_ids: list[int], *, template: str | None = None,
                language: str | None = None) -> dict[int, Route]:
    """``choose`` for many contacts at once (a broadcast): a few queries, not a few per contact."""
    numbers = {c.id: c for c in session.scalars(select(Connection).where(
        Connection.workspace_id == workspace_id, Connection.status == "active"))}
    latest: dict[int, tuple] = {}
    for i in range(0, len(contact_ids), 500):
        rows = session.execute(select(ContactWindow.contact_id, ContactWindow.connection_id,
                                      ContactWindow.last_inbound_at).where(
            ContactWindow.contact_id.in_(contact_ids[i:i + 500]), ContactWindow.last_inbound_at.is_not(None)))
        for contact_id, connection_id, when in rows:
            if connection_id in numbers and (contact_id not in latest or when > latest[contact_id][0]):
                latest[contact_id] = (when, numbers[connection_id])
    default = sending_connection(session, workspace_id)
    fallback = [Route(default, "workspace_default")] if default is not None else []
    approved = _approved(session, workspace_id, template, language)
    return {cid: _pick(([Route(latest[cid][1], "customer_last_wrote")] if cid in latest else []) + fallback,
                       approved) for cid in contact_ids}


def _approved(session: Session, workspace_id: str, template: str | None, language: str | None):
    """A test ``waba_id -> bool``: has the WABA this template approved (always True for text)."""
    cache: dict[str, bool] = {}

    def approved(waba_id: str) -> bool:
        if template is None:
            return True
        if waba_id not in cache:
            found = find_template(session, workspace_id, waba_id, template, language)
            cache[waba_id] = found is not None and found.status == "APPROVED"
        return cache[waba_id]
    return approved


def _pick(candidates: Iterable[Route], approved) -> Route:
    """The first candidate whose account has the template, else the first (checks explain why)."""
    first = None
    for candidate in candidates:
        if approved(candidate.connection.waba_id):
            return candidate
        first = first or candidate
    return first or Route(None, None)


def requested(conn: Connection | None) -> Route:
    """The route of a send whose number the caller chose."""
    return Route(conn, "requested" if conn is not None else None)
