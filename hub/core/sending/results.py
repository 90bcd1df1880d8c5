"""Where a send's fate is written: one send at a time, the moment it is known.

A claimed send (``sending``, holding its worker's ``claim_token``) passes three moments:

1. ``mark_attempted`` — once the batch's governor slots are reserved, one conditional UPDATE
   stamps ``attempted_at`` on every send whose claim still holds (the scheduler may have handed
   a slow worker's send to another); ``start_call`` does the same for a send that waited for its
   slot on its own. From that moment Meta may have the message (its call follows within its
   slot's wait, at most a few seconds).
2. ``record_sent_many`` (and the pipeline's other outcomes) — written as soon as the calls
   return: every wamid that came back while the previous group was being written goes into one
   short transaction (no waiting to fill a group), retried while the database is away
   (``RECORD_PATIENCE``).
3. ``confirm_from_status`` — Meta's status webhooks echo ``biz_opaque_callback_data``
   (``send:{id}``): a send still waiting to learn its fate becomes ``sent`` with that wamid.

The scheduler puts a ``sending`` send back in the queue (``requeue_lost``) only when it was
never attempted and its claim is older than ``CLAIM_STALE`` (its worker died before calling
Meta), or when it was attempted more than ``UNKNOWN_GRACE`` ago, neither a result nor a status
came, and every WhatsApp webhook received since the attempt has been processed (an ingest
backlog holds it back; an event that failed and waits for its retry does not).

The one window left for a duplicate: Meta accepted the message, then the worker died (or the
database stayed away longer than ``RECORD_PATIENCE``) before the result was committed, and no
status webhook for the message reached the hub within ``UNKNOWN_GRACE`` of the attempt.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, exists, func, or_, select, update

from hub.core.db import dialect_insert
from hub.core.models import Connection, InboundEvent, Message, Send, utcnow

log = logging.getLogger(__name__)
CLAIM_STALE = dt.timedelta(seconds=20)  # a claimed, never-attempted send whose worker is gone
UNKNOWN_GRACE = dt.timedelta(minutes=2)  # how long an attempted send waits for its status webhook
RECORD_PATIENCE = 60.0  # seconds a worker holds on to a result while the database is away
CALLBACK = "send:"
OPEN = ("sending", "scheduled", "queued")  # a status webhook may still settle these


def callback_data(send_id: int) -> str:
    """The ``biz_opaque_callback_data`` every send carries; Meta echoes it in its statuses."""
    return f"{CALLBACK}{send_id}"


@dataclass(frozen=True)
class Attempt:
    """What the pipeline knows about a send it is about to call Meta for."""
    id: int
    workspace_id: str
    connection_id: str
    contact_id: int | None
    claim: str
    payload: dict
    read: dict | None = None  # the read receipt (and typing indicator) to send just before a reply


def start_call(rt, attempt: Attempt) -> bool:
    """Mark the send as possibly at Meta; False when this worker's claim no longer holds."""
    now = utcnow()
    with rt.db.autocommit.connect() as conn:
        claim = Send.claim_token == attempt.claim if attempt.claim else Send.claim_token.is_(None)
        result = conn.execute(update(Send).where(Send.id == attempt.id, Send.status == "sending", claim,
                                                 Send.attempted_at.is_(None))
                              .values(attempted_at=now, updated_at=now))
    return result.rowcount == 1


def mark_attempted(session, send_ids: list[int], claim: str | None) -> set[int]:
    """``start_call`` for a batch whose slots are reserved, in one UPDATE (``attempts`` + 1 as
    well): the ids whose claim still held — from now on Meta may have them."""
    if not send_ids:
        return set()
    now = utcnow()
    mine = Send.claim_token == claim if claim else Send.claim_token.is_(None)
    result = session.execute(update(Send).where(Send.id.in_(send_ids), Send.status == "sending", mine,
                                                Send.attempted_at.is_(None))
                             .values(attempted_at=now, updated_at=now, attempts=Send.attempts + 1, hold_reason=None)
                             .returning(Send.id), execution_options={"synchronize_session": False})
    return set(result.scalars())


def record_sent(rt, attempt: Attempt, wamid: str) -> None:
    """Meta accepted the send: ``sent`` with its wamid, and its outgoing message (one transaction)."""
    record_sent_many(rt, [(attempt, wamid)])


