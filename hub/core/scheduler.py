"""The scheduler: moves due work into RQ and reconciles what Redis or a worker lost.

One ``tick`` (run every second by ``coexhub scheduler``):
- scheduled sends whose ``not_before`` has come → ``queued`` + a ``deliver`` job;
- inbound events and outbox rows that are due and whose job no worker will run → enqueued
  again: never enqueued, enqueued before Redis restarted empty (``Queues.epoch``), or — asked
  of Redis once they are ``CHECK_AFTER`` old — missing, failed (the database was down) or held
  by a worker that stopped beating; ``STALE`` stays as a backstop;
- ``sending`` sends whose worker was lost → queued again, without ever sending twice
  (``sending.results``);
- installations whose connector polls (``poll_every``) and whose poll is due → a poll job;
- Coexistence numbers idle for 10 days → ``connection.inactivity_warning`` (``inactivity``).
Enqueueing is safe to repeat: job ids are unique per row and every job is idempotent.
"""
from __future__ import annotations

import datetime as dt
import logging
import time

import redis
from sqlalchemy import or_, select, update

from hub.core import inactivity
from hub.core.ingest import process_job
from hub.core.logs import event
from hub.core.models import Connection, InboundEvent, OutboundDelivery, Send, utcnow
from hub.core.outbox import outbox_job
from hub.core.patience import DB_AWAY
from hub.core.polling import due_installations
from hub.core.runtime import Runtime
from hub.core.sending.pipeline import JOB_SLOTS, delivery_job
from hub.core.sending.results import requeue_lost

log = logging.getLogger(__name__)
STALE = dt.timedelta(minutes=5)  # backstop: work enqueued this long ago and not done is enqueued again
CHECK_AFTER = dt.timedelta(seconds=5)  # work enqueued longer ago is checked against Redis (lost job?)
QUEUED_STALE = dt.timedelta(seconds=3)  # a queued send no batch job picked up (a lost wake-up)
BATCH = 1000


def tick(rt: Runtime, now: dt.datetime | None = None, stale: dt.timedelta = STALE) -> dict[str, int]:
    now = now or utcnow()
    epoch = rt.queues.epoch(utcnow())  # jobs enqueued before it were lost with a Redis restart
    moved = {"sends": 0, "events": 0, "outbox": 0, "polls": 0, "warnings": 0}
    with rt.db.session() as s:
        scheduled = (Send.status == "scheduled") & or_(Send.not_before.is_(None), Send.not_before <= now)
        active = select(Connection.id).where(Connection.status == "active")
        due = s.execute(update(Send).where(scheduled, Send.id.in_(
            select(Send.id).where(scheduled, Send.connection_id.in_(active)).limit(BATCH)))
            .values(status="queued", updated_at=now).returning(Send.id),
            execution_options={"synchronize_session": False}).scalars().all()
        due += requeue_lost(s, now, BATCH)
        waiting = s.scalars(select(Send.id).where(Send.status == "queued", Send.updated_at < now - QUEUED_STALE)
                            .limit(1)).first()  # queued work no batch job is looking at: wake them
        events = s.execute(select(InboundEvent.id, InboundEvent.enqueued_at).where(
            InboundEvent.status == "pending", InboundEvent.next_attempt_at <= now,
            or_(InboundEvent.enqueued_at.is_(None), InboundEvent.enqueued_at < now - CHECK_AFTER,
                InboundEvent.enqueued_at < epoch))
            .order_by(InboundEvent.id).limit(BATCH)).all()
        events = _lost(rt, events, "event-{}", epoch, now - stale)
        if events:
            s.execute(update(InboundEvent).where(InboundEvent.id.in_(events)).values(enqueued_at=now))
        outbox = s.scalars(select(OutboundDelivery).where(
            or_((OutboundDelivery.status == "pending") & (OutboundDelivery.next_attempt_at <= now),
                OutboundDelivery.status == "delivering"),  # a worker died mid-delivery: try again
            or_(OutboundDelivery.enqueued_at.is_(None), OutboundDelivery.enqueued_at < now - CHECK_AFTER,
                OutboundDelivery.enqueued_at < epoch))
            .order_by(OutboundDelivery.id).limit(BATCH)).all()
        lost = set(_lost(rt, [(row.id, row.enqueued_at) for row in outbox], "outbox-{}", epoch, now - stale))
        outbox = [row for row in outbox if row.id in lost]
        for row in outbox:
            row.status, row.enqueued_at = "pending", now
        outbox_jobs = [outbox_job(row) for row in outbox]
        polls = due_installations(rt, s)
        if inactivity.due(now):
            moved["warnings"] = inactivity.warn_idle(s, now)
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


def _lost(rt: Runtime, rows: list[tuple[int, dt.datetime | None]], job_id: str, epoch: dt.datetime,
          backstop: dt.datetime) -> list[int]:
    """The rows whose job no worker will run: never enqueued, enqueued before Redis restarted,
    past the backstop, or — asked of Redis — missing, failed or held by a dead worker."""
    sure = {row_id for row_id, at in rows if at is None or at < epoch or at < backstop}
    ask = [row_id for row_id, _ in rows if row_id not in sure]
    gone = rt.queues.lost([job_id.format(row_id) for row_id in ask])
    return sorted(sure | {row_id for row_id in ask if job_id.format(row_id) in gone})


def run_forever(rt: Runtime, interval: float = 1.0, stop=lambda: False, max_backoff: float = 5.0) -> None:
    """Tick every ``interval`` seconds until ``stop()``; while Redis or the database is away,
    retry with a capped backoff (logged once per attempt, no traceback) and say when it is back."""
    log.info("scheduler started (every %ss)", interval)
    failing_since, delay = None, interval
    while not stop():
        started = time.monotonic()
        try:
            moved = tick(rt)
        except (redis.RedisError, *DB_AWAY) as exc:
            failing_since = failing_since or started
            log.warning("scheduler cannot reach %s (%s); retrying in %.1fs",
                        "Redis" if isinstance(exc, redis.RedisError) else "the database", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, max_backoff)
            continue
        except Exception:
            log.exception("scheduler tick failed; trying again")
        else:
            if failing_since is not None:
                log.warning("scheduler reconnected after %.1fs", time.monotonic() - failing_since)
                failing_since, delay = None, interval
            if any(moved.values()):
                event(log, "scheduler moved work into the queues", **moved)
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
