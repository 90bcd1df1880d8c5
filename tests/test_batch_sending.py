"""Batched, concurrent delivery (``hub.core.sending.dispatch``): several worker processes drain
sends over several numbers at once; every send reaches Meta exactly once and ends ``sent`` with
the wamid Meta gave it, and no number gets more than its 20 per second (the simulator's own
clock, no timing assertions). The batch reservation decides exactly as one ``reserve`` per send.
"""
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.engine import make_url

from hub.core.models import Send
from hub.core.sending import pipeline
from hub.core.sending.governor import Governor
from hub.testing import process_env, sliding_max

NUMBERS, PER_NUMBER = 3, 30


def onboard(client, workspace, simulator) -> str:
    """One more Coexistence number in ``workspace``; returns its connection id and phone number id."""
    pnid, waba = str(secrets.randbelow(10**15) + 10**14), str(secrets.randbelow(10**15) + 10**14)
    token, code = "EAAG" + secrets.token_hex(12), "code-" + secrets.token_hex(6)
    simulator.add_number(pnid, waba, token, display_phone_number="1555" + str(secrets.randbelow(10**7)).zfill(7))
    simulator.add_signup_code(code, waba, pnid, token)
    simulator.add_template(waba, "order_update", body_params=1)
    r = client.post("/api/v1/connections/onboard", json={"code": code, "waba_id": waba}, headers=workspace.headers)
    assert r.status_code == 201, r.json
    return r.json["id"], pnid


def test_workers_draining_many_numbers_at_once_send_each_once_within_every_numbers_rate(client, workspace,
                                                                                         simulator):
    numbers = [onboard(client, workspace, simulator) for _ in range(NUMBERS)]
    before = len(simulator.requests)
    ids = {}
    for i in range(PER_NUMBER):  # interleaved, as a broadcast over several numbers queues them
        for k, (conn_id, _) in enumerate(numbers):
            to = f"1415556{k}{i:03d}"
            r = client.post("/api/v1/messages", json={"to": "+" + to, "template": "order_update", "params": [to],
                                                      "connection_id": conn_id}, headers=workspace.headers)
            assert r.status_code == 202, r.json
            ids[to] = r.json["id"]
    env = process_env(client.rt)
    workers = [subprocess.Popen([sys.executable, "-m", "hub.cli", "worker", "--burst", "--simple", "--queue", "send"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(3)]
    for worker in workers:
        _, err = worker.communicate(timeout=180)
        assert worker.returncode == 0, err.decode()[-2000:]

    pnids = {pnid for _, pnid in numbers}
    mine = [r for r in simulator.requests[before:] if r["phone_number_id"] in pnids]
    assert [r for r in mine if r["status"] != 200] == []  # zero 130429, nothing refused
    assert Counter(r["body"]["to"] for r in mine) == Counter({to: 1 for to in ids})  # each exactly once
    for pnid in pnids:
        assert sliding_max([r["time"] for r in mine if r["phone_number_id"] == pnid]) <= 20
    wamids = {r["body"]["to"]: r["response"]["messages"][0]["id"] for r in mine}
    for to, send_id in ids.items():
        send = client.get(f"/api/v1/sends/{send_id}", headers=workspace.headers).json
        assert (send["status"], send["wamid"]) == ("sent", wamids[to])


def test_a_batch_reservation_decides_as_one_reserve_per_send(client):
    """25 slots asked for one 20-mps number at once: 20 granted, 1/20 s apart from now on; the
    five over the in-flight limit are refused with a short wait, as ``reserve`` would refuse
    them; slots released in one round trip free the number again."""
    prefix = f"test-gov-{secrets.token_hex(4)}"
    governor = Governor(client.rt.redis, prefix)
    number = "1" + secrets.token_hex(6)
    slots = governor.reserve_many([(number, 20, f"t{i}") for i in range(25)])
    granted = [s for s in slots if s.granted]
    assert len(granted) == 20 and all(s.granted for s in slots[:20])
    waits = [s.wait for s in granted]
    assert waits == sorted(waits) and all(b - a >= 0.0499 for a, b in zip(waits, waits[1:]))
    assert all(not s.granted and s.wait <= 0.05 for s in slots[20:])
    assert not governor.reserve(number, 20, "single").granted  # the same rule, one at a time
    governor.release_many([(number, f"t{i}") for i in range(20)])
    assert client.rt.redis.zcard(f"{prefix}:gov:{number}:inflight") == 0
    assert client.rt.redis.zcard(f"{prefix}:gov:{number}:done") == 20


def test_the_served_send_route_answers_as_the_flask_app(simulator):
    """``sim.wsgi`` (what ``sim.serve()`` runs) answers the send route before Flask: the same
    answers as ``sim.app`` for a good send, a wrong token, an unknown number and a non-JSON body."""
    import httpx

    pnid, waba, token = "1" + secrets.token_hex(7), "2" + secrets.token_hex(7), "EAAG" + secrets.token_hex(8)
    simulator.add_number(pnid, waba, token, display_phone_number="15550009999")
    simulator.add_template(waba, "order_update", body_params=1)
    good = {"messaging_product": "whatsapp", "to": "14155550101", "type": "template",
            "template": {"name": "order_update", "language": {"code": "en_US"},
                         "components": [{"type": "body", "parameters": [{"type": "text", "text": "x"}]}]}}
    cases = [(pnid, token, good), (pnid, "wrong", good), ("999", token, good), (pnid, token, None)]
    answers = []
    for app in (simulator.app, simulator.wsgi):
        with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://graph") as http:
            for number, bearer, body in cases:
                kw = {"json": body} if body is not None else {"content": b"not json"}
                r = http.post(f"/v21.0/{number}/messages", headers={"Authorization": f"Bearer {bearer}"}, **kw)
                data = r.json()
                if "messages" in data:
                    data["messages"][0]["id"] = "wamid"  # fresh ids each time
                data.get("error", {}).pop("fbtrace_id", None)
                answers.append((r.status_code, r.headers["content-type"], data))
    flask, served = answers[:len(cases)], answers[len(cases):]
    assert served == flask
    assert [a[0] for a in served] == [200, 401, 400, 400]


def test_the_live_simulator_keeps_a_senders_connection_open(simulator):
    """Sends over ``sim.serve()`` keep their connection (werkzeug closes every other route's)."""
    import httpx

    pnid, waba, token = "1" + secrets.token_hex(7), "2" + secrets.token_hex(7), "EAAG" + secrets.token_hex(8)
    simulator.add_number(pnid, waba, token, display_phone_number="15550008888")
    body = {"messaging_product": "whatsapp", "to": "14155550102", "type": "text", "text": {"body": "hi"}}
    with httpx.Client(base_url=simulator.base_url) as http:
        answers = [http.post(f"/v21.0/{pnid}/messages", json=body, headers={"Authorization": f"Bearer {token}"})
                   for _ in range(2)]
        other = http.get(f"/v21.0/{pnid}", headers={"Authorization": f"Bearer {token}"})
    assert [r.status_code for r in answers] == [400, 400]  # outside the window: 131047, as Meta answers
    assert all(r.json()["error"]["code"] == 131047 for r in answers)
    assert all(r.headers.get("connection") != "close" for r in answers)
    assert other.status_code == 200 and other.headers.get("connection") == "close"


def test_a_claim_beaten_to_its_rows_by_another_claims_the_next_ones(client, workspace, simulator):
    """Two workers claim at once (PostgreSQL, read committed): the one that waited on the other's
    row locks finds its rows taken. It claims again while sends are queued, instead of returning
    nothing — which ended its ``deliver_due`` job and left its worker idle for the rest of a burst."""
    if not make_url(client.rt.settings.database_url).drivername.startswith("postgresql"):
        pytest.skip("row locks between concurrent claims: PostgreSQL only (SQLite has one writer)")
    conn_id, _ = onboard(client, workspace, simulator)
    mine = []
    for i in range(8):
        r = client.post("/api/v1/messages", headers=workspace.headers,
                        json={"to": f"+14155557{i:03d}", "template": "order_update", "params": ["x"],
                              "connection_id": conn_id})
        assert r.status_code == 202, r.json
        mine.append(client.row_id(r.json["id"]))
    rt, got = client.rt, []
    with rt.db.engine.connect() as first, rt.db.engine.connect() as watcher:
        held = first.begin()  # the other worker's claim of the first rows, not committed yet
        taken = set(first.execute(update(Send).where(Send.id.in_(
            select(Send.id).where(Send.status == "queued").order_by(Send.id).limit(4).scalar_subquery()))
            .values(status="sending", claim_token="first").returning(Send.id)).scalars())
        second = threading.Thread(target=lambda: got.extend(pipeline.claim(rt, claim_token="second", limit=4)))
        second.start()
        deadline = time.monotonic() + 30
        while not watcher.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                      "AND wait_event_type = 'Lock'")):  # the second claim waits on those rows
            assert time.monotonic() < deadline, "the second claim never waited on the first one's rows"
            watcher.rollback()
            time.sleep(0.01)
        held.commit()
        second.join(timeout=30)
    try:
        assert got and not taken & set(got)  # the next queued sends, not an empty claim
    finally:  # leave other tests' sends as they were; this test's own are not to be sent
        with rt.db.session() as s:
            s.execute(update(Send).where(Send.id.in_(list(taken | set(got))), Send.id.not_in(mine))
                      .values(status="queued", claim_token=None))
            s.execute(update(Send).where(Send.id.in_(mine)).values(status="failed", claim_token=None))


