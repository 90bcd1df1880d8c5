"""What a customer message costs the database, and that the cheaper path keeps its meaning: a
new customer's contact is inserted with its ``last_inbound_at`` (no UPDATE after), the window is
one upsert (no read first), the workspace is read once per event, the message is inserted
without looking for a copy first; a window is never lowered by a message that arrives late, and
a message seen again in a new envelope is still stored and dispatched once."""
import datetime as dt
import logging
import time

from sqlalchemy import func, select

from hub.core.models import Contact, ContactWindow, Message, OutboundEvent
from hub.testing import payloads as p
from tests.test_concurrency import post
from tests.test_optimistic_pass import processed, statements  # noqa: F401  (a fixture)


def rows(client, workspace_id: str, wa_id: str) -> tuple[Contact, list[ContactWindow]]:
    with client.rt.db.session() as s:
        contact = s.scalars(select(Contact).where(Contact.workspace_id == workspace_id, Contact.wa_id == wa_id)).one()
        windows = s.scalars(select(ContactWindow).where(ContactWindow.contact_id == contact.id)).all()
    return contact, windows


def utc(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).replace(tzinfo=None)


def test_a_new_customers_first_message_writes_contact_and_window_once(client, coexistence, run_jobs, statements):
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    sent_at = int(time.time()) - 30
    event_id = post(client, p.text_message(*c, "919811100011", "hello", name="First Timer", timestamp=sent_at))
    statements.clear()
    run_jobs()
    processed(client, event_id)
    assert not [s for s in statements if s.startswith("UPDATE CONTACTS")]
    assert not [s for s in statements if s.startswith("SELECT") and "FROM CONTACT_WINDOWS" in s]
    assert len([s for s in statements if s.startswith("INSERT INTO CONTACT_WINDOWS") and "ON CONFLICT" in s]) == 1
    assert len([s for s in statements if s.startswith("SELECT") and "FROM WORKSPACES" in s]) == 1
    assert not [s for s in statements if s.startswith("SELECT") and "FROM MESSAGES" in s]
    contact, [window] = rows(client, coexistence.workspace.id, "919811100011")
    assert contact.last_inbound_at == window.last_inbound_at == utc(sent_at)
    assert (window.connection_id, contact.profile_name) == (coexistence.id, "First Timer")


def test_a_late_message_does_not_lower_the_window_and_a_newer_one_raises_it(client, coexistence, run_jobs):
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    now = int(time.time())
    post(client, p.text_message(*c, "919811100012", "newest so far", timestamp=now - 60))
    run_jobs()
    post(client, p.text_message(*c, "919811100012", "sent earlier, delivered late", timestamp=now - 600))
    run_jobs()
    contact, [window] = rows(client, coexistence.workspace.id, "919811100012")
    assert contact.last_inbound_at == window.last_inbound_at == utc(now - 60)
    post(client, p.text_message(*c, "919811100012", "newer", timestamp=now - 5))
    run_jobs()
    contact, [window] = rows(client, coexistence.workspace.id, "919811100012")
    assert contact.last_inbound_at == window.last_inbound_at == utc(now - 5)


def test_a_message_seen_again_in_a_new_envelope_is_stored_and_dispatched_once(client, coexistence, run_jobs,
                                                                              caplog):
    """The optimistic pass inserts the message without looking; the copy fails that pass, and
    the pass with savepoints finds the message stored and skips it."""
    c = (coexistence.waba_id, coexistence.phone_number_id, coexistence.display)
    first = p.text_message(*c, "919811100013", "once", wamid="wamid.SEEN-TWICE")
    post(client, first)
    run_jobs()
    again = p.batch(p.text_message(*c, "919811100013", "once", wamid="wamid.SEEN-TWICE"),
                    p.text_message(*c, "919811100013", "and a new one"))
    event_id = post(client, again)
    with caplog.at_level(logging.INFO, logger="hub.core.processing"):
        run_jobs()
    processed(client, event_id)
    assert "processed again with savepoints" in caplog.text
    with client.rt.db.session() as s:
        bodies = s.scalars(select(Message.body).where(Message.connection_id == coexistence.id)
                           .order_by(Message.id)).all()
        received = s.scalar(select(func.count()).select_from(OutboundEvent).where(
            OutboundEvent.workspace_id == coexistence.workspace.id, OutboundEvent.type == "message.received"))
    assert [b["text"]["body"] for b in bodies] == ["once", "and a new one"] and received == 2
