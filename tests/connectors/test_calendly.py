"""Calendly connector through the real ingest: signed sample payloads, the simulator, the
scheduler's clock (never sleeping) and a Calendly API stand-in for the subscription."""
import copy
import datetime as dt
import json
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from connectors.calendly.when import format_when
from hub.core.actions import ScheduleSend
from hub.core.models import InboundEvent, Send, utcnow
from hub.core.scheduler import tick
from hub.testing.conformance import ConnectorConformance
from tests.connectors.standin import StandIn

FIXTURES = Path(__file__).parents[1] / "fixtures" / "calendly"
SECRETS = {"signing_key": "calendly-test-signing-key-9f2c", "personal_access_token": "eyJraWQiOi-test-pat"}
WA = "14155552671"
OLD = "4c2b7f1e-6a1d-4c55-9a3e-2f8d7b0c1a11"
NEW = "8f3e2d1c-0b9a-4f87-a6e5-d4c3b2a19081"
USER = "https://api.calendly.com/users/HFGCBQK2MWAXFEZT"
ORG = "https://api.calendly.com/organizations/EBHAAFHDCAEQTSEZ"


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def sample(fixture: str, start: dt.datetime | None = None, **changes) -> dict:
    """A fixture with ``scheduled_event.start_time`` moved to ``start`` (naive UTC) and ``payload``
    keys changed (``payload__a__b=value``)."""
    data = json.loads((FIXTURES / f"{fixture}.json").read_text())
    if start is not None:
        data["payload"]["scheduled_event"]["start_time"] = iso(start)
    for path, value in changes.items():
        node, parts = data["payload"], path.split("__")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    return data


def rows(client, model, **where):
    with client.rt.db.session() as s:
        return s.scalars(select(model).filter_by(**where).order_by(model.id)).all()


def sent(simulator, coexistence, template: str) -> list[dict]:
    return [r["body"] for r in simulator.sent(coexistence.phone_number_id)
            if r["body"].get("template", {}).get("name") == template]


def words(body: dict) -> list[str]:
    return [p["text"] for p in body["template"]["components"][0]["parameters"]]


def deliver(client, inst, payload, **sign):
    response = client.deliver("calendly", inst["id"], payload, SECRETS, **sign)
    assert response.status_code == 200, response.json
    return response


def days_pass(client, coexistence) -> None:
    """The reminders are days apart, so WhatsApp's per-user pair rate (a few messages per 6 s, kept
    on the real clock) never holds them; forget it when the test jumps the scheduler's clock."""
    client.rt.redis.delete(f"{client.rt.settings.key_prefix}:pair:{coexistence.phone_number_id}:{WA}")


def minute(moment: dt.datetime) -> dt.datetime:
    return moment.replace(second=0, microsecond=0)


@pytest.fixture
def api():
    server = StandIn()
    server.on("GET", "/users/me", {"resource": {"uri": USER, "current_organization": ORG, "name": "Host"}})
    server.on("POST", "/webhook_subscriptions", lambda r: ({"resource": {
        "uri": "https://api.calendly.com/webhook_subscriptions/AAAAAAAAAAAAAAAA", "callback_url": r["json"]["url"],
        "state": "active", "events": r["json"]["events"], "scope": r["json"]["scope"],
        "organization": r["json"]["organization"], "user": r["json"].get("user")}}, 201))
    yield server
    server.close()


@pytest.fixture
def booking(client, coexistence, simulator, api):
    waba = coexistence.waba_id
    for name in ("booking_confirmation", "booking_reminder", "booking_cancelled", "booking_no_show"):
        simulator.add_template(waba, name, body_params=3)
    assert client.post("/api/v1/templates/sync", headers=coexistence.workspace.headers).status_code == 200
    return client.install(coexistence.workspace, "calendly",
                          {**SECRETS, "default_country": "US", "api_base": api.url})


# -- signatures and dedupe -------------------------------------------------------------------
def test_bad_missing_or_stale_signatures_are_401_and_nothing_is_stored(client, booking):
    body = json.dumps(sample("invitee_created")).encode()
    url = f"/webhooks/calendly/{booking['id']}"
    responses = {
        "wrong key": client.deliver("calendly", booking["id"], body, {"signing_key": "not-it"}),
        "missing": client.post(url, data=body, headers={"Content-Type": "application/json"}),
        "stale (4 min)": client.deliver("calendly", booking["id"], body, SECRETS, timestamp=int(time.time()) - 240),
        "future (10 min)": client.deliver("calendly", booking["id"], body, SECRETS, timestamp=int(time.time()) + 600),
        "tampered": client.post(url, data=body.replace(b"Maria", b"Mario"), headers={
            "Content-Type": "application/json",
            **client.rt.plugins.connectors["calendly"].verify.sign(body, SECRETS)}),
        "no v1": client.post(url, data=body, headers={"Content-Type": "application/json",
                                                      "Calendly-Webhook-Signature": f"t={int(time.time())}"}),
    }
    for case, response in responses.items():
        assert response.status_code == 401, case
        assert response.json["error"]["code"] == "bad_signature", case
    assert rows(client, InboundEvent, scope=booking["id"]) == []
    # inside the tolerance (2 min old) is accepted
    assert deliver(client, booking, body, timestamp=int(time.time()) - 120).json["duplicate"] is False


