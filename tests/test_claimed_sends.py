"""A send an event creates is claimed by the event's own transaction and delivered by one
``deliver(token, *ids)`` job. Should that job be lost, the scheduler hands the send on once its
claim is stale; the late job then finds the claim passed on and leaves the send alone, so it
still reaches Meta once."""
import datetime as dt

from sqlalchemy import select

from hub.core.models import Send, utcnow
from hub.core.scheduler import tick
from hub.core.sending.pipeline import DELIVER
from hub.core.sending.results import CLAIM_STALE

ORDER = {"id": 820982911946100001, "name": "#7001", "phone": "+14155557401", "checkout_token": "tok-claim"}


def order_send(client, coexistence, run_jobs, webhook_id: str) -> Send:
    coexistence.add_template("order_confirmation", body_params=1)
    inst = client.install(coexistence.workspace, "acme", {"webhook_secret": "acme-secret", "api_token": "t",
                                                          "default_country": "US"})
    r = client.deliver("acme", inst["id"], ORDER, {"webhook_secret": "acme-secret"},
                       {"X-Acme-Topic": "order.created", "X-Acme-Webhook-Id": webhook_id})
    assert r.status_code == 200
    run_jobs(queues=("ingest",))
    with client.rt.db.session() as s:
        [send] = s.scalars(select(Send).where(Send.workspace_id == coexistence.workspace.id)).all()
    return send


def requests_to(simulator, coexistence) -> list[dict]:
    """This test's sends: to its customer from its own number."""
    return [r for r in list(simulator.requests) if r["body"].get("to") == "14155557401"
            and r["phone_number_id"] == coexistence.phone_number_id]


def test_an_events_send_is_claimed_with_it_and_delivered_by_its_own_job(client, coexistence, simulator, run_jobs):
    send = order_send(client, coexistence, run_jobs, "claim-1")
    assert send.status == "sending" and send.claim_token and send.attempted_at is None
    key = f"{client.rt.settings.key_prefix}-"
    mine = [j for j in client.rt.queues["send"].get_jobs() if j.func_name == DELIVER and j.args[0] == send.claim_token]
    assert [j.args[1:] for j in mine] == [(send.id,)] and not mine[0].id.startswith(key + "deliver-")
    run_jobs(queues=("send",))
    with client.rt.db.session() as s:
        assert s.get(Send, send.id).status == "sent"
    assert len(requests_to(simulator, coexistence)) == 1


def test_a_claimed_send_whose_job_is_late_goes_out_once(client, coexistence, simulator, run_jobs):
    send = order_send(client, coexistence, run_jobs, "claim-2")
    # its job waits (a busy or lost worker) until the claim is stale: the scheduler hands the send on
    tick(client.rt, now=utcnow() + CLAIM_STALE + dt.timedelta(seconds=1))
    with client.rt.db.session() as s:
        handed_on = s.get(Send, send.id)
        assert (handed_on.status, handed_on.claim_token) == ("queued", None)
    run_jobs(queues=("send",))  # the late deliver job and the batch job the scheduler woke both run
    with client.rt.db.session() as s:
        assert s.get(Send, send.id).status == "sent"
    assert len(requests_to(simulator, coexistence)) == 1


def test_a_reminder_due_at_once_stays_cancellable(client, coexistence, simulator, run_jobs):
    """``ScheduleSend(after=0)`` with a cancel key is not claimed by its event: a
    ``CancelScheduled`` processed before its delivery job still cancels it."""
    coexistence.add_template("cart_reminder", body_params=1)
    secrets = {"webhook_secret": "acme-secret"}
    inst = client.install(coexistence.workspace, "acme", {**secrets, "default_country": "US", "delay_minutes": 0})
    for webhook_id, cart in (("cart-1", {"token": "c-1", "phone": "+14155557402", "total_price": "9"}),
                             ("cart-2", {"token": "c-1", "phone": "+14155557402", "completed_at": "now"})):
        r = client.deliver("acme", inst["id"], cart, secrets, {"X-Acme-Topic": "cart.updated",
                                                               "X-Acme-Webhook-Id": webhook_id})
        assert r.status_code == 200
    run_jobs(queues=("ingest",))
    run_jobs(queues=("send",))
    with client.rt.db.session() as s:
        [send] = s.scalars(select(Send).where(Send.workspace_id == coexistence.workspace.id)).all()
        assert send.status == "cancelled"
    assert not [r for r in list(simulator.requests) if r["phone_number_id"] == coexistence.phone_number_id
                and r["body"].get("to") == "14155557402"]


def test_one_job_serves_the_events_waiting_behind_it_and_one_deliver_job_their_sends(
        client, coexistence, simulator, run_jobs, monkeypatch):
    """Under a backlog the first ingest job also processes the oldest events still waiting
    (each in its own transaction), takes their jobs off the queue, and one ``deliver`` job
    sends what they all claimed; every send still goes out once."""
    from hub.core import processing
    from hub.core.processing import BATCH, process_event

    monkeypatch.setattr(processing, "BATCH_SECONDS", 60.0)  # a slow machine still takes the whole batch
    coexistence.add_template("order_confirmation", body_params=1)
    secrets = {"webhook_secret": "acme-secret"}
    inst = client.install(coexistence.workspace, "acme", {**secrets, "api_token": "t", "default_country": "US"})
    phones = [f"+1415555{7410 + k}" for k in range(BATCH + 2)]
    for k, phone in enumerate(phones):
        r = client.deliver("acme", inst["id"], {**ORDER, "id": ORDER["id"] + 10 + k, "phone": phone}, secrets,
                           {"X-Acme-Topic": "order.created", "X-Acme-Webhook-Id": f"backlog-{k}"})
        assert r.status_code == 200
    ingest = client.rt.queues["ingest"]
    [first, *behind] = ingest.get_jobs()
    assert len(behind) == BATCH + 1
    ingest.remove(first)
    process_event(*first.args)  # one worker takes the first job
    with client.rt.db.session() as s:
        sends = s.scalars(select(Send).where(Send.workspace_id == coexistence.workspace.id).order_by(Send.id)).all()
    assert [s.to for s in sends] == [p.lstrip("+") for p in phones[:BATCH]]  # the oldest, in order
    assert len({s.claim_token for s in sends}) == 1
    assert ingest.count == 2  # the jobs of the events it did are gone: the two left stay queued
    [deliver] = [j for j in client.rt.queues["send"].get_jobs() if j.func_name == DELIVER]
    assert deliver.args == (sends[0].claim_token, *(s.id for s in sends))
    run_jobs()
    with client.rt.db.session() as s:
        done = s.scalars(select(Send).where(Send.workspace_id == coexistence.workspace.id)).all()
    assert sorted(s.status for s in done) == ["sent"] * len(phones)
    sent_to = [r["body"]["to"] for r in list(simulator.requests) if r["phone_number_id"] == coexistence.phone_number_id]
    assert sorted(sent_to) == sorted(p.lstrip("+") for p in phones)
