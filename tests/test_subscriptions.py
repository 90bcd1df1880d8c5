"""Webhook subscriptions end to end with a real local receiver: the API, Standard Webhooks
signatures (verified with the ``standardwebhooks`` package), the retry schedule driven by the
scheduler's clock, 410, 5 days of failures, a receiver that was down, dead letters and
replays, secret rotation, and the event catalogue endpoint."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select, text
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hub.core import scheduler
from hub.core.events import EVENT_TYPES
from hub.core.models import OutboundDelivery, OutboundEvent, Subscription, utcnow
from hub.core.outbox import RETRY_SECONDS
from tests.receiver import Receiver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def watcher():
    """A second endpoint, subscribed to ``subscription.disabled``."""
    r = Receiver("/watch")
    yield r
    r.stop()


def subscribe(client, workspace, url, events=("test.event",), **extra):
    response = client.post("/api/v1/subscriptions", headers=workspace.headers,
                           json={"url": url, "events": list(events), **extra})
    assert response.status_code == 201, response.json
    return response.json


def send_test(client, workspace, sub_id):
    response = client.post(f"/api/v1/subscriptions/{sub_id}/test", headers=workspace.headers)
    assert response.status_code == 202, response.json
    return response.json


def delivery(client, delivery_id) -> OutboundDelivery:
    with client.rt.db.session() as s:
        return s.get(OutboundDelivery, delivery_id)


def sub_row(client, sub_id) -> Subscription:
    with client.rt.db.session() as s:
        return s.get(Subscription, sub_id)


def due(client, run_jobs, at: dt.datetime):
    """Let the scheduler's clock read ``at``, then run what it enqueued."""
    scheduler.tick(client.rt, now=at)
    run_jobs(queues=("outbound",))


def verify(secret: str, request: dict) -> dict:
    return Webhook(secret).verify(request["body"], request["headers"])


def test_crud_secret_shown_once_and_encrypted(client, workspace, receiver):
    sub = subscribe(client, workspace, receiver.url, ["message.received", "message.*"], description="CRM")
    assert sub["secret"].startswith("whsec_") and sub["enabled"] and sub["description"] == "CRM"
    assert sub["events"] == ["message.received", "message.*"]
    got = client.get(f"/api/v1/subscriptions/{sub['id']}", headers=workspace.headers).json
    assert "secret" not in got and got["url"] == receiver.url
    listed = client.get("/api/v1/subscriptions", headers=workspace.headers).json
    assert [s["id"] for s in listed] == [sub["id"]] and "secret" not in listed[0]
    with client.rt.db.session() as s:  # encrypted at rest
        raw = s.execute(text("select secret from subscriptions where id = :id"), {"id": sub["id"]}).scalar()
    assert "whsec_" not in raw and sub["secret"][6:] not in raw
    patched = client.patch(f"/api/v1/subscriptions/{sub['id']}", headers=workspace.headers,
                           json={"events": ["contact.created"], "enabled": False})
    assert patched.status_code == 200 and patched.json["events"] == ["contact.created"]
    assert patched.json["enabled"] is False and patched.json["disabled_reason"] == "disabled through the API"
    other = client.new_workspace()
    assert client.get(f"/api/v1/subscriptions/{sub['id']}", headers=other.headers).status_code == 404
    assert client.delete(f"/api/v1/subscriptions/{sub['id']}", headers=workspace.headers).status_code == 204
    assert client.get(f"/api/v1/subscriptions/{sub['id']}", headers=workspace.headers).status_code == 404


def test_bad_subscriptions_are_refused_clearly(client, workspace, receiver):
    def post(body):
        return client.post("/api/v1/subscriptions", headers=workspace.headers, json=body)
    unknown = post({"url": receiver.url, "events": ["message.recieved"]})
    assert unknown.status_code == 422 and "message.recieved" in json.dumps(unknown.json)
    assert post({"url": receiver.url, "events": []}).status_code == 422
    assert post({"events": ["*"]}).status_code == 422
    ftp = post({"url": "ftp://example.com/x", "events": ["*"]})
    assert ftp.status_code == 400 and "not an http(s) URL" in ftp.json["error"]["message"]
    nowhere = post({"url": "https://no-such-host.invalid/hook", "events": ["*"]})
    assert nowhere.status_code == 400 and "does not resolve" in nowhere.json["error"]["message"]


