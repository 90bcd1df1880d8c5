"""One bad item never sinks its event: the valid items are saved, the bad ones are skipped,
recorded in the event's outcome (where and why) and logged, and the event ends ``processed``
on its first attempt (not retried until dead)."""
import json
import logging

import pytest
from sqlalchemy import select

from hub.core import ingest
from hub.core.models import Contact, InboundEvent, Message
from hub.testing import payloads as p

CUSTOMER, OTHER = "919876543210", "919812345678"


def post(client, envelope) -> int:
    body = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
    response = client.post("/webhooks/whatsapp", data=body,
                           headers={"Content-Type": "application/json", **p.sign(body, "test-app-secret")})
    assert response.status_code == 200, response.json
    return response.json["event_id"]


def event(client, event_id) -> InboundEvent:
    with client.rt.db.session() as s:
        return s.get(InboundEvent, client.row_id(event_id))


def processed(client, event_id) -> dict:
    """The event's outcome, after checking it was processed at the first attempt."""
    row = event(client, event_id)
    assert (row.status, row.attempts, row.last_error) == ("processed", 0, None)
    return row.outcome


def skipped(outcome) -> dict[str, str]:
    assert outcome["skipped_count"] == len(outcome["skipped"])
    return {s["at"]: s["reason"] for s in outcome["skipped"]}


def stored(client, *wamids) -> dict[str, Message]:
    with client.rt.db.session() as s:
        return {m.wamid: m for m in s.scalars(select(Message).where(Message.wamid.in_(wamids)))}


def messages_change(c, *msgs, contacts=None) -> dict:
    """A ``messages`` change (as an envelope) holding exactly ``msgs`` (any JSON, good or bad)."""
    env = p.text_message(*c, CUSTOMER, "placeholder")
    value = env["entry"][0]["changes"][0]["value"]
    value["messages"] = list(msgs)
    if contacts is not None:
        value["contacts"] = contacts
    return env


def good_message(c, body="a good one", wa_id=CUSTOMER, **kw) -> tuple[dict, str]:
    env = p.text_message(*c, wa_id, body, **kw)
    msg = env["entry"][0]["changes"][0]["value"]["messages"][0]
    return msg, msg["id"]


@pytest.fixture
def c(coexistence):
    return coexistence.waba_id, coexistence.phone_number_id, coexistence.display


def test_contacts_of_the_wrong_shape_next_to_a_good_change(client, c, run_jobs):
    other, other_id = good_message(c, "in the broken change", wa_id=OTHER)
    broken = messages_change(c, other, contacts=["x", 7, {"wa_id": OTHER, "profile": "not an object"}])
    good = p.text_message(*c, CUSTOMER, "next door", name="Kerry")
    event_id = post(client, p.batch(broken, good))
    run_jobs()
    outcome = processed(client, event_id)
    assert skipped(outcome) == {"entry[0].changes[0].value.contacts[0]": "not an object (str)",
                                "entry[0].changes[0].value.contacts[1]": "not an object (int)"}
    texts = {m.body["text"]["body"] for m in stored(client, other_id, good_wamid(good)).values()}
    assert texts == {"in the broken change", "next door"}


def good_wamid(env) -> str:
    return env["entry"][0]["changes"][0]["value"]["messages"][0]["id"]


def test_garbage_messages_beside_valid_ones_are_skipped_alone(client, c, run_jobs, caplog, coexistence):
    first, first_id = good_message(c, "first")
    last, last_id = good_message(c, "last")
    env = messages_change(c, "garbage", first, 42, None, ["nested"], last)
    with caplog.at_level(logging.WARNING, logger="hub.core.whatsapp.items"):
        event_id = post(client, env)
        run_jobs()
    outcome = processed(client, event_id)
    at = "entry[0].changes[0].value.messages"
    assert skipped(outcome) == {f"{at}[0]": "not an object (str)", f"{at}[2]": "not an object (int)",
                                f"{at}[3]": "not an object (NoneType)", f"{at}[4]": "not an object (list)"}
    assert set(stored(client, first_id, last_id)) == {first_id, last_id}
    assert outcome["events"] == 2
    assert f"skipped {at}[0]" in caplog.text
    listed = client.get("/api/v1/events?status=processed", headers=coexistence.workspace.headers).json
    [shown] = [e for e in listed if e["id"] == event_id]  # what a user sees through the API
    assert shown["outcome"]["skipped"][0] == {"at": f"{at}[0]", "reason": "not an object (str)"}