def test_a_claim_shares_its_batch_among_the_numbers_with_queued_sends(client, workspace, simulator):
    """One number's long queue does not take the whole batch: each number with queued sends
    gets its share of the claim (the oldest first), on both databases."""
    numbers = [onboard(client, workspace, simulator)[0] for _ in range(3)]
    rt, made = client.rt, {n: [] for n in numbers}
    with rt.db.session() as s:  # any other test's queued sends are not this test's to claim
        others = list(s.scalars(select(Send.id).where(Send.status == "queued")))
        s.execute(update(Send).where(Send.id.in_(others)).values(status="scheduled"))
    try:
        for conn_id, count in zip(numbers, (30, 2, 2)):  # the busy number's sends are the oldest
            for i in range(count):
                r = client.post("/api/v1/messages", headers=workspace.headers,
                                json={"to": f"+14155560{numbers.index(conn_id)}{len(made[conn_id]):02d}",
                                      "template": "order_update", "params": ["x"], "connection_id": conn_id})
                assert r.status_code == 202, r.json
                made[conn_id].append(client.row_id(r.json["id"]))
        got = pipeline.claim(rt, claim_token="share", limit=10, per_number=20)
        by_number = {n: sorted(set(got) & set(ids)) for n, ids in made.items()}
        assert by_number == {numbers[0]: made[numbers[0]][:4], numbers[1]: made[numbers[1]],
                             numbers[2]: made[numbers[2]]}
    finally:
        with rt.db.session() as s:
            s.execute(update(Send).where(Send.id.in_([i for ids in made.values() for i in ids]))
                      .values(status="failed", claim_token=None))
            s.execute(update(Send).where(Send.id.in_(others)).values(status="queued"))
