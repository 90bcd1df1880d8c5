"""Group commit: concurrent webhooks share one insert, one commit and one job, and lose nothing.

Requests go through a live threaded server on the test app. To make a batch form without
relying on timing, the table's writes are held (SQLite: another connection's ``BEGIN
IMMEDIATE``; PostgreSQL: ``LOCK TABLE``) until every request has been handed to the committer.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import urllib.request

import pytest
from sqlalchemy import select, text
from werkzeug.serving import make_server

from hub.core import ingest
from hub.core.group_commit import Committer
from hub.core.models import InboundEvent, Installation, Send
from hub.core.scheduler import CHECK_AFTER, tick
from hub.testing import sign
from tests import acme, own_loop

THREADS = 12


@pytest.fixture
def live(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@contextlib.contextmanager
def writes_held(rt, warm):
    """No row can be inserted into ``inbound_events`` until the block ends. ``warm()`` first:
    one request that fills the per-process caches (on SQLite a read transaction also waits)."""
    warm()
    if rt.db.is_sqlite:
        raw = rt.db.engine.raw_connection()
        try:
            raw.cursor().execute("BEGIN IMMEDIATE")
            yield
        finally:
            raw.rollback()
            raw.close()
    else:
        with rt.db.engine.connect() as conn:
            conn.execute(text("LOCK TABLE inbound_events IN EXCLUSIVE MODE"))
            try:
                yield
            finally:
                conn.rollback()


def wait_for(condition, what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def post(base: str, installation_id: str, secrets: dict, order: dict, webhook_id: str) -> dict:
    body = json.dumps(order).encode()
    request = urllib.request.Request(
        f"{base}/webhooks/acme/{installation_id}", data=body, method="POST",
        headers={"Content-Type": "application/json", "X-Acme-Topic": "order.created",
                 "X-Acme-Webhook-Id": webhook_id, **sign(acme.Acme, body, secrets)})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        return json.loads(response.read())


def order(n: int) -> dict:
    return {"id": 5000 + n, "name": f"#{n}", "checkout_token": f"tok-{n}",
            "shipping_address": {"phone": f"0909090{n:04d}", "country_code": "IN"}}


def rows(rt, model, **where):
    with rt.db.session() as s:
        return s.scalars(select(model).filter_by(**where).order_by(model.id)).all()


def processed_count(rt) -> int:
    value = rt.redis.hget(f"{rt.settings.key_prefix}:metrics:jobs", "job=process_event,outcome=processed")
    return int(value or 0)


def test_concurrent_webhooks_share_a_batch_and_each_is_stored_and_processed_once_in_order(
        client, workspace, acme_installation, connection, live, run_jobs):
    inst, secrets = acme_installation
    rt = client.rt
    committer = ingest.committer(rt)
    answers: dict[int, dict] = {}
    errors: list[BaseException] = []

    def send(i: int) -> None:  # threads 2k and 2k+1 deliver the same webhook: one is a duplicate
        try:
            answers[i] = post(live, inst["id"], secrets, order(i // 2), f"wh-{i // 2}")
        except BaseException as exc:  # noqa: BLE001 -- reported by the assertion below
            errors.append(exc)

    before = processed_count(rt)
    threads = [threading.Thread(target=send, args=(i,)) for i in range(THREADS)]
    with writes_held(rt, lambda: post(live, inst["id"], secrets, order(999), "warm")):
        for t in threads:
            t.start()
        wait_for(lambda: committer.waiting() == THREADS, "every request to reach the committer")
    for t in threads:
        t.join(60)
    assert not errors, errors
    for k in range(THREADS // 2):  # each webhook id: stored by exactly one of its two requests
        pair = [answers[2 * k], answers[2 * k + 1]]
        assert sorted(a["duplicate"] for a in pair) == [False, True], pair
    events = rows(rt, InboundEvent, scope=inst["id"])
    assert sorted(e.dedupe_key for e in events) == sorted([*(f"wh-{k}" for k in range(THREADS // 2)), "warm"])
    assert len({a["event_id"] for a in answers.values() if not a["duplicate"]}) == THREADS // 2
    assert rt.queues["ingest"].count <= 3  # the warm-up's, the one held batch, at most one before it

    run_jobs(queues=("ingest",))
    events = rows(rt, InboundEvent, scope=inst["id"])
    assert [e.status for e in events] == ["processed"] * (THREADS // 2 + 1)
    assert processed_count(rt) - before == THREADS // 2 + 1  # once each: no event was processed twice
    assert [e.processed_at for e in events] == sorted(e.processed_at for e in events)  # in id order
    sends = rows(rt, Send, workspace_id=workspace.id)
    assert len(sends) == THREADS // 2 + 1 and len({s.to for s in sends}) == THREADS // 2 + 1


def test_one_contact_posting_in_sequence_among_others_is_processed_in_its_order(
        client, workspace, acme_installation, connection, live, run_jobs):
    inst, secrets = acme_installation
    rt = client.rt
    mine: list[int] = []
    errors: list[BaseException] = []

    def others(i: int) -> None:
        try:
            for n in range(3):
                post(live, inst["id"], secrets, order(100 + 10 * i + n), f"other-{i}-{n}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=others, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for n in range(5):  # one customer's orders, each after the previous was answered
        answer = post(live, inst["id"], secrets, {**order(900 + n), "shipping_address": order(900)["shipping_address"]},
                      f"mine-{n}")
        mine.append(answer["event_id"])
    for t in threads:
        t.join(60)
    assert not errors, errors
    run_jobs(queues=("ingest",))
    events = {e.dedupe_key: e for e in rows(rt, InboundEvent, scope=inst["id"])}
    assert len(events) == 5 + 18
    ours = [events[f"mine-{n}"] for n in range(5)]
    assert [e.id for e in ours] == sorted(e.id for e in ours)  # stored in the order they were answered
    assert all(e.status == "processed" for e in events.values())
    assert [e.processed_at for e in ours] == sorted(e.processed_at for e in ours)  # and processed in it


def test_a_crash_between_commit_and_enqueue_is_recovered_by_the_scheduler(
        client, workspace, acme_installation, connection, run_jobs):
    """The rows are committed, then the web process dies before its Redis hand-off: no job,
    no cover. The scheduler finds them once they are ``CHECK_AFTER`` old and enqueues them."""
    inst, secrets = acme_installation
    rt = client.rt
    tick(rt)  # Redis has been up since now (its epoch): what follows is not a Redis restart
    for n in range(3):
        assert client.deliver("acme", inst["id"], order(n), secrets,
                              {"X-Acme-Topic": "order.created", "X-Acme-Webhook-Id": f"crash-{n}"}).status_code == 200
    for queue in rt.queues.all():
        queue.empty()  # what the dead process never sent
    rt.redis.delete(f"{rt.settings.key_prefix}:covered")
    events = rows(rt, InboundEvent, scope=inst["id"])
    jobs = [f"event-{e.id}" for e in events]
    tick(rt)
    assert rt.queues.lost(jobs) == set(jobs)  # too young to be asked about: still no job
    assert tick(rt, now=max(e.enqueued_at for e in events) + CHECK_AFTER * 2)["events"] >= 3
    assert not rt.queues.lost(jobs)  # now each has its job again
    run_jobs(queues=("ingest",))
    assert [e.status for e in rows(rt, InboundEvent, scope=inst["id"])] == ["processed"] * 3


def test_events_covered_by_a_waiting_batch_job_are_not_enqueued_again_and_a_lost_batch_is(
        client, workspace, acme_installation, connection, live, run_jobs):
    inst, secrets = acme_installation
    rt = client.rt
    committer = ingest.committer(rt)
    threads = [threading.Thread(target=post, args=(live, inst["id"], secrets, order(n), f"cov-{n}"))
               for n in range(6)]
    with writes_held(rt, lambda: post(live, inst["id"], secrets, order(999), "warm")):
        for t in threads:
            t.start()
        wait_for(lambda: committer.waiting() == 6, "every request to reach the committer")
    for t in threads:
        t.join(60)
    events = rows(rt, InboundEvent, scope=inst["id"])
    later = max(e.enqueued_at for e in events) + CHECK_AFTER * 2
    assert rt.queues["ingest"].count < 7  # some events share a job
    jobs = [f"event-{e.id}" for e in events]
    assert not rt.queues.lost(jobs)  # every event's job is waiting, covered or its own
    ours = {f"{rt.settings.key_prefix}-{job}" for job in jobs}
    queued = set(rt.queues["ingest"].job_ids) & ours
    tick(rt, now=later)
    assert set(rt.queues["ingest"].job_ids) & ours == queued  # so none was enqueued on its own

    for queue in rt.queues.all():
        queue.empty()  # Redis loses the batch jobs; the covers are still there
    assert rt.queues.lost(jobs) == set(jobs)
    assert tick(rt, now=later)["events"] >= 7
    assert not rt.queues.lost(jobs)
    run_jobs(queues=("ingest",))
    assert [e.status for e in rows(rt, InboundEvent, scope=inst["id"])] == ["processed"] * 7
    assert not rt.redis.hlen(f"{rt.settings.key_prefix}:covered")  # nothing stale is left behind


def test_the_committer_wakes_tasks_once_committed_and_threads_once_handed_off(client, acme_installation):
    """An event loop's task answers as soon as its batch is committed, while the hand-off still
    runs; a thread answers once its batch is handed off."""
    inst, _ = acme_installation
    rt = client.rt
    with rt.db.session() as s:
        workspace_id = s.get(Installation, inst["id"]).workspace_id
    handed_off, release = [], threading.Event()

    def hand_off(batch_rows, extras, ids):  # the rows marked "held": only once the test releases them
        if "held" in extras:
            assert release.wait(30)
            handed_off.extend(i for i, extra in zip(ids, extras) if extra == "held")

    committer = Committer(rt.db.autocommit, ingest._insert, hand_off)
    new = [ingest.row(provider="acme", scope=inst["id"], dedupe_key=f"woken-{n}", body=b"{}", headers={},
                      workspace_id=workspace_id, status="rejected", error="not processed here") for n in range(3)]
    from_thread: list = []
    first = threading.Thread(target=committer.submit, args=(new[0], "first"))
    thread = threading.Thread(target=lambda: from_thread.append(committer.submit(new[2], "held")))

    async def scenario():
        with writes_held(rt, lambda: None):  # the committer waits on the first row meanwhile
            first.start()
            while committer.waiting() < 1:
                await asyncio.sleep(0.01)
            task = asyncio.ensure_future(committer.submit_async(new[1], "held"))
            await asyncio.sleep(0)  # handed over: the thread's row joins the same batch or a later one
            thread.start()
            while committer.waiting() < 3:
                await asyncio.sleep(0.01)
        event_id = await asyncio.wait_for(task, 30)
        seen = list(handed_off), thread.is_alive()
        release.set()
        thread.join(30)
        first.join(30)
        return event_id, seen

    event_id, (handed_off_then, thread_waiting_then) = own_loop.run(scenario())
    assert event_id and handed_off_then == [] and thread_waiting_then  # committed, not handed off yet
    assert from_thread[0] and sorted(handed_off) == sorted([event_id, from_thread[0]])
    assert [e.dedupe_key for e in rows(rt, InboundEvent, scope=inst["id"])] == ["woken-0", "woken-1", "woken-2"]
