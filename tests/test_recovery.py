"""Stuck work recovers in seconds: lost or failed jobs are found by asking Redis, workers and the
scheduler outlive a Redis restart, fork mode does not rebuild the hub per job, and a send is
not starved by an ingest backlog. Real ``coexhub`` processes and a private ``redis-server``."""
import dataclasses
import datetime as dt
import json
import secrets
import socket
import subprocess
import sys
import time

import pytest
from sqlalchemy import select, update

from hub.core import ingest, processing
from hub.core.models import InboundEvent, Send
from hub.core.runtime import Runtime, install
from hub.core.scheduler import CHECK_AFTER, tick
from hub.core.sending.pipeline import delivery_job
from hub.testing import payloads, process_env
from tests.redis_server import RedisServer

SOON = CHECK_AFTER + dt.timedelta(seconds=1)


def headers(topic, webhook_id):
    return {"X-Acme-Topic": topic, "X-Acme-Webhook-Id": webhook_id}


def event_of(rt, inst_id, dedupe_key) -> InboundEvent:
    with rt.db.session() as s:
        return s.scalars(select(InboundEvent).where(InboundEvent.scope == inst_id,
                                                    InboundEvent.dedupe_key == dedupe_key)).one()


def store_message(rt, conn, text) -> int:
    """A customer's WhatsApp message, stored (and enqueued) the way the webhook stores it."""
    body = json.dumps(payloads.text_message(conn.waba_id, conn.phone_number_id, conn.display,
                                            f"9198{secrets.randbelow(10**8):08d}", text)).encode()
    event_id, _ = ingest.store(rt, provider="whatsapp", scope="meta", dedupe_key=ingest.body_hash(body),
                               body=body, headers={})
    return event_id


def send_of(rt, send_id) -> Send:
    with rt.db.session() as s:
        return s.get(Send, send_id)


def status_of(rt, event_id) -> str:
    with rt.db.session() as s:
        return s.get(InboundEvent, event_id).status