def test_booking_confirms_once_and_reminds_24h_and_1h_before(client, booking, coexistence, simulator, run_jobs):
    start = minute(utcnow()) + dt.timedelta(days=3)
    created = sample("invitee_created", start)
    assert deliver(client, booking, created).json["duplicate"] is False
    assert deliver(client, booking, created).json["duplicate"] is True  # Calendly retried
    assert deliver(client, booking, json.dumps(created, indent=1).encode()).json["duplicate"] is True  # same event + uri
    run_jobs()
    when = format_when(start.replace(tzinfo=dt.timezone.utc), "America/Los_Angeles")
    [confirmation] = sent(simulator, coexistence, "booking_confirmation")
    assert confirmation["to"] == WA and words(confirmation) == ["Maria", "30 Minute Demo", when]
    assert when.endswith(("PST", "PDT"))
    sends = rows(client, Send, workspace_id=coexistence.workspace.id, template_name="booking_reminder")
    group = f"calendly:{booking['id']}:{OLD}"
    assert [(s.status, s.not_before, s.cancel_group) for s in sends] == [
        ("scheduled", start - dt.timedelta(minutes=1440), group),
        ("scheduled", start - dt.timedelta(minutes=60), group)]
    assert sends[0].reference["kind"] == "reminder" and sends[0].reference["minutes_before"] == 1440
    tick(client.rt, now=start - dt.timedelta(minutes=1441))
    run_jobs()
    assert sent(simulator, coexistence, "booking_reminder") == []
    tick(client.rt, now=start - dt.timedelta(minutes=1439))
    run_jobs()
    [first] = sent(simulator, coexistence, "booking_reminder")
    assert first["to"] == WA and words(first) == ["Maria", "30 Minute Demo", when]
    tick(client.rt, now=start - dt.timedelta(minutes=59))
    run_jobs()
    assert len(sent(simulator, coexistence, "booking_reminder")) == 2
    assert len(sent(simulator, coexistence, "booking_confirmation")) == 1


def test_reminders_already_past_are_skipped_with_a_reason(client, booking, coexistence, simulator, run_jobs):
    start = minute(utcnow()) + dt.timedelta(hours=3)
    deliver(client, booking, sample("invitee_created", start))
    run_jobs()
    [event] = rows(client, InboundEvent, scope=booking["id"])
    assert event.outcome["skipped"] == ["reminder 1440 min before the start: already past"]
    [reminder] = rows(client, Send, workspace_id=coexistence.workspace.id, template_name="booking_reminder")
    assert reminder.not_before == start - dt.timedelta(hours=1)
    assert len(sent(simulator, coexistence, "booking_confirmation")) == 1


def test_cancel_cancels_the_reminders_and_sends_a_notice(client, booking, coexistence, simulator, run_jobs):
    start = minute(utcnow()) + dt.timedelta(days=2)
    deliver(client, booking, sample("invitee_created", start))
    run_jobs()
    deliver(client, booking, sample("invitee_canceled", start))
    deliver(client, booking, sample("invitee_canceled", start))  # a retry
    run_jobs()
    statuses = [s.status for s in rows(client, Send, workspace_id=coexistence.workspace.id,
                                       template_name="booking_reminder")]
    assert statuses == ["cancelled", "cancelled"]
    [notice] = sent(simulator, coexistence, "booking_cancelled")
    # name null and no first_name key: "there"; the invitee's New York zone formats the time
    assert words(notice) == ["there", "30 Minute Demo",
                             format_when(start.replace(tzinfo=dt.timezone.utc), "America/New_York")]
    tick(client.rt, now=start)
    run_jobs()
    assert sent(simulator, coexistence, "booking_reminder") == []


