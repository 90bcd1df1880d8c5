"""Core services connectors lean on: catch-up polling, disabling, revenue attribution."""
from sqlalchemy import select

from hub.core import installations
from hub.core.actions import SendTemplate
from hub.core.execute import Executor
from hub.core.processing import enqueue_all
from hub.core.models import InboundEvent, Installation, Send
from hub.core.scheduler import tick
from tests import acme

SECRETS = {"webhook_secret": "poll-secret"}


def deliver(client, inst, payload, topic, webhook_id):
    return client.deliver("acme-poll", inst["id"], payload, SECRETS,
                          {"X-Acme-Topic": topic, "X-Acme-Webhook-Id": webhook_id})


def test_poll_finds_what_webhooks_missed_and_dedupes_with_itself(client, workspace, connection, run_jobs):
    inst = client.install(workspace, "acme-poll", {**SECRETS, "default_country": "IN"})
    acme.PENDING_POLL[:] = [{"id": 901, "phone": "+91 90909 09091", "name": "#901"}]
    try:
        assert tick(client.rt)["polls"] >= 1
        run_jobs()
        tick(client.rt)  # not due again yet: this installation is not polled a second time
        run_jobs()
        with client.rt.db.session() as s:
            assert s.get(Installation, inst["id"]).state["polls"] == 1
        with client.rt.db.session() as s:
            s.get(Installation, inst["id"]).state = {**s.get(Installation, inst["id"]).state,
                                                     "last_poll_at": "2000-01-01T00:00:00"}
        tick(client.rt)
        run_jobs(queues=("ingest",))
    finally:
        acme.PENDING_POLL.clear()
    with client.rt.db.session() as s:
        events = s.scalars(select(InboundEvent).where(InboundEvent.scope == inst["id"])).all()
        state = s.get(Installation, inst["id"]).state
        sends = s.scalars(select(Send).where(Send.workspace_id == workspace.id)).all()
    assert [(e.dedupe_key, e.status) for e in events] == [("poll:901", "processed")]
    assert state["polls"] == 2 and state["last_poll_new"] == 0
    assert [s.to for s in sends] == ["919090909091"]


def test_uninstall_disables_the_installation(client, workspace, run_jobs):
    inst = client.install(workspace, "acme-poll", SECRETS)
    deliver(client, inst, {"id": 1}, "app.uninstalled", "u1")
    run_jobs(queues=("ingest",))
    got = client.get(f"/api/v1/installations/{inst['id']}", headers=workspace.headers).json
    assert got["enabled"] is False and got["disabled_reason"] == "app uninstalled"
    installations.forget(inst["id"])
    assert deliver(client, inst, {"id": 2}, "order.created", "u2").status_code == 404


def test_paid_order_after_a_recovery_send_is_attributed(client, coexistence, run_jobs):
    workspace = coexistence.workspace
    inst = client.install(workspace, "acme-poll", SECRETS)
    with client.rt.db.session() as s:  # a recovery send, as a connector's ScheduleSend would make
        ex = Executor(s, workspace.id)
        ex.run([SendTemplate(to="14155552671", template="order_update", params=["cart"],
                             reference={"checkout_token": "t1", "kind": "recovery", "attributable": True})])
    enqueue_all(client.rt, ex.jobs)
    run_jobs()
    deliver(client, inst, {"id": "5001", "phone": "+1 415 555 2671", "total": "49.90", "currency": "usd"},
            "order.paid", "paid-1")
    deliver(client, inst, {"id": "5002", "phone": "+1 415 555 0000", "total": "10.00", "currency": "usd"},
            "order.paid", "paid-2")
    run_jobs()
    summary = client.get("/api/v1/analytics/summary", headers=workspace.headers).json
    assert summary["attributed_revenue"] == {"USD": {"orders": 1, "amount": "49.90"}}