def test_text_as_a_string_is_kept_as_sent_and_a_plugin_failing_on_it_sinks_only_itself(client, c, run_jobs):
    """The message is stored as sent; the test plugin (tests/acme.py) expects ``text`` to be an
    object and raises on it: that one plugin run is skipped and recorded, the rest goes on."""
    odd, odd_id = good_message(c)
    odd["text"] = "hello"
    fine, fine_id = good_message(c, "tag me")  # the plugin tags the sender of this one
    event_id = post(client, messages_change(c, odd, fine))
    run_jobs()
    outcome = processed(client, event_id)
    assert skipped(outcome) == {"events[0] (message.received) in plugins":
                                "AttributeError: 'str' object has no attribute 'get'"}
    assert outcome["events"] == 2
    rows = stored(client, odd_id, fine_id)
    assert rows[odd_id].body["text"] == "hello" and rows[fine_id].body["text"]["body"] == "tag me"
    with client.rt.db.session() as s:
        assert s.get(Contact, rows[fine_id].contact_id).tags == ["tagged-by-plugin"]


def test_lone_surrogates_in_names_and_text_are_replaced_not_fatal(client, c, run_jobs):
    env = p.text_message(*c, CUSTOMER, "bad \ud800 text", name="Ana \ud800 Lima")
    wamid = good_wamid(env)
    body = json.dumps(env).encode()
    assert b"\\ud800" in body
    event_id = post(client, body)
    run_jobs()
    processed(client, event_id)
    message = stored(client, wamid)[wamid]
    assert message.body["text"]["body"] == "bad \ufffd text"
    with client.rt.db.session() as s:
        contact = s.get(Contact, message.contact_id)
    assert contact.profile_name == "Ana \ufffd Lima"


@pytest.mark.parametrize("metadata", ["a string", ["a", "list"], 12345, True])
def test_metadata_that_is_not_an_object_skips_only_its_change(client, c, run_jobs, metadata):
    good = p.text_message(*c, CUSTOMER, "good change")
    bad = p.text_message(*c, OTHER, "bad change")
    bad["entry"][0]["changes"][0]["value"]["metadata"] = metadata
    event_id = post(client, p.batch(good, bad))  # routed for listing by the first change
    run_jobs()
    outcome = processed(client, event_id)
    assert skipped(outcome) == {"entry[0].changes[1]": "value.metadata is not an object"}
    assert set(stored(client, good_wamid(good), good_wamid(bad))) == {good_wamid(good)}


@pytest.mark.parametrize("field", [{"an": "object"}, ["messages"], 7, None])
def test_a_field_that_is_not_a_string_skips_only_its_change(client, c, run_jobs, field):
    good = p.text_message(*c, CUSTOMER, "good change")
    bad = p.text_message(*c, OTHER, "bad change")
    bad["entry"][0]["changes"][0]["field"] = field
    event_id = post(client, p.batch(good, bad))
    run_jobs()
    outcome = processed(client, event_id)
    assert skipped(outcome) == {"entry[0].changes[1]": "field is not a string"}
    assert set(stored(client, good_wamid(good), good_wamid(bad))) == {good_wamid(good)}


def test_bad_items_of_every_list_are_skipped_alone(client, c, run_jobs, coexistence):
    """statuses, echoes, app contacts, history chunks, threads and messages, user preferences."""
    client.patch(f"/api/v1/connections/{coexistence.id}", json={"history_opt_in": True},
                 headers=coexistence.workspace.headers)
    sent = p.new_wamid()
    statuses = p.status(*c, sent, "delivered", CUSTOMER)
    statuses["entry"][0]["changes"][0]["value"]["statuses"][1:] = ["x", {"status": "read"}]  # no id
    echo = p.echo(*c, CUSTOMER, "owner says hi")
    echo_value = echo["entry"][0]["changes"][0]["value"]
    echo_value["message_echoes"] = [3, *echo_value["message_echoes"]]
    sync = p.state_sync(*c, [("add", "+1 555 010 9999", "Bo", "Bo")])
    sync["entry"][0]["changes"][0]["value"]["state_sync"].insert(0, "junk")
    old = p.new_wamid()
    history = p.history_chunk(*c, phase=0, chunk_order=1, progress=10,
                              threads={OTHER: [(old, False, "old message", 1_700_000_000)]})
    chunk = history["entry"][0]["changes"][0]["value"]["history"][0]
    chunk["threads"][0]["messages"] += ["junk", {"type": "text", "text": {"body": "no id"}}]
    chunk["threads"].append(9)
    history["entry"][0]["changes"][0]["value"]["history"].append("junk")
    prefs = p.user_preferences(*c, CUSTOMER, "stop")
    prefs["entry"][0]["changes"][0]["value"]["user_preferences"].insert(0, None)
    ids = [post(client, env) for env in (statuses, echo, sync, history, prefs)]
    run_jobs()
    outcomes = [skipped(processed(client, i)) for i in ids]
    v = "entry[0].changes[0].value"
    assert outcomes[0] == {f"{v}.statuses[1]": "not an object (str)",
                           f"{v}.statuses[2]": "ValueError: a status without a message id"}
    assert outcomes[1] == {f"{v}.message_echoes[0]": "not an object (int)"}
    assert outcomes[2] == {f"{v}.state_sync[0]": "not an object (str)"}
    assert outcomes[3] == {f"{v}.history[0].threads[0].messages[1]": "not an object (str)",
                           f"{v}.history[0].threads[1]": "not an object (int)",
                           f"{v}.history[1]": "not an object (str)"}
    assert outcomes[4] == {f"{v}.user_preferences[0]": "not an object (NoneType)"}
    echo_id = echo_value["message_echoes"][1]["id"]
    rows = stored(client, sent, old, echo_id)
    assert rows[sent].status == "delivered" and rows[old].origin == "history" and rows[echo_id].origin == "app_echo"
    with client.rt.db.session() as s:  # a history message without an id is kept (keyed by its hash)
        [no_id] = s.scalars(select(Message).where(Message.connection_id == coexistence.id,
                                                  Message.wamid.like("noid:%"))).all()
    assert no_id.body["text"]["body"] == "no id" and no_id.origin == "history"
    with client.rt.db.session() as s:
        bo = s.scalars(select(Contact).where(Contact.workspace_id == coexistence.workspace.id,
                                             Contact.wa_id == "15550109999")).one()
        customer = s.scalars(select(Contact).where(Contact.workspace_id == coexistence.workspace.id,
                                                   Contact.wa_id == CUSTOMER)).one()
    assert bo.full_name == "Bo" and customer.marketing_opted_out is True


