"""``publish``: the one fan-out point of outward events.

Every emitter (WhatsApp processing, sends, connections, contacts, connectors' ``Emit``, Zapier
hooks) calls it inside the transaction that made the change, so an event exists exactly when
its change does. It stores the event (``evt_…``, timestamp) and one outbox row per enabled
subscription that matches; their delivery jobs are enqueued after the commit (the scheduler
enqueues any that Redis loses).
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.core.events.catalogue import EVENT_TYPES, matches
from hub.core.logs import event
from hub.core.models import OutboundDelivery, OutboundEvent, Subscription, iso_utc, new_id, utcnow

log = logging.getLogger(__name__)
_JOBS = "coexhub_outbox_jobs"
_SUBS = "coexhub_subscriptions"


def envelope(evt: OutboundEvent) -> dict[str, Any]:
    """What a subscriber receives: ``{"id", "type", "timestamp", "workspace_id", "data"}``."""
    return {"id": evt.id, "type": evt.type, "timestamp": iso_utc(evt.created_at),
            "workspace_id": evt.workspace_id, "data": evt.data}


def record(session: Session, workspace_id: str, type: str, data: dict[str, Any], *,
           installation_id: str | None = None, only: list[Subscription] | None = None
           ) -> tuple[OutboundEvent, list[OutboundDelivery]]:
    """Store one event and an outbox delivery per matching enabled subscription (``only``:
    these subscriptions instead, e.g. a test event); returns the event and the deliveries."""
    known = EVENT_TYPES.get(type)
    if known is not None:
        errors = known.errors(data)
        if errors:  # published anyway: an event is never dropped; the mismatch is logged
            event(log, "event data does not match its schema", level=logging.WARNING, type=type,
                  errors=str(errors)[:300])
    now = utcnow()
    evt = OutboundEvent(id=new_id("evt"), workspace_id=workspace_id, type=type, data=data, created_at=now)
    session.add(evt)  # written with the transaction's next flush (the events of one flush in one INSERT)
    if only is None:
        subs = [sub for sub in _subscriptions(session, workspace_id) if matches(sub.events, type)]
    else:
        subs = only
    payload = envelope(evt)
    rows = [OutboundDelivery(workspace_id=workspace_id, kind="webhook", target=sub.id, event_type=type,
                             event_id=evt.id, payload=payload, installation_id=installation_id,
                             next_attempt_at=now, enqueued_at=now) for sub in subs]
    if rows:
        session.add_all(rows)
        session.flush()
        enqueue_after_commit(session, rows)
    event(log, "event published", type=type, event_id=evt.id, workspace_id=workspace_id, deliveries=len(rows))
    return evt, rows


def _subscriptions(session: Session, workspace_id: str) -> list[Subscription]:
    """The workspace's enabled subscriptions, read once per transaction (an event that publishes
    three events asks once); a flush that writes a subscription drops what was read."""
    transaction = session.get_transaction()
    cache = session.info.get(_SUBS)
    if cache is None or cache[0] is not transaction:
        cache = session.info[_SUBS] = (transaction, {})
    if workspace_id not in cache[1]:
        cache[1][workspace_id] = session.scalars(select(Subscription).where(
            Subscription.workspace_id == workspace_id, Subscription.enabled.is_(True))).all()
    return cache[1][workspace_id]


@sa_event.listens_for(Session, "before_flush")
def _drop_subscriptions(session: Session, _flush_context, _instances) -> None:
    if session.info.get(_SUBS) and any(isinstance(row, Subscription)
                                       for row in (*session.new, *session.dirty, *session.deleted)):
        session.info[_SUBS] = (None, {})


def publish(session: Session, workspace_id: str, type: str, data: dict[str, Any], **kw) -> list[OutboundDelivery]:
    """Publish one event (see ``record``); returns its outbox deliveries."""
    return record(session, workspace_id, type, data, **kw)[1]


def enqueue_after_commit(session: Session, rows: list[OutboundDelivery]) -> None:
    """Enqueue the rows' delivery jobs once ``session`` commits (nothing on a rollback)."""
    from hub.core.outbox import outbox_job

    if _JOBS not in session.info:
        session.info[_JOBS] = []
        sa_event.listen(session, "after_commit", _after_commit)
        sa_event.listen(session, "after_rollback", _after_rollback)
    session.info[_JOBS] += [outbox_job(row) for row in rows]


def _after_commit(session: Session) -> None:
    from hub.core.runtime import installed

    if session.in_nested_transaction():  # a savepoint released (SQLAlchemy fires this for those too)
        return
    jobs, session.info[_JOBS] = session.info.get(_JOBS, []), []
    rt = installed()
    if rt is None or not jobs:
        return
    try:
        for queue, func, args, job_id in dict.fromkeys(jobs):
            rt.queues.enqueue(queue, func, *args, job_id=job_id)
    except Exception as exc:  # Redis away: the scheduler enqueues them (enqueued_at is checked)
        event(log, "outbox jobs left to the scheduler", level=logging.WARNING, jobs=len(jobs), error=str(exc)[:200])


def _after_rollback(session: Session) -> None:
    if not session.in_nested_transaction():  # the whole transaction, not a savepoint
        session.info[_JOBS] = []
