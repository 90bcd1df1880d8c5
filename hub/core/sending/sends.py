"""Create ``sends`` rows (idempotent) and find the connection a workspace sends from."""
from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.core import contacts
from hub.core.db import savepoint
from hub.core.events import emit
from hub.core.models import Connection, Contact, Installation, Send, utcnow

AUTOMATED = ("connector", "automation", "broadcast")  # origins the echo-aware hold applies to


def sending_connection(session: Session, workspace_id: str,
                       installation: Installation | None = None) -> Connection | None:
    """The installation's configured connection, else the workspace's oldest active one."""
    wanted = (installation.config or {}).get("connection_id") if installation else None
    query = select(Connection).where(Connection.workspace_id == workspace_id)
    if wanted:
        return session.scalars(query.where(Connection.id == wanted)).first()
    return session.scalars(query.order_by(Connection.status != "active", Connection.created_at)).first()


def find_idempotent(session: Session, workspace_id: str, idempotency_key: str | None) -> Send | None:
    """The workspace's send with this idempotency key, if any."""
    if not idempotency_key:
        return None
    return session.scalars(select(Send).where(Send.workspace_id == workspace_id,
                                              Send.idempotency_key == idempotency_key)).first()


def create_send(session: Session, *, workspace_id: str, connection: Connection | None, to: str,
                kind: str, origin: str, text: str | None = None, template: str | None = None,
                language: str | None = None, params: Any = None, category: str | None = None,
                idempotency_key: str | None = None, cancel_key: str | None = None,
                cancel_group: str | None = None, not_before: dt.datetime | None = None, installation_id: str | None = None,
                broadcast_id: str | None = None, reference: dict | None = None,
                name: str | None = None, connection_reason: str | None = None,
                claim_token: str | None = None, contact: Contact | None = None) -> tuple[Send, bool]:
    """Insert a send (``scheduled`` when ``not_before`` is in the future, else ``queued``).

    ``connection_reason`` says why ``connection`` was chosen (``routing.REASONS``; ``given``
    when the caller passed its own, e.g. a confirmation on the number a STOP came in on).
    With ``claim_token`` a send due now is inserted already claimed (``sending``): the caller
    enqueues ``pipeline.claimed_job`` after its commit, and no batch job has to claim it.
    ``contact``: the recipient's contact when the caller has it already (``recipient``).

    Returns ``(send, created)``; an existing send with the same idempotency key is returned
    unchanged with ``created=False``.
    """
    if idempotency_key:
        existing = session.scalars(select(Send).where(Send.workspace_id == workspace_id,
                                                      Send.idempotency_key == idempotency_key)).first()
        if existing:
            return existing, False
    if contact is None:
        contact = recipient(session, workspace_id, to, origin, name)
    now = utcnow()
    send = Send(workspace_id=workspace_id, connection_id=connection.id if connection else None,
                contact_id=contact.id if contact else None, to=to, kind=kind, text=text,
                template_name=template, template_language=language, params=params or [],
                category=category, origin=origin, idempotency_key=idempotency_key, cancel_key=cancel_key,
                cancel_group=cancel_group, not_before=not_before, installation_id=installation_id, broadcast_id=broadcast_id,
                reference=reference or {}, attempts=0,
                connection_reason=connection_reason or ("given" if connection else None),
                status="scheduled" if not_before and not_before > now else "queued")
    if claim_token and send.status == "queued" and connection is not None:
        send.status, send.claim_token = "sending", claim_token
    if connection is None:
        send.status, send.last_error = "failed", "no WhatsApp connection in this workspace"
    try:
        with savepoint(session):
            session.add(send)
    except IntegrityError:  # a concurrent insert won the idempotency key
        existing = session.scalars(select(Send).where(Send.workspace_id == workspace_id,
                                                      Send.idempotency_key == idempotency_key)).one()
        return existing, False
    if send.status == "failed":  # refused at once: there is no number to send from
        emit.send_ended(send)
    return send, True


CLAIM_TOKEN = "coexhub_claim_token"  # ``session.info`` key


def claim_token(session: Session) -> str:
    """The claim token of the sends created in ``session``'s transaction (one ``deliver`` job;
    a job processing several events in turn gives their transactions one, ``CLAIM_TOKEN``)."""
    return session.info.setdefault(CLAIM_TOKEN, secrets.token_hex(8))


def recipient(session: Session, workspace_id: str, to: str | None, origin: str,
              name: str | None = None) -> Contact | None:
    """The contact a send to ``to`` (a phone number or a BSUID) goes to, created if new (with
    ``name``; an existing one without a name gets it); a concurrent request creating it too
    is no error."""
    if not to:
        return None
    for attempt in (1, 2):
        try:
            with savepoint(session):
                contact = contacts.upsert(session, workspace_id, **contacts.recipient_keys(to), source=origin,
                                          created_with={"profile_name": name})
            break
        except IntegrityError:  # another request inserted the same contact first: read theirs
            if attempt == 2:
                raise
    if name and not contact.profile_name:
        contact.profile_name = name
    return contact
