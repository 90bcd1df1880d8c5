"""Processing under concurrency: several jobs at once on one database (SQLite or PostgreSQL).

Threads call ``process_event`` together (released by a barrier so they really overlap) and
worker processes drain one queue together; every event must end ``processed`` on its first
attempt, every row must be there, and ordered state (statuses, history bookkeeping, times)
must come out as if the jobs had run one after another.
"""
import json
import queue
import random
import subprocess
import sys
import threading

from sqlalchemy import func, select

from hub.core.models import Connection, Contact, InboundEvent, Message
from hub.core.processing import process_event
from hub.core.whatsapp.messages import ts
from hub.testing import payloads as p
from hub.testing import process_env

THREADS = 6


def post(client, envelope) -> int:
    body = json.dumps(envelope).encode()
    response = client.post("/webhooks/whatsapp", data=body,
                           headers={"Content-Type": "application/json", **p.sign(body, "test-app-secret")})
    assert response.status_code == 200, response.json
    return client.row_id(response.json["event_id"])


def run_concurrently(client, event_ids: list[int], threads: int = THREADS) -> list[str]:
    """Process ``event_ids`` with ``threads`` threads that start together; returns the results."""
    client.rt.queues["ingest"].empty()  # these threads are the only workers
    todo: queue.Queue = queue.Queue()
    for event_id in event_ids:
        todo.put(event_id)
    barrier, results, errors = threading.Barrier(threads), [], []

    def work():
        barrier.wait()
        while True:
            try:
                event_id = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results.append(process_event(event_id))
            except Exception as exc:  # process_event records failures itself; this must not happen
                errors.append(exc)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    assert errors == []
    return results


def events(client, ids: list[int]) -> list[InboundEvent]:
    with client.rt.db.session() as s:
        return s.scalars(select(InboundEvent).where(InboundEvent.id.in_(ids))).all()


def assert_all_processed_first_time(client, ids: list[int]) -> None:
    rows = events(client, ids)
    bad = [(e.id, e.status, e.attempts, e.last_error) for e in rows
           if e.status != "processed" or e.attempts or e.last_error]
    assert len(rows) == len(ids) and bad == []


def mixed_payloads(c, n: int) -> tuple[list[dict], list[str]]:
    """``n`` Meta payloads of the usual kinds (customers sharing contacts on purpose)."""
    out, wamids = [], []
    customers = [f"9198765{i:05d}" for i in range(6)]
    for i in range(n):
        who = customers[i % len(customers)]
        wamid = p.new_wamid()
        kind = i % 4
        if kind == 0:
            out.append(p.text_message(*c, who, f"hello {i}", wamid=wamid, name=f"Customer {i % 6}"))
        elif kind == 1:
            out.append(p.media_message(*c, who, wamid=wamid, caption=f"photo {i}"))
        elif kind == 2:
            out.append(p.echo(*c, who, f"owner reply {i}", wamid=wamid))
        else:
            out.append(p.status(*c, wamid, "delivered", who))
        wamids.append(wamid)
    return out, wamids


def test_threads_process_dozens_of_payloads_at_once_without_a_single_failure(client, coexistence):
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    envelopes, wamids = mixed_payloads(c, 48)
    envelopes.append(p.state_sync(*c, [("add", f"+1555010{i:04d}", f"Friend {i}", "F") for i in range(10)]))
    ids = [post(client, env) for env in envelopes]
    run_concurrently(client, ids)
    assert_all_processed_first_time(client, ids)
    with client.rt.db.session() as s:
        stored = s.scalar(select(func.count()).select_from(Message).where(Message.connection_id == coexistence.id,
                                                                          Message.wamid.in_(wamids)))
        friends = s.scalar(select(func.count()).select_from(Contact).where(
            Contact.workspace_id == coexistence.workspace.id, Contact.source == "app_sync"))
    assert stored == len(wamids) and friends == 10