@pytest.mark.parametrize("order", ["cancel first", "create first"])
def test_reschedule_moves_the_reminders_silently(client, booking, coexistence, simulator, run_jobs, order):
    old_start, new_start = (minute(utcnow()) + dt.timedelta(days=d) for d in (2, 4))
    deliver(client, booking, sample("invitee_created", old_start))
    run_jobs()
    cancel = sample("invitee_canceled_rescheduled", old_start)
    create = sample("invitee_created_rescheduled", new_start)  # the number is in a WhatsApp answer
    for payload in ((cancel, create) if order == "cancel first" else (create, cancel)):
        deliver(client, booking, payload)
        run_jobs()
    assert sent(simulator, coexistence, "booking_cancelled") == []
    confirmations = sent(simulator, coexistence, "booking_confirmation")
    when = format_when(new_start.replace(tzinfo=dt.timezone.utc), "America/Los_Angeles")
    assert [words(c)[2] for c in confirmations][-1] == when and len(confirmations) == 2
    reminders = rows(client, Send, workspace_id=coexistence.workspace.id, template_name="booking_reminder")
    by_group = {(s.cancel_group.rsplit(":", 1)[-1], s.status, s.not_before) for s in reminders}
    assert by_group == {(OLD, "cancelled", old_start - dt.timedelta(days=1)),
                        (OLD, "cancelled", old_start - dt.timedelta(hours=1)),
                        (NEW, "scheduled", new_start - dt.timedelta(days=1)),
                        (NEW, "scheduled", new_start - dt.timedelta(hours=1))}
    new = [s for s in reminders if s.status == "scheduled"]
    assert new[0].reference["invitee"].endswith(NEW) and new[0].to == WA
    for due in (new_start - dt.timedelta(minutes=1439), new_start - dt.timedelta(minutes=59)):
        days_pass(client, coexistence)
        tick(client.rt, now=due)
        run_jobs()
    assert [words(r)[2] for r in sent(simulator, coexistence, "booking_reminder")] == [when, when]
    events = rows(client, InboundEvent, scope=booking["id"])
    cancel_event = next(e for e in events if e.topic == "invitee.canceled")
    assert cancel_event.outcome["skipped"] == [
        "rescheduled: no cancellation notice (the new booking gets its confirmation)"]


def test_a_booking_delivered_after_its_cancel_sends_nothing(client, booking, coexistence, simulator, run_jobs):
    start = minute(utcnow()) + dt.timedelta(days=2)
    deliver(client, booking, sample("invitee_canceled", start))
    run_jobs()
    deliver(client, booking, sample("invitee_created", start))  # Calendly retried it late
    run_jobs()
    assert sent(simulator, coexistence, "booking_confirmation") == []
    assert rows(client, Send, workspace_id=coexistence.workspace.id, template_name="booking_reminder") == []
    created = next(e for e in rows(client, InboundEvent, scope=booking["id"]) if e.topic == "invitee.created")
    assert created.outcome["skipped"] == ["invitee already canceled"]


def test_no_show_follow_up_is_optional(client, booking, coexistence, simulator, run_jobs):
    no_show = sample("invitee_no_show_created")
    deliver(client, booking, no_show)
    run_jobs()
    assert rows(client, InboundEvent, scope=booking["id"])[0].outcome["skipped"] == ["no-show follow-ups are off"]
    patched = client.patch(f"/api/v1/installations/{booking['id']}", headers=coexistence.workspace.headers,
                           json={"config": {"no_show_template": "booking_no_show",
                                            "booking_url": "https://calendly.com/acme/demo"}})
    assert patched.status_code == 200, patched.json
    deliver(client, booking, no_show)  # a redelivery (same event + invitee) stays a duplicate
    deliver(client, booking, sample("invitee_no_show_created", uri="https://api.calendly.com/scheduled_events/"
                                    "9d1f6c2a/invitees/0b1c2d3e"))
    run_jobs()
    [body] = sent(simulator, coexistence, "booking_no_show")
    assert words(body) == ["Maria", "30 Minute Demo", "https://calendly.com/acme/demo"]