def test_test_event_is_signed_per_standard_webhooks(client, workspace, run_jobs, receiver):
    sub = subscribe(client, workspace, receiver.url, ["message.received"])  # a test goes whatever it lists
    sent = send_test(client, workspace, sub["id"])
    run_jobs(queues=("outbound",))
    [request] = receiver.got
    payload = verify(sub["secret"], request)
    assert payload["type"] == "test.event" and payload["id"] == sent["event_id"] == request["headers"]["webhook-id"]
    assert payload["data"]["subscription_id"] == sub["id"] and payload["timestamp"].endswith("Z")
    assert payload["workspace_id"] == workspace.id
    assert not EVENT_TYPES["test.event"].errors(payload["data"])
    with pytest.raises(WebhookVerificationError):
        verify(subscribe(client, workspace, receiver.url)["secret"], request)  # another secret fails
    assert delivery(client, sent["delivery_id"]).status == "delivered"


def test_retries_follow_the_schedule_then_dead_letter_then_replay(client, workspace, run_jobs, receiver):
    receiver.status = 500
    sub = subscribe(client, workspace, receiver.url)
    started = utcnow()
    sent = send_test(client, workspace, sub["id"])
    run_jobs(queues=("outbound",))  # attempt 1, at once
    for n, delay in enumerate(RETRY_SECONDS, start=1):
        row = delivery(client, sent["delivery_id"])
        assert (row.status, row.attempts, row.response_status) == ("pending", n, 500)
        wait = (row.next_attempt_at - utcnow()).total_seconds()
        assert delay - 5 <= wait <= delay, (n, wait)
        due(client, run_jobs, row.next_attempt_at - dt.timedelta(seconds=1))  # not yet
        assert delivery(client, sent["delivery_id"]).attempts == n
        due(client, run_jobs, row.next_attempt_at + dt.timedelta(seconds=1))
    row = delivery(client, sent["delivery_id"])
    assert (row.status, row.attempts) == ("dead", len(RETRY_SECONDS) + 1) and len(receiver.got) == 10
    assert row.last_error.endswith("HTTP 500")
    dead = client.get(f"/api/v1/subscriptions/{sub['id']}/deliveries?status=dead", headers=workspace.headers).json
    assert [d["id"] for d in dead] == [row.id]
    receiver.status = 200
    replay = client.post(f"/api/v1/subscriptions/{sub['id']}/replay", headers=workspace.headers,
                         json={"since": (started - dt.timedelta(seconds=1)).isoformat() + "Z"})
    assert replay.status_code == 202 and replay.json == {"replayed": 1}
    run_jobs(queues=("outbound",))
    assert delivery(client, row.id).status == "delivered" and len(receiver.got) == 11
    ids = {r["headers"]["webhook-id"] for r in receiver.got}
    assert ids == {sent["event_id"]}  # one id on every attempt and the replay: receivers dedupe on it
    assert sub_row(client, sub["id"]).failing_since is None  # a success ends the run of failures
    again = client.post(f"/api/v1/subscriptions/{sub['id']}/replay", headers=workspace.headers,
                        json={"since": started.isoformat() + "Z"})
    assert again.json == {"replayed": 0}


def test_single_dead_letter_replay(client, workspace, run_jobs, receiver):
    receiver.status = 503
    sub = subscribe(client, workspace, receiver.url)
    sent = send_test(client, workspace, sub["id"])
    with client.rt.db.session() as s:  # the last attempt
        s.get(OutboundDelivery, sent["delivery_id"]).attempts = len(RETRY_SECONDS)
    run_jobs(queues=("outbound",))
    assert delivery(client, sent["delivery_id"]).status == "dead"
    receiver.status = 204
    replay = client.post(f"/api/v1/deliveries/{sent['delivery_id']}/replay", headers=workspace.headers)
    assert replay.status_code == 202
    run_jobs(queues=("outbound",))
    assert delivery(client, sent["delivery_id"]).status == "delivered"


