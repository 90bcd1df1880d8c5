"""A Meta delivery holding several workspaces' numbers: each lists, reads and replays it, and
none reads another's customer data through any field (errors carry no SQL or payload values)."""
import contextlib
import json
import re
import secrets

import pytest
from sqlalchemy import text, update

from hub.core.models import InboundEvent
from hub.core.public_errors import public_error
from hub.testing import Connected
from hub.testing import payloads as p


def onboard(client, simulator, workspace, *, waba: str | None = None) -> Connected:
    """A Coexistence number onboarded through Embedded Signup (like the ``coexistence`` fixture)."""
    pnid, waba = str(secrets.randbelow(10**15) + 10**14), waba or str(secrets.randbelow(10**15) + 10**14)
    token, code = "EAAG" + secrets.token_hex(12), "code-" + secrets.token_hex(6)
    display = "1555" + str(secrets.randbelow(10**7)).zfill(7)
    simulator.add_number(pnid, waba, token, display_phone_number=display)
    simulator.add_signup_code(code, waba, pnid, token)
    response = client.post("/api/v1/connections/onboard", json={"code": code, "waba_id": waba},
                           headers=workspace.headers)
    assert response.status_code == 201, response.json
    return Connected(response.json, pnid, waba, display, token, workspace)


@contextlib.contextmanager
def contact_insert_fails(rt, wa_id: str):
    """A database trigger refusing one contact: a real database error in the middle of processing."""
    name = f"refuse_{secrets.token_hex(4)}"
    with rt.db.engine.begin() as conn:
        if rt.db.is_sqlite:
            conn.execute(text(f"CREATE TRIGGER {name} BEFORE INSERT ON contacts WHEN NEW.wa_id = '{wa_id}' "
                              "BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END"))
        else:
            conn.execute(text(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                              f"IF NEW.wa_id = '{wa_id}' THEN RAISE EXCEPTION 'refused by a test trigger'; END IF; "
                              "RETURN NEW; END $$"))
            conn.execute(text(f"CREATE TRIGGER {name} BEFORE INSERT ON contacts FOR EACH ROW "
                              f"EXECUTE FUNCTION {name}()"))
    try:
        yield
    finally:
        with rt.db.engine.begin() as conn:
            conn.execute(text(f"DROP TRIGGER {name}" if rt.db.is_sqlite else f"DROP TRIGGER {name} ON contacts"))
            if not rt.db.is_sqlite:
                conn.execute(text(f"DROP FUNCTION {name}()"))


@pytest.fixture
def two(client, simulator):
    a, b = client.new_workspace("A"), client.new_workspace("B")
    return onboard(client, simulator, a), onboard(client, simulator, b)


def listed(client, workspace) -> dict[int, dict]:
    response = client.get("/api/v1/events", headers=workspace.headers)
    assert response.status_code == 200, response.json
    return {e["id"]: e for e in response.json}


