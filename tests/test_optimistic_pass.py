"""An event is processed first without savepoints; when anything fails in that pass, it is
rolled back and processed again with them (``hub.core.db.savepoint``). The outcome is the same
either way: these tests show the first pass saves the savepoints, and that a lost insert race
and a failing plugin in it end as they would with savepoints."""
import logging

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, insert, select

from hub.core.models import Contact, InboundEvent, Message, OutboundEvent
from hub.testing import payloads as p
from tests.test_concurrency import post


@pytest.fixture
def statements(client):
    """Every SQL statement the hub's engine runs while the test runs (text, upper-cased)."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement.upper())

    sa_event.listen(client.rt.db.engine, "before_cursor_execute", record)
    yield seen
    sa_event.remove(client.rt.db.engine, "before_cursor_execute", record)


def processed(client, event_id) -> InboundEvent:
    with client.rt.db.session() as s:
        row = s.get(InboundEvent, event_id)
    assert (row.status, row.attempts, row.last_error) == ("processed", 0, None)
    return row


def test_an_event_that_fails_nowhere_runs_without_a_savepoint(client, coexistence, run_jobs, statements, caplog):
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    event_id = post(client, p.text_message(*c, "919811100001", "tag me", name="New Person"))
    statements.clear()
    with caplog.at_level(logging.INFO, logger="hub.core.processing"):
        run_jobs()
    processed(client, event_id)
    assert any(s.startswith("INSERT INTO CONTACTS") for s in statements)  # a new contact, a message, a window
    assert any(s.startswith("INSERT INTO MESSAGES") for s in statements)
    assert not [s for s in statements if "SAVEPOINT" in s]
    assert "processed again with savepoints" not in caplog.text
    with client.rt.db.session() as s:
        contact = s.scalars(select(Contact).where(Contact.workspace_id == coexistence.workspace.id,
                                                  Contact.wa_id == "919811100001")).one()
    assert contact.tags == ["tagged-by-plugin"] and contact.profile_name == "New Person"


def test_a_plugin_failing_in_the_first_pass_is_isolated_in_the_second(client, coexistence, run_jobs, statements,
                                                                      caplog):
    """The test plugin raises on a ``text`` that is a string: the first pass fails, the second
    skips only that plugin run and keeps the rest, each row and outward event once."""
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    odd = p.text_message(*c, "919811100002", "placeholder")
    odd_message = odd["entry"][0]["changes"][0]["value"]["messages"][0]
    odd_message["text"] = "hello"
    fine = p.text_message(*c, "919811100003", "tag me")
    event_id = post(client, p.batch(odd, fine))
    with caplog.at_level(logging.INFO, logger="hub.core.processing"):
        run_jobs()
    row = processed(client, event_id)
    assert "processed again with savepoints" in caplog.text
    assert any("SAVEPOINT" in s for s in statements)
    assert [s["at"] for s in row.outcome["skipped"]] == ["events[0] (message.received) in plugins"]
    with client.rt.db.session() as s:
        wamids = [m.wamid for m in s.scalars(select(Message).where(Message.connection_id == coexistence.id))]
        published = s.scalar(select(func.count()).select_from(OutboundEvent).where(
            OutboundEvent.workspace_id == coexistence.workspace.id, OutboundEvent.type == "message.received"))
        tags = s.scalars(select(Contact.tags).where(Contact.workspace_id == coexistence.workspace.id,
                                                    Contact.wa_id == "919811100003")).one()
    assert sorted(wamids) == sorted([odd_message["id"], fine["entry"][0]["changes"][0]["value"]["messages"][0]["id"]])
    assert published == 2 and tags == ["tagged-by-plugin"]


def test_a_contact_inserted_by_another_job_mid_pass_is_used_not_duplicated(client, coexistence, run_jobs, caplog):
    """The race a savepoint catches: the contact is inserted by another transaction after this
    pass looked for it. The first pass fails on the unique key, the second finds the contact."""
    if client.rt.db.is_sqlite:
        pytest.skip("SQLite runs write transactions one at a time (BEGIN IMMEDIATE): this race cannot happen")
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    who = "919811100004"
    event_id = post(client, p.text_message(*c, who, "hello", name="Racer"))
    engine, raced = client.rt.db.engine, []

    def insert_theirs(conn, cursor, statement, parameters, context, executemany):
        if not raced and statement.startswith("INSERT INTO contacts"):
            raced.append(True)
            with client.rt.db.autocommit.connect() as other:  # another job's transaction, committed first
                other.execute(insert(Contact).values(workspace_id=coexistence.workspace.id, wa_id=who,
                                                     source="race", tags=[], attributes={}))

    sa_event.listen(engine, "before_cursor_execute", insert_theirs)
    try:
        with caplog.at_level(logging.INFO, logger="hub.core.processing"):
            run_jobs()
    finally:
        sa_event.remove(engine, "before_cursor_execute", insert_theirs)
    processed(client, event_id)
    assert raced and "processed again with savepoints" in caplog.text
    with client.rt.db.session() as s:
        [contact] = s.scalars(select(Contact).where(Contact.workspace_id == coexistence.workspace.id,
                                                    Contact.wa_id == who)).all()
        stored = s.scalar(select(func.count()).select_from(Message).where(Message.contact_id == contact.id))
    assert contact.source == "race" and stored == 1
