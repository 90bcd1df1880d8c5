"""Load for a fault run: signed Meta webhooks, signed Shopify webhooks and API sends, every one
posted two or three times and retried until answered 2xx (as Meta and Shopify retry)."""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import hashlib
import itertools
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from hub.testing import payloads, sign

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "shopify"
RETRY_FOR = 60.0  # seconds a sender keeps retrying one delivery (Meta retries far longer)
_numbers = itertools.count(1)


@dataclass
class Item:
    """One webhook (or API send) and what its deliveries got back."""

    kind: str  # meta | status | shopify | send
    url: str
    body: bytes
    headers: dict
    copies: int
    wamid: str | None = None
    order_id: str | None = None
    number: str | None = None  # the phone_number_id an API send goes out from
    acked: bool = False
    send_ids: set = field(default_factory=set)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


class Poster:
    """Posts with retries until 2xx, bounded by ``RETRY_FOR``; one HTTP client per thread."""

    def __init__(self):
        self.local = threading.local()
        self.attempts = self.failures = 0
        self.lock = threading.Lock()
        self.closed = threading.Event()

    def close(self) -> None:
        """Stop every retry loop now (the hub is going away)."""
        self.closed.set()

    def client(self) -> httpx.Client:
        if not hasattr(self.local, "client"):
            self.local.client = httpx.Client(timeout=10)
        return self.local.client

    def post(self, item: Item) -> None:
        deadline, delay = time.monotonic() + RETRY_FOR, 0.2
        while time.monotonic() < deadline and not self.closed.is_set():
            with self.lock:
                self.attempts += 1
            try:
                response = self.client().post(item.url, content=item.body, headers=item.headers)
                if 200 <= response.status_code < 300:
                    item.acked = True
                    if item.kind == "send":
                        item.send_ids.add(response.json()["id"])
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            with self.lock:
                self.failures += 1
            self.closed.wait(delay)
            delay = min(delay * 1.5, 2.0)


class StatusPump:
    """Meta's side of statuses: what the simulator queued (sent/delivered/read of every accepted
    send, with ``biz_opaque_callback_data``) is signed and delivered twice, with retries."""

    def __init__(self, sim, hub_url: str, poster: Poster):
        self.sim, self.url, self.poster = sim, hub_url + "/webhooks/whatsapp", poster
        self.items: list[Item] = []
        self.pool = cf.ThreadPoolExecutor(4, thread_name_prefix="status-pump")
        self.inflight: set[cf.Future] = set()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="status-pump", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(0.3):
            with self.sim.lock:
                pending, self.sim.pending_statuses = self.sim.pending_statuses, []
            for env in pending:
                body = json.dumps(env).encode()
                item = Item(
                    "status",
                    self.url,
                    body,
                    {"Content-Type": "application/json", **payloads.sign(body, self.sim.app_secret)},
                    copies=2,
                )
                self.items.append(item)
                for _ in range(item.copies):
                    self.inflight.add(self.pool.submit(self.poster.post, item))
            self.inflight = {f for f in self.inflight if not f.done()}

    def idle(self) -> bool:
        with self.sim.lock:
            queued = bool(self.sim.pending_statuses)
        return not queued and all(f.done() for f in list(self.inflight))

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class Number:
    workspace_key: str
    connection_id: str
    phone_number_id: str
    waba_id: str
    display: str


def meta_items(hub_url: str, sim, number: Number, n: int) -> list[Item]:
    """``n`` inbound customer texts (every tenth an owner's echo) on ``number``."""
    items = []
    for i in range(n):
        wamid, wa_id = payloads.new_wamid(), f"9198{next(_numbers):08d}"
        if i % 10 == 9:
            env = payloads.echo(
                number.waba_id, number.phone_number_id, number.display, wa_id, f"echo {i}", wamid=wamid
            )
        else:
            env = payloads.text_message(
                number.waba_id, number.phone_number_id, number.display, wa_id, f"hello {i}", wamid=wamid
            )
        body = json.dumps(env).encode()
        items.append(
            Item(
                "meta",
                hub_url + "/webhooks/whatsapp",
                body,
                {"Content-Type": "application/json", **payloads.sign(body, sim.app_secret)},
                copies=3 if i % 5 == 0 else 2,
                wamid=wamid,
            )
        )
    return items


def shopify_items(hub_url: str, installation_id: str, secret: str, connector, n: int) -> list[Item]:
    """``n`` signed ``orders/create`` webhooks, each with its own order, buyer and webhook id."""
    sample = json.loads((FIXTURES / "orders_create.json").read_text())
    items = []
    for i in range(n):
        k = next(_numbers)
        order = {
            **sample,
            "id": 9_100_000_000_000_000 + k,
            "name": f"#F{k}",
            "order_number": k,
            "phone": f"+1415556{k % 10000:04d}",
            "checkout_token": None,
            "checkout_id": None,
            "cancelled_at": None,
            "payment_gateway_names": ["visa"],
        }
        order["customer"] = {**(order.get("customer") or {}), "phone": None, "first_name": f"Buyer{k}"}
        body = json.dumps(order).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-Shop-Domain": "faults.myshopify.com",
            "X-Shopify-API-Version": "2026-04",
            "X-Shopify-Triggered-At": dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
        }
        headers.update(sign(connector, body, {"webhook_secret": secret}))
        items.append(
            Item(
                "shopify",
                f"{hub_url}/webhooks/shopify/{installation_id}",
                body,
                headers,
                copies=2,
                order_id=str(order["id"]),
            )
        )
    return items


def send_items(hub_url: str, number: Number, n: int) -> list[Item]:
    """``n`` template sends through ``POST /api/v1/messages``, each posted twice with its key."""
    items = []
    for _ in range(n):
        k = next(_numbers)
        body = json.dumps(
            {
                "to": f"+1415557{k % 10000:04d}",
                "template": "order_update",
                "params": [f"#{k}"],
                "connection_id": number.connection_id,
                "idempotency_key": f"fault-{uuid.uuid4()}",
            }
        )
        items.append(
            Item(
                "send",
                hub_url + "/api/v1/messages",
                body.encode(),
                {"Content-Type": "application/json", "Authorization": f"Bearer {number.workspace_key}"},
                copies=2,
                number=number.phone_number_id,
            )
        )
    return items


def run_load(items: list[Item], poster: Poster, seconds: float, threads: int = 8) -> cf.Future:
    """Post every copy of every item, spread over ``seconds`` (copies of one item apart, in
    random order); returns a future done when every post has ended."""
    copies = [item for item in items for _ in range(item.copies)]
    random.shuffle(copies)
    pool = cf.ThreadPoolExecutor(threads, thread_name_prefix="load")
    gap = seconds / max(1, len(copies))

    def feed():
        futures = []
        for item in copies:
            futures.append(pool.submit(poster.post, item))
            time.sleep(gap)
        cf.wait(futures)
        pool.shutdown(wait=True)

    runner = cf.ThreadPoolExecutor(1, thread_name_prefix="load-feed")
    future = runner.submit(feed)
    runner.shutdown(wait=False)
    return future
