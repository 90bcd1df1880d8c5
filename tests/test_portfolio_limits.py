"""Portfolio messaging limits end to end: the tier learnt from the Graph API and webhooks, unique
recipients of business-initiated sends counted per portfolio in Redis, deferral (never failure)
with a visible hold_reason, marketing's share, the broadcast ETA, and the simulator's 131048."""
import datetime as dt
import secrets
import threading
import time

import pytest
from sqlalchemy import select

from hub.core.models import Connection, Send, utcnow
from hub.core.sending import pipeline, portfolio
from hub.testing import payloads


def customer() -> str:
    return "1415" + str(200 + secrets.randbelow(800)) + str(secrets.randbelow(10**4)).zfill(4)


def template(client, conn, to, name="order_update", **extra):
    r = client.post("/api/v1/messages", json={"to": "+" + to, "template": name, "params": ["1"], **extra},
                    headers=conn.workspace.headers)
    assert r.status_code == 202, r.json
    return r.json


@pytest.fixture
def tier3(client, coexistence, simulator):
    """The connection's portfolio has a messaging limit of 3 (simulator and hub, via refresh-limits)."""
    simulator.set_portfolio_limit(coexistence.waba_id, 3)
    r = client.post(f"/api/v1/connections/{coexistence.id}/refresh-limits", headers=coexistence.workspace.headers)
    assert r.status_code == 200, r.json
    assert r.json["messaging_limit"] == "3" and r.json["portfolio_id"] == simulator.portfolio_of(coexistence.waba_id)
    yield coexistence
    simulator.set_portfolio_limit(coexistence.waba_id, None)


def refused_by_meta(simulator, pnid):
    return [r for r in simulator.requests if r["phone_number_id"] == pnid and r["status"] != 200]


def mine(client, workspace_id, **where):
    with client.rt.db.session() as s:
        query = select(Send).where(Send.workspace_id == workspace_id)
        for name, value in where.items():
            query = query.where(getattr(Send, name) == value)
        rows = s.scalars(query.order_by(Send.id)).all()
        s.expunge_all()
        return rows


def test_onboarding_reads_the_portfolio_and_its_tier(client, workspace, simulator):
    pnid, waba = str(secrets.randbelow(10**15) + 10**14), str(secrets.randbelow(10**15) + 10**14)
    token, code = "EAAG" + secrets.token_hex(12), "code-" + secrets.token_hex(6)
    simulator.add_number(pnid, waba, token)
    simulator.add_signup_code(code, waba, pnid, token)
    simulator.set_portfolio_limit(waba, 2000, portfolio_id="771" + waba[:10])
    try:
        r = client.post("/api/v1/connections/onboard", json={"code": code, "waba_id": waba}, headers=workspace.headers)
        assert r.status_code == 201, r.json
        assert r.json["messaging_limit"] == "TIER_2K" and r.json["portfolio_id"] == "771" + waba[:10]
    finally:
        simulator.set_portfolio_limit(waba, None)


def test_fourth_unique_recipient_waits_for_the_window_to_slide(client, tier3, simulator, run_jobs):
    conn, ws = tier3, tier3.workspace
    people = [customer() for _ in range(4)]
    for to in people:
        template(client, conn, to)
    started = utcnow()
    run_jobs()
    sent = {b["to"] for b in conn.sent("order_update")}
    assert sent == set(people[:3])
    [held] = mine(client, ws.id, to=people[3])
    assert held.status == "scheduled"
    assert held.hold_reason.startswith("portfolio limit 3/24h reached; next slot at ")
    assert abs((held.not_before - (started + dt.timedelta(hours=24))).total_seconds()) < 60
    assert not refused_by_meta(simulator, conn.phone_number_id)

    template(client, conn, people[0])  # already counted in the window: costs nothing
    writer = customer()  # a customer who wrote in: replies inside the window are not business-initiated
    simulator.customer_message(conn.phone_number_id, writer, "hi")
    run_jobs()
    template(client, conn, writer)
    r = client.post("/api/v1/messages", json={"to": "+" + writer, "text": "hello"}, headers=ws.headers)
    assert r.status_code == 202, r.json
    run_jobs()
    assert [b["to"] for b in conn.sent("order_update")].count(people[0]) == 2
    assert writer in {b["to"] for b in conn.sent("order_update")}
    assert mine(client, ws.id, to=people[3])[0].status == "scheduled"

    later = held.not_before + dt.timedelta(seconds=1)  # the first recipients leave the window
    with client.rt.db.session() as s:  # what the scheduler and a worker's claim do at ``later``
        row = s.get(Send, held.id)
        assert row.not_before <= later
        row.status, row.claim_token = "sending", None
    clock = simulator.clock
    simulator.clock = lambda: clock() + (later - utcnow()).total_seconds()
    try:
        assert pipeline.run(client.rt, [held.id], None, now=later) == 1
    finally:
        simulator.clock = clock
    assert mine(client, ws.id, to=people[3])[0].status == "sent"
    assert not refused_by_meta(simulator, conn.phone_number_id)


