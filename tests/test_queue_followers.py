"""A batch job that claims its work as it runs (``deliver-<slot>``) and has already started may
be past its last claim: a send committed then is delivered by a queued follower of that job,
not left for the scheduler's sweep. Real components: a ``coexhub worker`` process, the Graph
API simulator; no scheduler runs, so only the follower can deliver the send."""
import subprocess
import sys

from sqlalchemy import update

from hub.core.models import Connection, Send
from hub.core.processing import enqueue_all
from hub.core.runtime import current
from hub.core.sending.pipeline import DELIVER_DUE, delivery_job
from hub.core.sending.sends import create_send
from hub.testing import process_env
from tests.test_recovery import wait_for


def status_of(rt, send_id: int) -> str:
    """A short transaction each time: on SQLite one held open would keep the worker from writing."""
    with rt.db.session() as s:
        return s.get(Send, send_id).status


def hold(key: str) -> None:
    """A job standing in for a ``deliver`` job past its last claim: it runs until the test lets it go."""
    current().redis.blpop([key], timeout=60)


def test_a_send_committed_while_its_deliver_job_runs_is_delivered_by_a_follower(client, coexistence, simulator):
    rt, to = client.rt, "14155557301"
    with rt.db.session() as s:  # no other test's queued sends: the follower must find this one
        s.execute(update(Send).where(Send.status.in_(("queued", "sending"))).values(status="cancelled"))
        send, _ = create_send(s, workspace_id=coexistence.workspace.id, connection=s.get(Connection, coexistence.id),
                              to=to, kind="template", origin="api", template="order_update", language="en_US",
                              params=["follower"])
        s.flush()
        send_id = send.id
    queue, _func, _args, job_id = delivery_job(send_id)
    key = f"{rt.settings.key_prefix}:test-hold:{send_id}"
    assert rt.queues.enqueue(queue, "tests.test_queue_followers.hold", key, job_id=job_id)
    worker = subprocess.Popen([sys.executable, "-m", "hub.cli", "worker", "--simple", "--queue", "send"],
                              env=process_env(rt), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        held = rt.queues[queue].fetch_job(f"{rt.settings.key_prefix}-{job_id}")
        wait_for(lambda: held.get_status() == "started", what="the slot's job to start")
        enqueue_all(rt, [delivery_job(send_id)])  # what a commit does: the slot's job is running
        follower = rt.queues[queue].fetch_job(f"{rt.settings.key_prefix}-{job_id}-next")
        assert follower is not None and follower.get_status() == "queued" and follower.func_name == DELIVER_DUE
        enqueue_all(rt, [delivery_job(send_id)])  # one queued follower is enough
        assert rt.queues[queue].count == 1
        rt.redis.rpush(key, "go")
        wait_for(lambda: [r for r in list(simulator.requests) if r["body"].get("to") == to], what="the send")
        wait_for(lambda: status_of(rt, send_id) == "sent", what="the result")
    finally:
        rt.redis.rpush(key, "go")
        worker.terminate()
        worker.wait(15)
    assert len([r for r in list(simulator.requests) if r["body"].get("to") == to]) == 1
