"""Outbox deliveries: write-backs to providers and signed webhooks to subscriptions.

Each row is attempted by the ``deliver`` job; a failure reschedules it with backoff (the
scheduler re-enqueues due rows), the last failure leaves it ``dead`` for a user to replay.
Outbound webhooks are signed the Standard Webhooks way and refuse private addresses unless
``COEXHUB_OUTBOUND_ALLOW_PRIVATE`` is set.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import importlib
import ipaddress
import json
import logging
import socket
import time
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select

from hub.core.connectors import Context
from hub.core.metrics import count
from hub.core.models import Installation, OutboundDelivery, Subscription, utcnow
from hub.core.runtime import current

log = logging.getLogger(__name__)
# Svix-like schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h, then dead.
RETRY_SECONDS = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]


class PermanentError(Exception):
    """A delivery that must not be retried (e.g. 410 Gone, a refused address)."""


def deliver(delivery_id: int) -> str:
    """RQ job: attempt one outbox row."""
    rt = current()
    with rt.db.session() as session:
        row = session.get(OutboundDelivery, delivery_id)
        if row is None or row.status != "pending":
            return "skipped"
        row.attempts += 1
        try:
            if row.kind == "writeback":
                _writeback(session, row)
            else:
                _webhook(rt, session, row)
            row.status, row.delivered_at, row.last_error = "delivered", utcnow(), None
        except Exception as exc:  # recorded; retried or dead-lettered
            log.warning("outbox %s attempt %s failed: %s", row.id, row.attempts, exc)
            row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            if isinstance(exc, PermanentError) or row.attempts > len(RETRY_SECONDS):
                row.status = "dead"
            else:
                row.next_attempt_at = utcnow() + dt.timedelta(seconds=RETRY_SECONDS[row.attempts - 1])
        row.enqueued_at = None
        outcome = row.status
    count(rt.redis, rt.settings.key_prefix, "jobs", job="outbox", outcome=outcome)
    return outcome


def _writeback(session, row: OutboundDelivery) -> None:
    module, _, name = row.target.partition(":")
    func = importlib.import_module(module)
    for part in name.split("."):
        func = getattr(func, part)
    installation = session.get(Installation, row.installation_id) if row.installation_id else None
    ctx = Context(workspace_id=row.workspace_id, installation_id=row.installation_id,
                  config={**(installation.config or {}), **(installation.secrets or {})} if installation else {},
                  state=installation.state if installation else {})
    func(ctx, **row.payload)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks ``webhook-signature`` (``v1,<base64 HMAC-SHA256>``)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def _webhook(rt, session, row: OutboundDelivery) -> None:
    sub = session.scalars(select(Subscription).where(Subscription.id == row.target)).first()
    if sub is None or not sub.enabled:
        raise PermanentError("subscription removed or disabled")
    msg_id, ts = f"msg_{row.id}", int(time.time())
    body = json.dumps({**row.payload, "timestamp": ts}, separators=(",", ":"), default=str).encode()
    headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts)}
    if sub.secret:
        headers["webhook-signature"] = sign(sub.secret, msg_id, ts, body)
    url = sub.target_url
    check_public(url, rt.settings.outbound_allow_private)
    with httpx.Client(timeout=10, follow_redirects=False) as client:
        response = client.post(url, content=body, headers=headers)
    row.response_status = response.status_code
    if response.status_code == 410:
        sub.enabled, sub.disabled_reason = False, "410 Gone from target"
        raise PermanentError("410 Gone: subscription disabled")
    if not 200 <= response.status_code < 300:
        raise RuntimeError(f"HTTP {response.status_code}")


def check_public(url: str, allow_private: bool) -> None:
    """Refuse URLs resolving to loopback/private/reserved addresses (SSRF guard)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PermanentError(f"not an http(s) URL: {url}")
    if allow_private:
        return
    for info in socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP):
        if not ipaddress.ip_address(info[4][0]).is_global:
            raise PermanentError(f"{parts.hostname} resolves to a non-public address")