def test_phone_sources_and_odd_payloads_record_why_nothing_was_sent(client, booking, coexistence, simulator,
                                                                   run_jobs):
    start = minute(utcnow()) + dt.timedelta(days=2)
    qa = [{"question": "Mobile (WhatsApp)", "answer": "(415) 555-2671", "position": 0}]
    cases = {
        "national answer": sample("invitee_created", start, uri="i/1", text_reminder_number=None,
                                  questions_and_answers=qa),
        "no phone": sample("invitee_created", start, uri="i/2", text_reminder_number=None),
        "bad phone": sample("invitee_created", start, uri="i/3", text_reminder_number="+1 555"),
        "no start": sample("invitee_created", None, uri="i/4", scheduled_event=None),
        "started": sample("invitee_created", utcnow() - dt.timedelta(minutes=5), uri="i/5"),
        "garbage": sample("invitee_created", None, uri="i/6", scheduled_event__start_time="soon",
                          questions_and_answers="x", timezone=7, name=["x"]),
        "no uri": sample("invitee_created", start, uri=None),
    }
    for payload in cases.values():
        deliver(client, booking, payload)
    run_jobs()
    events = {e.body: e for e in rows(client, InboundEvent, scope=booking["id"])}
    outcomes = [events[json.dumps(p).encode()] for p in cases.values()]
    assert [e.status for e in outcomes] == ["processed"] * len(cases)
    assert [e.outcome["skipped"] for e in outcomes[1:]] == [
        ["no phone number (text_reminder_number or a phone answer)"], ["invalid phone number"],
        ["scheduled_event.start_time missing or not a time"], ["the meeting has already started"],
        ["scheduled_event.start_time missing or not a time"], ["invitee without uri"]]
    [body] = sent(simulator, coexistence, "booking_confirmation")
    assert body["to"] == WA


def test_the_same_invitee_in_two_installations_keeps_separate_reminders(client, booking, coexistence, api,
                                                                        run_jobs):
    other = client.install(coexistence.workspace, "calendly", {**SECRETS, "api_base": api.url})
    start = minute(utcnow()) + dt.timedelta(days=2)
    deliver(client, booking, sample("invitee_created", start))
    deliver(client, other, sample("invitee_created", start))
    run_jobs()
    deliver(client, other, sample("invitee_canceled", start))
    run_jobs()
    reminders = rows(client, Send, workspace_id=coexistence.workspace.id, template_name="booking_reminder")
    assert sorted((s.installation_id == booking["id"], s.status) for s in reminders) == [
        (False, "cancelled"), (False, "cancelled"), (True, "scheduled"), (True, "scheduled")]


# -- the webhook subscription ------------------------------------------------------------------
def subscribe_url(inst) -> str:
    return f"/api/v1/installations/{inst['id']}/calendly/subscribe"


def test_subscribe_through_the_api_creates_the_webhook_subscription(client, booking, coexistence, api):
    response = client.post(subscribe_url(booking), headers=coexistence.workspace.headers)
    assert response.status_code == 201, response.json
    callback = f"http://hub.test/webhooks/calendly/{booking['id']}"
    assert response.json["callback_url"] == callback
    assert response.json["subscription"] == "https://api.calendly.com/webhook_subscriptions/AAAAAAAAAAAAAAAA"
    [me] = api.seen("GET", "/users/me")
    assert me["headers"]["Authorization"] == f"Bearer {SECRETS['personal_access_token']}"
    [created] = api.seen("POST", "/webhook_subscriptions")
    assert created["json"] == {"url": callback, "events": ["invitee.created", "invitee.canceled",
                                                           "invitee_no_show.created"],
                               "organization": ORG, "scope": "user", "user": USER,
                               "signing_key": SECRETS["signing_key"]}
    org = client.post(subscribe_url(booking), headers=coexistence.workspace.headers, json={"scope": "organization"})
    assert org.status_code == 201 and "user" not in api.seen("POST", "/webhook_subscriptions")[-1]["json"]


def test_subscribe_errors_are_clear(client, booking, coexistence, api):
    h = coexistence.workspace.headers
    assert client.post(subscribe_url(booking)).status_code == 401
    stranger = client.new_workspace("someone else")
    assert client.post(subscribe_url(booking), headers=stranger.headers).status_code == 404
    assert client.post(subscribe_url(booking), headers=h, json={"scope": "galaxy"}).status_code == 422

    api.on("POST", "/webhook_subscriptions", {"title": "Already Exists",
                                              "message": "Hook with this url already exists"}, status=409)
    conflict = client.post(subscribe_url(booking), headers=h)
    assert conflict.status_code == 409 and "Hook with this url already exists" in conflict.json["error"]["message"]

    api.on("POST", "/webhook_subscriptions", {"title": "Invalid Argument", "message": "The supplied parameters are "
                                              "invalid.", "details": [{"parameter": "url",
                                                                       "message": "must be a valid URL"}]}, status=400)
    invalid = client.post(subscribe_url(booking), headers=h)
    assert invalid.status_code == 422 and invalid.json["error"]["code"] == "calendly_refused"
    assert "url must be a valid URL" in invalid.json["error"]["message"]
    assert invalid.json["error"]["details"]["calendly"]["title"] == "Invalid Argument"

    api.on("GET", "/users/me", {"title": "Unauthenticated", "message": "The access token is invalid"}, status=401)
    refused = client.post(subscribe_url(booking), headers=h)
    assert refused.status_code == 422 and refused.json["error"]["code"] == "calendly_token_refused"
    assert "The access token is invalid" in refused.json["error"]["message"]

    api.on("GET", "/users/me", {"title": "Internal Server Error"}, status=500)
    down = client.post(subscribe_url(booking), headers=h)
    assert down.status_code == 502 and "Internal Server Error" in down.json["error"]["message"]

    client.patch(f"/api/v1/installations/{booking['id']}", headers=h, json={"config": {"api_base": "http://127.0.0.1:9"}})
    unreachable = client.post(subscribe_url(booking), headers=h)
    assert unreachable.status_code == 502 and unreachable.json["error"]["code"] == "calendly_unreachable"

    bare = client.install(coexistence.workspace, "calendly", {"signing_key": SECRETS["signing_key"]})
    missing = client.post(subscribe_url(bare), headers=h)
    assert missing.status_code == 422 and missing.json["error"]["code"] == "missing_token"

    acme = client.install(coexistence.workspace, "acme", {"webhook_secret": "acme-secret", "api_token": "acme-t"})
    assert client.post(subscribe_url(acme), headers=h).status_code == 422


