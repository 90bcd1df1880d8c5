"""The hub's emitters, end to end: Meta webhooks (from the Graph simulator's published-format
payloads), sends, connections and contacts publish catalogue events whose data matches their
schema, delivered to a real local receiver subscribed to ``*``."""
from __future__ import annotations

import json
import secrets

import pytest
from sqlalchemy import select

from hub.core.events import EVENT_TYPES
from hub.core.models import OutboundEvent
from hub.testing import payloads as p
from tests.receiver import Receiver


@pytest.fixture
def listening(client, coexistence):
    """A receiver subscribed to every event of the Coexistence number's workspace."""
    receiver = Receiver()
    response = client.post("/api/v1/subscriptions", headers=coexistence.workspace.headers,
                           json={"url": receiver.url, "events": ["*"]})
    assert response.status_code == 201
    yield receiver
    receiver.stop()


def received(receiver, type_: str | None = None) -> list[dict]:
    events = [json.loads(body) for body in receiver.bodies()]
    for evt in events:  # every event conforms to its published schema
        if evt["type"] in EVENT_TYPES:
            assert not EVENT_TYPES[evt["type"]].errors(evt["data"]), (evt["type"], evt["data"])
        assert evt["id"].startswith("evt_") and evt["timestamp"].endswith("Z")
    return [e for e in events if type_ is None or e["type"] == type_]


def customer() -> str:
    return "9198" + str(secrets.randbelow(10**8)).zfill(8)


def test_inbound_messages_buttons_and_new_contacts(client, coexistence, simulator, run_jobs, listening):
    wa_id = customer()
    simulator.customer_message(coexistence.phone_number_id, wa_id, "Is my order shipped?", name="Asha")
    run_jobs()
    [created] = received(listening, "contact.created")
    assert created["data"]["contact"]["wa_id"] == wa_id and created["data"]["source"] == "customer"
    [message] = received(listening, "message.received")
    assert message["data"]["connection_id"] == coexistence.id and message["data"]["origin"] == "customer"
    assert message["data"]["body"]["text"]["body"] == "Is my order shipped?"
    assert message["data"]["contact"]["name"] == "Asha"
    simulator.deliver(p.template_button_reply(coexistence.waba_id, coexistence.phone_number_id, coexistence.display,
                                              wa_id, payload="CONFIRM_COD", text="Confirm order"))
    run_jobs()
    [click] = received(listening, "button.clicked")
    assert (click["data"]["payload"], click["data"]["text"]) == ("CONFIRM_COD", "Confirm order")
    assert click["data"]["contact"]["wa_id"] == wa_id and click["data"]["context_wamid"]
    assert len(received(listening, "contact.created")) == 1  # the same person is created once


def test_opt_out_and_in_by_keyword(client, coexistence, simulator, run_jobs, listening):
    wa_id = customer()
    simulator.customer_message(coexistence.phone_number_id, wa_id, "STOP")
    run_jobs()
    [out] = received(listening, "contact.opted_out")
    assert out["data"]["scope"] == "all" and out["data"]["source"] == "keyword"
    assert out["data"]["contact"]["wa_id"] == wa_id and out["data"]["connection_id"] == coexistence.id
    simulator.customer_message(coexistence.phone_number_id, wa_id, "START")
    run_jobs()
    [back] = received(listening, "contact.opted_in")
    assert back["data"]["source"] == "keyword"
    contact_id = back["data"]["contact"]["id"]
    client.patch(f"/api/v1/contacts/{contact_id}", headers=coexistence.workspace.headers,
                 json={"marketing_opted_out": True})
    run_jobs()
    api = received(listening, "contact.opted_out")[-1]
    assert (api["data"]["scope"], api["data"]["source"]) == ("marketing", "api")


def test_echoes_and_contact_syncs(client, coexistence, simulator, run_jobs, listening):
    wa_id = customer()
    simulator.echo(coexistence.phone_number_id, wa_id, "Yes, it left today")
    simulator.state_sync(coexistence.phone_number_id, [("add", wa_id, "Asha Rao", "Asha")])
    run_jobs()
    [echo] = received(listening, "message.echoed")
    assert echo["data"]["action"] == "message" and echo["data"]["origin"] == "app_echo"
    assert echo["data"]["body"]["text"]["body"] == "Yes, it left today"
    [synced] = received(listening, "contact.synced")
    assert synced["data"]["full_name"] == "Asha Rao" and synced["data"]["contact"]["wa_id"] == wa_id


def test_statuses_failures_and_sends(client, coexistence, simulator, run_jobs, listening):
    wa_id = customer()
    simulator.fail_delivery_to(wa_id, code=131026)
    sent = client.post("/api/v1/messages", headers=coexistence.workspace.headers,
                       json={"to": "+" + wa_id, "template": "order_update", "params": ["#1042"]})
    assert sent.status_code == 202, sent.json
    run_jobs()
    simulator.flush_statuses()
    run_jobs()
    [failed] = received(listening, "message.failed")
    assert failed["data"]["status"] == "failed" and failed["data"]["error"]["code"] == 131026
    assert any(s["data"]["wamid"] == failed["data"]["wamid"] for s in received(listening, "message.status"))
    [send_failed] = received(listening, "send.failed")
    assert send_failed["data"]["send_id"] == sent.json["id"] and send_failed["data"]["error_code"] == 131026


def test_connection_paused_and_resumed(client, coexistence, run_jobs, listening):
    url = f"/api/v1/connections/{coexistence.id}"
    assert client.patch(url, headers=coexistence.workspace.headers, json={"status": "paused"}).status_code == 200
    client.patch(url, headers=coexistence.workspace.headers, json={"status": "paused"})  # no change: no event
    assert client.patch(url, headers=coexistence.workspace.headers, json={"status": "active"}).status_code == 200
    run_jobs(queues=("outbound",))
    [paused] = received(listening, "connection.paused")
    [resumed] = received(listening, "connection.resumed")
    assert paused["data"]["reason"] == "paused through the API" and resumed["data"]["status"] == "active"
    assert paused["data"]["phone_number_id"] == coexistence.phone_number_id


def test_events_are_kept_newest_first_for_samples(client, coexistence, simulator, run_jobs, listening):
    for text in ("one", "two"):
        simulator.customer_message(coexistence.phone_number_id, customer(), text)
        run_jobs()
    with client.rt.db.session() as s:
        rows = s.scalars(select(OutboundEvent).where(OutboundEvent.workspace_id == coexistence.workspace.id,
                                                     OutboundEvent.type == "message.received")
                         .order_by(OutboundEvent.created_at.desc())).all()
    assert [r.data["body"]["text"]["body"] for r in rows] == ["two", "one"]


def test_inactivity_warning_once_per_idle_spell(client, coexistence, run_jobs, listening):
    import datetime as dt

    from hub.core import scheduler
    from hub.core.models import Connection, utcnow

    with client.rt.db.session() as s:
        s.get(Connection, coexistence.id).last_app_activity_at = utcnow() - dt.timedelta(days=11)
    for minutes in (2, 4):  # checked twice: warned once
        scheduler.tick(client.rt, now=utcnow() + dt.timedelta(minutes=minutes))
    run_jobs(queues=("outbound",))
    [warning] = received(listening, "connection.inactivity_warning")
    assert warning["data"]["days_idle"] == 11 and warning["data"]["connection_id"] == coexistence.id
    assert "day 14" in warning["data"]["message"]
