"""A number is connected only under the WABA it belongs to, so WABA-wide events (templates,
account, quality) reach only the workspaces that legitimately hold that WABA."""
import secrets

from sqlalchemy import select

from hub.core.models import Connection, InboundEvent
from hub.testing import payloads as p
from tests.test_tenancy_events import onboard


def new_number(simulator, waba: str) -> tuple[str, str]:
    pnid, token = str(secrets.randbelow(10**15) + 10**14), "EAAG" + secrets.token_hex(12)
    simulator.add_number(pnid, waba, token, display_phone_number="1555" + str(secrets.randbelow(10**7)).zfill(7))
    return pnid, token


def templates(client, workspace) -> dict[str, str]:
    response = client.get("/api/v1/templates", headers=workspace.headers)
    assert response.status_code == 200, response.json
    return {t["name"]: t["status"] for t in response.json}


def test_a_number_under_another_workspaces_waba_is_refused_with_422(client, simulator, run_jobs):
    a, b = client.new_workspace("A"), client.new_workspace("B")
    victim = onboard(client, simulator, a)
    simulator.add_template(victim.waba_id, "vip_offer", body_params=1)
    own_waba = str(secrets.randbelow(10**15) + 10**14)
    pnid, token = new_number(simulator, own_waba)
    response = client.post("/api/v1/connections", headers=b.headers, json={
        "access_token": token, "waba_id": victim.waba_id, "phone_number_id": pnid})
    assert response.status_code == 422, response.json
    assert response.json["error"]["details"]["step"] == "ownership"
    assert "does not belong to WABA" in response.json["error"]["message"]
    assert client.get("/api/v1/connections", headers=b.headers).json == []
    assert templates(client, b) == {}

    simulator.set_template_status(victim.waba_id, "vip_offer", "PAUSED", notify=True)
    run_jobs(queues=("ingest",))
    assert templates(client, b) == {}
    assert client.get("/api/v1/events", headers=b.headers).json == []

    # a token Meta refuses for that WABA: 422 with Meta's reason, nothing connected
    refused = client.post("/api/v1/connections", headers=b.headers, json={
        "access_token": "EAAG-not-a-token", "waba_id": victim.waba_id, "phone_number_id": pnid})
    assert refused.status_code == 422 and "cannot see WABA" in refused.json["error"]["message"], refused.json
    assert client.get("/api/v1/connections", headers=b.headers).json == []

    # its own number under its own WABA connects as before (and the first number when none is named)
    ok = client.post("/api/v1/connections", headers=b.headers, json={"access_token": token, "waba_id": own_waba})
    assert ok.status_code == 201 and ok.json["phone_number_id"] == pnid, ok.json


def test_one_waba_held_by_two_workspaces_reaches_both_and_no_one_else(client, simulator, run_jobs):
    a, b, c = client.new_workspace("A"), client.new_workspace("B"), client.new_workspace("C")
    first = onboard(client, simulator, a)
    pnid, token = new_number(simulator, first.waba_id)  # a second number of the same WABA
    response = client.post("/api/v1/connections", headers=b.headers, json={
        "access_token": token, "waba_id": first.waba_id, "phone_number_id": pnid})
    assert response.status_code == 201, response.json
    simulator.add_template(first.waba_id, "shared_tpl", body_params=0)
    for ws in (a, b):
        assert client.post("/api/v1/templates/sync", headers=ws.headers).status_code == 200
    simulator.set_template_status(first.waba_id, "shared_tpl", "PAUSED", notify=True)
    run_jobs(queues=("ingest",))
    assert templates(client, a)["shared_tpl"] == templates(client, b)["shared_tpl"] == "PAUSED"
    assert templates(client, c) == {}
    [event] = [e for e in client.get("/api/v1/events", headers=a.headers).json if e["topic"] ==
               "message_template_status_update"]
    assert client.get(f"/api/v1/events/{event['id']}", headers=b.headers).json["shared"] is True
    assert client.get(f"/api/v1/events/{event['id']}", headers=c.headers).status_code == 404

    # a message for a third number of that WABA, connected nowhere, is nobody's: kept as unrouted
    stray, _ = new_number(simulator, first.waba_id)
    simulator.deliver(p.text_message(first.waba_id, stray, "15550009999", "14155552671", "to someone else"))
    run_jobs(queues=("ingest",))
    for ws in (a, b):
        assert client.get("/api/v1/contacts", headers=ws.headers).json == []
    with client.rt.db.session() as s:
        stored = s.scalars(select(InboundEvent).where(InboundEvent.topic == "messages")
                           .order_by(InboundEvent.id.desc())).first()
        assert stored.status == "unrouted" and stored.workspace_id is None
        assert s.scalars(select(Connection).where(Connection.phone_number_id == stray)).first() is None
