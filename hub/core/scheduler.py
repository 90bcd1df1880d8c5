"""The scheduler: moves due work into RQ and reconciles what Redis or a worker lost.

One ``tick`` (run every second by ``coexhub scheduler``):
- scheduled sends whose ``not_before`` has come → ``queued`` + a ``deliver`` job;
- inbound events, sends and outbox rows that are due but not enqueued recently → enqueued
  again (after a Redis loss, a killed worker, or a retry's backoff);
- installations whose connector polls (``poll_every``) and whose poll is due → a poll job.
Enqueueing is safe to repeat: job ids are unique per row and every job is idempotent.
"""
from __future__ import annotations

import datetime as dt
import logging
import time

from sqlalchemy import or_, select, update

from hub.core.ingest import process_job
from hub.core.logs import event
from hub.core.outbox import outbox_job
from hub.core.models import Connection, InboundEvent, OutboundDelivery, Send, utcnow
from hub.core.polling import due_installations
from hub.core.sending.pipeline import JOB_SLOTS, delivery_job
from hub.core.runtime import Runtime

log = logging.getLogger(__name__)
STALE = dt.timedelta(minutes=5)  # a job enqueued this long ago and still not run is re-enqueued
QUEUED_STALE = dt.timedelta(seconds=15)  # a queued send no batch job picked up (a lost wake-up)
BATCH = 1000


def tick(rt: Runtime, now: dt.datetime | None = None, stale: dt.timedelta = STALE) -> dict[str, int]:
    now = now or utcnow()
    moved = {"sends": 0, "events": 0, "outbox": 0, "polls": 0}
    with rt.db.session() as s:
        due = s.scalars(select(Send.id).join(Connection, Connection.id == Send.connection_id).where(
            Connection.status == "active",
            or_(Send.status == "scheduled", (Send.status == "sending") & (Send.updated_at < now - stale)),
            or_(Send.not_before.is_(None), Send.not_before <= now)).limit(BATCH)).all()
        if due:
            s.execute(update(Send).where(Send.id.in_(due)).values(status="queued", updated_at=now))
        waiting = s.scalars(select(Send.id).where(Send.status == "queued", Send.updated_at < now - QUEUED_STALE)
                            .limit(1)).first()  # queued work no batch job is looking at: wake them
        events = s.scalars(select(InboundEvent.id).where(
            InboundEvent.status == "pending", InboundEvent.next_attempt_at <= now,
            or_(InboundEvent.enqueued_at.is_(None), InboundEvent.enqueued_at < now - stale)).limit(BATCH)).all()
        if events:
            s.execute(update(InboundEvent).where(InboundEvent.id.in_(events)).values(enqueued_at=now))
        outbox = s.scalars(select(OutboundDelivery).where(
            or_((OutboundDelivery.status == "pending") & (OutboundDelivery.next_attempt_at <= now),
                OutboundDelivery.status == "delivering"),  # a worker died mid-delivery: try again
            or_(OutboundDelivery.enqueued_at.is_(None), OutboundDelivery.enqueued_at < now - stale))
            .limit(BATCH)).all()
        for row in outbox:
            row.status, row.enqueued_at = "pending", now
        outbox_jobs = [outbox_job(row) for row in outbox]
        polls = due_installations(rt, s)
    moved["sends"] = len(due)
    wake = due if not waiting else range(JOB_SLOTS)
    for queue, func, args, job_id in dict.fromkeys(delivery_job(send_id) for send_id in wake):
        rt.queues.enqueue(queue, func, *args, job_id=job_id)
    for queue, func, args, job_id in [process_job(event_id) for event_id in events]:
        moved["events"] += rt.queues.enqueue(queue, func, *args, job_id=job_id)
    for queue, func, args, job_id in outbox_jobs:
        moved["outbox"] += rt.queues.enqueue(queue, func, *args, job_id=job_id)
    for installation_id in polls:
        moved["polls"] += rt.queues.enqueue("ingest", "hub.core.polling.poll_installation", installation_id,
                                            job_id=f"poll-{installation_id}")
    return moved


def run_forever(rt: Runtime, interval: float = 1.0, stop=lambda: False) -> None:
    log.info("scheduler started (every %ss)", interval)
    while not stop():
        started = time.monotonic()
        try:
            moved = tick(rt)
            if any(moved.values()):
                event(log, "scheduler moved work into the queues", **moved)
        except Exception:
            log.exception("scheduler tick failed; trying again")
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
