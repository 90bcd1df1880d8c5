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
from typing import Callable
from urllib.parse import urlsplit

import httpx
from sqlalchemy import update

from hub.core.connectors import Context
from hub.core.logs import event
from hub.core.metrics import count
from hub.core.models import Installation, OutboundDelivery, Subscription, utcnow
from hub.core.public_errors import public_error
from hub.core.runtime import current

log = logging.getLogger(__name__)
# Svix-like schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h, then dead.
RETRY_SECONDS = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]


def outbox_job(row: OutboundDelivery) -> tuple:
    """The job that attempts an outbox row (its id keeps one copy waiting)."""
    return ("writeback" if row.kind == "writeback" else "outbound", "hub.core.outbox.deliver", (row.id,),
            f"outbox-{row.id}")


class PermanentError(Exception):
    """A delivery that must not be retried (e.g. 410 Gone, a refused address)."""


def deliver(delivery_id: int) -> str:
    """RQ job: attempt one outbox row. The row is claimed first (``delivering``), so a second
    copy of the job does nothing, and the call to the outside runs outside any transaction."""
    rt = current()
    with rt.db.session() as session:
        claimed = session.execute(
            update(OutboundDelivery).where(OutboundDelivery.id == delivery_id, OutboundDelivery.status == "pending")
            .values(status="delivering", enqueued_at=utcnow(), attempts=OutboundDelivery.attempts + 1)).rowcount
        if not claimed:
            return "skipped"
        row = session.get(OutboundDelivery, delivery_id)
        call = _writeback(session, row) if row.kind == "writeback" else _webhook(rt, session, row)
    response_status, error = None, None
    try:
        response_status = call()
    except Exception as exc:  # recorded below; retried or dead-lettered
        error = exc
    with rt.db.session() as session:
        row = session.get(OutboundDelivery, delivery_id)
        row.response_status, row.enqueued_at = response_status, None
        if response_status == 410:
            sub = session.get(Subscription, row.target)
            if sub is not None and sub.kind == "zapier":  # the Zap is gone: so is its REST hook
                session.delete(sub)
                error = PermanentError("410 Gone: Zapier hook removed")
            else:
                if sub is not None:
                    sub.enabled, sub.disabled_reason = False, "410 Gone from the target"
                error = PermanentError("410 Gone: subscription disabled")
        elif response_status is not None and not 200 <= response_status < 300:
            error = RuntimeError(f"HTTP {response_status}")
        if error is None:
            row.status, row.delivered_at, row.last_error = "delivered", utcnow(), None
        else:
            row.last_error = public_error(error, row.payload)
            event(log, "outbox delivery failed", level=logging.WARNING, delivery_id=row.id, kind=row.kind,
                  attempts=row.attempts, error=row.last_error[:300])
            if isinstance(error, PermanentError) or row.attempts > len(RETRY_SECONDS):
                row.status = "dead"
                event(log, "outbox delivery dead", level=logging.ERROR, delivery_id=row.id, attempts=row.attempts)
            else:
                row.status = "pending"
                row.next_attempt_at = utcnow() + dt.timedelta(seconds=RETRY_SECONDS[row.attempts - 1])
                event(log, "outbox retry scheduled", delivery_id=row.id, retry_at=row.next_attempt_at)
        outcome = row.status
    count(rt.redis, rt.settings.key_prefix, "jobs", job="outbox", outcome=outcome)
    return outcome


def _writeback(session, row: OutboundDelivery) -> Callable[[], None]:
    module, _, name = row.target.partition(":")
    func = importlib.import_module(module)
    for part in name.split("."):
        func = getattr(func, part)
    installation = session.get(Installation, row.installation_id) if row.installation_id else None
    ctx = Context(workspace_id=row.workspace_id, installation_id=row.installation_id,
                  config={**(installation.config or {}), **(installation.secrets or {})} if installation else {},
                  state=dict(installation.state or {}) if installation else {})
    kwargs = dict(row.payload)
    return lambda: func(ctx, **kwargs)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks ``webhook-signature`` (``v1,<base64 HMAC-SHA256>``)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def _webhook(rt, session, row: OutboundDelivery) -> Callable[[], int]:
    sub = session.get(Subscription, row.target)
    if sub is None or not sub.enabled:
        def refuse() -> int:
            raise PermanentError("subscription removed or disabled")
        return refuse
    msg_id, ts = f"msg_{row.id}", int(time.time())
    body = json.dumps({**row.payload, "timestamp": ts}, separators=(",", ":"), default=str).encode()
    headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts)}
    if sub.secret:
        headers["webhook-signature"] = sign(sub.secret, msg_id, ts, body)
    url, allow_private = sub.target_url, rt.settings.outbound_allow_private

    def post() -> int:
        check_public(url, allow_private)
        with httpx.Client(timeout=10, follow_redirects=False) as client:
            return client.post(url, content=body, headers=headers).status_code
    return post


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
