"""The ``process_event`` job: turn one stored inbound event into rows and follow-up jobs.

Everything an event causes is written in one transaction with the event's new status, so a
crash either leaves the event pending (and the scheduler runs it again) or fully processed.
Failures are retried with backoff on the row itself; after ``MAX_ATTEMPTS`` the event is
``dead`` and can be replayed through the API.
"""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select

from hub.core.connectors import Context
from hub.core.db import OPTIMISTIC
from hub.core.execute import Executor
from hub.core.logs import event, request_id_var
from hub.core.metrics import count_job
from hub.core.models import InboundEvent, Installation, utcnow
from hub.core.patience import DB_AWAY, patiently
from hub.core.public_errors import public_error
from hub.core.runtime import Runtime, current
from hub.core.sending.pipeline import merge_claimed

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8
BACKOFF_SECONDS = [5, 30, 120, 600, 1800, 3600, 7200, 14400]
DB_PATIENCE = 10.0  # seconds a job waits for an unreachable database before failing (to be re-enqueued)


def backoff(attempt: int) -> dt.timedelta:
    return dt.timedelta(seconds=BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS)) - 1])


def process_event(event_id: int, *more: int, request_ids: list[str | None] | None = None) -> str:
    """RQ job: process inbound events, one after the other in the order given (idempotent; a
    processed event is skipped). Ingest enqueues one such job per group commit (``more``: the
    batch's later ids; ``request_ids``: the request each came with, for their log lines).

    A failure inside an event's work is recorded on its row (retried with backoff). When the
    database itself is away, there is nothing to record it on: the job waits a little for it
    (``patiently``) and then fails, and the scheduler enqueues it again as soon as it can
    reach the database (it sees the failed job in Redis)."""
    rt = current()
    statuses = []
    for i, eid in enumerate((event_id, *more)):
        token = request_id_var.set(request_ids[i]) if request_ids and i < len(request_ids) and i else None
        try:
            status, jobs = patiently(f"inbound event {eid}", lambda eid=eid: _process(rt, eid), patience=DB_PATIENCE)
            enqueue_all(rt, jobs)
            count_job(rt, "process_event", status)
        finally:
            if token is not None:
                request_id_var.reset(token)
        statuses.append(status)
    if more:
        try:
            rt.queues.uncover(more)
        except Exception:  # noqa: BLE001 -- a stale cover only makes the scheduler ask one more job
            log.warning("could not drop the covers of inbound events %s", more)
    return statuses[0] if len(set(statuses)) == 1 else ",".join(statuses)


def _process(rt: Runtime, event_id: int) -> tuple[str, list[tuple]]:
    """Process the event in one transaction, first optimistically without savepoints (the usual
    case: nothing fails, two round trips saved per savepoint); when anything fails in that pass,
    it is rolled back and the event processed again with them (``hub.core.db.savepoint``), where
    a lost insert race or one bad item is caught where it happens, as before."""
    try:
        with rt.db.session() as session:
            session.info[OPTIMISTIC] = True
            event = _locked(rt, session, event_id)
            if event is None:
                return "skipped", []
            status, outcome, jobs = _dispatch(rt, session, event)
            event.status, event.outcome, event.processed_at = status, outcome, utcnow()
            event.last_error = None
            return status, jobs  # committed here; a failing commit also runs the careful pass
    except Exception as exc:  # rolled back: nothing of the pass is left
        if isinstance(exc, DB_AWAY) and exc.connection_invalidated:
            raise  # the connection is gone: retried whole (``patiently``)
        log.info("inbound event %s: processed again with savepoints (%s)", event_id, exc)
    with rt.db.session() as session:
        event = _locked(rt, session, event_id)
        if event is None:
            return "skipped", []
        try:
            with session.begin_nested():
                status, outcome, jobs = _dispatch(rt, session, event)
            event.status, event.outcome, event.processed_at = status, outcome, utcnow()
            event.last_error = None
        except Exception as exc:  # recorded on the row; retried by the scheduler
            if isinstance(exc, DB_AWAY) and exc.connection_invalidated:
                raise  # the connection is gone: nothing can be recorded on it; retried whole
            log.exception("inbound event %s failed", event_id)
            event.attempts += 1
            event.last_error = public_error(exc, event.body)  # the log above has the details
            if event.attempts >= MAX_ATTEMPTS:
                event.status = "dead"
            else:
                event.next_attempt_at = utcnow() + backoff(event.attempts)
            _log_failure(event)
            event.enqueued_at = None
            jobs, status = [], "failed"
    return status, jobs


def _locked(rt: Runtime, session, event_id: int) -> InboundEvent | None:
    """The event, locked, while it is pending (None: done, or another job holds it)."""
    query = select(InboundEvent).where(InboundEvent.id == event_id)
    if not rt.db.is_sqlite:
        query = query.with_for_update(skip_locked=True)
    event = session.scalars(query).first()
    return event if event is not None and event.status == "pending" else None


def _log_failure(row: InboundEvent) -> None:
    event(log, "inbound event dead" if row.status == "dead" else "inbound event retry scheduled",
          level=logging.ERROR if row.status == "dead" else logging.WARNING, event_id=row.id,
          provider=row.provider, attempts=row.attempts, retry_at=None if row.status == "dead" else row.next_attempt_at)


def enqueue_all(rt: Runtime, jobs: list[tuple]) -> None:
    """Enqueue ``(queue, func, args[, job_id])`` jobs after a commit; a job id already waiting is
    skipped, and the sends one transaction claimed are delivered by one job (``merge_claimed``)."""
    for queue, func, args, *job_id in dict.fromkeys(merge_claimed(jobs)):
        try:
            rt.queues.enqueue(queue, func, *args, job_id=job_id[0] if job_id else None)
        except Exception:  # the rows are committed; the scheduler picks them up
            log.exception("could not enqueue %s%s; the scheduler will", func, args)


def _dispatch(rt: Runtime, session, event: InboundEvent):
    if event.provider == "whatsapp":
        from hub.core.whatsapp.process import process_whatsapp

        return process_whatsapp(rt, session, event)
    installation = session.get(Installation, event.scope)
    connector = rt.plugins.connector(event.provider)
    if installation is None or connector is None:
        return "unrouted", {"reason": "installation or connector no longer exists"}, []
    if not installation.enabled:
        return "processed", {"skipped": [f"installation disabled: {installation.disabled_reason}"]}, []
    payload = connector.parse(event.body)
    ctx = Context(workspace_id=installation.workspace_id, installation_id=installation.id,
                  config={**(installation.config or {}), **(installation.secrets or {})},
                  state=dict(installation.state or {}))
    actions = connector.handle_webhook(event.topic, payload, ctx)
    executor = Executor(session, installation.workspace_id, installation=installation)
    outcome = executor.run(actions)
    outcome["skipped"] += ctx.notes
    if ctx.state != (installation.state or {}):
        installation.state = dict(ctx.state)
    return "processed", outcome, executor.jobs
