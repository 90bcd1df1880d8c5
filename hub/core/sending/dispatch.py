"""The Graph calls of one prepared batch: concurrent, each at its own governor slot, results
written in groups as they come back.

``pipeline.run`` reserves the batch's slots in one Redis round trip (``reserve_slots``) and
marks the granted sends attempted in one UPDATE; ``call_all`` then fires each call on a small
thread pool at its slot's time (the per-number pacing stays exact: a slot is Meta's one-second
window, whoever sends in it) and writes results the moment the main thread sees them: every
wamid that came back while the previous group was being written goes into the next group —
one transaction for all of them (``results.record_sent_many``), never held back waiting for a
fuller group. Sends whose slot was not free in the batch round trip (another worker holds this
number's in-flight slots) go one after the other through the per-send path (``call_one``:
reserve, mark, call, release), as before batching.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from hub.core import bsuid
from hub.core.logs import event, mask_phone
from hub.core.patience import DB_AWAY, patiently
from hub.core.sending.governor import Governor
from hub.core.sending.results import RECORD_PATIENCE, Attempt, record_sent_many, start_call
from hub.core.whatsapp import keepalive, reads
from hub.core.whatsapp.graph import Graph, GraphError

log = logging.getLogger(__name__)
THREADS = 16  # concurrent Graph calls per worker process
ALONE_WAIT = 0.05  # seconds: a slot this close is waited for, a later one defers the send
REDIS_DEFER = 5.0  # seconds a send waits when the governor (Redis) cannot be asked
_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


@dataclass(frozen=True)
class Deferred:
    """The number is booked further ahead than a worker waits: try again in ``seconds``."""
    seconds: float


@dataclass(frozen=True)
class Unknown:
    """The request may have reached Meta, but no answer came back: wait for its status webhook."""
    error: GraphError


SKIPPED = object()  # the claim passed to another worker before the call: nothing to record
STOPPED = object()  # not called: the database went away while the batch was being sent


@dataclass
class Call:
    """One send about to go to Meta: its number's rate and token, and its governor slot."""
    attempt: Attempt
    number: str
    rate: int
    token: str
    slot: str  # the governor member of this attempt
    at: float | None = None  # monotonic time of its slot when reserved with the batch


def reserve_slots(governor: Governor, calls: list[Call]) -> tuple[list[Call], list[Call], list[tuple[Call, float]]]:
    """One round trip for the batch: ``(granted, alone, deferred)`` — granted calls carry the time
    of their slot; ``alone`` ones wait for a slot one by one (``call_one``); deferred ones are
    booked too far ahead (``(call, seconds)``; Redis away: ``REDIS_DEFER``)."""
    try:
        slots = governor.reserve_many([(c.number, c.rate, c.slot) for c in calls])
    except Exception as exc:  # Redis is away: Meta has not seen these sends, so they simply wait
        log.warning("governor unavailable (%s); %d sends deferred %ss", exc, len(calls), REDIS_DEFER)
        return [], [], [(c, REDIS_DEFER) for c in calls]
    granted, alone, deferred, now = [], [], [], time.monotonic()
    for call, slot in zip(calls, slots):
        if slot.granted:
            call.at = now + slot.wait
            granted.append(call)
        elif slot.wait <= ALONE_WAIT:
            alone.append(call)
        else:
            deferred.append((call, slot.wait))
    return granted, alone, deferred


def release(governor: Governor, calls: list[Call]) -> None:
    """Give back the batch slots of ``calls`` (after their answers); best effort: they expire."""
    try:
        governor.release_many([(c.number, c.slot) for c in calls])
    except Exception as exc:
        log.warning("%d governor slots not released (%s); they expire on their own", len(calls), exc)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:  # one pool per process (a forked work horse makes its own)
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(THREADS, thread_name_prefix="graph-call"))
        return _pool[1]


def call_all(rt, governor: Governor, graph: Graph, granted: list[Call], alone: list[Call],
             record: Callable) -> Counter:
    """Fire ``granted`` calls at their slots and ``alone`` ones one by one, writing results as
    they come (``record(rt, attempt, result)`` for anything but a wamid); returns outcomes."""
    results: queue.Queue = queue.Queue()
    stop, pool, outcomes = threading.Event(), _executor(), Counter()
    for call in sorted(granted, key=lambda c: c.at):
        pool.submit(_fire, rt, graph, call, results, stop)
    if alone:
        pool.submit(_chain, rt, governor, graph, alone, results, stop)
    waiting = len(granted) + len(alone)
    while waiting:
        got = [results.get()]
        while True:
            try:
                got.append(results.get_nowait())
            except queue.Empty:
                break
        waiting -= len(got)
        if stop.is_set():  # the database is away: what comes back now waits for its status webhook
            outcomes["interrupted"] += len(got)
            release(governor, [c for c, _, batch in got if batch])
            continue
        try:
            _write(rt, got, record, outcomes)
        except DB_AWAY:
            log.error("database unavailable: %d sends wait for their status webhooks or the scheduler", waiting)
            stop.set()
            outcomes["interrupted"] += len(got)
        release(governor, [c for c, _, batch in got if batch])
    return outcomes