def test_marketing_uses_its_share_and_utility_the_rest(client, tier3, simulator, run_jobs):
    conn, ws = tier3, tier3.workspace
    promos = [customer() for _ in range(3)]
    for to in promos:
        r = client.post("/api/v1/messages", json={"to": "+" + to, "template": "promo", "params": ["20%"]},
                        headers=ws.headers)
        assert r.status_code == 202
    run_jobs()
    assert len(conn.sent("promo")) == 2  # 90 % of 3
    [held] = [s for s in mine(client, ws.id, category="marketing") if s.status == "scheduled"]
    assert "(marketing share 2)" in held.hold_reason
    utility = customer()
    template(client, conn, utility)
    run_jobs()
    assert [b["to"] for b in conn.sent("order_update")] == [utility]  # the slot kept for utility
    with client.rt.db.session() as s:
        row = s.get(Connection, conn.id)
        assert portfolio.cap(row, "marketing") == 2
        row.quality = {"event": "RED"}
        assert portfolio.cap(row, "marketing") == 1 and portfolio.cap(row, "utility") == 3
        s.rollback()


def test_two_workers_racing_for_the_last_slot(client):
    reach = portfolio.Reach(client.rt.redis, client.rt.settings.key_prefix)
    now = utcnow()
    for round_ in range(10):
        conn = Connection(waba_id="1", portfolio_id=f"race-{secrets.token_hex(6)}", messaging_limit=2, quality={})
        assert reach.take(conn, "first", "utility", now).granted
        barrier, results = threading.Barrier(2), []

        def take(who, barrier=barrier, results=results, conn=conn):
            barrier.wait()
            results.append(reach.take(conn, who, "utility", now))
        threads = [threading.Thread(target=take, args=(w,)) for w in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r.granted for r in results) == [False, True], round_
        assert reach.used(conn, now) == 2
        assert reach.take(conn, "first", "utility", now + dt.timedelta(hours=1)).granted  # counted: free
        refused = reach.take(conn, "c", "utility", now + dt.timedelta(hours=1))
        assert not refused.granted and refused.free_at == now.replace(microsecond=now.microsecond // 1000 * 1000) \
            + portfolio.WINDOW  # "first" moved on: the racer's slot frees first


def test_webhooks_change_the_tier(client, coexistence, simulator):
    h = coexistence.workspace.headers

    def limit():
        return client.get(f"/api/v1/connections/{coexistence.id}", headers=h).json["messaging_limit"]
    r = simulator.deliver(payloads.quality_update(coexistence.waba_id, coexistence.display, "UPGRADE", "TIER_10K",
                                                  old_limit="TIER_2K"))
    assert r.status_code == 200
    from hub.testing import drain
    drain(client.rt)
    assert limit() == "TIER_10K"
    value = {"event": "ACCOUNT_UPDATE", "max_daily_conversations_per_business": 250}
    simulator.deliver(payloads.envelope(coexistence.waba_id, "account_update", value, time_=int(time.time())))
    drain(client.rt)
    assert limit() == "TIER_250"
    value = {"max_daily_conversations_per_business": -1, "max_phone_numbers_per_business": 2}
    simulator.deliver(payloads.envelope(coexistence.waba_id, "business_capability_update", value,
                                        time_=int(time.time())))
    drain(client.rt)
    assert limit() == "TIER_UNLIMITED"


def test_simulator_control_sets_the_tier_and_notifies(client, coexistence, simulator):
    control = simulator.app.test_client()
    r = control.post("/_sim/portfolio-limit", json={"waba_id": coexistence.waba_id, "limit": 2000})
    try:
        assert r.status_code == 200 and r.json["limit"] == "TIER_2K" and r.json["webhook_statuses"] == [200]
        from hub.testing import drain
        drain(client.rt)
        conn = client.get(f"/api/v1/connections/{coexistence.id}", headers=coexistence.workspace.headers).json
        assert conn["messaging_limit"] == "TIER_2K"
        assert control.post("/_sim/portfolio-limit", json={"waba_id": "1"}).status_code == 404
    finally:
        simulator.set_portfolio_limit(coexistence.waba_id, None)


def test_simulator_refuses_beyond_the_tier_with_131048(simulator):
    import httpx
    pnid, waba, token = str(secrets.randbelow(10**15) + 10**14), str(secrets.randbelow(10**15) + 10**14), "EAAx"
    simulator.add_number(pnid, waba, token)
    simulator.add_template(waba, "hello_world", body_params=0)
    simulator.set_portfolio_limit(waba, 1)
    try:
        url = f"{simulator.base_url}/v21.0/{pnid}/messages"
        body = {"messaging_product": "whatsapp", "type": "template",
                "template": {"name": "hello_world", "language": {"code": "en_US"}}}
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.post(url, json={**body, "to": "14155550100"}, headers=auth).status_code == 200
        assert httpx.post(url, json={**body, "to": "14155550100"}, headers=auth).status_code == 200  # same user
        refused = httpx.post(url, json={**body, "to": "14155550101"}, headers=auth)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == 131048
    finally:
        simulator.set_portfolio_limit(waba, None)


def test_broadcast_larger_than_the_headroom_says_how_many_windows(client, tier3, simulator, run_jobs):
    from hub.core import contacts

    conn, h = tier3, tier3.workspace.headers
    with client.rt.db.session() as s:
        for _ in range(8):
            contacts.add_tags(contacts.upsert(s, conn.workspace.id, wa_id=customer()), ["limits"])
    body = {"template": "order_update", "params": ["1"], "audience": {"tags": ["limits"]},
            "connection_id": conn.id}
    dry = client.post("/api/v1/broadcasts?dry_run=true", json=body, headers=h)
    assert dry.status_code == 200, dry.json
    # 8 recipients, 3 free now: 5 more over 2 further windows of 3
    assert dry.json["portfolio"] == {"limit": 3, "used": 0, "headroom": 3, "windows": 2}
    assert dry.json["eta_seconds"] >= 2 * 86400
    bc = client.post("/api/v1/broadcasts", json=body, headers=h)
    assert bc.status_code == 202, bc.json
    run_jobs()
    shown = client.get(f"/api/v1/broadcasts/{bc.json['id']}", headers=h).json
    assert shown["progress"].get("sent") == 3 and shown["progress"].get("scheduled") == 5
    assert shown["portfolio"] == {"limit": 3, "used": 3, "headroom": 0, "windows": 2}
    assert 2 * 86400 <= shown["eta_seconds"] < 2 * 86400 + 60
    held = [s for s in mine(client, conn.workspace.id, broadcast_id=bc.json["id"]) if s.status == "scheduled"]
    assert all(s.hold_reason.startswith("portfolio limit 3/24h reached") for s in held)
    assert not refused_by_meta(simulator, conn.phone_number_id)


def test_simulator_cli_sets_the_portfolio_limit(runner, simulator):
    waba = str(secrets.randbelow(10**15) + 10**14)
    simulator.add_number(str(secrets.randbelow(10**15) + 10**14), waba, "EAAcli")
    url = ["--url", simulator.base_url]
    try:
        assert runner.invoke(["simulator", "portfolio-limit", waba, "lots", *url]).exit_code == 2
        on = runner.invoke(["simulator", "portfolio-limit", waba, "2000", "--quiet", *url])
        assert on.exit_code == 0 and f"portfolio {simulator.portfolio_of(waba)}: messaging limit TIER_2K" in on.output, \
            on.output
        assert simulator.portfolio_tier(waba) == "TIER_2K"
    finally:
        off = runner.invoke(["simulator", "portfolio-limit", waba, "unlimited", "--quiet", *url])
    assert off.exit_code == 0 and "TIER_UNLIMITED" in off.output


def test_without_redis_the_portfolio_check_defers_the_send(client, tier3):
    """Redis away while a business-initiated send asks for its portfolio slot: Meta has not seen
    the send, so it waits ``REDIS_DEFER`` seconds (never a crash of the batch)."""
    import redis

    sent = template(client, tier3, customer())
    now = utcnow()
    unreachable = portfolio.Reach(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5), "nowhere")
    with client.rt.db.session() as s:
        send = s.get(Send, client.row_id(sent["id"]))
        conn = s.get(Connection, send.connection_id)
        reason, not_before = pipeline._portfolio_hold(s, unreachable, {}, conn, send, now)
    assert reason == "portfolio limit unavailable (Redis)"
    assert not_before == now + dt.timedelta(seconds=pipeline.dispatch.REDIS_DEFER)