def test_receiver_down_then_up_is_delivered_once(client, workspace, run_jobs, receiver):
    sub = subscribe(client, workspace, receiver.url)
    receiver.stop()
    sent = send_test(client, workspace, sub["id"])
    run_jobs(queues=("outbound",))
    row = delivery(client, sent["delivery_id"])
    assert row.status == "pending" and row.response_status is None and row.last_error
    assert sub_row(client, sub["id"]).failing_since is not None
    receiver.start()
    due(client, run_jobs, row.next_attempt_at + dt.timedelta(seconds=1))
    assert delivery(client, row.id).status == "delivered"
    for later in (60, 3600, 86400):  # nothing delivers it twice
        due(client, run_jobs, utcnow() + dt.timedelta(seconds=later))
    assert len(receiver.got) == 1 and verify(sub["secret"], receiver.got[0])["id"] == sent["event_id"]


def test_410_disables_and_publishes_subscription_disabled(client, workspace, run_jobs, receiver, watcher):
    receiver.status = 410
    sub = subscribe(client, workspace, receiver.url)
    watch = subscribe(client, workspace, watcher.url, ["subscription.disabled"])
    sent = send_test(client, workspace, sub["id"])
    run_jobs(queues=("outbound",))
    assert delivery(client, sent["delivery_id"]).status == "dead" and len(receiver.got) == 1
    row = sub_row(client, sub["id"])
    assert row.enabled is False and row.disabled_reason == "410 Gone from the target"
    [notice] = watcher.got
    payload = verify(watch["secret"], notice)
    assert payload["type"] == "subscription.disabled" and payload["data"]["subscription_id"] == sub["id"]
    assert client.post(f"/api/v1/subscriptions/{sub['id']}/test", headers=workspace.headers).status_code == 409
    shown = client.get(f"/api/v1/subscriptions/{sub['id']}", headers=workspace.headers).json
    assert shown["enabled"] is False and shown["disabled_at"]
    client.patch(f"/api/v1/subscriptions/{sub['id']}", headers=workspace.headers, json={"enabled": True})
    assert sub_row(client, sub["id"]).enabled is True


def test_five_days_of_failures_disable(client, workspace, run_jobs, receiver, watcher):
    receiver.status = 500
    sub = subscribe(client, workspace, receiver.url)
    watch = subscribe(client, workspace, watcher.url, ["subscription.*"])
    send_test(client, workspace, sub["id"])
    run_jobs(queues=("outbound",))
    assert sub_row(client, sub["id"]).enabled  # one failure is not five days of them
    with client.rt.db.session() as s:  # the run of failures began five days ago
        s.get(Subscription, sub["id"]).failing_since = utcnow() - dt.timedelta(days=5, minutes=1)
    sent = send_test(client, workspace, sub["id"])
    run_jobs(queues=("outbound",))
    row = sub_row(client, sub["id"])
    assert row.enabled is False and row.disabled_reason == "every delivery failed for 5 days"
    assert verify(watch["secret"], watcher.got[0])["data"]["reason"] == "every delivery failed for 5 days"
    first = select(OutboundDelivery).where(OutboundDelivery.target == sub["id"], OutboundDelivery.status == "pending")
    with client.rt.db.session() as s:
        pending = s.scalars(first).all()
    assert sent["delivery_id"] in [p.id for p in pending]  # waiting, and refused at its next attempt
    due(client, run_jobs, utcnow() + dt.timedelta(minutes=10))
    assert delivery(client, sent["delivery_id"]).status == "dead"
    assert "disabled" in delivery(client, sent["delivery_id"]).last_error