def test_worker_processes_drain_one_queue_together(client, coexistence):
    """``coexhub worker --burst`` processes (as ``coexhub up`` runs them) over one backlog."""
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    envelopes, wamids = mixed_payloads(c, 48)
    ids = [post(client, env) for env in envelopes]
    env = process_env(client.rt)
    workers = [subprocess.Popen([sys.executable, "-m", "hub.cli", "worker", "--burst", "--simple", "--queue", "ingest"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(3)]
    errors = []
    for worker in workers:
        try:
            _, err = worker.communicate(timeout=120)
        finally:
            worker.kill()
        errors.append(err.decode())
        assert worker.returncode == 0, err.decode()[-2000:]
    assert not [e for e in errors if "database is locked" in e or "Traceback" in e]
    assert_all_processed_first_time(client, ids)
    with client.rt.db.session() as s:
        stored = s.scalar(select(func.count()).select_from(Message).where(Message.connection_id == coexistence.id,
                                                                          Message.wamid.in_(wamids)))
    assert stored == len(wamids)


def test_history_chunks_processed_at_once_import_every_message(client, coexistence):
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    client.patch(f"/api/v1/connections/{coexistence.id}", json={"history_opt_in": True},
                 headers=coexistence.workspace.headers)
    chunks, per_chunk = 6, 30
    ids = []
    for order in range(1, chunks + 1):
        threads = {f"9198700{order:02d}{t:03d}": [(None, k % 2 == 0, f"old {order}.{t}.{k}", 1_700_000_000 + k)
                                                   for k in range(per_chunk // 3)] for t in range(3)}
        ids.append(post(client, p.history_chunk(*c, phase=order // 3, chunk_order=order,
                                                progress=100 * order // chunks, threads=threads)))
    run_concurrently(client, ids, threads=chunks)
    assert_all_processed_first_time(client, ids)
    with client.rt.db.session() as s:
        conn = s.get(Connection, coexistence.id)
        imported = s.scalar(select(func.count()).select_from(Message).where(Message.connection_id == coexistence.id,
                                                                            Message.origin == "history"))
    assert imported == chunks * per_chunk
    status = conn.history_status
    assert len(status["chunks"]) == chunks and status["messages"] == chunks * per_chunk
    assert status["progress"] == 100 and status["phase"] == 2 and status["state"] == "complete"


def test_statuses_in_parallel_never_downgrade_and_failed_stays_terminal(client, coexistence):
    """Messages the hub sent (rows exist, ``accepted``) get read, delivered and sent at once."""
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    rng = random.Random(8)
    for _round in range(4):
        plain, failing, ids = [p.new_wamid() for _ in range(12)], [p.new_wamid() for _ in range(4)], []
        with client.rt.db.session() as s:
            s.add_all(Message(workspace_id=coexistence.workspace.id, connection_id=coexistence.id, wamid=w,
                              direction="out", origin="api", type="text", body={}, status="accepted")
                      for w in plain + failing)
        for wamid in plain:
            ids += [post(client, p.status(*c, wamid, st, "919811100000")) for st in ("read", "delivered", "sent")]
        for wamid in failing:
            ids += [post(client, p.status(*c, wamid, st, "919811100000"))
                    for st in ("failed", "read", "delivered", "sent")]
        rng.shuffle(ids)
        run_concurrently(client, ids)
        assert_all_processed_first_time(client, ids)
        with client.rt.db.session() as s:
            got = dict(s.execute(select(Message.wamid, Message.status).where(
                Message.connection_id == coexistence.id, Message.wamid.in_(plain + failing))).all())
            stamped = s.scalars(select(Message).where(Message.wamid.in_(plain))).all()
        assert got == {**{w: "read" for w in plain}, **{w: "failed" for w in failing}}
        assert all(m.sent_at and m.delivered_at and m.read_at and m.pricing for m in stamped)


def test_statuses_before_their_message_in_parallel_make_one_row(client, coexistence):
    """Statuses of a message the hub has no row for yet (sent from elsewhere) race to create it."""
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    wamids, ids = [p.new_wamid() for _ in range(12)], []
    for wamid in wamids:
        ids += [post(client, p.status(*c, wamid, st, "919811100001")) for st in ("read", "delivered", "sent")]
    random.Random(9).shuffle(ids)
    run_concurrently(client, ids)
    assert_all_processed_first_time(client, ids)
    with client.rt.db.session() as s:
        got = s.execute(select(Message.wamid, Message.status).where(Message.wamid.in_(wamids))).all()
    assert sorted(got) == sorted((w, "read") for w in wamids)


def test_one_contact_messaging_in_parallel_keeps_the_latest_times(client, coexistence):
    """Read-modify-write fields of one contact and one connection survive parallel jobs."""
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    who, base, ids = "919822200000", 1_800_000_000, []
    for k in range(24):
        ids.append(post(client, p.text_message(*c, who, f"msg {k}", timestamp=base + k, name="Same Person")))
        ids.append(post(client, p.echo(*c, who, f"echo {k}", timestamp=base + k)))
    run_concurrently(client, ids)
    assert_all_processed_first_time(client, ids)
    with client.rt.db.session() as s:
        [contact] = s.scalars(select(Contact).where(Contact.workspace_id == coexistence.workspace.id,
                                                    Contact.wa_id == who)).all()
        conn = s.get(Connection, coexistence.id)
        count = s.scalar(select(func.count()).select_from(Message).where(Message.contact_id == contact.id))
    assert count == 48
    assert contact.last_inbound_at == ts(base + 23)
    assert conn.last_app_activity_at == ts(base + 23)


def test_sqlite_transactions_wait_for_the_write_lock_instead_of_failing(tmp_path):
    """The embedded default: a transaction that read before another writer committed must not
    fail with ``database is locked`` when it writes (it took the lock at BEGIN and others waited).
    pysqlite's own handling started such a transaction at the SAVEPOINT, as a reader."""
    from sqlalchemy import text

    from hub.core.db import Database

    db = Database(f"sqlite:///{tmp_path / 'locks.db'}")
    with db.session() as s:
        s.execute(text("CREATE TABLE t (x INTEGER)"))
    read, errors = threading.Event(), []

    def slow_reader_then_writer():
        try:
            with db.session() as s, s.begin_nested():  # as process_event does
                s.execute(text("SELECT count(*) FROM t")).scalar()
                read.set()
                threading.Event().wait(0.5)  # meanwhile another job wants to write
                s.execute(text("INSERT INTO t VALUES (1)"))
        except Exception as exc:
            errors.append(exc)

    def writer():
        read.wait(5)
        try:
            with db.session() as s:
                s.execute(text("INSERT INTO t VALUES (2)"))
        except Exception as exc:
            errors.append(exc)

    pool = [threading.Thread(target=slow_reader_then_writer), threading.Thread(target=writer)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(30)
    with db.autocommit.connect() as conn:
        rows = conn.execute(text("SELECT x FROM t ORDER BY x")).scalars().all()
    db.dispose()
    assert errors == [] and rows == [1, 2]


def test_app_contact_syncs_touching_the_same_people_in_any_order(client, coexistence):
    """Several contact-sync webhooks naming the same people in different orders, at once."""
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    people = [(f"+1555020{i:04d}", f"Person {i}") for i in range(8)]
    rng, ids = random.Random(10), []
    for _ in range(10):
        order = rng.sample(people, len(people))
        ids.append(post(client, p.state_sync(*c, [("add", phone, name, name.split()[0]) for phone, name in order])))
    run_concurrently(client, ids)
    assert_all_processed_first_time(client, ids)
    with client.rt.db.session() as s:
        names = s.scalars(select(Contact.full_name).where(Contact.workspace_id == coexistence.workspace.id,
                                                          Contact.source == "app_sync")).all()
    assert sorted(names) == sorted(name for _, name in people)


def test_template_status_updates_at_once_make_one_template(client, coexistence):
    ids = [post(client, p.template_status(coexistence.waba_id, event, 771100, "spring_sale", "en_US",
                                          timestamp=1_800_000_000 + i))
           for i, event in enumerate(("PENDING", "APPROVED", "PAUSED", "UNPAUSED", "APPROVED", "PENDING"))]
    run_concurrently(client, ids)
    assert_all_processed_first_time(client, ids)
    response = client.get("/api/v1/templates", headers=coexistence.workspace.headers)
    assert [t["name"] for t in response.json].count("spring_sale") == 1
