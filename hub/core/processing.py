"""The ``process_event`` job: turn one stored inbound event into rows and follow-up jobs.

Everything an event causes is written in one transaction with the event's new status, so a
crash either leaves the event pending (and the scheduler runs it again) or fully processed.
Failures are retried with backoff on the row itself; after ``MAX_ATTEMPTS`` the event is
``dead`` and can be replayed through the API.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import secrets
import time

from sqlalchemy import select

from hub.core.connectors import Context
from hub.core.db import OPTIMISTIC
from hub.core.execute import Executor
from hub.core.ingest import process_job
from hub.core.logs import event, request_id_var
from hub.core.metrics import count_job
from hub.core.models import InboundEvent, Installation, utcnow
from hub.core.patience import DB_AWAY, patiently
from hub.core.public_errors import public_error
from hub.core.runtime import Runtime, current
from hub.core.sending.pipeline import merge_claimed
from hub.core.sending.sends import CLAIM_TOKEN

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8
BACKOFF_SECONDS = [5, 30, 120, 600, 1800, 3600, 7200, 14400]
BATCH = 8  # events one job processes, at most: its own and then the oldest waiting
BATCH_SECONDS = 0.1  # and for how long it takes more (their sends wait for its end)
DB_PATIENCE = 10.0  # seconds a job waits for an unreachable database before failing (to be re-enqueued)


def backoff(attempt: int) -> dt.timedelta:
    return dt.timedelta(seconds=BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS)) - 1])


def process_event(event_id: int, *more: int, request_ids: list[str | None] | None = None) -> str:
    """RQ job: process inbound events in the order given (idempotent; a processed event is
    skipped). Ingest enqueues one such job per group commit (``more``: the batch's later ids;
    ``request_ids``: the request each came with, for their log lines). Then, while it has done
    fewer than ``BATCH`` for less than ``BATCH_SECONDS``, it takes the oldest events still
    waiting for their own jobs (and takes those jobs off the queue). Under a backlog one job
    thus serves several events, and one ``deliver`` job sends what they all claimed.

    Each event is processed in its own transaction (``_process``). A failure inside an event's
    work is recorded on its row (retried with backoff). When the database itself is away, there
    is nothing to record it on: the job waits a little for it (``patiently``) and then fails,
    and the scheduler enqueues it again as soon as it can reach the database (it sees the
    failed job in Redis)."""
    rt, ids, started = current(), [event_id, *more], time.monotonic()
    requests = dict(zip(ids, request_ids or ()))
    claim, statuses, jobs, taken = secrets.token_hex(8), [], [], []
    try:
        for eid in ids:
            with _request(requests.get(eid)):
                statuses.append(_run(rt, InboundEvent.id == eid, f"inbound event {eid}", claim, jobs)[1])
        while len(ids) + len(taken) < BATCH and time.monotonic() - started < BATCH_SECONDS:
            queued = InboundEvent.enqueued_at.is_not(None) & (InboundEvent.next_attempt_at <= utcnow())
            eid, _ = _run(rt, queued & InboundEvent.id.not_in([*ids, *taken]), "the oldest waiting inbound event",
                          claim, jobs, mine=False)
            if eid is None:
                break
            taken.append(eid)
    finally:  # what was committed gets its jobs, even when a later event fails the job
        enqueue_all(rt, jobs)
        if taken:  # done here: their own jobs would only find them processed
            _discard_jobs(rt, taken)
        if more:
            try:
                rt.queues.uncover(more)
            except Exception:  # noqa: BLE001 -- a stale cover only makes the scheduler ask one more job
                log.warning("could not drop the covers of inbound events %s", more)
    return statuses[0] if len(set(statuses)) == 1 else ",".join(statuses)


def _run(rt: Runtime, which, what: str, claim: str, jobs: list[tuple], *, mine: bool = True
         ) -> tuple[int | None, str]:
    """``_process`` (patiently); its jobs join ``jobs``, its status the job metrics (unless
    the look was for a waiting event, not ``mine``, and found none)."""
    event_id, status, more = patiently(what, lambda: _process(rt, which, claim), patience=DB_PATIENCE)
    jobs += more
    if mine or event_id is not None:
        count_job(rt, "process_event", status)
    return event_id, status


@contextlib.contextmanager
def _request(request_id: str | None):
    """Log lines inside carry ``request_id`` (the request an event came with), when known."""
    token = request_id_var.set(request_id) if request_id else None
    try:
        yield
    finally:
        if token is not None:
            request_id_var.reset(token)


def _process(rt: Runtime, which, claim: str) -> tuple[int | None, str, list[tuple]]:
    """Process the oldest pending event matching ``which`` in one transaction, first without
    savepoints (``hub.core.db.savepoint``: the usual case, nothing fails, two round trips saved
    per savepoint); when anything fails in that pass it is rolled back, and the event is
    processed again with them (``_carefully``). The sends it creates are claimed with ``claim``.
    Returns its id (None: none), status and jobs."""
    event_id = None
    try:
        with rt.db.session() as session:
            session.info[OPTIMISTIC] = True
            session.info[CLAIM_TOKEN] = claim
            found = _locked(rt, session, which, 1)
            if not found:
                return None, "skipped", []
            event = found[0]
            event_id = event.id
            status, outcome, jobs = _dispatch(rt, session, event)
            event.status, event.outcome, event.processed_at = status, outcome, utcnow()
            event.last_error = None
        return event_id, status, jobs  # committed: a failing commit also runs the careful pass
    except Exception as exc:  # rolled back: nothing of the pass is left
        if event_id is None or isinstance(exc, DB_AWAY) and exc.connection_invalidated:
            raise  # the connection is gone: retried whole (``patiently``)
        log.info("inbound event %s: processed again with savepoints (%s)", event_id, exc)
    return event_id, *_carefully(rt, event_id, claim)


def _locked(rt: Runtime, session, which, limit: int) -> list[InboundEvent]:
    """Pending events matching ``which``, oldest first, locked (one another job holds is skipped)."""
    query = select(InboundEvent).where(which, InboundEvent.status == "pending")
    query = query.order_by(InboundEvent.id).limit(limit)
    if not rt.db.is_sqlite:
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def _discard_jobs(rt: Runtime, event_ids: list[int]) -> None:
    """Take the jobs of events processed by another job off the ingest queue (best effort:
    one that already started finds its event processed)."""
    try:
        rt.queues.discard("ingest", [process_job(eid)[3] for eid in event_ids])
    except Exception:  # noqa: BLE001 -- they run and skip
        log.warning("could not take the jobs of inbound events %s off the queue", event_ids)


def _carefully(rt: Runtime, event_id: int, claim: str) -> tuple[str, list[tuple]]:
    """Process one event in its own transaction, each item in a savepoint; a failure is
    recorded on its row (retried with backoff, ``dead`` after ``MAX_ATTEMPTS``)."""
    with rt.db.session() as session:
        session.info[CLAIM_TOKEN] = claim
        found = _locked(rt, session, InboundEvent.id == event_id, 1)
        if not found:
            return "skipped", []
        event = found[0]
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
