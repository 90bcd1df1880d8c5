"""The simulator's control API (/_sim) and CLI, live statuses, and connecting a number again."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
import time

import httpx
import pytest
from flask import Flask, request

from hub.testing.simulator import GraphSimulator

CUSTOMER = "14155550199"


@pytest.fixture
def control(simulator):
    """HTTP to the session simulator's real port (webhooks go to this test's app)."""
    with httpx.Client(base_url=simulator.base_url, timeout=30) as http:
        yield http


def onboard(client, workspace, number, code=None):
    return client.post("/api/v1/connections/onboard", headers=workspace.headers,
                       json={"code": code or number["code"], "waba_id": number["waba_id"]})


def thread(client, workspace, wa_id=CUSTOMER):
    found = client.get(f"/api/v1/contacts?q={wa_id}", headers=workspace.headers).json
    assert len(found) == 1, found
    [contact] = found
    return contact, client.get(f"/api/v1/contacts/{contact['id']}/messages", headers=workspace.headers).json


def test_a_workspace_gets_a_number_and_plays_every_coexistence_event(client, workspace, simulator, control,
                                                                    run_jobs):
    number = control.post("/_sim/numbers", json={"verified_name": "Asha's Kurtas"}).json()
    assert number["code"].startswith("sim-code-") and number["signup_codes"] == [number["code"]]
    assert "order_update (en_US, APPROVED)" in number["templates"]
    listed = {n["phone_number_id"]: n for n in control.get("/_sim").json()["numbers"]}
    assert listed[number["phone_number_id"]]["token"] == number["token"]

    r = onboard(client, workspace, number)
    assert r.status_code == 201, r.json
    assert r.json["contact_sync_request_id"] and r.json["verified_name"] == "Asha's Kurtas"
    pnid = number["phone_number_id"]
    assert number["code"] not in control.get("/_sim").json()["signup_codes"]

    played = control.post(f"/_sim/numbers/{pnid}/customer-message",
                          json={"from": "+" + CUSTOMER, "text": "Do you ship to Pune?", "name": "Asha"}).json()
    assert played["webhook_status"] == 200 and played["wamid"].startswith("wamid.")
    assert simulator.window_open(pnid, CUSTOMER)  # the played message opened the 24-hour window
    assert control.post(f"/_sim/numbers/{pnid}/owner-reply",
                        json={"to": CUSTOMER, "text": "Yes, in 2 days"}).json()["webhook_status"] == 200
    synced = control.post(f"/_sim/numbers/{pnid}/contact-sync", json={"contacts": [
        {"phone": "+" + CUSTOMER, "full_name": "Asha Rao", "first_name": "Asha"}]})
    assert synced.json()["webhook_status"] == 200
    run_jobs()
    contact, messages = thread(client, workspace)
    assert contact["full_name"] == "Asha Rao"
    assert [(m["origin"], m["body"]["text"]["body"]) for m in messages] == [
        ("customer", "Do you ship to Pune?"), ("app_echo", "Yes, in 2 days")]
    assert messages[0]["wamid"] == played["wamid"]

    reply = client.post("/api/v1/messages", headers=workspace.headers,
                        json={"to": "+" + CUSTOMER, "text": "Order placed!"})
    assert reply.status_code == 202, reply.json
    run_jobs()
    assert simulator.flush_statuses() == 3
    run_jobs()
    _, messages = thread(client, workspace)
    assert (messages[-1]["origin"], messages[-1]["status"]) == ("api", "read")


def test_a_play_says_when_no_hub_listens():
    sim = GraphSimulator(hub_url="http://127.0.0.1:9")
    base = sim.serve()
    try:
        number = httpx.post(f"{base}/_sim/numbers", json={}).json()
        played = httpx.post(f"{base}/_sim/numbers/{number['phone_number_id']}/customer-message",
                            json={"from": CUSTOMER, "text": "anyone?"})
        assert played.status_code == 200 and played.json()["webhook_status"] is None
        assert "the hub did not answer" in played.json()["webhook_error"]
    finally:
        sim.shutdown()


def test_control_api_rejects_what_it_cannot_play(control):
    assert control.post("/_sim/numbers/404404/customer-message", json={"from": "1", "text": "x"}).status_code == 404
    number = control.post("/_sim/numbers", json={}).json()
    bad = control.post(f"/_sim/numbers/{number['phone_number_id']}/customer-message", json={"from": "1"})
    assert bad.status_code == 400 and "text" in bad.json()["error"]["message"]
    assert control.post(f"/_sim/numbers/{number['phone_number_id']}/contact-sync",
                        json={"contacts": [{"name": "no phone"}]}).status_code == 400
    again = control.post("/_sim/numbers", json={"phone_number_id": number["phone_number_id"]})
    assert again.status_code == 409
    chosen = control.post(f"/_sim/numbers/{number['phone_number_id']}/codes", json={"code": "my-own-code"})
    assert chosen.status_code == 201 and chosen.json()["code"] == "my-own-code"
    assert control.post(f"/_sim/numbers/{number['phone_number_id']}/codes",
                        json={"code": "my-own-code"}).status_code == 409  # codes are single use


def test_a_used_code_is_a_clear_422_with_metas_error(client, workspace, control):
    number = control.post("/_sim/numbers", json={}).json()
    assert onboard(client, workspace, number).status_code == 201
    other = client.new_workspace("Second")
    reused = onboard(client, other, number)
    assert reused.status_code == 422, reused.json
    error = reused.json["error"]
    assert error["code"] == "invalid_signup_code" and "already used" in error["message"]
    assert (error["details"]["graph_error"]["code"], error["details"]["graph_error"]["subcode"]) == (100, 36009)
    unknown = onboard(client, other, number, code="never-issued")
    assert unknown.status_code == 422 and "Invalid verification code" in unknown.json["error"]["message"]


def test_a_disconnected_number_connects_again_to_the_same_or_another_workspace(client, workspace, control):
    number = control.post("/_sim/numbers", json={}).json()
    pnid = number["phone_number_id"]
    first = onboard(client, workspace, number).json
    later = client.post("/api/v1/messages", headers=workspace.headers, json={
        "to": "+" + CUSTOMER, "template": "hello_world", "send_at": (dt.datetime.now(dt.UTC)
                                                                    + dt.timedelta(hours=2)).isoformat()}).json
    assert later["status"] == "scheduled"
    other = client.new_workspace("Second")
    busy = onboard(client, other, number, code=control.post(f"/_sim/numbers/{pnid}/codes").json()["code"])
    assert busy.status_code == 409  # still connected to the first workspace

    assert client.delete(f"/api/v1/connections/{first['id']}", headers=workspace.headers).json["status"] == \
        "disconnected"
    same = onboard(client, workspace, number, code=control.post(f"/_sim/numbers/{pnid}/codes").json()["code"])
    assert (same.status_code, same.json["id"], same.json["status"]) == (201, first["id"], "active")
    assert client.get(f"/api/v1/sends/{later['id']}", headers=workspace.headers).json["status"] == "scheduled"

    client.delete(f"/api/v1/connections/{first['id']}", headers=workspace.headers)
    moved = onboard(client, other, number, code=control.post(f"/_sim/numbers/{pnid}/codes").json()["code"])
    assert moved.status_code == 201, moved.json
    assert moved.json["status"] == "active" and moved.json["contact_sync_request_id"]  # a new onboarding
    assert client.get(f"/api/v1/connections/{first['id']}", headers=workspace.headers).status_code == 404
    assert [c["id"] for c in client.get("/api/v1/connections", headers=other.headers).json] == [first["id"]]
    held = client.get(f"/api/v1/sends/{later['id']}", headers=workspace.headers).json
    assert held["status"] == "cancelled" and "another workspace" in held["last_error"]


def test_a_failed_delivery_arrives_as_metas_failed_status(client, workspace, simulator, control, run_jobs):
    number = control.post("/_sim/numbers", json={}).json()
    assert onboard(client, workspace, number).status_code == 201
    assert control.post("/_sim/recipients/+14155550123/failure", json={"code": 131049}).json()["failure"] == 131049
    r = client.post("/api/v1/messages", headers=workspace.headers,
                    json={"to": "+14155550123", "template": "spring_sale", "params": ["20%"]})
    assert r.status_code == 202, r.json
    run_jobs()
    assert simulator.flush_statuses() == 1
    run_jobs()
    _, [message] = thread(client, workspace, "14155550123")
    assert message["status"] == "failed" and message["error"]["code"] == 131049
    assert control.delete("/_sim/recipients/14155550123/failure").json()["failure"] is None


# --- live mode: statuses post themselves ---------------------------------------------------------

@pytest.fixture
def live_hub():
    """A stand-in hub on a real port that checks signatures; answers 500 to its first call."""
    app, received, lock = Flask("live-hub"), [], threading.Lock()

    @app.post("/webhooks/whatsapp")
    def webhook():
        raw = request.get_data()
        want = "sha256=" + hmac.new(b"live-secret", raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Hub-Signature-256", ""), want):
            return "bad signature", 401
        with lock:
            received.append(json.loads(raw))
            return ("", 500) if len(received) == 1 else ("", 200)

    sim = GraphSimulator(app_secret="live-secret")  # only its serve() helper, to host the stand-in hub
    sim.app = app
    url = sim.serve()
    yield url, received
    sim.shutdown()


def test_live_statuses_are_posted_in_order_and_retried(live_hub):
    url, received = live_hub
    sim = GraphSimulator(hub_url=url, app_secret="live-secret", live_statuses=True,
                         status_delays=(0.05, 0.3, 0.6))
    sim.add_number("111", "222", "tok")
    sim.open_window("111", CUSTOMER)
    base = sim.serve()
    try:
        r = httpx.post(f"{base}/v25.0/111/messages", headers={"Authorization": "Bearer tok"},
                       json={"messaging_product": "whatsapp", "to": CUSTOMER, "type": "text", "text": {"body": "hi"}})
        wamid = r.json()["messages"][0]["id"]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(received) < 4:
            time.sleep(0.05)
        statuses = [b["entry"][0]["changes"][0]["value"]["statuses"][0] for b in received]
        # sent, delivered, read in that order; the first delivery (sent) got a 500 and was retried
        assert [s["status"] for s in statuses][:1] == ["sent"]
        assert sorted(s["status"] for s in statuses) == ["delivered", "read", "sent", "sent"]
        assert [s["status"] for s in statuses if s["status"] != "sent"] == ["delivered", "read"]
        assert {s["id"] for s in statuses} == {wamid} and sim.pending_statuses == []
    finally:
        sim.shutdown()


# --- the CLI client ---------------------------------------------------------------------------------

def test_simulator_cli_drives_a_running_simulator(runner, simulator, client, workspace, run_jobs):
    url = ["--url", simulator.base_url]
    added = runner.invoke(["simulator", "add-number", "--json", "--name", "CLI Shop", *url])
    assert added.exit_code == 0, added.output
    number = json.loads(added.output)
    listed = runner.invoke(["simulator", "numbers", *url])
    assert f"phone_number_id={number['phone_number_id']}" in listed.output and number["code"] in listed.output
    assert onboard(client, workspace, number).status_code == 201
    pnid = number["phone_number_id"]
    wrote = runner.invoke(["simulator", "customer-message", pnid, "+" + CUSTOMER, "Hello from the CLI", *url])
    assert wrote.exit_code == 0 and "webhook delivered to the hub" in wrote.output, wrote.output
    assert runner.invoke(["simulator", "owner-reply", pnid, CUSTOMER, "Hi!", *url]).exit_code == 0
    assert runner.invoke(["simulator", "contact-sync", pnid, f"+{CUSTOMER}=Ravi Kumar", *url]).exit_code == 0
    code = runner.invoke(["simulator", "new-code", pnid, *url])
    assert code.exit_code == 0 and "sim-code-" in code.output
    failing = runner.invoke(["simulator", "fail-delivery", CUSTOMER, "--code", "131026", *url])
    assert "fail with 131026" in failing.output
    run_jobs()
    contact, messages = thread(client, workspace)
    assert contact["first_name"] == "Ravi" and [m["origin"] for m in messages] == ["customer", "app_echo"]


def test_simulator_cli_says_when_no_simulator_runs(runner):
    result = runner.invoke(["simulator", "numbers", "--url", "http://127.0.0.1:9"])
    assert result.exit_code != 0 and "no simulator answers at http://127.0.0.1:9" in result.output


def test_help_states_the_real_simulator_port(runner):
    assert "[default: 8765]" in runner.invoke(["simulator", "--help"]).output
    assert "8765" in runner.invoke(["up", "--help"]).output
