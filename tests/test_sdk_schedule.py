"""ScheduleSend(at=…, group=…) and CancelScheduled(group=…) through the Executor, made due with the
test kit's run_scheduler (the scheduler's clock, scoped to the test's workspace), and ctx.now."""
import datetime as dt

from hub.connector import CancelScheduled, Context, ScheduleSend
from hub.core.execute import Executor
from hub.core.models import utcnow
from hub.core.processing import enqueue_all

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


def execute(client, workspace, *actions) -> dict:
    """Run actions as a connector's handler would have them run (the event's transaction)."""
    with client.rt.db.session() as session:
        executor = Executor(session, workspace.id)
        outcome = executor.run(list(actions))
    enqueue_all(client.rt, executor.jobs)
    return outcome


def reminder(to: str, at: dt.datetime, key: str | None = None, group: str | None = None, hours: str = "24"):
    return ScheduleSend(to=to, template="order_update", params=[hours], at=at, cancel_key=key, group=group)


def test_the_same_cancel_key_moves_the_reminder_to_the_new_time(client, coexistence, run_scheduler, sends):
    ctx = Context(coexistence.workspace.id, None, {})
    to, first, moved = "14155550101", ctx.now + dt.timedelta(hours=2), ctx.now + dt.timedelta(hours=5)
    execute(client, coexistence.workspace, reminder(to, first, key="booking:1:24h"))
    execute(client, coexistence.workspace, reminder(to, moved, key="booking:1:24h", hours="48"))
    [send] = sends()
    assert send.status == "scheduled" and send.params == ["48"]
    assert send.not_before == moved.astimezone(dt.timezone.utc).replace(tzinfo=None)
    assert run_scheduler(now=first + dt.timedelta(minutes=1)) == 0  # the old time is not a due time any more
    assert sends(status="scheduled") != []
    assert run_scheduler(now=moved + dt.timedelta(seconds=1)) == 1
    assert [s.id for s in sends(status="sent")] == [send.id]
    assert [b["to"] for b in coexistence.sent("order_update")] == [to]
    execute(client, coexistence.workspace, reminder(to, moved, key="booking:1:24h"))  # a redelivery after it went
    assert len(sends()) == 1 and len(coexistence.sent("order_update")) == 1


def test_one_group_cancel_cancels_every_reminder_of_a_booking_and_only_those(
        client, coexistence, run_scheduler, sends):
    start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
    to = "14155550102"
    execute(client, coexistence.workspace,
            *[reminder(to, start - offset, key=f"booking:7:{offset}", group="booking:7")
              for offset in (dt.timedelta(hours=24), dt.timedelta(hours=1), dt.timedelta(minutes=10))],
            reminder(to, start - dt.timedelta(hours=1), key="booking:8:1h", group="booking:8"))
    assert len(sends(status="scheduled", cancel_group="booking:7")) == 3
    outcome = execute(client, coexistence.workspace, CancelScheduled(group="booking:7"))
    assert outcome["cancelled"] == 3
    assert len(sends(status="cancelled", cancel_group="booking:7")) == 3
    assert run_scheduler(now=start + dt.timedelta(hours=1)) == 1  # only the other booking's reminder
    [sent] = sends(status="sent")
    assert sent.cancel_group == "booking:8"
    assert execute(client, coexistence.workspace, CancelScheduled(group="booking:8"))["cancelled"] == 0  # gone out


def test_cancel_by_key_and_a_group_of_another_workspace_is_untouched(client, coexistence, sends):
    other = client.new_workspace("Another shop")
    at = utcnow() + dt.timedelta(hours=3)
    execute(client, coexistence.workspace, reminder("14155550103", at, key="k1", group="g"),
            reminder("14155550103", at, key="k2", group="g"))
    assert execute(client, other, CancelScheduled(group="g"))["cancelled"] == 0
    assert execute(client, coexistence.workspace, CancelScheduled(cancel_key="k1"))["cancelled"] == 1
    assert [s.cancel_key for s in sends(status="scheduled")] == ["k2"]


def test_naive_and_aware_at_mean_the_same_instant(client, coexistence, sends):
    aware = dt.datetime(2031, 5, 4, 15, 30, tzinfo=IST)
    naive_utc = dt.datetime(2031, 5, 4, 10, 0)
    execute(client, coexistence.workspace, reminder("14155550104", aware, key="aware"),
            reminder("14155550104", naive_utc, key="naive"))
    due = {s.cancel_key: s.not_before for s in sends()}
    assert due == {"aware": naive_utc, "naive": naive_utc}


def test_after_and_at_in_the_past_are_due_at_once(client, coexistence, run_scheduler, sends):
    execute(client, coexistence.workspace,
            ScheduleSend(to="14155550105", template="order_update", params=["x"], after=dt.timedelta(minutes=30),
                         cancel_key="later"),
            ScheduleSend(to="14155550105", template="order_update", params=["y"],
                         at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5), cancel_key="past"))
    run_scheduler()
    assert [s.cancel_key for s in sends(status="sent")] == ["past"]
    assert run_scheduler(now=dt.timedelta(minutes=31)) == 1
    assert len(sends(status="sent")) == 2


def test_ctx_now_is_aware_utc():
    now = Context("ws", None, {}).now
    assert now.tzinfo is not None and now.utcoffset() == dt.timedelta(0)
    assert abs(now - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(seconds=5)
    given = Context("ws", None, {}, now=dt.datetime(2030, 1, 1, 12, 0)).now  # naive: taken as UTC
    assert given == dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert Context("ws", None, {}, now=dt.datetime(2030, 1, 1, 17, 30, tzinfo=IST)).now == given
    assert ScheduleSend(to="1", template="t", at=given + dt.timedelta(hours=1)).due_at(utcnow()) == \
        dt.datetime(2030, 1, 1, 13, 0)
