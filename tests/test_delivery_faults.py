"""Never send twice: a wamid in hand is ``sent`` whatever Redis does, results are written as
they come, and a send whose fate is unknown waits for Meta's status webhook before any resend.

Real components only: the Graph API simulator (its ``fail_next(timeout=True, delay=…)`` answers
late, as Meta does when the client gives up yet the message went out), real ``coexhub worker``
processes killed with SIGKILL, and a private ``redis-server`` killed mid-call.
"""
import dataclasses
import datetime as dt
import json
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import select, update

from hub.core.models import InboundEvent, Send, utcnow
from hub.core.queue import ALIVE_TTL, ORPHAN_AFTER
from hub.core.runtime import Runtime
from hub.core.scheduler import tick
from hub.core.sending import pipeline
from hub.core.sending.results import CLAIM_STALE, UNKNOWN_GRACE
from hub.testing import process_env
from tests.redis_server import RedisServer


def send(client, conn, to, **body):
    r = client.post("/api/v1/messages", json={"to": "+" + to, "template": "order_update", **body},
                    headers=conn.workspace.headers)
    assert r.status_code == 202, r.json
    return client.row_id(r.json["id"])  # the row's integer id: these tests look at the rows


def row(client, send_id) -> Send:
    with client.rt.db.session() as s:
        return s.get(Send, send_id)


def requests_to(simulator, recipients) -> list[dict]:
    return [r for r in list(simulator.requests) if r["body"].get("to") in recipients and r["status"] == 200]


