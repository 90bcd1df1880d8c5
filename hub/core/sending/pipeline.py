"""The delivery jobs: claim, checks, governor, Graph call, error classification, status.

``deliver_due`` works through queued sends in batches — fair across numbers, one database
transaction per batch for the checks — while each send still waits for its own slot from the
per-number governor, is marked just before its Graph call and has its result written as soon
as it comes back (``results.py``: what makes a send go out once, even when a worker dies).

Checks run in order before Meta sees anything: connection active → not opted out →
approved template with valid parameters (or free-form inside the 24-hour window) →
echo-aware hold for automated sends → pair rate → the per-number governor.
"""
from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from collections import Counter

from sqlalchemy import func, select, text, tuple_, update

from hub.core import bsuid, contacts
from hub.core.events import emit
from hub.core.logs import event, mask_phone
from hub.core.metrics import count
from hub.core.models import Connection, Contact, Send, Template, utcnow
from hub.core.runtime import current
from hub.core.sending import checks, dispatch, errors, marketing, portfolio, windows
from hub.core.sending.dispatch import SKIPPED, Deferred, Unknown  # noqa: F401  (re-exported)
from hub.core.sending.governor import Governor
from hub.core.sending.results import Attempt, callback_data, mark_attempted, record_sent
from hub.core.sending.templates import find_template
from hub.core.whatsapp import reads
from hub.core.whatsapp.account import pause
from hub.core.whatsapp.graph import Graph, GraphError

log = logging.getLogger(__name__)
WINDOW = windows.WINDOW
MAX_ATTEMPTS = 6
QUALITY_HOLD = dt.timedelta(hours=1)


class Hold(Exception):
    """Not now: try again at ``until`` (None: when the connection is active again)."""

    def __init__(self, reason: str, until: dt.datetime | None = None):
        super().__init__(reason)
        self.reason, self.until = reason, until


class Refuse(Exception):
    """Never: the send fails with this reason."""


BATCH, PER_NUMBER, JOB_SLOTS = 50, 20, 4
BUDGET = 30.0  # seconds one ``deliver_due`` job works before handing over to a fresh job
GRAPH_TIMEOUT = 10.0  # seconds a send call may take; after that its fate is unknown
DELIVER_DUE = "hub.core.sending.pipeline.deliver_due"
DELIVER = "hub.core.sending.pipeline.deliver"


def delivery_job(send_id: int) -> tuple:
    """The job that will deliver ``send_id``: one of ``JOB_SLOTS`` batch jobs (so a burst of
    sends wakes a few workers, not one job per send)."""
    return ("send", DELIVER_DUE, (), f"deliver-{send_id % JOB_SLOTS}")


def claimed_job(send: Send) -> tuple:
    """The job that delivers ``send``, claimed by the transaction that created it
    (``sends.create_send(claim_token=…)``); ``merge_claimed`` folds a transaction's into one."""
    return ("send", DELIVER, (send.claim_token, send.id))


def jobs_for(send: Send) -> list[tuple]:
    """The job that delivers a send just created (and flushed): its own ``deliver`` when its
    transaction claimed it, a batch slot's when queued; none when scheduled or failed."""
    if send.status == "sending":
        return [claimed_job(send)]
    return [delivery_job(send.id)] if send.status == "queued" else []


def merge_claimed(jobs: list[tuple]) -> list[tuple]:
    """``jobs`` with the ``claimed_job``s of each claim token folded into one ``deliver`` job (first)."""
    claimed: dict[str, list[int]] = {}
    for job in jobs:
        if job[1] == DELIVER:
            claimed.setdefault(job[2][0], []).extend(job[2][1:])
    return [("send", DELIVER, (token, *sorted(set(ids)))) for token, ids in claimed.items()] + \
        [job for job in jobs if job[1] != DELIVER]


def deliver(claim_token: str, *send_ids: int) -> int:
    """RQ job: deliver sends their creating transaction claimed (no claim, no re-select of the
    queue). A send the scheduler handed on meanwhile (``results.requeue_lost``) is skipped."""
    return run(current(), list(send_ids), claim_token)


