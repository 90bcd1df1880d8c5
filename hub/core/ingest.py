"""Store a verified webhook, then enqueue its processing: the hot path of every provider."""
from __future__ import annotations

import hashlib
import logging
from typing import Mapping

from sqlalchemy import update

from hub.core.metrics import count
from hub.core.models import InboundEvent, utcnow

log = logging.getLogger(__name__)
KEPT_HEADERS_SKIP = {"authorization", "cookie", "content-length", "host", "connection", "accept-encoding"}
PROCESS_JOB = "hub.core.processing.process_event"  # by name: the web process never imports jobs


def process_job(event_id: int) -> tuple:
    """The job that processes an inbound event (its id keeps one copy waiting)."""
    return ("ingest", PROCESS_JOB, (event_id,), f"event-{event_id}")


def _insert_statement(dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(InboundEvent).on_conflict_do_nothing().returning(InboundEvent.id)


_STATEMENTS: dict[str, object] = {}


def store(rt, *, provider: str, scope: str, dedupe_key: str, body: bytes, headers: Mapping[str, str],
          topic: str | None = None, workspace_id: str | None = None) -> tuple[int | None, bool]:
    """Insert the event unless its dedupe key was seen; enqueue it. Returns ``(id, duplicate)``."""
    now = utcnow()
    values = dict(provider=provider, scope=scope, dedupe_key=dedupe_key[:255], workspace_id=workspace_id,
                  topic=topic, body=body, status="pending", attempts=0, received_at=now,
                  next_attempt_at=now, enqueued_at=now,
                  headers={k: v for k, v in headers.items() if k.lower() not in KEPT_HEADERS_SKIP})
    dialect = rt.db.engine.dialect.name
    if dialect not in _STATEMENTS:
        _STATEMENTS[dialect] = _insert_statement(dialect)
    stmt = _STATEMENTS[dialect]
    with rt.db.autocommit.connect() as conn:  # one statement, one round trip, durable on return
        event_id = conn.execute(stmt, values).scalar()
    try:  # one round trip: the job and the counter
        pipe = rt.redis.pipeline(transaction=False)
        if event_id is not None:  # under its row's job id, so the scheduler can ask Redis about it
            queue, func, args, job_id = process_job(event_id)
            rt.queues.enqueue(queue, func, *args, job_id=job_id, pipeline=pipe)
        count(rt.redis, rt.settings.key_prefix, "ingest", pipeline=pipe, provider=provider,
              result="duplicate" if event_id is None else "stored")
        pipe.execute()
    except Exception:  # stored is enough: the scheduler enqueues it (at its next tick once marked so)
        log.exception("could not enqueue inbound event %s; the scheduler will retry", event_id)
        _not_enqueued(rt, event_id)
    return event_id, event_id is None


def _not_enqueued(rt, event_id: int | None) -> None:
    if event_id is None:
        return
    try:
        with rt.db.autocommit.connect() as conn:
            conn.execute(update(InboundEvent).where(InboundEvent.id == event_id).values(enqueued_at=None))
    except Exception:  # then the scheduler finds its job missing in Redis a few seconds later
        log.warning("inbound event %s: could not mark it as not enqueued", event_id)


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()
