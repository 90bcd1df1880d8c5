"""Batched, concurrent delivery (``hub.core.sending.dispatch``): several worker processes drain
sends over several numbers at once; every send reaches Meta exactly once and ends ``sent`` with
the wamid Meta gave it, and no number gets more than its 20 per second (the simulator's own
clock, no timing assertions). The batch reservation decides exactly as one ``reserve`` per send.
"""
import secrets
import subprocess
import sys
import threading
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


def postgresql_only(client) -> None:
    if not make_url(client.rt.settings.database_url).drivername.startswith("postgresql"):
        pytest.skip("row locks between concurrent claims: PostgreSQL only (SQLite has one writer)")


def queue_sends(client, workspace, conn_id: str, count: int, prefix: str) -> list[int]:
    made = []
    for i in range(count):
        r = client.post("/api/v1/messages", headers=workspace.headers,
                        json={"to": f"+1415{prefix}{i:03d}", "template": "order_update", "params": ["x"],
                              "connection_id": conn_id})
        assert r.status_code == 202, r.json
        made.append(client.row_id(r.json["id"]))
    return made


def hold_other_sends(rt, mine: list[int]) -> list[int]:
    """Earlier tests' queued sends are not this test's to claim: scheduled until ``set_aside``."""
    with rt.db.session() as s:
        others = list(s.scalars(select(Send.id).where(Send.status == "queued", Send.id.not_in(mine))))
        s.execute(update(Send).where(Send.id.in_(others)).values(status="scheduled"))
    return others


def set_aside(rt, mine: list[int], others: list[int]) -> None:
    """This test's sends are not to be sent (failed); the others are queued again."""
    with rt.db.session() as s:
        s.execute(update(Send).where(Send.id.in_(mine)).values(status="failed", claim_token=None))
        s.execute(update(Send).where(Send.id.in_(others)).values(status="queued"))


def test_a_claim_skips_the_rows_another_claim_holds_without_waiting(client, workspace, simulator):
    """Two workers claim at once (PostgreSQL): the second takes the next queued sends at once,
    instead of waiting on the first one's row locks (the wait that let claims deadlock)."""
    postgresql_only(client)
    conn_id, _ = onboard(client, workspace, simulator)
    mine = queue_sends(client, workspace, conn_id, 8, "5557")
    rt, got = client.rt, []
    others = hold_other_sends(rt, mine)
    try:
        with rt.db.engine.connect() as first:
            held = first.begin()  # the other worker's claim of the oldest rows, not committed yet
            taken = set(first.execute(text("SELECT id FROM sends WHERE status = 'queued' ORDER BY id LIMIT 4 "
                                           "FOR UPDATE")).scalars())
            second = threading.Thread(
                target=lambda: got.extend(pipeline.claim(rt, claim_token="second", limit=4)))
            second.start()
            second.join(timeout=30)
            finished_while_held = not second.is_alive()
            held.rollback()
            second.join(timeout=30)
        assert finished_while_held, "the second claim waited on the first one's rows"
        assert taken == set(mine[:4]) and got == mine[4:]  # the next queued sends, not an empty claim
    finally:
        set_aside(rt, mine, others)


def test_claims_made_at_once_by_many_workers_take_each_send_once(client, workspace, simulator):
    """Eight threads claim small batches at the same moment, again and again, until nothing is
    queued: every send is claimed exactly once, and no claim fails (no deadlock, no lost race)."""
    postgresql_only(client)
    numbers = [onboard(client, workspace, simulator)[0] for _ in range(4)]
    mine = [i for n, conn_id in enumerate(numbers)
            for i in queue_sends(client, workspace, conn_id, 40, f"556{n}")]
    rt, start = client.rt, threading.Barrier(8)
    others = hold_other_sends(rt, mine)
    claims: list[tuple[str, list[int]]] = []
    errors: list[BaseException] = []

    def worker(token: str) -> None:
        try:
            start.wait(timeout=30)
            while ids := pipeline.claim(rt, claim_token=token, limit=6, per_number=2):
                claims.append((token, ids))
        except BaseException as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)

    try:
        threads = [threading.Thread(target=worker, args=(f"w{k}",)) for k in range(8)]
        [t.start() for t in threads]
        [t.join(timeout=120) for t in threads]
        assert not errors, errors
        claimed = Counter(i for _, ids in claims for i in ids)
        assert sorted(claimed) == sorted(mine) and set(claimed.values()) == {1}
        assert len({token for token, _ in claims}) > 1  # the claims really ran side by side
        with rt.db.session() as s:
            stored = dict(s.execute(select(Send.id, Send.claim_token).where(Send.id.in_(mine))).all())
        assert all(stored[i] == token for token, ids in claims for i in ids)
    finally:
        set_aside(rt, mine, others)


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