def _write(rt, got: list, record: Callable, outcomes: Counter) -> None:
    sent = [(call.attempt, result) for call, result, _ in got if isinstance(result, str)]
    if sent:
        patiently(f"{len(sent)} sends", lambda: record_sent_many(rt, sent), RECORD_PATIENCE)
        for attempt, wamid in sent:
            event(log, "send sent", send_id=attempt.id, wamid=wamid, connection_id=attempt.connection_id,
                  to=mask_phone(attempt.payload.get("to") or attempt.payload.get(bsuid.SEND_FIELD)))
        outcomes["sent"] += len(sent)
    for call, result, _ in got:
        if result is STOPPED:
            outcomes["interrupted"] += 1
        elif result is not SKIPPED and not isinstance(result, str):
            a = call.attempt
            outcomes[patiently(f"send {a.id}", lambda: record(rt, a, result), RECORD_PATIENCE)] += 1


def _fire(rt, graph: Graph, call: Call, results: queue.Queue, stop: threading.Event) -> None:
    result = STOPPED
    try:
        delay = call.at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if not stop.is_set():
            result = graph_call(rt, graph, call)
    except DB_AWAY:  # stamping the read receipt: Meta has not seen the send, nor will the rest
        log.error("database unavailable: send %s and the rest of its batch not sent", call.attempt.id)
        stop.set()
    except Exception:
        log.exception("send %s: not sent; it waits for the scheduler", call.attempt.id)
    finally:
        results.put((call, result, True))


def _chain(rt, governor: Governor, graph: Graph, calls: list[Call], results: queue.Queue,
           stop: threading.Event) -> None:
    for call in calls:
        result = STOPPED
        try:
            if not stop.is_set():
                result = call_one(rt, governor, graph, call)
        except DB_AWAY:  # before the call: Meta has not seen it, nor the rest
            log.error("database unavailable: send %s and the rest of its batch wait for the scheduler",
                      call.attempt.id)
            stop.set()
        finally:
            results.put((call, result, False))


def call_one(rt, governor: Governor, graph: Graph, call: Call):
    """Wait for the number's slot, mark the send attempted and call the Graph API. Returns a wamid,
    a ``GraphError`` (Meta refused it), ``Unknown`` (Meta may have it), ``Deferred`` or
    ``SKIPPED``. Database errors before the call propagate: then Meta has not seen the send."""
    try:
        slot = governor.reserve(call.number, call.rate, call.slot)
        while not slot.granted and slot.wait <= ALONE_WAIT:  # a slot frees up in a moment
            time.sleep(slot.wait)
            slot = governor.reserve(call.number, call.rate, call.slot)
    except Exception as exc:  # Redis is away: Meta has not seen this send, so it simply waits
        log.warning("send %s: governor unavailable (%s); deferred %ss", call.attempt.id, exc, REDIS_DEFER)
        return Deferred(REDIS_DEFER)
    if not slot.granted:
        return Deferred(slot.wait)
    try:
        time.sleep(slot.wait)
        if not start_call(rt, call.attempt):
            return SKIPPED
        return graph_call(rt, graph, call)
    finally:
        try:  # a wamid in hand stays a wamid, whatever Redis does now
            governor.release(call.number, call.slot)
        except Exception as exc:
            log.warning("send %s: governor slot not released (%s); it expires on its own", call.attempt.id, exc)


def graph_call(rt, graph: Graph, call: Call):
    """The Graph call itself (the reply's read receipt first, as policy allows): a wamid, a
    ``GraphError`` Meta answered, or ``Unknown``. Never raises."""
    attempt = call.attempt
    if attempt.read:  # database errors here propagate: Meta has not seen the send yet
        reads.mark_before_reply(rt, graph, attempt.connection_id, call.number, call.token, attempt.read)
    try:
        return graph.send_message(call.number, call.token, attempt.payload)
    except GraphError as exc:
        return Unknown(exc) if may_have_reached_meta(exc) else exc
    except Exception as exc:  # an odd answer after the request went out: Meta may have it
        log.exception("send %s: unexpected error around the Graph call", attempt.id)
        return Unknown(GraphError(f"{type(exc).__name__}: {exc}", timeout=True))


def may_have_reached_meta(exc: GraphError) -> bool:
    """A timeout or a dropped connection after the request left; not a refused connection."""
    return exc.timeout and not isinstance(exc.__cause__, (httpx.ConnectError, httpx.ConnectTimeout,
                                                          httpx.PoolTimeout, keepalive.NotSent))
