"""Load for a fault run — signed Meta webhooks, signed Shopify webhooks and API sends, every one
posted two or three times and retried until answered 2xx (as Meta and Shopify retry) — and the
counts taken afterwards from the simulator's records and the database."""

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
from sqlalchemy import func, select

from hub.core.models import InboundEvent, Message, Send
from hub.testing import payloads, sign, sliding_max

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


# --- counting -------------------------------------------------------------------------------
@dataclass
class Counts:
    fault: str
    webhooks_acked: int = 0
    processed: int = 0
    lost: int = 0
    webhook_duplicates: int = 0
    sends_accepted: int = 0
    sent_at_sim: int = 0
    send_duplicates: int = 0
    max_per_second: int = 0
    pending_after: int = 0
    load_seconds: float = 0.0
    recovery_seconds: float | None = None
    not_processed: list = field(default_factory=list)
    not_sent: list = field(default_factory=list)
    duplicated_sends: list = field(default_factory=list)

    COLUMNS = (
        "fault",
        "webhooks_acked",
        "processed",
        "webhook_duplicates",
        "lost",
        "sends_accepted",
        "sent_at_sim",
        "send_duplicates",
        "max_per_second",
        "pending_after",
        "load_seconds",
        "recovery_seconds",
    )

    def row(self) -> list:
        return [
            getattr(self, c)
            if c != "recovery_seconds" or self.recovery_seconds is None
            else round(self.recovery_seconds, 1)
            for c in self.COLUMNS
        ]


def count(
    db,
    sim,
    webhooks: list[Item],
    sends: list[Item],
    shop_installation: str,
    numbers: list[str],
    since: float,
    since_event: int,
    fault: str,
) -> Counts:
    """Counts for one phase: its webhooks (each acked one processed exactly once), its sends (each
    accepted one at the simulator exactly once) and the pacing of its numbers at the simulator."""
    c = Counts(fault)
    acked = [w for w in webhooks if w.acked]
    c.webhooks_acked = len(acked)
    with db.connect() as conn:
        rows = conn.execute(
            select(InboundEvent.id, InboundEvent.status, InboundEvent.body).where(
                InboundEvent.id > since_event
            )
        ).all()
        by_digest: dict[str, list[str]] = {}
        for _id, status, body in rows:
            by_digest.setdefault(hashlib.sha256(bytes(body)).hexdigest(), []).append(status)
        wamids = [w.wamid for w in acked if w.wamid]
        per_wamid = (
            dict(
                conn.execute(
                    select(Message.wamid, func.count())
                    .where(Message.wamid.in_(wamids))
                    .group_by(Message.wamid)
                ).all()
            )
            if wamids
            else {}
        )
        orders = {w.order_id for w in acked if w.order_id}
        connector_sends = [
            (sid, ref)
            for sid, ref in conn.execute(
                select(Send.id, Send.reference).where(Send.installation_id == shop_installation, Send.id > 0)
            )
        ]
        api_ids = {sid for s in sends if s.acked for sid in s.send_ids}
        wanted = {sid for sid, ref in connector_sends if str((ref or {}).get("order_id")) in orders} | api_ids
        statuses = (
            dict(conn.execute(select(Send.id, Send.status).where(Send.id.in_(wanted))).all())
            if wanted
            else {}
        )
    for w in acked:
        found = by_digest.get(w.digest, [])
        effect_ok = w.wamid is None or per_wamid.get(w.wamid, 0) == 1
        if not found:
            c.lost += 1
        elif found.count("processed") >= 1 and effect_ok:
            c.processed += 1
        else:
            c.not_processed.append((w.kind, found))
        c.webhook_duplicates += max(0, len(found) - 1) + (
            max(0, per_wamid.get(w.wamid, 0) - 1) if w.wamid else 0
        )
    c.webhook_duplicates += sum(max(0, len(s.send_ids) - 1) for s in sends)  # one key, two sends
    c.sends_accepted = len(wanted)
    with sim.lock:
        requests = [r for r in sim.requests if r["time"] >= since]
    at_sim: dict[int, int] = {}
    for r in requests:
        data = (r["body"] or {}).get("biz_opaque_callback_data") or ""
        if r["status"] == 200 and data.startswith("send:"):
            at_sim[int(data[5:])] = at_sim.get(int(data[5:]), 0) + 1
    for sid in wanted:
        n = at_sim.get(sid, 0)
        if n >= 1 and statuses.get(sid) == "sent":
            c.sent_at_sim += 1
        else:
            c.not_sent.append((sid, statuses.get(sid), n))
    if c.not_sent:
        c.not_sent = _describe(db, c.not_sent)
        if n > 1:
            c.send_duplicates += n - 1
            c.duplicated_sends.append((sid, n))
    c.max_per_second = max(
        [sliding_max([r["time"] for r in requests if r["phone_number_id"] == number]) for number in numbers]
        or [0]
    )
    return c


def _describe(db, not_sent: list[tuple]) -> list[dict]:
    """What the database says of sends that did not go out (for the failure message)."""
    table = Send.__table__
    wanted = [
        col
        for col in (
            "id",
            "status",
            "attempts",
            "hold_reason",
            "not_before",
            "updated_at",
            "attempted_at",
            "last_error",
        )
        if col in table.c
    ]
    with db.connect() as conn:
        rows = {
            r["id"]: dict(r)
            for r in conn.execute(
                select(*[table.c[col] for col in wanted]).where(table.c.id.in_([x[0] for x in not_sent]))
            ).mappings()
        }
    return [{**rows.get(sid, {"id": sid}), "at_sim": n} for sid, _status, n in not_sent]


def pending(db, since_event: int = 0, since_send: int = 0) -> int:
    """Work the hub still owes: pending events and queued/sending (or due scheduled) sends, of
    those stored after ``since_event`` / ``since_send`` (0: everywhere)."""
    from hub.core.models import utcnow

    with db.connect() as conn:
        events = conn.execute(
            select(func.count())
            .select_from(InboundEvent)
            .where(InboundEvent.status == "pending", InboundEvent.id > since_event)
        ).scalar()
        sends = conn.execute(
            select(func.count())
            .select_from(Send)
            .where(
                Send.id > since_send,
                Send.status.in_(("queued", "sending"))
                | ((Send.status == "scheduled") & (Send.not_before <= utcnow())),
            )
        ).scalar()
    return int(events) + int(sends)


def high_water(db) -> tuple[int, int]:
    """The last inbound event id and send id (a phase counts what comes after)."""
    with db.connect() as conn:
        return (
            conn.execute(select(func.coalesce(func.max(InboundEvent.id), 0))).scalar(),
            conn.execute(select(func.coalesce(func.max(Send.id), 0))).scalar(),
        )