def wait_for(check, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def quiet_hub(client, simulator):
    """No other test's sends are waiting (they would take the simulator's faults first), nor
    scheduled (the tests' ticks move the clock hours ahead and would count them as due)."""
    with client.rt.db.session() as s:
        s.execute(update(Send).where(Send.status.in_(("scheduled", "queued", "sending"))).values(status="cancelled"))
    with simulator.lock:
        simulator._faults.clear()
    yield
    with simulator.lock:
        simulator._faults.clear()


def test_text_sends_carry_the_callback_data_and_statuses_echo_it(client, coexistence, simulator, run_jobs,
                                                                 quiet_hub):
    customer = "14155550911"
    simulator.customer_message(coexistence.phone_number_id, customer, "hi")
    run_jobs(queues=("ingest",))
    r = client.post("/api/v1/messages", json={"to": "+" + customer, "text": "hello back"},
                    headers=coexistence.workspace.headers)
    assert r.status_code == 202, r.json
    run_jobs(queues=("send",))
    [req] = requests_to(simulator, {customer})
    assert req["body"]["type"] == "text" and req["body"]["biz_opaque_callback_data"] == f"send:{client.row_id(r.json['id'])}"
    assert simulator.flush_statuses() == 3
    with client.rt.db.session() as s:
        bodies = [json.loads(e.body) for e in s.scalars(select(InboundEvent).where(InboundEvent.provider == "whatsapp")
                                                        .order_by(InboundEvent.id.desc()).limit(3))]
    echoed = [b["entry"][0]["changes"][0]["value"]["statuses"][0].get("biz_opaque_callback_data") for b in bodies]
    assert echoed == [f"send:{client.row_id(r.json['id'])}"] * 3


def test_a_wamid_in_hand_is_sent_even_if_redis_dies_before_the_release(client, coexistence, simulator, tmp_path,
                                                                       quiet_hub):
    server = RedisServer(tmp_path).start()
    rt = Runtime(dataclasses.replace(client.rt.settings, redis_url=server.url), plugins=client.rt.plugins)
    try:
        send_id = send(client, coexistence, "14155550912", params=["redis"])
        with client.rt.db.session() as s:  # claimed by this test's batch
            s.execute(update(Send).where(Send.id == send_id).values(status="sending", claim_token="t1"))
        simulator.fail_next(1, timeout=True, delay=1.5)  # Meta answers after 1.5 s…
        killer = threading.Timer(0.6, server.kill)  # …and Redis is gone before the answer comes
        killer.start()
        pipeline.run(rt, [send_id], "t1")
        killer.join()
        [req] = requests_to(simulator, {"14155550912"})
        s = row(client, send_id)
        assert (s.status, s.wamid) == ("sent", req["response"]["messages"][0]["id"])
    finally:
        server.kill()
        rt.close()


def test_a_timed_out_send_waits_for_its_status_and_is_never_resent(client, coexistence, simulator, run_jobs,
                                                                   monkeypatch, quiet_hub):
    monkeypatch.setattr(pipeline, "GRAPH_TIMEOUT", 0.5)
    customer = "14155550913"
    simulator.fail_next(1, timeout=True, delay=1.5)  # the client gives up; Meta sends it anyway
    send_id = send(client, coexistence, customer, params=["slow"])
    run_jobs(queues=("send",))
    s = row(client, send_id)
    assert s.status == "sending" and s.attempted_at is not None and "status webhook" in s.last_error
    [req] = wait_for(lambda: requests_to(simulator, {customer}), what="Meta to take the message")
    attempted = s.attempted_at
    assert tick(client.rt, now=attempted + UNKNOWN_GRACE / 2)["sends"] == 0  # within the grace: it waits
    simulator.flush_statuses()  # received, not processed yet: an ingest backlog holds the resend back
    tick(client.rt, now=attempted + UNKNOWN_GRACE * 2)
    assert row(client, send_id).status == "sending"
    run_jobs(queues=("ingest",))
    s = row(client, send_id)
    assert (s.status, s.wamid) == ("sent", req["response"]["messages"][0]["id"])
    tick(client.rt, now=attempted + UNKNOWN_GRACE * 10)
    run_jobs()
    assert len(requests_to(simulator, {customer})) == 1


def status_lost_send(client, coexistence, simulator, run_jobs, monkeypatch, customer: str):
    """A send Meta took while the worker timed out, whose status webhooks never arrive:
    ``(send id, attempted_at)``."""
    monkeypatch.setattr(pipeline, "GRAPH_TIMEOUT", 0.5)
    simulator.fail_next(1, timeout=True, delay=1.0)
    send_id = send(client, coexistence, customer, params=["lost status"])
    run_jobs(queues=("send",))
    wait_for(lambda: requests_to(simulator, {customer}), what="Meta to take the message")
    with simulator.lock:
        simulator.pending_statuses.clear()  # its statuses never arrive
    return send_id, row(client, send_id).attempted_at


def test_an_unknown_send_without_any_status_is_resent_only_after_the_grace(client, coexistence, simulator,
                                                                           run_jobs, monkeypatch, quiet_hub):
    """The documented window: no answer and no status webhook at all (Meta's webhook lost)."""
    customer = "14155550914"
    send_id, attempted = status_lost_send(client, coexistence, simulator, run_jobs, monkeypatch, customer)
    assert tick(client.rt, now=attempted + UNKNOWN_GRACE - dt.timedelta(seconds=5))["sends"] == 0
    assert tick(client.rt, now=attempted + UNKNOWN_GRACE + dt.timedelta(seconds=5))["sends"] == 1
    run_jobs(queues=("send",))
    assert row(client, send_id).status == "sent"
    assert len(requests_to(simulator, {customer})) == 2


def test_an_unknown_send_waits_only_for_the_webhooks_of_its_grace_not_later_traffic(client, coexistence, simulator,
                                                                                     run_jobs, monkeypatch, quiet_hub):
    """A backlog of webhooks received within the grace may hold its status: the send waits for
    them. Webhooks that came later cannot settle it: steady traffic never keeps it stuck."""
    send_id, attempted = status_lost_send(client, coexistence, simulator, run_jobs, monkeypatch, "14155550918")
    late = attempted + UNKNOWN_GRACE * 3

    def waiting_webhook(key: str, received_at: dt.datetime) -> int:
        with client.rt.db.session() as s:
            event = InboundEvent(provider="whatsapp", scope="meta", dedupe_key=f"{key}-{send_id}", body=b"{}",
                                 headers={}, status="pending", attempts=0, received_at=received_at,
                                 next_attempt_at=late, enqueued_at=received_at)
            s.add(event)
            s.flush()
            return event.id

    within = waiting_webhook("within", attempted + dt.timedelta(seconds=1))
    later = waiting_webhook("later", attempted + UNKNOWN_GRACE * 2)
    try:
        assert tick(client.rt, now=attempted + UNKNOWN_GRACE * 2.5)["sends"] == 0  # its status may be in there
        with client.rt.db.session() as s:
            s.get(InboundEvent, within).status = "processed"
        assert tick(client.rt, now=attempted + UNKNOWN_GRACE * 2.5)["sends"] == 1  # later traffic: no reason to wait
    finally:
        with client.rt.db.session() as s:
            s.execute(update(InboundEvent).where(InboundEvent.id.in_([within, later])).values(status="processed"))
    run_jobs(queues=("send",))
    assert row(client, send_id).status == "sent"


def test_a_killed_worker_never_causes_a_second_send(client, coexistence, simulator, run_jobs, quiet_hub):
    """Eight sends on one number go out concurrently, each at its governor slot: Meta answers the
    fourth request slowly and the worker is killed meanwhile. The other seven are written as they
    came (not held back by the slow one); the slow one waits for its status webhook, never resent."""
    recipients = [f"1415555{7100 + i:04d}" for i in range(8)]
    simulator.fail_next(3, timeout=True, delay=0)  # the first three answer at once
    simulator.fail_next(1, timeout=True, delay=4)  # Meta takes the fourth, but answers slowly
    ids = [send(client, coexistence, to, params=[to]) for to in recipients]
    worker = subprocess.Popen([sys.executable, "-m", "hub.cli", "worker", "--simple", "--queue", "send"],
                              env=process_env(client.rt), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: sum(row(client, i).status == "sent" for i in ids) == 7, what="seven sends written")
        job_ids = client.rt.queues["send"].started_job_registry.get_job_ids()
    finally:
        worker.kill()  # SIGKILL while Meta is answering the slow one
        worker.wait(10)
    rows = [row(client, i) for i in ids]
    [slow] = [r for r in rows if r.status != "sent"]
    assert all(r.wamid for r in rows if r is not slow)
    assert slow.status == "sending" and slow.attempted_at is not None
    wait_for(lambda: len(requests_to(simulator, recipients)) == 8, what="Meta to take the slow one")

    now = utcnow()
    assert tick(client.rt, now=now + CLAIM_STALE + dt.timedelta(seconds=1))["sends"] == 0  # nothing unattempted
    assert row(client, slow.id).status == "sending"  # the slow one waits for its status
    simulator.flush_statuses()
    run_jobs(queues=("ingest",))
    settled = row(client, slow.id)
    slow_request = next(r for r in requests_to(simulator, recipients) if r["body"]["to"].lstrip("+") == slow.to.lstrip("+"))
    assert (settled.status, settled.wamid) == ("sent", slow_request["response"]["messages"][0]["id"])

    # the killed worker's started job is known lost once its heartbeat lapses, so its id is free again
    [started] = [j[len(client.rt.settings.key_prefix) + 1:] for j in job_ids]
    wait_for(lambda: client.rt.queues.lost([started]), timeout=ALIVE_TTL + ORPHAN_AFTER.total_seconds() + 5,
             what="the dead worker's job to be known lost")
    tick(client.rt, now=now + UNKNOWN_GRACE * 10)
    run_jobs(queues=("send",))
    assert [row(client, i).status for i in ids] == ["sent"] * 8
    sent = requests_to(simulator, recipients)
    assert sorted(r["body"]["to"] for r in sent) == sorted(recipients)  # each exactly once


def test_claimed_sends_whose_worker_died_before_calling_go_back_after_the_claim_goes_stale(
        client, coexistence, simulator, run_jobs, quiet_hub):
    """A worker that claimed a batch and died before marking it attempted: Meta cannot have
    these sends, so the scheduler queues them again once the claim is ``CLAIM_STALE``."""
    recipients = [f"1415555{7200 + i:04d}" for i in range(4)]
    ids = [send(client, coexistence, to, params=[to]) for to in recipients]
    claimed = pipeline.claim(client.rt, claim_token="dead-worker")  # …and then the worker is gone
    assert set(ids) <= set(claimed)
    now = utcnow()
    assert tick(client.rt, now=now + CLAIM_STALE / 2)["sends"] == 0  # a live worker may still hold them
    assert tick(client.rt, now=now + CLAIM_STALE + dt.timedelta(seconds=1))["sends"] >= len(ids)
    run_jobs(queues=("send",))
    assert [row(client, i).status for i in ids] == ["sent"] * 4
    assert sorted(r["body"]["to"] for r in requests_to(simulator, recipients)) == sorted(recipients)


def test_a_result_waits_out_a_database_cut_instead_of_being_lost(client, coexistence, simulator, quiet_hub):
    """PostgreSQL behind a proxy that is cut while Meta answers: the worker holds on to the
    wamid and writes it once the database is back (before: the batch failed, the send stayed
    ``sending`` and went out again five minutes later)."""
    from sqlalchemy.engine import make_url

    from tests.tcp_proxy import TcpProxy

    url = make_url(client.rt.settings.database_url)
    if not url.drivername.startswith("postgresql"):
        pytest.skip("a database behind a cable: PostgreSQL only")
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    rt = Runtime(dataclasses.replace(client.rt.settings, database_url=proxied), plugins=client.rt.plugins,
                 redis=client.rt.redis)
    try:
        customer = "14155550915"
        send_id = send(client, coexistence, customer, params=["cut"])
        with client.rt.db.session() as s:
            s.execute(update(Send).where(Send.id == send_id).values(status="sending", claim_token="t2"))
        simulator.fail_next(1, timeout=True, delay=1.0)  # Meta answers after 1 s…
        threading.Timer(0.4, proxy.cut).start()  # …while the database is cut, for 3 s
        threading.Timer(3.4, proxy.restore).start()
        pipeline.run(rt, [send_id], "t2")
        [req] = requests_to(simulator, {customer})
        s = row(client, send_id)
        assert (s.status, s.wamid) == ("sent", req["response"]["messages"][0]["id"])
    finally:
        rt.close()
        proxy.close()


def test_only_the_sends_own_number_settles_it_and_a_failed_status_fails_it(client, coexistence, simulator,
                                                                          run_jobs, monkeypatch, connection,
                                                                          quiet_hub):
    from hub.testing import payloads as p

    monkeypatch.setattr(pipeline, "GRAPH_TIMEOUT", 0.5)
    customer = "14155550916"
    simulator.fail_next(1, timeout=True, delay=1.0)
    send_id = send(client, coexistence, customer, params=["fails later"])
    run_jobs(queues=("send",))
    [req] = wait_for(lambda: requests_to(simulator, {customer}), what="Meta to take the message")
    wamid = req["response"]["messages"][0]["id"]
    with simulator.lock:
        simulator.pending_statuses.clear()
    # another number (same workspace) echoing this send's callback data does not settle it
    simulator.deliver(p.status(connection.waba_id, connection.phone_number_id, "15550001111", "wamid.other", "sent",
                               customer, biz_opaque_callback_data=f"send:{send_id}"))
    run_jobs(queues=("ingest",))
    assert row(client, send_id).status == "sending"
    simulator.deliver(p.status(coexistence.waba_id, coexistence.phone_number_id, coexistence.display, wamid,
                               "failed", customer, errors=[{"code": 131026, "title": "undeliverable"}],
                               biz_opaque_callback_data=f"send:{send_id}"))
    run_jobs(queues=("ingest",))
    s = row(client, send_id)
    assert (s.status, s.wamid, s.error_code) == ("failed", wamid, 131026)  # Meta had it: failed, not resent
    tick(client.rt, now=utcnow() + UNKNOWN_GRACE * 10)
    run_jobs()
    assert len(requests_to(simulator, {customer})) == 1
