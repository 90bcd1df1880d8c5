"""Generic provider ingest: verify on raw bytes, store once, enqueue, process into actions."""
import json

from sqlalchemy import select

from hub.core import outbox
from hub.core.models import InboundEvent, OutboundDelivery, Send
from hub.core.scheduler import STALE, tick
from tests import acme

ORDER = {"id": 820982911946154508, "name": "#9999", "phone": None, "checkout_token": "tok-1",
         "customer": {"phone": None}, "shipping_address": {"phone": "090909 09090", "country_code": "IN"}}


def headers(topic, webhook_id):
    return {"X-Acme-Topic": topic, "X-Acme-Webhook-Id": webhook_id}


def rows(rt, model, **where):
    with rt.db.session() as s:
        return s.scalars(select(model).filter_by(**where)).all()


def test_order_is_stored_processed_and_becomes_one_send(client, workspace, acme_installation, run_jobs,
                                                        connection):
    inst, secrets = acme_installation
    r = client.deliver("acme", inst["id"], ORDER, secrets, headers("order.created", "wh-1"))
    assert r.status_code == 200 and r.json["duplicate"] is False
    again = client.deliver("acme", inst["id"], ORDER, secrets, headers("order.created", "wh-1"))
    assert again.status_code == 200 and again.json["duplicate"] is True
    run_jobs(queues=("ingest",))
    events = rows(client.rt, InboundEvent, scope=inst["id"])
    assert [e.status for e in events] == ["processed"]
    sends = rows(client.rt, Send, workspace_id=workspace.id)
    assert len(sends) == 1
    send = sends[0]
    assert (send.to, send.template_name, send.params) == ("919090909090", "order_confirmation", ["#9999"])
    assert send.reference == {"order_id": "820982911946154508"}
    # claimed by the event's own transaction: its delivery job needs no claim of its own
    assert (send.status, send.connection_id, send.origin) == ("sending", connection.id, "connector")
    assert send.claim_token and send.attempted_at is None
    assert client.rt.queues["send"].count == 1


def test_without_a_connection_the_send_is_kept_as_failed_with_the_reason(
        client, workspace, acme_installation, run_jobs):
    inst, secrets = acme_installation
    client.deliver("acme", inst["id"], ORDER, secrets, headers("order.created", "wh-nc"))
    run_jobs(queues=("ingest",))
    [send] = rows(client.rt, Send, workspace_id=workspace.id)
    assert send.status == "failed" and "no WhatsApp connection" in send.last_error


def test_a_new_webhook_id_with_the_same_order_does_not_send_twice(client, workspace, acme_installation, run_jobs):
    inst, secrets = acme_installation
    for webhook_id in ("wh-a", "wh-b"):
        assert client.deliver("acme", inst["id"], ORDER, secrets, headers("order.created", webhook_id)).status_code == 200
    run_jobs(queues=("ingest",))
    assert len(rows(client.rt, InboundEvent, scope=inst["id"])) == 2
    assert len(rows(client.rt, Send, workspace_id=workspace.id)) == 1  # idempotency key


def test_signature_is_checked_on_the_raw_bytes(client, acme_installation):
    inst, secrets = acme_installation
    body = json.dumps(ORDER).encode()
    url = f"/webhooks/acme/{inst['id']}"
    wrong = client.post(url, data=body, headers={**headers("order.created", "x"), "X-Acme-Hmac-Sha256": "AAAA"})
    missing = client.post(url, data=body, headers=headers("order.created", "x"))
    other_key = client.deliver("acme", inst["id"], ORDER, {"webhook_secret": "not-it"}, headers("order.created", "x"))
    reformatted = client.post(url, data=json.dumps(ORDER, indent=2),
                              headers={**headers("order.created", "x"),
                                       **acme.Acme.verify.sign(body, secrets)})
    for response in (wrong, missing, other_key, reformatted):
        assert response.status_code == 401
        assert response.json["error"]["code"] == "bad_signature"
    assert rows(client.rt, InboundEvent, scope=inst["id"]) == []


