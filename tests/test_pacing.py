"""The governor holds a Coexistence number at 20 messages/s across 4 worker processes.

Counts from the simulator's own clock, not wall-clock assertions: no one-second window may
hold more than 20 sends, and Meta's throughput error (130429) must never happen.
"""
import subprocess
import sys

from hub.testing import process_env, sliding_max

SENDS = 120


def test_four_workers_never_exceed_20_per_second(client, coexistence, simulator):
    h = coexistence.workspace.headers
    before = len(simulator.requests)
    for i in range(SENDS):
        r = client.post("/api/v1/messages", json={"to": f"+1415555{3000 + i:04d}", "template": "order_update",
                                                  "params": [str(i)]}, headers=h)
        assert r.status_code == 202
    env = process_env(client.rt)
    workers = [subprocess.Popen([sys.executable, "-m", "hub.cli", "worker", "--burst", "--simple", "--queue", "send"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(4)]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err.decode()[-2000:]
    mine = [r for r in simulator.requests[before:] if r["phone_number_id"] == coexistence.phone_number_id]
    throttled = [r for r in mine if r["status"] != 200]
    assert throttled == []  # zero 130429
    assert len(mine) == SENDS
    assert sliding_max([r["time"] for r in mine]) <= 20
    sent = client.get("/api/v1/sends?status=sent&limit=500", headers=h).json
    assert len(sent) == SENDS