def wait_for(check, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def stop(*procs):
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_a_job_redis_lost_is_found_in_seconds_and_a_waiting_one_is_left_alone(client, acme_installation, run_jobs):
    inst, secrets = acme_installation
    tick(client.rt)  # the scheduler runs (it notes since when this Redis holds the hub's jobs)
    client.deliver("acme", inst["id"], {"id": 1}, secrets, headers("order.created", "lost-1"))
    client.rt.queues["ingest"].empty()  # Redis lost the job (and its record)
    client.deliver("acme", inst["id"], {"id": 2}, secrets, headers("order.created", "kept-2"))
    lost, kept = event_of(client.rt, inst["id"], "lost-1"), event_of(client.rt, inst["id"], "kept-2")
    assert tick(client.rt, now=lost.enqueued_at + SOON)["events"] >= 1  # seconds, not the 5-minute backstop
    assert event_of(client.rt, inst["id"], "lost-1").enqueued_at > lost.enqueued_at  # this one went back
    assert event_of(client.rt, inst["id"], "kept-2").enqueued_at == kept.enqueued_at  # its job still waits
    run_jobs(queues=("ingest",))
    assert {event_of(client.rt, inst["id"], k).status for k in ("lost-1", "kept-2")} == {"processed"}


def test_a_job_taken_off_its_queue_by_a_worker_killed_before_starting_it_is_found(client, acme_installation,
                                                                                   run_jobs, monkeypatch):
    """RQ moves a job off its queue, then marks it started: a worker killed in between leaves a
    job that says ``queued`` in no queue."""
    from hub.core import queue as queues

    monkeypatch.setattr(queues, "ORPHAN_AFTER", dt.timedelta(0))  # the job is seconds old by now
    inst, secrets = acme_installation
    tick(client.rt)
    client.deliver("acme", inst["id"], {"id": 5}, secrets, headers("order.created", "dequeued-5"))
    event = event_of(client.rt, inst["id"], "dequeued-5")
    queue = client.rt.queues["ingest"]
    job_id = f"{client.rt.settings.key_prefix}-event-{event.id}"
    assert client.rt.redis.lrem(queue.key, 0, job_id) == 1  # what the dying worker took with it
    assert queue.fetch_job(job_id).get_status() == "queued"
    tick(client.rt, now=event.enqueued_at + SOON)
    assert event_of(client.rt, inst["id"], "dequeued-5").enqueued_at > event.enqueued_at  # enqueued again
    run_jobs(queues=("ingest",))
    assert event_of(client.rt, inst["id"], "dequeued-5").status == "processed"


def test_a_writeback_whose_job_redis_lost_is_delivered_in_seconds(client, acme_installation, run_jobs):
    from hub.core.models import OutboundDelivery
    from tests import acme

    inst, secrets = acme_installation
    tick(client.rt)
    client.deliver("acme", inst["id"], {"id": 5150}, secrets, headers("order.paid", "paid-5150"))
    run_jobs(queues=("ingest",))
    client.rt.queues["writeback"].empty()  # Redis lost the write-back's job
    with client.rt.db.session() as s:
        [row] = s.scalars(select(OutboundDelivery).where(OutboundDelivery.installation_id == inst["id"])).all()
    assert row.status == "pending"
    assert tick(client.rt, now=row.enqueued_at + SOON)["outbox"] >= 1  # this row (and any other test's)
    run_jobs(queues=("writeback",))
    assert {"order_id": "5150", "tag": "paid-notified", "token": "acme-token"} in acme.WRITTEN


def test_after_redis_restarted_empty_every_pending_event_is_enqueued_at_the_next_tick(client, acme_installation,
                                                                                    run_jobs):
    inst, secrets = acme_installation
    tick(client.rt)
    client.deliver("acme", inst["id"], {"id": 4}, secrets, headers("order.created", "restart-4"))
    client.rt.queues["ingest"].empty()  # what a restarted, empty Redis looks like to the hub:
    client.rt.redis.delete(f"{client.rt.settings.key_prefix}:epoch")  # no jobs, no keys
    assert tick(client.rt)["events"] == 1  # at once, without waiting to ask about each job
    run_jobs(queues=("ingest",))
    assert event_of(client.rt, inst["id"], "restart-4").status == "processed"


def test_a_job_that_failed_while_the_database_was_down_is_retried_in_seconds(client, acme_installation, run_jobs,
                                                                            monkeypatch):
    inst, secrets = acme_installation
    tick(client.rt)
    client.deliver("acme", inst["id"], {"id": 3}, secrets, headers("order.created", "db-down-3"))
    with socket.socket() as probe:  # a port nothing listens on: every query fails like a database cut
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    down = Runtime(dataclasses.replace(client.rt.settings,
                                       database_url=f"postgresql+psycopg://hub@127.0.0.1:{closed_port}/gone"),
                   plugins=client.rt.plugins, redis=client.rt.redis)
    monkeypatch.setattr(processing, "DB_PATIENCE", 0.5)
    install(down)
    try:
        run_jobs(queues=("ingest",))  # the job fails: nothing could be recorded on the row
    finally:
        install(client.rt)
        down.close()
    event = event_of(client.rt, inst["id"], "db-down-3")
    assert (event.status, event.attempts) == ("pending", 0)
    # the failed job is seen in Redis (other tests' leftover events in this worker may count too)
    assert tick(client.rt, now=event.enqueued_at + SOON)["events"] >= 1
    run_jobs(queues=("ingest",))
    assert event_of(client.rt, inst["id"], "db-down-3").status == "processed"


def test_worker_and_scheduler_outlive_a_redis_restarted_empty(client, coexistence, simulator, tmp_path):
    with client.rt.db.session() as s:  # no other test's sends waiting: they would take the slow answer
        s.execute(update(Send).where(Send.status.in_(("queued", "sending"))).values(status="cancelled"))
    server = RedisServer(tmp_path).start()
    rt = Runtime(dataclasses.replace(client.rt.settings, redis_url=server.url), plugins=client.rt.plugins)
    env = {**process_env(client.rt), "COEXHUB_REDIS_URL": server.url}
    procs = [subprocess.Popen([sys.executable, "-m", "hub.cli", *args], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
             for args in (["worker", "--simple"], ["scheduler", "--interval", "0.5"])]
    ids = {}

    def store(key):
        ids[key] = store_message(rt, coexistence, key)

    def processed(key):
        return lambda: status_of(client.rt, ids[key]) == "processed"

    try:
        store("before")
        wait_for(processed("before"), timeout=60, what="the first event")
        with simulator.lock:
            simulator._faults.clear()
        simulator.fail_next(1, timeout=True, delay=2)  # the worker is busy with a slow send…
        send_id = client.post("/api/v1/messages", json={"to": "+14155550932", "template": "order_update",
                                                        "params": ["busy"]}, headers=coexistence.workspace.headers).json["id"]
        send_id = client.row_id(send_id)
        queue, func, args, job_id = delivery_job(send_id)
        rt.queues.enqueue(queue, func, *args, job_id=job_id)
        wait_for(lambda: send_of(client.rt, send_id).attempted_at, what="the send's call")
        store("queued")  # waits in Redis behind the busy worker…
        server.kill()  # …when Redis dies
        store("during")  # stored (acknowledged) while Redis is gone: not enqueued
        time.sleep(2)
        assert [p.poll() for p in procs] == [None, None]
        server.start()  # back, and empty
        store("after")
        wait_for(processed("during"), timeout=45, what="the event stored while Redis was down")
        wait_for(processed("queued"), timeout=45, what="the event Redis lost")
        wait_for(processed("after"), timeout=45, what="the event stored after the restart")
        assert [p.poll() for p in procs] == [None, None]
        assert send_of(client.rt, send_id).status == "sent"
        assert len([r for r in list(simulator.requests) if r["body"].get("to") == "14155550932"]) == 1
    except AssertionError as exc:
        stop(*procs)
        logs = b"".join(p.stderr.read() for p in procs).decode()
        raise AssertionError(f"{exc}\n--- worker and scheduler logs ---\n{logs[-4000:]}") from exc
    finally:
        stop(*procs)
        server.kill()
        rt.close()
    errors = b"".join(p.stderr.read() for p in procs).decode()
    assert "Redis" in errors  # the outage and the reconnection are logged


def test_a_send_is_not_starved_by_an_ingest_backlog(client, coexistence, simulator):
    backlog = 1500
    pipe = client.rt.redis.pipeline(transaction=False)
    for i in range(backlog):  # jobs for events that do not exist: each one is quick, but there are many
        client.rt.queues.enqueue("ingest", ingest.PROCESS_JOB, 10**9 + i, pipeline=pipe)
    pipe.execute()
    r = client.post("/api/v1/messages", json={"to": "+14155550931", "template": "order_update", "params": ["x"]},
                    headers=coexistence.workspace.headers)
    assert r.status_code == 202
    worker = subprocess.Popen([sys.executable, "-m", "hub.cli", "worker", "--simple"], env=process_env(client.rt),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def sent():
        with client.rt.db.session() as s:
            return s.get(Send, client.row_id(r.json["id"])).status == "sent"

    try:
        wait_for(sent, timeout=60, what="the send")
        left = client.rt.queues["ingest"].count
    finally:
        stop(worker)
    assert left > backlog // 2  # it went out near the front of the backlog, not after it


@pytest.mark.parametrize("mode", ["fork", "simple"])
def test_fork_mode_does_not_rebuild_the_hub_for_every_job(client, coexistence, mode):
    """The plugins are loaded once per worker, not once per forked job (measured side by side
    with simple mode by bench/worker_modes.py; wall-clock asserts would be flaky here)."""
    ids = [store_message(client.rt, coexistence, f"{mode}-{i}") for i in range(20)]
    done = subprocess.run([sys.executable, "-m", "hub.cli", "worker", "--burst", f"--{mode}", "--queue", "ingest"],
                          env=process_env(client.rt), check=True, timeout=180, capture_output=True)
    assert {status_of(client.rt, event_id) for event_id in ids} == {"processed"}
    assert done.stderr.decode().count("plugins loaded") == 1