def test_unknown_connector_or_installation_is_404(client, acme_installation):
    inst, secrets = acme_installation
    assert client.post(f"/webhooks/nope/{inst['id']}", data=b"{}").status_code == 404
    r = client.deliver("acme", "ins_missing", ORDER, secrets, headers("order.created", "x"))
    assert r.status_code == 404 and r.json["error"]["code"] == "unknown_installation"


def test_too_large_is_413_and_signed_malformed_is_kept_as_rejected(client, acme_installation):
    inst, secrets = acme_installation
    big = b'{"pad": "' + b"x" * (client.rt.settings.max_body_bytes + 10) + b'"}'
    r = client.deliver("acme", inst["id"], big, secrets, headers("order.created", "big"))
    assert r.status_code == 413 and r.json["error"]["code"] == "payload_too_large"
    assert rows(client.rt, InboundEvent, scope=inst["id"]) == []
    r = client.deliver("acme", inst["id"], b"{not json", secrets, headers("order.created", "bad"))
    assert r.status_code == 200 and "cannot be decoded" in r.json["rejected"]  # signed: kept, visible
    assert [e.status for e in rows(client.rt, InboundEvent, scope=inst["id"])] == ["rejected"]


def test_cart_update_reschedules_and_the_order_cancels(client, workspace, acme_installation, run_jobs,
                                                      connection):
    inst, secrets = acme_installation
    cart = {"token": "tok-9", "phone": "+91 90909 09090", "total_price": "10.00", "completed_at": None}
    client.deliver("acme", inst["id"], cart, secrets, headers("cart.updated", "c1"))
    client.deliver("acme", inst["id"], {**cart, "total_price": "12.50"}, secrets, headers("cart.updated", "c2"))
    run_jobs(queues=("ingest",))
    sends = rows(client.rt, Send, workspace_id=workspace.id)
    assert [(s.status, s.params, s.cancel_key) for s in sends] == [("scheduled", ["12.50"], "cart:tok-9")]
    client.deliver("acme", inst["id"], {**ORDER, "id": 5, "checkout_token": "tok-9"}, secrets,
                   headers("order.created", "o5"))
    run_jobs(queues=("ingest",))
    statuses = {s.template_name: s.status for s in rows(client.rt, Send, workspace_id=workspace.id)}
    assert statuses["cart_reminder"] == "cancelled"


def test_missing_phone_is_recorded_not_sent(client, workspace, acme_installation, run_jobs):
    inst, secrets = acme_installation
    order = {"id": 7, "phone": None, "customer": None, "shipping_address": []}
    client.deliver("acme", inst["id"], order, secrets, headers("order.created", "np"))
    run_jobs(queues=("ingest",))
    [event] = rows(client.rt, InboundEvent, scope=inst["id"])
    assert event.status == "processed" and event.outcome["skipped"] == ["no phone number"]
    assert rows(client.rt, Send, workspace_id=workspace.id) == []


def test_writeback_retries_then_succeeds_and_dead_letters_can_be_replayed(
        client, workspace, acme_installation, run_jobs):
    inst, secrets = acme_installation
    acme.FAIL_WRITES["42"] = 1
    client.deliver("acme", inst["id"], {"id": 42}, secrets, headers("order.paid", "p1"))
    run_jobs()
    [row] = rows(client.rt, OutboundDelivery, workspace_id=workspace.id)
    assert (row.status, row.attempts) == ("pending", 1) and "unreachable" in row.last_error
    moved = tick(client.rt, now=row.next_attempt_at)  # the backoff has passed
    assert moved["outbox"] >= 1
    run_jobs()
    [row] = rows(client.rt, OutboundDelivery, workspace_id=workspace.id)
    assert (row.status, row.attempts) == ("delivered", 2)
    assert {"order_id": "42", "tag": "paid-notified", "token": "acme-token"} in acme.WRITTEN


