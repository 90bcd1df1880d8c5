"""The queue page, through the app against the Graph simulator: sends by status with their
reasons, cancel and replay, and each number's rate, quality, limit and pause reasons."""
from __future__ import annotations

import datetime as dt
import json

from hub.core.models import Connection, Send, utcnow
from hub.core.sending.pipeline import MAX_ATTEMPTS
from hub.testing import payloads as p

CUSTOMER = "14155552671"


def send(client, conn, to=CUSTOMER, **body):
    return client.post("/api/v1/messages", json={"to": "+" + to, **body}, headers=conn.workspace.headers)


def post_meta(client, envelope):
    body = json.dumps(envelope).encode()
    return client.post("/webhooks/whatsapp", data=body,
                       headers={"Content-Type": "application/json", **p.sign(body, "test-app-secret")})


def row(client, public_id: str) -> Send:
    with client.rt.db.session() as s:
        return s.get(Send, client.row_id(public_id))


def make_dead(client, coexistence, simulator, run_jobs, run_scheduler) -> dict:
    """A send Meta refuses with a temporary error until the hub gives up on it."""
    simulator.set_error_for(CUSTOMER, 131016, 503)
    made = send(client, coexistence, template="order_update", params=["A-1"]).json
    run_jobs()
    with client.rt.db.session() as s:  # skip the retries in between (the pair rate would pace them in real time)
        current = s.get(Send, client.row_id(made["id"]))
        assert (current.status, current.hold_reason) == ("scheduled", "retry")
        current.attempts = MAX_ATTEMPTS - 1
        due = current.not_before
    run_scheduler(now=due + dt.timedelta(seconds=1))
    assert row(client, made["id"]).status == "dead"
    return made


def test_a_dead_send_shows_its_reason_and_replay_sends_it(client, coexistence, simulator, run_jobs, run_scheduler):
    dead = make_dead(client, coexistence, simulator, run_jobs, run_scheduler)
    agent = client.console(coexistence.workspace, role="agent")
    page = agent.get("/queue").get_data(as_text=True)  # opens on the dead tab
    assert 'aria-current="page">Dead (1)' in page
    assert dead["id"] in page and "template order_update" in page
    assert "Meta error 131016" in page and "Service unavailable" in page and "What to do" in page
    assert f'data-api="POST /api/v1/sends/{dead["id"]}/replay"' in page
    simulator.clear_error_for(CUSTOMER)
    replayed = agent.api("POST", f"/api/v1/sends/{dead['id']}/replay")
    assert replayed.status_code == 202, replayed.json
    run_jobs()
    assert row(client, dead["id"]).status == "sent"
    page = agent.get("/queue?tab=dead").get_data(as_text=True)
    assert dead["id"] not in page and "No dead sends" in page


def test_a_failed_send_says_what_to_do(client, coexistence, simulator, run_jobs):
    simulator.set_error_for(CUSTOMER, 131026)
    failed = send(client, coexistence, template="order_update", params=["A-2"]).json
    run_jobs()
    simulator.clear_error_for(CUSTOMER)
    page = client.console(coexistence.workspace, role="agent").get("/queue?tab=failed").get_data(as_text=True)
    assert failed["id"] in page and "Meta error 131026" in page and "Message undeliverable" in page
    assert "Check the number with the customer" in page


def test_cancel_a_scheduled_send(client, coexistence):
    later = send(client, coexistence, template="order_update", params=["x"], send_at="2099-01-01T00:00:00").json
    agent = client.console(coexistence.workspace, role="agent")
    page = agent.get("/queue?tab=scheduled").get_data(as_text=True)
    assert later["id"] in page and "2099-01-01 00:00" in page
    assert f'data-api="POST /api/v1/sends/{later["id"]}/cancel"' in page
    cancelled = agent.api("POST", f"/api/v1/sends/{later['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert later["id"] not in agent.get("/queue?tab=scheduled").get_data(as_text=True)
    assert agent.api("POST", f"/api/v1/sends/{later['id']}/cancel").status_code == 409


def test_an_expired_token_pauses_the_number_and_says_what_to_do(client, coexistence, simulator, run_jobs):
    simulator.set_error_for(CUSTOMER, 190, 401)
    held = send(client, coexistence, template="order_update", params=["A-3"]).json
    run_jobs()
    simulator.clear_error_for(CUSTOMER)
    admin = client.console(coexistence.workspace, role="admin")
    page = admin.get("/queue").get_data(as_text=True)
    assert "Token expired" in page and "Re-run Embedded Signup" in page
    assert f'data-api="PATCH /api/v1/connections/{coexistence.id}"' in page  # resume, for admins
    held_tab = admin.get("/queue?tab=held").get_data(as_text=True)
    assert held["id"] in held_tab and "Held: number paused" in held_tab
    agent_page = client.console(coexistence.workspace, role="agent").get("/queue").get_data(as_text=True)
    assert "Token expired" in agent_page and "PATCH /api/v1/connections" not in agent_page
    resumed = admin.api("PATCH", f"/api/v1/connections/{coexistence.id}", json={"status": "active"})
    assert resumed.status_code == 200 and resumed.json["status"] == "active"
    assert "Token expired" not in admin.get("/queue").get_data(as_text=True)


def test_partner_removed_and_app_inactivity_render_with_what_to_do(client, coexistence, run_jobs):
    post_meta(client, p.account_update(coexistence.waba_id, "PARTNER_REMOVED", reason="PRIMARY_INACTIVITY"))
    run_jobs()
    person = client.console(coexistence.workspace, role="agent")
    page = person.get("/queue").get_data(as_text=True)
    assert "Partner removed" in page and "PRIMARY_INACTIVITY" in page and "add it back" in page
    post_meta(client, p.account_update(coexistence.waba_id, "ACCOUNT_RECONNECTED"))
    run_jobs()
    with client.rt.db.session() as s:
        conn = s.get(Connection, coexistence.id)
        assert conn.status == "active"
        conn.last_app_activity_at = utcnow() - dt.timedelta(days=12)
    page = person.get("/queue").get_data(as_text=True)
    assert "Partner removed" not in page
    assert "App inactivity" in page and "for 12 days" in page and "before day 14" in page


def test_numbers_show_rate_quality_and_messaging_limit(client, coexistence, simulator, run_jobs):
    post_meta(client, p.quality_update(coexistence.waba_id, coexistence.display, "FLAGGED", "TIER_2K"))
    run_jobs()
    send(client, coexistence, template="order_update", params=["A-4"])
    run_jobs()
    page = client.console(coexistence.workspace, role="agent").get("/queue").get_data(as_text=True)
    with client.rt.db.session() as s:
        rate = s.get(Connection, coexistence.id).messages_per_second
    assert f"{rate} messages/second" in page and "in the last second" in page
    assert "FLAGGED" in page and "TIER_2K" in page
    assert "1 of the limit used (24 h) · 1999 left" in page


def test_the_queue_shows_only_this_workspace(client, coexistence):
    later = send(client, coexistence, template="order_update", params=["x"], send_at="2099-01-01T00:00:00").json
    other = client.new_workspace("Other shop")
    outsider = client.console(other, role="owner")
    page = outsider.get("/queue?tab=scheduled").get_data(as_text=True)
    assert later["id"] not in page and "Scheduled (0)" in page and coexistence.display not in page
    assert outsider.api("POST", f"/api/v1/sends/{later['id']}/cancel").status_code == 404
    assert row(client, later["id"]).status == "scheduled"


def test_signed_out_visitors_go_to_the_login_page(client):
    response = client.get("/queue")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