def deliver_due() -> int:
    """RQ job: deliver queued sends in batches (fair across numbers) until none are left."""
    rt, started, done = current(), time.monotonic(), 0
    while time.monotonic() - started < BUDGET:
        token = secrets.token_hex(8)
        claimed = claim(rt, claim_token=token)
        if not claimed:
            return done
        done += run(rt, claimed, token)
    rt.queues.enqueue("send", DELIVER_DUE)  # more work: continue in a new job, let others run
    return done


def deliver_one(send_id: int) -> int:
    """RQ job: deliver one queued send — the one-job-per-send path the batches replaced, kept so
    ``bench/sending.py`` can measure it as the baseline in the same run."""
    rt, token = current(), secrets.token_hex(8)
    with rt.db.session() as session:
        claimed = session.execute(update(Send).where(Send.id == send_id, Send.status == "queued")
                                  .values(status="sending", claim_token=token, attempted_at=None, updated_at=utcnow())
                                  .returning(Send.id), execution_options={"synchronize_session": False}).first()
    return run(rt, [send_id], token) if claimed else 0


def claim(rt, *, claim_token: str | None = None, limit: int = BATCH, per_number: int = PER_NUMBER) -> list[int]:
    """Atomically move queued sends to ``sending`` under ``claim_token`` — the oldest, with
    ``limit`` shared among the numbers that have some (at most ``per_number`` each), so one
    number's broadcast never starves the others — and return their ids. On PostgreSQL the rows
    are locked as they are picked, skipping those another claim holds (``SKIP LOCKED``): claims
    running at once take different sends, never wait on each other, and cannot deadlock; an
    empty claim means nothing is queued that another claim is not taking already."""
    with rt.db.session() as session:
        wanted = _oldest_per_number(session, limit, per_number)
        if not wanted:
            return []
        result = session.execute(update(Send).where(Send.id.in_(wanted))  # held: by the lock or the writer
                                 .values(status="sending", claim_token=claim_token, attempted_at=None,
                                         updated_at=utcnow()).returning(Send.id),
                                 execution_options={"synchronize_session": False})
        return sorted(result.scalars())


_QUEUED_NUMBERS = text("""
    WITH RECURSIVE numbers(id) AS (
        (SELECT connection_id FROM sends WHERE status = 'queued' AND connection_id IS NOT NULL
         ORDER BY connection_id LIMIT 1)
        UNION ALL
        SELECT (SELECT connection_id FROM sends WHERE status = 'queued' AND connection_id > numbers.id
                ORDER BY connection_id LIMIT 1)
        FROM numbers WHERE numbers.id IS NOT NULL)
    SELECT id FROM numbers WHERE id IS NOT NULL""")

_OLDEST_OF = text("""
    SELECT picked.id FROM unnest(CAST(:numbers AS varchar[])) AS number(id)
    CROSS JOIN LATERAL (SELECT id FROM sends WHERE status = 'queued' AND connection_id = number.id
                        ORDER BY id LIMIT :each FOR UPDATE SKIP LOCKED) AS picked
    ORDER BY picked.id LIMIT :limit""")