def test_failing_handler_is_retried_then_dead_and_replayable(client, workspace, acme_installation, run_jobs):
    from hub.core import processing

    inst, secrets = acme_installation
    client.deliver("acme", inst["id"], {"x": 1}, secrets, headers("explode", "e1"))
    run_jobs()
    [event] = rows(client.rt, InboundEvent, scope=inst["id"])
    assert event.status == "pending" and event.attempts == 1 and "handler bug" in event.last_error
    for _ in range(processing.MAX_ATTEMPTS):
        [event] = rows(client.rt, InboundEvent, scope=inst["id"])
        tick(client.rt, now=event.next_attempt_at)
        run_jobs()
    [event] = rows(client.rt, InboundEvent, scope=inst["id"])
    assert (event.status, event.attempts) == ("dead", processing.MAX_ATTEMPTS)
    dead = client.get("/api/v1/events?status=dead", headers=workspace.headers).json
    assert [e["id"] for e in dead] == [client.public_id("evt", event.id)]
    replay = client.post(f"/api/v1/events/{client.public_id('evt', event.id)}/replay", headers=workspace.headers)
    assert replay.status_code == 202 and replay.json["status"] == "pending"


def test_lost_redis_job_is_reenqueued_by_the_scheduler(client, workspace, acme_installation, run_jobs):
    inst, secrets = acme_installation
    client.deliver("acme", inst["id"], {**ORDER, "id": 77}, secrets, headers("order.created", "lost"))
    for queue in client.rt.queues.all():
        queue.empty()  # Redis lost the job
    [event] = rows(client.rt, InboundEvent, scope=inst["id"])
    tick(client.rt)
    assert rows(client.rt, InboundEvent, scope=inst["id"])[0].enqueued_at == event.enqueued_at  # not stale yet
    assert tick(client.rt, now=event.enqueued_at + STALE * 2)["events"] >= 1
    run_jobs(queues=("ingest",))
    [event] = rows(client.rt, InboundEvent, scope=inst["id"])
    assert event.status == "processed"


def test_a_dead_writeback_is_listed_and_replayed(client, workspace, acme_installation, run_jobs):
    inst, secrets = acme_installation
    acme.FAIL_WRITES["43"] = len(outbox.RETRY_SECONDS) + 1
    client.deliver("acme", inst["id"], {"id": 43}, secrets, headers("order.paid", "p43"))
    run_jobs()
    for _ in outbox.RETRY_SECONDS:
        [row] = rows(client.rt, OutboundDelivery, workspace_id=workspace.id)
        tick(client.rt, now=row.next_attempt_at)
        run_jobs()
    [row] = rows(client.rt, OutboundDelivery, workspace_id=workspace.id)
    assert (row.status, row.attempts) == ("dead", len(outbox.RETRY_SECONDS) + 1)
    dead = client.get("/api/v1/deliveries?status=dead", headers=workspace.headers).json
    assert [d["id"] for d in dead] == [client.public_id("dlv", row.id)] and dead[0]["kind"] == "writeback"
    assert client.post(f"/api/v1/deliveries/{client.public_id('dlv', row.id)}/replay", headers=workspace.headers).status_code == 202
    run_jobs()
    [row] = rows(client.rt, OutboundDelivery, workspace_id=workspace.id)
    assert row.status == "delivered" and {"order_id": "43", "tag": "paid-notified", "token": "acme-token"} in acme.WRITTEN


def test_an_update_after_the_reminder_went_out_does_not_send_another(client, workspace, acme_installation,
                                                                     run_jobs, connection):
    inst, secrets = acme_installation
    cart = {"token": "tok-once", "phone": "+91 90909 09090", "total_price": "10.00", "completed_at": None}
    client.deliver("acme", inst["id"], cart, secrets, headers("cart.updated", "once-1"))
    run_jobs(queues=("ingest",))
    with client.rt.db.session() as s:
        s.scalars(select(Send).where(Send.cancel_key == "cart:tok-once")).one().status = "sent"
    client.deliver("acme", inst["id"], {**cart, "total_price": "11.00"}, secrets, headers("cart.updated", "once-2"))
    run_jobs(queues=("ingest",))
    assert [s.status for s in rows(client.rt, Send, workspace_id=workspace.id)] == ["sent"]
