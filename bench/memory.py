"""Memory under mixed load: RSS of the web workers and the send workers, sampled over the run.

    .venv/bin/python bench/memory.py [--embedded] [--minutes 10] [--every 5] [--workers 2]

The hub runs as ``bench/latency.py`` runs it (``latency.Stack``: gunicorn ``-k gthread`` with
``--web-workers``, ``--workers`` × ``coexhub worker --simple`` serving every queue — so each
is a send worker — and ``coexhub scheduler``; the Graph simulator on loopback; PostgreSQL +
Redis or ``--embedded``). For ``--minutes`` it keeps up a mixed load, each stream on its own
fixed schedule:

* Meta webhooks: customer texts (``--meta`` per s, from a pool of ``--contacts`` customers) and
  quick-reply taps that the reply connector answers with a text send (``--replies`` per s);
* Shopify ``orders/create`` webhooks → order-confirmation template sends (``--orders`` per s);
* API sends: ``POST /api/v1/messages`` templates (``--api-sends`` per s);
* listings: ``GET`` ``/sends``, ``/contacts``, ``/events``, ``/messages`` (``--listings`` per s).

Every ``--every`` seconds the RSS (``psutil``) of each gunicorn worker, each hub worker and the
scheduler is sampled. Reported per process: RSS at the start of the load, min, max, at minute 1
and at the end; growth = end / minute 1 − 1. Targets: < 150 MB at the end, growth < 10 %.
Results go to ``bench/results/memory-<ts>.json``; the database is dropped and the run's Redis
keys deleted at the end.
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import latency  # noqa: E402

MB = 1024 * 1024
LIMIT_MB, GROWTH = 150, 0.10


class Stream(threading.Thread):
    """Calls ``make(i)`` → (method, path, body, headers) at ``rate`` per second on a fixed
    schedule until ``stop``; counts answers by status."""

    def __init__(self, name: str, port: int, rate: float, make, stop: threading.Event):
        super().__init__(daemon=True, name=name)
        self.port, self.rate, self.make, self.stop = port, rate, make, stop
        self.status: Counter = Counter()

    def run(self) -> None:
        if self.rate <= 0:
            return
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        start, i = time.time(), 0
        while not self.stop.is_set():
            pause = start + i / self.rate - time.time()
            if pause > 0:
                self.stop.wait(pause)
                continue
            method, path, body, headers = self.make(i)
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                self.status[response.status] += 1
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.status[0] += 1
            i += 1
        conn.close()


def processes(stack: latency.Stack) -> dict[str, psutil.Process]:
    """Name → process: each gunicorn worker, each hub worker, the scheduler."""
    out = {}
    master = psutil.Process(stack.server.proc.pid)
    for k, child in enumerate(sorted(master.children(), key=lambda p: p.pid)):
        out[f"web worker {k + 1}"] = child
    for k, pid in enumerate(stack.worker_pids):
        out[f"send worker {k + 1}"] = psutil.Process(pid)
    for p in stack.procs:
        if p.pid not in stack.worker_pids:
            out["scheduler"] = psutil.Process(p.pid)
    return out


def summary(samples: list[tuple[float, dict[str, float]]], name: str) -> dict:
    series = [(t, rss[name]) for t, rss in samples if name in rss]
    if not series:
        return {}
    at_minute = min(series, key=lambda s: abs(s[0] - 60))[1]
    values = [v for _, v in series]
    end = values[-1]
    return {"start_mb": round(values[0], 1), "min_mb": round(min(values), 1), "max_mb": round(max(values), 1),
            "minute1_mb": round(at_minute, 1), "end_mb": round(end, 1),
            "growth_pct": round(100 * (end / at_minute - 1), 1) if at_minute else None,
            "met": end < LIMIT_MB and (end / at_minute - 1) < GROWTH}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--embedded", action="store_true")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--every", type=float, default=5.0, help="seconds between RSS samples")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--web-workers", type=int, default=2)
    ap.add_argument("--web", choices=("asgi", "gthread"), default="gthread",
                    help="the web server (as bench/latency.py; the figures in docs/benchmarks.md: gthread)")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--numbers", type=int, default=10)
    ap.add_argument("--contacts", type=int, default=3000, help="customers the Meta texts come from")
    ap.add_argument("--meta", type=float, default=8.0, help="Meta customer texts per s")
    ap.add_argument("--replies", type=float, default=2.0, help="quick-reply taps (→ a reply send) per s")
    ap.add_argument("--orders", type=float, default=4.0, help="Shopify orders/create per s")
    ap.add_argument("--api-sends", type=float, default=3.0, help="POST /api/v1/messages per s")
    ap.add_argument("--listings", type=float, default=3.0, help="GET listings per s")
    ap.add_argument("--out", default=str(BENCH / "results"))
    args = ap.parse_args(argv)

    from hub.testing import payloads

    tmp = Path(tempfile.mkdtemp(prefix="coexhub-bench-memory-"))
    results: dict = {"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "platform": platform.platform()},
                     "settings": {k: v for k, v in vars(args).items() if k != "out"}}
    stack = None
    stop = threading.Event()
    try:
        stack = latency.Stack(tmp, embedded=args.embedded, numbers=args.numbers, workers=args.workers,
                              web_workers=args.web_workers, threads=args.threads, web=args.web)
        results["backends"] = stack.backends.label
        port, numbers, auth = stack.server.port, stack.numbers, stack.auth
        print(f"backends: {stack.backends.label}; hub on :{port}; load {latency.loadavg()}", flush=True)
        json_headers = {"Content-Type": "application/json"}

        def text(i: int):
            n = numbers[i % len(numbers)]
            wa_id = f"9197{i % args.contacts:08d}"
            body = json.dumps(payloads.text_message(n["waba"], n["pnid"], n["display"], wa_id, f"hi {i}")).encode()
            return "POST", "/webhooks/whatsapp", body, {**json_headers, **payloads.sign(body, latency.APP_SECRET)}

        def reply(i: int):
            _, path, body, headers, _ = ("POST", *latency.meta_event(stack, i, str(20 + i // 10_000_000)))
            return "POST", path, body, headers

        def order(i: int):
            _, path, body, headers, _ = ("POST", *latency.shopify_event(stack, i % 100_000, str(30 + i // 100_000)))
            return "POST", path, body, headers

        def api_send(i: int):
            body = json.dumps({"to": f"+1628{2 + i % 7}{i % 1_000_000:06d}", "template": latency.TEMPLATE,
                               "params": ["Ada", f"#{i}", "$1.00"]}).encode()
            return "POST", "/api/v1/messages", body, {**json_headers, **auth}

        lists = ["/api/v1/sends?limit=50", "/api/v1/contacts?limit=50", "/api/v1/events?limit=50",
                 "/api/v1/messages?limit=50"]

        def listing(i: int):
            return "GET", lists[i % len(lists)], None, auth

        streams = [Stream("meta", port, args.meta, text, stop), Stream("replies", port, args.replies, reply, stop),
                   Stream("orders", port, args.orders, order, stop),
                   Stream("api-sends", port, args.api_sends, api_send, stop),
                   Stream("listings", port, args.listings, listing, stop)]
        procs = processes(stack)
        samples: list[tuple[float, dict[str, float]]] = []
        loads = []
        began = time.time()
        for s in streams:
            s.start()
        end = began + 60 * args.minutes
        while True:
            now = time.time()
            rss = {}
            for name, p in procs.items():
                try:
                    rss[name] = p.memory_info().rss / MB
                except psutil.Error:
                    pass
            samples.append((now - began, rss))
            loads.append(os.getloadavg()[0])
            if len(samples) % max(1, int(60 / args.every)) == 0:
                print(f"{(now - began) / 60:.1f} min: " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items())
                      + f" MB; load {loads[-1]:.1f}", flush=True)
            if now >= end:
                break
            time.sleep(min(args.every, max(0.0, end - now)))
        stop.set()
        for s in streams:
            s.join(30)
        results["requests"] = {s.name: dict(s.status) for s in streams}
        results["loadavg"] = {"min": round(min(loads), 2), "mean": round(sum(loads) / len(loads), 2),
                              "max": round(max(loads), 2)}
        results["processes"] = {name: summary(samples, name) for name in procs}
        results["samples"] = [{"t": round(t, 1), **{k: round(v, 1) for k, v in rss.items()}} for t, rss in samples]
        with stack.rt.db.session() as s:
            from sqlalchemy import func, select

            from hub.core.models import Send
            results["sends"] = dict(s.execute(select(Send.status, func.count()).group_by(Send.status)).all())
    finally:
        stop.set()
        if stack is not None:
            stack.close()
        shutil.rmtree(tmp, ignore_errors=True)
    out = Path(args.out) / f"memory-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("\n" + table(results) + f"\n\nresults: {out}")
    return 0


def table(results: dict) -> str:
    lines = [f"backends: {results.get('backends')}; {results['settings']['minutes']} min of mixed load; "
             f"load average {results.get('loadavg')}; requests {results.get('requests')}; sends {results.get('sends')}",
             "", "| process | start MB | min MB | max MB | minute 1 MB | end MB | growth | < 150 MB and < 10 % |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, r in results.get("processes", {}).items():
        if r:
            lines.append(f"| {name} | {r['start_mb']} | {r['min_mb']} | {r['max_mb']} | {r['minute1_mb']} | "
                         f"{r['end_mb']} | {r['growth_pct']} % | {'yes' if r['met'] else 'no'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
