"""The event loop's own group committer (``ingest.loop_committer``, PostgreSQL): a loop's
requests share a batch, are answered once it is committed (its Redis hand-off follows), one
refused row fails alone, a lost connection fails only its batch, a failed Redis hand-off leaves
the events to the scheduler, and shutdown commits what it holds.

Each test runs its tasks on a fresh loop (``own_loop.run``) against the real database and Redis.
"""
from __future__ import annotations

import asyncio
import json
import threading

import pytest
import redis.asyncio
from sqlalchemy import select, text
from sqlalchemy.exc import DataError, OperationalError

from hub.core import ingest
from hub.core.models import InboundEvent, Installation
from hub.core.scheduler import CHECK_AFTER, tick
from tests import own_loop
from tests.tcp_proxy import TcpProxy


@pytest.fixture
def rt(client, workspace, acme_installation, connection):
    if client.rt.db.is_sqlite:
        pytest.skip("SQLite has no asynchronous driver here: the web worker's loop uses the committer thread")
    with client.rt.db.session() as s:  # the workspace's internal id, as the webhook route stores it
        acme_installation[0]["workspace"] = s.get(Installation, acme_installation[0]["id"]).workspace_id
    return client.rt


def fields(inst: dict, n: int) -> dict:
    body = json.dumps({"id": 7000 + n, "name": f"#{n}", "checkout_token": f"loop-{n}",
                       "shipping_address": {"phone": f"0808080{n:04d}", "country_code": "IN"}}).encode()
    return {"provider": "acme", "scope": inst["id"], "dedupe_key": f"loop-{n}", "body": body,
            "headers": {"X-Acme-Topic": "order.created"}, "topic": "order.created",
            "workspace_id": inst["workspace"]}


def stored(rt, inst: dict) -> list[InboundEvent]:
    with rt.db.session() as s:
        return s.scalars(select(InboundEvent).where(InboundEvent.scope == inst["id"]).order_by(InboundEvent.id)).all()


@pytest.fixture
def held_redis(rt):
    """A proxy to the test Redis that can hold what is sent through it (``hand_off_through``)."""
    kwargs = rt.redis.connection_pool.connection_kwargs
    proxy = TcpProxy(kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379))
    yield proxy
    proxy.close()


async def hand_off_through(proxy: TcpProxy, rt) -> None:
    """The running loop's committer hands its batches off to Redis through ``proxy``."""
    backends = ingest.loop_committer(rt).insert.__self__
    await backends.redis.aclose()
    db = rt.redis.connection_pool.connection_kwargs.get("db", 0)
    backends.redis = redis.asyncio.Redis(port=proxy.port, db=db)


async def submit_all(rt, many: list[dict]) -> list:
    """Hand ``many`` over from as many tasks, started together: they join one batch."""
    return await asyncio.gather(*(ingest.store_async(rt, **one) for one in many), return_exceptions=True)


def test_a_loops_requests_share_one_batch_one_job_and_are_processed(rt, acme_installation, run_jobs):
    inst, _ = acme_installation

    async def scenario():
        results = await submit_all(rt, [fields(inst, n) for n in range(5)] + [fields(inst, 0)])
        await ingest.stop_loop_committer(rt)
        return results

    results = own_loop.run(scenario())
    ids = [event_id for event_id, _ in results[:5]]
    assert ids == sorted(ids) and results[5] == (None, True)  # the second copy is a duplicate
    assert rt.queues["ingest"].job_ids == [f"{rt.settings.key_prefix}-event-{ids[0]}"]  # one job for the batch
    assert rt.queues.lost([f"event-{i}" for i in ids]) == set()  # the others are covered by it
    run_jobs(queues=("ingest",))
    assert [e.status for e in stored(rt, inst)] == ["processed"] * 5


def test_requests_are_answered_once_committed_and_their_job_follows(rt, acme_installation, held_redis,
                                                                    run_jobs):
    inst, _ = acme_installation

    async def scenario():
        await hand_off_through(held_redis, rt)
        held_redis.hold()
        results = await submit_all(rt, [fields(inst, 1), fields(inst, 2)])  # answered: the hand-off is held
        seen = [e.status for e in stored(rt, inst)], ingest.waiting(rt), rt.queues["ingest"].job_ids
        held_redis.release()
        await ingest.stop_loop_committer(rt)
        return results, seen

    results, (committed, in_flight, jobs) = own_loop.run(scenario())
    ids = [event_id for event_id, _ in results]
    assert all(ids) and committed == ["pending", "pending"]  # durable when answered
    assert in_flight == 2 and jobs == []  # not handed off yet
    assert rt.queues["ingest"].job_ids == [f"{rt.settings.key_prefix}-event-{min(ids)}"]  # then it was
    run_jobs(queues=("ingest",))
    assert [e.status for e in stored(rt, inst)] == ["processed"] * 2