def test_shared_delivery_is_listed_read_and_replayed_by_each_workspace_without_the_others_data(
        client, simulator, two, run_jobs):
    a, b = two
    outsider = client.new_workspace("C")
    wa_a, wa_b = "4915100000" + str(secrets.randbelow(900) + 100), "4917600000" + str(secrets.randbelow(900) + 100)
    envelope = p.batch(p.text_message(a.waba_id, a.phone_number_id, a.display, wa_a, "hi from Anna", name="Anna Private"),
                       p.text_message(b.waba_id, b.phone_number_id, b.display, wa_b,
                                      "my card is 4111 1111 1111 1111", name="Bertha Private"))
    with contact_insert_fails(client.rt, wa_b):
        assert simulator.deliver(envelope).status_code == 200
        run_jobs(queues=("ingest",))
    # the card number spaced: no id or timestamp holds "4111 1111" (a bare "4111" can be microseconds)
    for ws, own, theirs in ((a.workspace, (wa_a, "Anna"), (wa_b, "Bertha", "4111 1111")),
                            (b.workspace, (wa_b, "Bertha"), (wa_a, "Anna"))):
        events = listed(client, ws)
        [event_id] = [i for i, e in events.items() if e["provider"] == "whatsapp"]
        detail = client.get(f"/api/v1/events/{event_id}", headers=ws.headers)
        assert detail.status_code == 200 and detail.json["shared"] is True
        seen = json.dumps(detail.json) + json.dumps(events[event_id])
        for secret in (*own, *theirs, "[parameters", "INSERT INTO", "[SQL"):
            assert secret not in seen, (ws.id, secret, seen)
        if detail.json["last_error"]:  # the exception's class and message, nothing else
            assert re.fullmatch(r"\w+Error: refused by a test trigger", detail.json["last_error"]), detail.json
    assert event_id not in listed(client, outsider)
    assert client.get(f"/api/v1/events/{event_id}", headers=outsider.headers).status_code == 404
    assert client.post(f"/api/v1/events/{event_id}/replay", headers=outsider.headers).status_code == 404

    with client.rt.db.session() as s:  # its retries ran out: a dead letter either workspace may replay
        s.execute(update(InboundEvent).where(InboundEvent.id == client.row_id(event_id)).values(status="dead"))
    replayed = client.post(f"/api/v1/events/{event_id}/replay", headers=b.workspace.headers)
    assert replayed.status_code == 202, replayed.json
    run_jobs(queues=("ingest",))
    for ws in (a.workspace, b.workspace):
        view = client.get(f"/api/v1/events/{event_id}", headers=ws.headers).json
        assert view["status"] == "processed" and view["last_error"] is None
        assert set(view["outcome"]) <= {"changes", "unrouted", "events", "sends"}
    for ws, wa_id in ((a.workspace, wa_a), (b.workspace, wa_b)):
        contacts = client.get("/api/v1/contacts", headers=ws.headers).json
        assert [c["wa_id"] for c in contacts] == [wa_id]


def test_a_workspace_alone_in_a_delivery_sees_its_whole_outcome(client, coexistence, simulator, run_jobs):
    simulator.customer_message(coexistence.phone_number_id, "14155552671", "hello")
    run_jobs(queues=("ingest",))
    [event] = listed(client, coexistence.workspace).values()
    assert event["shared"] is False and event["status"] == "processed" and "ignored_fields" in event["outcome"]


def test_error_text_has_no_sql_parameters_or_payload_values(client):
    rt = client.rt
    payload = {"entry": [{"changes": [{"value": {"contacts": [{"wa_id": "4915112345678",
                                                                "profile": {"name": "Bertha Private"}}]}}]}]}
    with pytest.raises(Exception) as caught, rt.db.engine.begin() as conn:
        conn.execute(text("INSERT INTO workspaces (id, name, settings, created_at) "
                          "VALUES (:id, :name, '{}', CURRENT_TIMESTAMP)"),
                     [{"id": "ws_dupe_" + secrets.token_hex(4), "name": "Bertha Private"}] * 2)
    message = public_error(caught.value, json.dumps(payload).encode())
    assert message.startswith(("IntegrityError: ", "UniqueViolation")), message
    assert "Bertha" not in message and "ws_dupe" not in message and "[SQL" not in message, message
    assert public_error(KeyError("4915112345678"), payload) == "KeyError: '…'"
    assert public_error(KeyError("text"), payload) == "KeyError: 'text'"  # keys are the schema, not data
    assert public_error(ValueError("bad value 'Bertha Private' for +49 151 12345678"), payload) == \
        "ValueError: bad value '…' for …"
    assert public_error(RuntimeError("handler bug")) == "RuntimeError: handler bug"


def test_errors_stored_before_the_fix_are_shown_without_their_sql(client, workspace):
    legacy = ("sqlalchemy.exc.IntegrityError: (sqlite3.IntegrityError) UNIQUE constraint failed: contacts.wa_id\n"
              "[SQL: INSERT INTO contacts (workspace_id, wa_id) VALUES (?, ?)]\n"
              "[parameters: ('ws_other', '4917612345678')]")
    with client.rt.db.session() as s:
        event = InboundEvent(provider="whatsapp", scope="meta", dedupe_key=secrets.token_hex(8), body=b"{}",
                             headers={}, workspace_id=workspace.id, status="dead", attempts=8, last_error=legacy)
        s.add(event)
    shown = client.get(f"/api/v1/events/{client.public_id('evt', event.id)}", headers=workspace.headers).json["last_error"]
    assert shown == "sqlalchemy.exc.IntegrityError: (sqlite3.IntegrityError) UNIQUE constraint failed: contacts.wa_id"