def _oldest_per_number(session, limit: int, per_number: int) -> list[int]:
    """The ids ``claim`` takes: the oldest queued sends, each number's
    share of ``limit`` at most (``per_number`` at most). On PostgreSQL the numbers are found by a
    skip scan of ``ix_sends_queued`` (one index probe per number) and each number's oldest are
    read from it: the cost follows the numbers and the batch, not the queue's length."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    numbers = session.scalars(_QUEUED_NUMBERS if postgresql else select(Send.connection_id).distinct().where(
        Send.status == "queued", Send.connection_id.is_not(None))).all()
    if not numbers:
        return []
    each = min(per_number, -(-limit // len(numbers)))
    if postgresql:
        return session.scalars(_OLDEST_OF, {"numbers": numbers, "each": each, "limit": limit}).all()
    ranked = select(Send.id, func.row_number().over(partition_by=Send.connection_id, order_by=Send.id)
                    .label("rank")).where(Send.status == "queued").subquery()  # SQLite: one writer, small queues
    return session.scalars(select(ranked.c.id).where(ranked.c.rank <= each).order_by(ranked.c.id).limit(limit)).all()


def run(rt, send_ids: list[int], claim_token: str | None = None, now: dt.datetime | None = None) -> int:
    """Check, pace and send claimed sends (concurrently, ``dispatch``), writing results as they
    come; returns how many Meta accepted. ``now`` (naive UTC) is the clock of the portfolio limit (tests move it)."""
    governor, outcomes = Governor(rt.redis, rt.settings.key_prefix), Counter()
    reach = portfolio.Reach(rt.redis, rt.settings.key_prefix)
    granted: list[dispatch.Call] = []
    try:
        with rt.db.session() as session:
            marked, alone = _prepare_batch(session, send_ids, claim_token, now, governor, reach, outcomes, granted)
    except BaseException:
        dispatch.release(governor, granted)  # reserved, never sent
        raise
    lost = [c for c in granted if c.attempt.id not in marked]  # the claim passed on meanwhile
    if lost:
        dispatch.release(governor, lost)
    graph = Graph.from_settings(rt.settings, timeout=GRAPH_TIMEOUT)
    outcomes += dispatch.call_all(rt, governor, graph, [c for c in granted if c.attempt.id in marked], alone,
                                  _record)
    _count(rt, outcomes)
    return outcomes["sent"]


def _prepare_batch(session, send_ids: list[int], claim_token: str | None, now: dt.datetime | None,
                   governor: Governor, reach: portfolio.Reach, outcomes: Counter, granted: list):
    """The checks of a batch, in one transaction: holds and refusals written, pair rate and
    governor slots taken (one Redis round trip each; ``granted`` gets the batch's slots), the
    granted sends marked attempted. Returns ``(ids marked, calls to make one by one)``."""
    work, reads_by_send, templates = [], {}, {}
    mine = Send.claim_token == claim_token if claim_token else Send.claim_token.is_(None)
    # the sends with their connections and contacts in one query, not one per send; ``rows`` keeps
    # them while ``prepare`` finds them with ``session.get`` (the identity map is weak)
    rows = session.execute(select(Send, Connection, Contact)
                           .outerjoin(Connection, Connection.id == Send.connection_id)
                           .outerjoin(Contact, Contact.id == Send.contact_id)
                           .where(Send.id.in_(send_ids), Send.status == "sending", mine).order_by(Send.id)).all()
    sends = [send for send, _conn, _contact in rows]
    conns = list({conn.id: conn for _send, conn, _contact in rows if conn is not None}.values())
    _preload_windows(session, sends, templates)
    _preload_templates(session, sends, {c.id: c for c in conns}, templates)
    for send in sends:
        try:
            conn, payload = prepare(session, send, templates)
        except Hold as hold:
            _hold(send, hold.reason, hold.until, outcomes)
            continue
        except Refuse as refuse:
            send.status, send.last_error = "failed", str(refuse)
            emit.send_ended(send)
            event(log, "send refused", level=logging.WARNING, send_id=send.id, reason=str(refuse),
                  to=mask_phone(send.to))
            outcomes["refused"] += 1
            continue
        except Exception as exc:  # bad data in one send must not block the rest of the batch
            log.exception("send %s cannot be prepared", send.id)
            send.status, send.last_error = "failed", f"cannot be prepared: {type(exc).__name__}: {exc}"[:2000]
            emit.send_ended(send)
            outcomes["refused"] += 1
            continue
        held = _portfolio_hold(session, reach, templates, conn, send, now)
        if held:
            _hold(send, *held, outcomes, portfolio=portfolio.key_of(conn), limit=conn.messaging_limit)
            continue
        payload["biz_opaque_callback_data"] = callback_data(send.id)  # echoed in its statuses
        if send.reply_to:
            payload["context"] = {"message_id": send.reply_to}
        reads_by_send[send.id] = reads.before_reply(send, conn)
        work.append((send, conn.phone_number_id, conn.messages_per_second, conn.access_token, payload))
    pair_rate = governor.pairs([(number, send.to) for send, number, *_ in work]) if work else []
    calls, alone_sends = [], {}
    for (send, number, rate, token, payload), pair in zip(work, pair_rate):
        if not pair.granted:
            _hold(send, "pair_rate", utcnow() + dt.timedelta(seconds=pair.wait), outcomes)
            continue
        attempt = Attempt(send.id, send.workspace_id, send.connection_id, send.contact_id, claim_token or "",
                          payload, reads_by_send.get(send.id))
        calls.append(dispatch.Call(attempt, number, rate, token, f"{send.id}:{time.monotonic_ns()}"))
        alone_sends[send.id] = send
    batch, alone, deferred = dispatch.reserve_slots(governor, calls)
    granted += batch
    for call in alone:  # attempted one by one once their slot is free (``dispatch.call_one``)
        send = alone_sends[call.attempt.id]
        send.attempts, send.hold_reason = send.attempts + 1, None
    for call, seconds in deferred:
        _defer(alone_sends[call.attempt.id], seconds, outcomes)
    return mark_attempted(session, [c.attempt.id for c in batch], claim_token), alone


def _defer(send: Send, seconds: float, outcomes: Counter) -> None:
    """The number is booked too far ahead: back to ``scheduled`` for ``seconds`` (not an attempt)."""
    send.status, send.claim_token, send.attempted_at, send.hold_reason = "scheduled", None, None, "pacing"
    send.not_before = utcnow() + dt.timedelta(seconds=seconds)
    event(log, "send deferred", send_id=send.id, reason="pacing", until=send.not_before)
    outcomes["deferred"] += 1


def _hold(send: Send, reason: str, until: dt.datetime | None, outcomes: Counter, **fields) -> None:
    """Back to ``scheduled`` until ``until``, with the reason visible on the send (and logged)."""
    send.status, send.hold_reason, send.not_before = "scheduled", reason, until
    event(log, "send held", send_id=send.id, reason=reason, until=until, **fields)
    outcomes["held"] += 1


def _record(rt, attempt: Attempt, result) -> str:
    """Write one send's result now (its own transaction); returns the outcome counted."""
    if isinstance(result, str):
        record_sent(rt, attempt, result)
        event(log, "send sent", send_id=attempt.id, wamid=result, connection_id=attempt.connection_id,
              to=mask_phone(attempt.payload.get("to") or attempt.payload.get(bsuid.SEND_FIELD)))
        return "sent"
    with rt.db.session() as session:
        send = session.get(Send, attempt.id)
        if send.status != "sending" or send.claim_token != (attempt.claim or None):
            return "settled"  # a status webhook settled it, or the scheduler handed it on, meanwhile
        send.claim_token = None
        if isinstance(result, Deferred):
            send.status, send.attempts, send.attempted_at = "scheduled", send.attempts - 1, None
            send.not_before, send.hold_reason = utcnow() + dt.timedelta(seconds=result.seconds), "pacing"
            event(log, "send deferred", send_id=send.id, reason="pacing", until=send.not_before)
            return "deferred"
        if isinstance(result, Unknown):  # stays ``sending``: its status webhook or the grace decides
            send.error_code = result.error.code
            send.last_error = f"no answer from Meta ({result.error}); waiting for its status webhook before sending again"
            event(log, "send fate unknown", level=logging.WARNING, send_id=send.id, error=str(result.error))
            if send.attempts >= MAX_ATTEMPTS:
                send.status = "dead"
                emit.send_ended(send)
                return "dead"
            return "unknown"
        return _failed(session, send, result)


def _count(rt, outcomes: Counter) -> None:
    try:
        pipe = rt.redis.pipeline(transaction=False)
        for outcome, n in outcomes.items():
            count(rt.redis, rt.settings.key_prefix, "jobs", pipeline=pipe, amount=n, job="deliver", outcome=outcome)
        pipe.execute()
    except Exception as exc:  # metrics are best effort; the results are written
        log.warning("could not count deliver outcomes: %s", exc)


def prepare(session, send: Send, templates: dict | None = None) -> tuple[Connection, dict]:
    """Run the checks up to the echo hold; return the connection and the Graph payload, or
    raise Hold/Refuse. (Pair rate and the governor follow, in ``run``.) The rules themselves
    live in ``checks`` (the API applies the same ones at request time); the window and the
    hold are those of this number and customer (``windows``). ``templates`` is a per-batch
    cache of templates and windows."""
    conn = session.get(Connection, send.connection_id) if send.connection_id else None
    problem = checks.connection_problem(conn)
    if problem:
        raise Refuse(problem.message)
    if conn.status != "active":
        raise Hold("connection_paused")
    contact = session.get(Contact, send.contact_id) if send.contact_id else None
    now = utcnow()
    cache = {} if templates is None else templates
    problem = checks.opt_out_problem(contact, send.origin)
    if problem:
        raise Refuse(problem.message)
    _readdress(send, contact)
    if send.kind == "template":
        key = (send.workspace_id, conn.waba_id, send.template_name, send.template_language)
        if key not in cache:
            cache[key] = find_template(session, *key)
        template = cache[key]
        send.category = send.category or checks.category_of(template)
        problem = checks.marketing_problem(contact, send.category) or checks.bsuid_problem(send.to, send.category)
        if problem:
            raise Refuse(problem.message)
        pending = ("marketing", send.contact_id)  # marketing sends to this contact passed in this batch
        frequency = marketing.problem(session, send.workspace_id, contact, send.category, now,
                                      exclude_send_id=send.id, pending=cache.get(pending, 0))
        if frequency:
            raise Refuse(f"{frequency.code}: {frequency.message}")
        if send.category == "marketing":
            cache[pending] = cache.get(pending, 0) + 1
        if send.category == "marketing" and (conn.quality or {}).get("event") == "FLAGGED":
            raise Hold("quality_flagged", now + QUALITY_HOLD)  # quality protects the messaging tier
        try:
            component_payload = checks.template_components(template, send.template_name, send.template_language,
                                                           send.params)
        except checks.SendProblem as problem:
            raise Refuse(problem.message) from problem
        payload = {"messaging_product": "whatsapp", **bsuid.address(send.to), "type": "template",
                   "template": component_payload}
    window = _window(session, cache, conn.id, send.contact_id)
    if send.kind != "template":
        problem = checks.window_problem(window, now)
        if problem:
            raise Refuse(problem.message)
        payload = {"messaging_product": "whatsapp", "recipient_type": "individual", **bsuid.address(send.to),
                   "type": "text", "text": {"body": send.text or "", "preview_url": False}}
    held = windows.held_until(window, send.origin, now)
    if held:
        raise Hold("human_took_over", held)
    return conn, payload


def _portfolio_hold(session, reach: portfolio.Reach, cache: dict, conn: Connection, send: Send,
                    now: dt.datetime | None) -> tuple[str, dt.datetime] | None:
    """A business-initiated send (a template outside the customer's open window on this number)
    takes a slot of the portfolio's messaging limit; ``(hold_reason, not_before)`` when none is
    free. Replies inside the window and portfolios of unknown or unlimited tier cost nothing."""
    if send.kind != "template" or not portfolio.governed(conn):
        return None
    now = now or utcnow()
    if windows.is_open(_window(session, cache, conn.id, send.contact_id), now):
        return None
    try:
        slot = reach.take(conn, send.to, send.category, now)
    except Exception as exc:  # Redis is away: Meta has not seen this send, so it simply waits
        log.warning("send %s: portfolio limit unavailable (%s); deferred %ss", send.id, exc, dispatch.REDIS_DEFER)
        return "portfolio limit unavailable (Redis)", now + dt.timedelta(seconds=dispatch.REDIS_DEFER)
    if slot.granted:
        return None
    return portfolio.hold_reason(conn, send.category, slot.free_at), slot.free_at


def _readdress(send: Send, contact: Contact | None) -> None:
    """A send queued for a BSUID goes to the contact's phone number once one is known (Meta
    recommends numbers), or to the contact's current BSUID after ``user_changed_user_id``."""
    if contact is None or not bsuid.is_bsuid(send.to):
        return
    current = contact.wa_id or contact.user_id
    if current and current != send.to:
        event(log, "send readdressed", send_id=send.id, to=bsuid.mask(current) if bsuid.is_bsuid(current)
              else mask_phone(current), was=bsuid.mask(send.to))
        send.to = current


def _window(session, cache: dict, connection_id: str, contact_id: int | None):
    """This number's window/hold row for the contact, from the batch cache when preloaded."""
    key = ("window", connection_id, contact_id)
    if key not in cache:
        cache[key] = windows.window(session, connection_id, contact_id)
    return cache[key]


def _preload_windows(session, sends: list[Send], cache: dict) -> None:
    """One query for the windows of a whole batch (``prepare`` reads them from ``cache``)."""
    found = windows.preload(session, {(s.connection_id, s.contact_id) for s in sends})
    cache.update({("window", c, k): row for (c, k), row in found.items()})


def _preload_templates(session, sends: list[Send], conns: dict, cache: dict) -> None:
    """One query for the templates of a whole batch (``prepare`` reads them from ``cache``), so
    no query — and no autoflush of the sends judged so far — runs per send."""
    keys = {(s.workspace_id, conns[s.connection_id].waba_id, s.template_name, s.template_language)
            for s in sends if s.kind == "template" and s.connection_id in conns} - cache.keys()
    if not keys:
        return
    found: dict = dict.fromkeys(keys)
    rows = session.scalars(select(Template).where(tuple_(
        Template.workspace_id, Template.waba_id, Template.name, Template.language).in_(list(keys))).order_by(Template.id))
    for t in rows:
        found[(t.workspace_id, t.waba_id, t.name, t.language)] = found.get((t.workspace_id, t.waba_id, t.name,
                                                                           t.language)) or t
    cache.update(found)


def _failed(session, send: Send, exc: GraphError) -> str:
    decision = errors.classify(exc)
    send.error_code, send.last_error = exc.code, f"{decision.reason} ({exc})"[:2000]
    event(log, "send failed", level=logging.WARNING, send_id=send.id, meta_code=exc.code, action=decision.action,
          reason=decision.reason, attempts=send.attempts, to=mask_phone(send.to))
    conn = session.get(Connection, send.connection_id)
    if decision.opt_out_marketing and send.contact_id:
        contacts.opt_out(session.get(Contact, send.contact_id), marketing_only=True, source="meta_error",
                         connection_id=send.connection_id)
    if decision.limit_marketing and send.contact_id:
        marketing.note_limited(session, session.get(Contact, send.contact_id), send_id=send.id)
    if decision.flag_template:
        template = find_template(session, send.workspace_id, conn.waba_id, send.template_name, send.template_language)
        if template is not None:
            template.status, template.status_reason = decision.flag_template, decision.reason
    if decision.action == errors.PAUSE:
        pause(conn, f"{exc.code}: {decision.reason}")
        event(log, "connection paused", level=logging.WARNING, connection_id=conn.id, meta_code=exc.code,
              reason=decision.reason)
        send.status, send.hold_reason, send.not_before = "scheduled", "connection_paused", None
        send.attempts -= 1  # not the send's fault; it waits with the connection's queue
        return "paused"
    if decision.action == errors.RETRY:
        if send.attempts >= MAX_ATTEMPTS:
            send.status = "dead"
            event(log, "send dead", level=logging.ERROR, send_id=send.id, attempts=send.attempts, meta_code=exc.code)
            emit.send_ended(send)
            return "dead"
        delay = decision.base_delay * decision.growth ** (send.attempts - 1)
        send.status, send.not_before = "scheduled", utcnow() + dt.timedelta(seconds=delay)
        event(log, "send retry scheduled", send_id=send.id, attempts=send.attempts, until=send.not_before)
        send.hold_reason = "retry"
        return "retry"
    send.status = "failed"
    emit.send_ended(send)
    return "failed"