def test_an_item_the_database_rejects_is_rolled_back_alone(client, c, run_jobs):
    """A value too long for its column fails on PostgreSQL (SQLite stores it): either way the
    neighbours are saved and the event is processed."""
    long_type, long_id = good_message(c)
    long_type["type"] = "t" * 300
    fine, fine_id = good_message(c, "fine")
    event_id = post(client, messages_change(c, long_type, fine))
    run_jobs()
    outcome = processed(client, event_id)
    rows = stored(client, long_id, fine_id)
    assert fine_id in rows
    if client.rt.db.is_sqlite:
        assert long_id in rows and "skipped" not in outcome
    else:
        at = "entry[0].changes[0].value.messages[0]"
        assert long_id not in rows and skipped(outcome) == {at: "database rejected it: StringDataRightTruncation"}
        assert "SELECT" not in json.dumps(outcome) and "INSERT" not in json.dumps(outcome)


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"{not json", b"[" * 100_000 + b"]" * 100_000])
def test_a_stored_body_that_is_no_envelope_is_kept_unrouted_not_retried(client, run_jobs, body):
    event_id, _ = ingest.store(client.rt, provider="whatsapp", scope="meta", dedupe_key=ingest.body_hash(body),
                               body=body, headers={})
    run_jobs()
    row = event(client, client.public_id("evt", event_id))
    assert (row.status, row.attempts, row.last_error) == ("unrouted", 0, None)
    assert row.outcome["reason"] == "the body is not a JSON object"


def test_messages_without_id_in_the_same_second_are_all_kept(client, c, run_jobs):
    """Meta ids every message, but the fallback key must not merge different senders or texts."""
    when = "1800000000"

    def noid(wa_id, body):
        msg, _ = good_message(c, body, wa_id=wa_id, timestamp=when)
        del msg["id"]
        return msg

    a, b, a2 = noid(CUSTOMER, "from A"), noid(OTHER, "from B"), noid(CUSTOMER, "A again")
    first = post(client, messages_change(c, a, b, contacts=[]))
    run_jobs()
    again = post(client, messages_change(c, a2, a, b, contacts=[]))  # a and b redelivered
    run_jobs()
    processed(client, first)
    processed(client, again)
    with client.rt.db.session() as s:
        rows = s.scalars(select(Message).where(Message.connection_id == client_connection(s, c),
                                               Message.wamid.like("noid:%"))).all()
    assert sorted(m.body["text"]["body"] for m in rows) == ["A again", "from A", "from B"]


def client_connection(session, c) -> str:
    from hub.core.models import Connection

    return session.scalars(select(Connection.id).where(Connection.phone_number_id == c[1])).one()


def test_echoes_without_id_in_the_same_second_are_all_kept(client, c, run_jobs):
    envs = [p.echo(*c, CUSTOMER, "one", timestamp=1_800_000_000), p.echo(*c, OTHER, "two", timestamp=1_800_000_000)]
    for env in envs:
        del env["entry"][0]["changes"][0]["value"]["message_echoes"][0]["id"]
    ids = [post(client, env) for env in envs]
    run_jobs()
    for i in ids:
        processed(client, i)
    with client.rt.db.session() as s:
        rows = s.scalars(select(Message).where(Message.connection_id == client_connection(s, c),
                                               Message.origin == "app_echo")).all()
    assert sorted(m.body["text"]["body"] for m in rows) == ["one", "two"]