def test_secret_rotation_signs_with_both_during_the_overlap(client, workspace, run_jobs, receiver):
    sub = subscribe(client, workspace, receiver.url)
    rotated = client.post(f"/api/v1/subscriptions/{sub['id']}/rotate-secret", headers=workspace.headers,
                          json={"overlap_seconds": 3600})
    assert rotated.status_code == 200 and rotated.json["secret"] != sub["secret"]
    assert rotated.json["previous_secret_expires_at"]
    send_test(client, workspace, sub["id"])
    run_jobs(queues=("outbound",))
    request = receiver.got[-1]
    assert len(request["headers"]["webhook-signature"].split(" ")) == 2
    verify(rotated.json["secret"], request)
    verify(sub["secret"], request)  # receivers not yet switched still verify
    final = client.post(f"/api/v1/subscriptions/{sub['id']}/rotate-secret", headers=workspace.headers,
                        json={"overlap_seconds": 0}).json
    send_test(client, workspace, sub["id"])
    run_jobs(queues=("outbound",))
    request = receiver.got[-1]
    assert len(request["headers"]["webhook-signature"].split(" ")) == 1
    verify(final["secret"], request)
    with pytest.raises(WebhookVerificationError):
        verify(rotated.json["secret"], request)
    too_long = client.post(f"/api/v1/subscriptions/{sub['id']}/rotate-secret", headers=workspace.headers,
                           json={"overlap_seconds": 30 * 86400})
    assert too_long.status_code == 422


def test_event_types_endpoint_lists_the_catalogue(client, workspace):
    response = client.get("/api/v1/event-types", headers=workspace.headers)
    assert response.status_code == 200
    names = [e["name"] for e in response.json]
    for name in ("message.received", "message.echoed", "message.status", "message.failed", "contact.created",
                 "contact.synced", "contact.opted_out", "contact.opted_in", "button.clicked", "send.failed",
                 "send.dead", "connection.paused", "connection.resumed", "connection.inactivity_warning",
                 "subscription.disabled", "test.event"):
        assert name in names
    for entry in response.json:
        assert entry["schema"]["type"] == "object" and entry["description"]
        if entry["source"] == "core":
            assert not EVENT_TYPES[entry["name"]].errors(entry["example"])
    assert client.get("/api/v1/event-types").status_code == 401


def test_publish_stores_the_event_even_without_subscribers(client, workspace):
    from hub.core.events import publish

    with client.rt.db.session() as s:
        assert publish(s, workspace.id, "test.event", {"message": "nobody listens"}) == []
    with client.rt.db.session() as s:
        [evt] = s.scalars(select(OutboundEvent).where(OutboundEvent.workspace_id == workspace.id)).all()
    assert evt.id.startswith("evt_") and evt.type == "test.event" and evt.created_at


def test_delivery_jobs_wait_for_the_outer_commit(client, workspace, run_jobs, receiver):
    """A savepoint released inside the transaction must not enqueue: the job would run before
    its row is committed, find nothing to claim and leave it to the scheduler."""
    from hub.core.events import publish

    subscribe(client, workspace, receiver.url)
    queue = client.rt.queues["outbound"]
    with client.rt.db.session() as s:
        [row] = publish(s, workspace.id, "test.event", {"message": "after the commit"})
        with s.begin_nested():
            pass
        job_id = f"{client.rt.settings.key_prefix}-outbox-{row.id}"
        assert job_id not in queue.job_ids
    assert job_id in queue.job_ids
    with pytest.raises(RuntimeError):
        with client.rt.db.session() as s:
            [gone] = publish(s, workspace.id, "test.event", {"message": "rolled back"})
            raise RuntimeError("the change fails: its event goes with it")
    assert f"{client.rt.settings.key_prefix}-outbox-{gone.id}" not in queue.job_ids
    run_jobs(queues=("outbound",))
    assert [json.loads(b)["data"]["message"] for b in receiver.bodies()] == ["after the commit"]