def record_sent_many(rt, sent: list[tuple[Attempt, str]]) -> None:
    """``record_sent`` for every ``(attempt, wamid)`` whose answer is in, in one transaction (one
    UPDATE executed for all, one multi-row INSERT of their outgoing messages)."""
    now = utcnow()
    rows, bodies = [], {}
    for attempt, wamid in sent:
        payload = attempt.payload
        bodies[wamid] = (attempt, {payload["type"]: payload[payload["type"]]})
        rows.append(dict(workspace_id=attempt.workspace_id, connection_id=attempt.connection_id,
                         contact_id=attempt.contact_id, wamid=wamid, direction="out", origin="api",
                         type=payload["type"], body=bodies[wamid][1], status="accepted",
                         context_wamid=(payload.get("context") or {}).get("message_id"), timestamp=now,
                         send_id=attempt.id))
    with rt.db.engine.begin() as conn:
        conn.execute(_SENT, [{"b_id": a.id, "b_wamid": wamid, "b_now": now} for a, wamid in sent])
        inserted = set(conn.execute(_insert_ignore(conn.dialect.name), rows).scalars())
        for wamid in set(bodies) - inserted:  # its status webhook came first and left a placeholder
            attempt, body = bodies[wamid]
            conn.execute(update(Message).where(Message.connection_id == attempt.connection_id,
                                               Message.wamid == wamid)
                         .values(type=attempt.payload["type"], body=body, send_id=attempt.id,
                                 contact_id=func.coalesce(Message.contact_id, attempt.contact_id)))


_SENT = (update(Send).where(Send.id == bindparam("b_id"), or_(*(Send.status == s for s in OPEN + ("sent",))))
         .values(status="sent", wamid=bindparam("b_wamid"), sent_at=bindparam("b_now"), last_error=None,
                 error_code=None, hold_reason=None, claim_token=None, updated_at=bindparam("b_now")))


def _insert_ignore(dialect: str):
    return dialect_insert(dialect)(Message).on_conflict_do_nothing().returning(Message.wamid)


def confirm_from_status(session, conn: Connection, status: dict[str, Any], message: Message | None) -> Send | None:
    """A status webhook echoing ``send:{id}`` settles that send if its result was never written
    (its worker died, or the call timed out): it becomes ``sent`` with the status's wamid."""
    data, wamid = status.get("biz_opaque_callback_data"), status.get("id")
    if not isinstance(data, str) or not data.startswith(CALLBACK) or not isinstance(wamid, str):
        return None
    try:
        send_id = int(data[len(CALLBACK):])
    except ValueError:
        return None
    send = session.scalars(select(Send).where(Send.id == send_id, Send.connection_id == conn.id)).first()
    if send is None or send.wamid is not None or send.status not in OPEN + ("dead",):
        return None  # (a send given up after unanswered attempts was sent after all)
    log.info("send %s settled by its %s status webhook (wamid %s)", send.id, status.get("status"), wamid)
    send.status, send.wamid, send.sent_at = "sent", wamid, utcnow()
    send.last_error = send.error_code = send.hold_reason = send.claim_token = None
    if message is not None and message.send_id is None:
        message.send_id, message.contact_id = send.id, message.contact_id or send.contact_id
        if message.type == "unknown":
            message.type = send.kind
            message.body = {"text": {"body": send.text}} if send.kind == "text" else \
                {"template": {"name": send.template_name, "language": {"code": send.template_language}}}
    return send


def requeue_lost(session, now: dt.datetime, limit: int) -> list[int]:
    """Put back in the queue the ``sending`` sends whose worker is gone and that Meta cannot have
    (never attempted), or whose fate stayed unknown for ``UNKNOWN_GRACE`` while every WhatsApp
    webhook received within that grace has been processed (a status for it would have settled
    it; later traffic does not hold it back). A status webhook that settles a send concurrently
    wins: the UPDATE only moves rows still ``sending`` under the same attempt."""
    active = select(Connection.id).where(Connection.status == "active")
    never_attempted = (Send.status == "sending") & Send.attempted_at.is_(None) & \
        (Send.updated_at < now - CLAIM_STALE) & Send.connection_id.in_(active)
    ids = list(session.scalars(update(Send).where(Send.id.in_(select(Send.id).where(never_attempted).limit(limit)),
                                                  never_attempted)
                               .values(status="queued", claim_token=None, updated_at=now).returning(Send.id),
                               execution_options={"synchronize_session": False}))
    unknown = session.execute(select(Send.id, Send.attempted_at).where(
        Send.status == "sending", Send.attempted_at < now - UNKNOWN_GRACE, Send.connection_id.in_(active))
        .order_by(Send.attempted_at).limit(limit)).all()
    for send_id, attempted_at in unknown:
        if session.scalar(select(exists().where(  # its status could still be waiting in this backlog
                InboundEvent.status == "pending", InboundEvent.provider == "whatsapp", InboundEvent.attempts == 0,
                InboundEvent.received_at >= attempted_at,
                InboundEvent.received_at <= attempted_at + UNKNOWN_GRACE))):
            continue
        moved = session.execute(update(Send).where(Send.id == send_id, Send.status == "sending",
                                                   Send.attempted_at == attempted_at)
                                .values(status="queued", claim_token=None, attempted_at=None, updated_at=now))
        if moved.rowcount:
            ids.append(send_id)
    ids.sort()
    if ids:
        log.warning("re-queued %d sends whose worker was lost: %s", len(ids), ids[:20])
    return ids
