"""Marketing frequency: the workspace's cap before Meta, and Meta's per-user limit (131049) end to
end through the API, the send pipeline and the Graph API simulator."""
import datetime as dt
import secrets

import pytest
from sqlalchemy import select

from hub.core.actions import SendTemplate
from hub.core.execute import Executor
from hub.core.models import Contact, Send
from hub.core.processing import enqueue_all


def customer() -> str:
    return "1415" + str(200 + secrets.randbelow(800)) + str(secrets.randbelow(10**4)).zfill(4)  # a valid exchange


def promo(client, conn, to, **extra):
    return client.post("/api/v1/messages", json={"to": "+" + to, "template": "promo", "params": ["20%"], **extra},
                       headers=conn.workspace.headers)


def settings(client, conn, **values):
    r = client.patch("/api/v1/workspace", json={"settings": values}, headers=conn.workspace.headers)
    assert r.status_code == 200, r.json
    return r.json["settings"]


def contact_of(client, conn, wa_id):
    [found] = client.get(f"/api/v1/contacts?q={wa_id}", headers=conn.workspace.headers).json
    return found


@pytest.fixture
def meta_limit(simulator):
    """Set the simulator's per-user marketing limit for one test (the simulator is shared)."""
    yield simulator.set_marketing_limit
    simulator.set_marketing_limit(None)


def test_no_cap_by_default_and_the_setting_is_validated(client, coexistence, simulator, run_jobs):
    to = customer()
    for _ in range(3):
        assert promo(client, coexistence, to).status_code == 202
    run_jobs()
    assert len([b for b in coexistence.sent("promo") if b["to"] == to]) == 3
    h = coexistence.workspace.headers
    for bad in ({"max": -1, "days": 7}, {"max": 2, "days": 0}, {"max": 2}, {"days": 7}, {"max": "x", "days": 1}):
        r = client.patch("/api/v1/workspace", json={"settings": {"marketing_cap": bad}}, headers=h)
        assert r.status_code == 422, bad
    assert client.patch("/api/v1/workspace", json={"settings": {"marketing_limit_cooldown_hours": -1}},
                        headers=h).status_code == 422


def test_marketing_cap_refuses_api_sends_at_request_time(client, coexistence, simulator, run_jobs):
    settings(client, coexistence, marketing_cap={"max": 2, "days": 7})
    to = customer()
    assert [promo(client, coexistence, to).status_code for _ in range(2)] == [202, 202]
    run_jobs()
    before = len(simulator.requests)
    over = promo(client, coexistence, to)
    assert over.status_code == 422 and over.json["error"]["code"] == "marketing_cap"
    assert "2 marketing message(s) in the last 7 days" in over.json["error"]["message"]
    utility = client.post("/api/v1/messages", json={"to": "+" + to, "template": "order_update", "params": ["1"]},
                          headers=coexistence.workspace.headers)
    assert utility.status_code == 202  # the cap is about marketing only
    assert promo(client, coexistence, customer()).status_code == 202  # and per contact
    with client.rt.db.session() as s:  # the first two were sent 8 days ago: outside the window
        for row in s.scalars(select(Send).where(Send.workspace_id == coexistence.workspace.id, Send.to == to,
                                                Send.category == "marketing")):
            row.sent_at = row.sent_at - dt.timedelta(days=8)
    assert promo(client, coexistence, to).status_code == 202
    assert len(simulator.requests) == before  # nothing reached Meta meanwhile (the jobs have not run)


def test_marketing_cap_fails_connector_sends_without_calling_meta(client, coexistence, simulator, run_jobs):
    settings(client, coexistence, marketing_cap={"max": 1, "days": 1})
    to = customer()
    with client.rt.db.session() as s:  # two in one batch: the second is over the cap
        executor = Executor(s, coexistence.workspace.id, origin="connector")
        executor.run([SendTemplate(to=to, template="promo", params=["a"]),
                      SendTemplate(to=to, template="promo", params=["b"])])
    enqueue_all(client.rt, executor.jobs)
    run_jobs()
    h = coexistence.workspace.headers
    first, second = (client.get(f"/api/v1/sends/{client.public_id('snd', i)}", headers=h).json
                     for i in executor.outcome["sends"])
    assert first["status"] == "sent"
    assert second["status"] == "failed" and second["last_error"].startswith("marketing_cap: ")
    assert [b["template"]["components"][0]["parameters"][0]["text"] for b in coexistence.sent("promo")
            if b["to"] == to] == ["a"]