def test_a_local_public_url_is_refused_before_calling_calendly(api):
    from connectors.calendly import EVENTS
    from connectors.calendly.subscribe import SubscribeError, subscribe

    config = {**SECRETS, "api_base": api.url}
    for url in ("http://localhost:8000/webhooks/calendly/ins_1", "http://127.0.0.1:8000/webhooks/calendly/ins_1"):
        with pytest.raises(SubscribeError) as refused:
            subscribe(config, url, EVENTS)
        assert refused.value.status == 422 and "COEXHUB_PUBLIC_URL" in refused.value.message
    assert api.seen() == []


def test_subscribe_through_the_cli_hook(client, booking, api):
    group = click.Group("coexhub")
    client.rt.plugins.hook.coexhub_cli(cli=group)
    result = CliRunner().invoke(group, ["calendly", "subscribe", "--installation", booking["id"]])
    assert result.exit_code == 0, result.output
    assert f"→ http://hub.test/webhooks/calendly/{booking['id']}" in result.output
    assert len(api.seen("POST", "/webhook_subscriptions")) == 1
    api.on("POST", "/webhook_subscriptions", {"title": "Already Exists", "message": "Hook exists"}, status=409)
    failed = CliRunner().invoke(group, ["calendly", "subscribe", "--installation", booking["id"]])
    assert failed.exit_code == 1 and "already_subscribed" in failed.output and "Hook exists" in failed.output
    unknown = CliRunner().invoke(group, ["calendly", "subscribe", "--installation", "ins_nope"])
    assert unknown.exit_code == 1 and "no installation ins_nope" in unknown.output


# -- pure handlers ---------------------------------------------------------------------------
def test_handlers_survive_odd_payloads_and_offsets():
    from connectors.calendly import Calendly
    from hub.core.connectors import Context

    connector = Calendly()
    base = sample("invitee_created", utcnow() + dt.timedelta(days=2))["payload"]
    for offsets, expected in ((None, 2), ([], 0), ([60, 60, 0, -5, True, "x"], 1), ("bad", 0)):
        ctx = Context(workspace_id="w", installation_id="i", config={
            "reminder_offsets": offsets, "confirmation_template": "c", "reminder_template": "r"})
        actions = connector.handle_webhook("invitee.created", copy.deepcopy(base), ctx)
        scheduled = [a for a in actions if isinstance(a, ScheduleSend)]
        assert len(scheduled) == expected, offsets
        assert all(a.at.tzinfo is not None and a.group == f"calendly:i:{OLD}" for a in scheduled)
    for topic in ("invitee.created", "invitee.canceled", "invitee_no_show.created", "invitee_no_show.deleted"):
        for payload in ({}, [], "x", None, {"scheduled_event": [], "questions_and_answers": {"a": 1}, "uri": 5}):
            ctx = Context(workspace_id="w", installation_id="i", config={"no_show_template": "n"})
            connector.handle_webhook(topic, copy.deepcopy(payload), ctx)


_fixture = sample


class TestCalendlyConformance(ConnectorConformance):
    connector = "calendly"
    config = {"signing_key": "calendly-conformance-signing-key", "personal_access_token": "calendly-conformance-pat",
              "default_country": "US", "no_show_template": "booking_no_show"}
    sample = _fixture("invitee_created", utcnow() + dt.timedelta(days=7))
    samples = {"invitee.canceled": _fixture("invitee_canceled", utcnow() + dt.timedelta(days=7)),
               "invitee_no_show.created": _fixture("invitee_no_show_created")}