def test_run_jobs_waits_for_a_hand_off_in_flight(rt, acme_installation, held_redis, run_jobs):
    inst, _ = acme_installation
    answered, results = threading.Event(), []

    async def scenario():
        await hand_off_through(held_redis, rt)
        held_redis.hold()
        results.extend(await submit_all(rt, [fields(inst, 1)]))
        answered.set()
        await ingest.stop_loop_committer(rt)

    web = threading.Thread(target=asyncio.run, args=(scenario(),))  # as a live web worker's loop
    web.start()
    assert answered.wait(30) and results[0][0]
    threading.Timer(0.2, held_redis.release).start()
    run_jobs(queues=("ingest",))  # waits for the hand-off, then runs its job
    assert [e.status for e in stored(rt, inst)] == ["processed"]
    web.join(30)


def test_a_refused_row_fails_alone_and_the_rest_of_its_batch_is_stored(rt, acme_installation):
    inst, _ = acme_installation
    too_long = fields(inst, 2)
    too_long["provider"] = "p" * 65  # longer than the column: PostgreSQL refuses the row

    async def scenario():
        results = await submit_all(rt, [fields(inst, 1), too_long, fields(inst, 3)])
        await ingest.stop_loop_committer(rt)
        return results

    first, refused, third = own_loop.run(scenario())
    assert isinstance(refused, DataError)
    assert first[0] and third[0]
    assert [e.dedupe_key for e in stored(rt, inst)] == ["loop-1", "loop-3"]


def test_a_lost_connection_fails_only_its_batch_and_the_next_reconnects(rt, acme_installation):
    inst, _ = acme_installation

    async def scenario():
        await submit_all(rt, [fields(inst, 1)])
        backends = ingest.loop_committer(rt).insert.__self__
        with rt.db.autocommit.connect() as conn:  # as a database restart or a proxy would
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backends.pg.info.backend_pid})
        lost = await submit_all(rt, [fields(inst, 2), fields(inst, 3)])
        again = await submit_all(rt, [fields(inst, 2)])
        await ingest.stop_loop_committer(rt)
        return lost, again

    lost, again = own_loop.run(scenario())
    assert all(isinstance(result, OperationalError) for result in lost)  # 500: the provider sends them again
    assert again[0][0] is not None
    assert [e.dedupe_key for e in stored(rt, inst)] == ["loop-1", "loop-2"]


def test_a_failed_redis_hand_off_leaves_the_committed_events_to_the_scheduler(rt, acme_installation, run_jobs):
    inst, _ = acme_installation
    tick(rt)  # Redis has been up since now: what follows is not a Redis restart

    async def scenario():
        committer = ingest.loop_committer(rt)
        backends = committer.insert.__self__
        await backends.redis.aclose()
        backends.redis = redis.asyncio.Redis(port=1, socket_connect_timeout=1)  # nothing listens there
        results = await submit_all(rt, [fields(inst, 1), fields(inst, 2)])
        await ingest.stop_loop_committer(rt)
        return results

    results = own_loop.run(scenario())
    assert all(event_id for event_id, _ in results)  # committed: the answer is a 200
    events = stored(rt, inst)
    jobs = {f"event-{e.id}" for e in events}
    assert [e.enqueued_at for e in events] == [None, None] and rt.queues.lost(sorted(jobs)) == jobs  # no job
    assert tick(rt, now=max(e.received_at for e in events) + CHECK_AFTER * 2)["events"] >= 2
    run_jobs(queues=("ingest",))
    assert [e.status for e in stored(rt, inst)] == ["processed"] * 2


def test_shutdown_commits_what_was_handed_over_and_closes_the_connections(rt, acme_installation):
    inst, _ = acme_installation

    async def scenario():
        waiting = [asyncio.ensure_future(ingest.store_async(rt, **fields(inst, n))) for n in range(3)]
        await asyncio.sleep(0)  # each has handed its row over
        backends = ingest.loop_committer(rt).insert.__self__
        await ingest.stop_loop_committer(rt)
        return [await one for one in waiting], backends

    results, backends = own_loop.run(scenario())
    assert all(event_id for event_id, _ in results)
    assert backends.pg is None
    assert len(stored(rt, inst)) == 3