def test_meta_131049_limits_the_contact_and_is_never_retried(client, coexistence, simulator, run_jobs, meta_limit):
    meta_limit(1, 24 * 3600)
    h, to = coexistence.workspace.headers, customer()
    first, second = promo(client, coexistence, to).json, None
    run_jobs()
    assert simulator.flush_statuses() >= 3
    run_jobs()
    assert contact_of(client, coexistence, to)["marketing_limited_until"] is None
    second = promo(client, coexistence, to).json
    run_jobs()
    simulator.flush_statuses()  # Meta accepts it, then a failed status carries 131049
    run_jobs()
    after = client.get(f"/api/v1/sends/{second['id']}", headers=h).json
    assert (after["status"], after["error_code"], after["attempts"]) == ("failed", 131049, 1)
    assert "healthy ecosystem engagement" in after["last_error"]
    limited = dt.datetime.fromisoformat(contact_of(client, coexistence, to)["marketing_limited_until"][:-1])
    assert dt.timedelta(hours=23) < limited - dt.datetime.utcnow() <= dt.timedelta(hours=24)
    assert client.get(f"/api/v1/sends/{first['id']}", headers=h).json["status"] == "sent"
    sent_before = len(coexistence.sent("promo"))
    again = promo(client, coexistence, to)
    assert again.status_code == 422 and again.json["error"]["code"] == "marketing_limited"
    assert "131049" in again.json["error"]["message"]
    utility = client.post("/api/v1/messages", json={"to": "+" + to, "template": "order_update", "params": ["1"]},
                          headers=h)
    assert utility.status_code == 202
    run_jobs()
    assert len(coexistence.sent("promo")) == sent_before  # no retry of the refused one
    contact = contact_of(client, coexistence, to)
    lifted = client.patch(f"/api/v1/contacts/{contact['id']}", json={"marketing_limited_until": None}, headers=h)
    assert lifted.status_code == 200 and lifted.json["marketing_limited_until"] is None
    simulator.set_marketing_limit(None)
    assert promo(client, coexistence, to).status_code == 202


def test_synchronous_131049_also_starts_the_cool_down(client, coexistence, simulator, run_jobs):
    settings(client, coexistence, marketing_limit_cooldown_hours=2)
    to = customer()
    simulator.set_error_for(to, 131049)
    try:
        s = promo(client, coexistence, to).json
        run_jobs()
    finally:
        simulator.clear_error_for(to)
    after = client.get(f"/api/v1/sends/{s['id']}", headers=coexistence.workspace.headers).json
    assert (after["status"], after["error_code"], after["attempts"]) == ("failed", 131049, 1)
    limited = dt.datetime.fromisoformat(contact_of(client, coexistence, to)["marketing_limited_until"][:-1])
    assert dt.timedelta(hours=1) < limited - dt.datetime.utcnow() <= dt.timedelta(hours=2)


def test_broadcasts_exclude_limited_and_capped_contacts_with_reasons(client, coexistence, simulator, run_jobs):
    h = coexistence.workspace.headers
    tag = "bc-" + secrets.token_hex(4)
    numbers = [customer() for _ in range(3)]
    for n in numbers:
        simulator.customer_message(coexistence.phone_number_id, n, "hi")
    run_jobs()
    ids = {n: contact_of(client, coexistence, n)["id"] for n in numbers}
    for n in numbers:
        client.patch(f"/api/v1/contacts/{ids[n]}", json={"add_tags": [tag]}, headers=h)
    settings(client, coexistence, marketing_cap={"max": 1, "days": 7})
    assert promo(client, coexistence, numbers[0]).status_code == 202  # numbers[0] reaches the cap
    run_jobs()
    with client.rt.db.session() as s:  # numbers[1]: Meta answered 131049 an hour ago
        s.get(Contact, client.row_id(ids[numbers[1]])).marketing_limited_until = dt.datetime.utcnow() + dt.timedelta(hours=23)
    r = client.post("/api/v1/broadcasts", json={"template": "promo", "params": ["x"], "audience": {"tags": [tag]}},
                    headers=h)
    assert r.status_code == 202, r.json
    bc = r.json
    assert bc["recipients"] == 1
    assert (bc["excluded"]["marketing_cap"], bc["excluded"]["marketing_limited"]) == (1, 1)
    assert sorted(bc["exclusions"], key=lambda e: e["contact_id"]) == sorted(
        [{"contact_id": ids[numbers[0]], "reason": "marketing_cap"},
         {"contact_id": ids[numbers[1]], "reason": "marketing_limited"}], key=lambda e: e["contact_id"])
    assert client.get(f"/api/v1/broadcasts/{bc['id']}", headers=h).json["exclusions"] == bc["exclusions"]
    run_jobs()
    assert [b["to"] for b in coexistence.sent("promo") if b["to"] in numbers[1:]] == [numbers[2]]


def test_simulator_limit_through_its_control_api(simulator):
    from werkzeug.test import Client

    control = Client(simulator.app)
    try:
        assert control.post("/_sim/marketing-limit", json={"max": "many"}).status_code == 400
        r = control.post("/_sim/marketing-limit", json={"max": 2, "window_hours": 12})
        assert r.status_code == 200 and r.json["marketing_limit"] == {"max": 2, "window_hours": 12.0}
        assert control.get("/_sim").json["marketing_limit"] == {"max": 2, "window_hours": 12.0}
        assert simulator.marketing_limit == {"max": 2, "window_seconds": 43200.0}
    finally:
        assert control.delete("/_sim/marketing-limit").json == {"marketing_limit": None}
    assert simulator.marketing_limit is None


def test_simulator_cli_sets_the_limit_and_lists_reads(runner, simulator):
    url = ["--url", simulator.base_url]
    try:
        on = runner.invoke(["simulator", "marketing-limit", "3", "--window-hours", "48", *url])
        assert on.exit_code == 0 and "3 per 48 h, then 131049" in on.output, on.output
        assert simulator.marketing_limit == {"max": 3, "window_seconds": 48 * 3600.0}
    finally:
        off = runner.invoke(["simulator", "marketing-limit", "--off", *url])
    assert off.exit_code == 0 and "no per-user marketing limit" in off.output
    assert simulator.marketing_limit is None
    reads = runner.invoke(["simulator", "reads", "--json", *url])
    assert reads.exit_code == 0 and "reads" in reads.output
