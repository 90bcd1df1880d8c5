"""Outbox deliveries: write-backs to providers and signed webhooks to subscriptions.

Each row is attempted by the ``deliver`` job; a failure reschedules it with backoff (the
scheduler re-enqueues due rows), the last failure leaves it ``dead`` for a user to replay.
Outbound webhooks are signed the Standard Webhooks way and go through ``safe_http`` (no private
addresses unless ``COEXHUB_OUTBOUND_ALLOW_PRIVATE`` is set, the checked address pinned, no
redirects, bounded answers). Retries: 0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import importlib
import json
import logging
import time
from typing import Callable

from sqlalchemy import update

from hub.core import safe_http

from hub.core.connectors import Context
from hub.core.logs import event
from hub.core.metrics import count
from hub.core.models import Installation, OutboundDelivery, Subscription, utcnow
from hub.core.public_errors import public_error
from hub.core.runtime import current
from hub.core.safe_http import PermanentError, Unresolvable

log = logging.getLogger(__name__)
# Svix-like schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h, then dead.
RETRY_SECONDS = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
DISABLE_AFTER = dt.timedelta(days=5)  # a subscription failing every delivery this long is disabled


def outbox_job(row: OutboundDelivery) -> tuple:
    """The job that attempts an outbox row (its id keeps one copy waiting)."""
    if row.kind == "paylink":  # a payment link and its send (hub.core.paylinks)
        return ("writeback", "hub.core.paylinks.deliver", (row.id,), f"outbox-{row.id}")
    return ("writeback" if row.kind == "writeback" else "outbound", "hub.core.outbox.deliver", (row.id,),
            f"outbox-{row.id}")


def deliver(delivery_id: int) -> str:
    """RQ job: attempt one outbox row. The row is claimed first (``delivering``), so a second
    copy of the job does nothing, and the call to the outside runs outside any transaction.

    Only a 2xx answer is a success. 410 Gone disables the subscription; so does a run of
    failures lasting ``DISABLE_AFTER`` (both publish ``subscription.disabled``)."""
    rt = current()
    with rt.db.session() as session:
        claimed = session.execute(
            update(OutboundDelivery).where(OutboundDelivery.id == delivery_id, OutboundDelivery.status == "pending",
                                           OutboundDelivery.kind != "paylink")  # hub.core.paylinks.deliver's
            .values(status="delivering", enqueued_at=utcnow(), attempts=OutboundDelivery.attempts + 1)).rowcount
        if not claimed:
            return "skipped"
        row = session.get(OutboundDelivery, delivery_id)
        call = _writeback(session, row) if row.kind == "writeback" else _webhook(rt, session, row)
    response_status, error = None, None
    try:
        response_status = call()
    except Unresolvable as exc:  # DNS may come back: retried, unlike a refused address
        error = RuntimeError(str(exc))
    except Exception as exc:  # recorded below; retried or dead-lettered
        error = exc
    with rt.db.session() as session:
        row = session.get(OutboundDelivery, delivery_id)
        row.response_status, row.enqueued_at = response_status, None
        sub = session.get(Subscription, row.target) if row.kind == "webhook" else None
        if response_status == 410:
            gone = sub is not None and sub.enabled and disable(session, sub, "410 Gone from the target") is None
            sub, error = (None, PermanentError("410 Gone: Zapier hook removed")) if gone else \
                (sub, PermanentError("410 Gone: subscription disabled"))
        elif response_status is not None and not 200 <= response_status < 300:
            error = RuntimeError(f"HTTP {response_status}" + (" (redirects are not followed)"
                                                              if 300 <= response_status < 400 else ""))
        if error is None:
            row.status, row.delivered_at, row.last_error = "delivered", utcnow(), None
            if sub is not None and sub.failing_since is not None:
                sub.failing_since = None
        else:
            _failed(session, row, sub, error)
        outcome = row.status
    count(rt.redis, rt.settings.key_prefix, "jobs", job="outbox", outcome=outcome)
    return outcome


def _failed(session, row: OutboundDelivery, sub: Subscription | None, error: Exception) -> None:
    """Schedule the next attempt (``RETRY_SECONDS``) or dead-letter the row; track the
    subscription's run of failures."""
    now = utcnow()
    row.last_error = public_error(error, row.payload)
    event(log, "outbox delivery failed", level=logging.WARNING, delivery_id=row.id, kind=row.kind,
          attempts=row.attempts, error=row.last_error[:300])
    if isinstance(error, PermanentError) or row.attempts > len(RETRY_SECONDS):
        row.status = "dead"
        event(log, "outbox delivery dead", level=logging.ERROR, delivery_id=row.id, attempts=row.attempts)
    else:
        row.status = "pending"
        row.next_attempt_at = now + dt.timedelta(seconds=RETRY_SECONDS[row.attempts - 1])
        event(log, "outbox retry scheduled", delivery_id=row.id, retry_at=row.next_attempt_at)
    if sub is not None and sub.enabled:
        sub.failing_since = sub.failing_since or now
        if now - sub.failing_since >= DISABLE_AFTER:
            disable(session, sub, f"every delivery failed for {DISABLE_AFTER.days} days")


def disable(session, sub: Subscription, reason: str) -> Subscription | None:
    """Turn a subscription off and publish ``subscription.disabled`` (to the others). A Zapier
    REST hook is removed instead (None): nobody re-enables it, Zapier subscribes again when the
    Zap is turned back on."""
    from hub.core.events import publish

    if sub.kind == "zapier":
        event(log, "zapier hook removed", level=logging.WARNING, subscription_id=sub.id, reason=reason)
        session.delete(sub)
        return None
    sub.enabled, sub.disabled_reason, sub.disabled_at = False, reason[:200], utcnow()
    event(log, "subscription disabled", level=logging.WARNING, subscription_id=sub.id, reason=reason)
    session.flush()
    publish(session, sub.workspace_id, "subscription.disabled",
            {"subscription_id": sub.id, "url": sub.target_url, "reason": reason})
    return sub


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


def signatures(sub: Subscription, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: the current secret's, and during a rotation's overlap
    window the previous one's too (space-separated, as Standard Webhooks allows)."""
    keys = [sub.secret]
    if sub.previous_secret and sub.previous_secret_expires_at and sub.previous_secret_expires_at > utcnow():
        keys.append(sub.previous_secret)
    return " ".join(sign(key, msg_id, timestamp, body) for key in keys if key)


def _webhook(rt, session, row: OutboundDelivery) -> Callable[[], int]:
    sub = session.get(Subscription, row.target)
    if sub is None or not sub.enabled:
        def refuse() -> int:
            raise PermanentError("subscription removed or disabled")
        return refuse
    # webhook-id is the event's id: the same on every retry and replay, so receivers can dedupe
    msg_id, ts = row.event_id or f"msg_{row.id}", int(time.time())
    payload = row.payload if row.event_id else {**row.payload, "timestamp": ts}
    body = json.dumps(payload, separators=(",", ":"), default=str).encode()
    headers = {"content-type": "application/json", "user-agent": "coexhub-webhooks/1",
               "webhook-id": msg_id, "webhook-timestamp": str(ts)}
    if sub.secret:
        headers["webhook-signature"] = signatures(sub, msg_id, ts, body)
    url, allow_private = sub.target_url, rt.settings.outbound_allow_private

    def post() -> int:
        return safe_http.post(url, body, headers, allow_private)[0]
    return post


def check_public(url: str, allow_private: bool) -> None:
    """Refuse URLs that are not http(s) or resolve to loopback/private/reserved addresses
    (SSRF guard; ``safe_http.Refused`` says why). Prefer ``safe_http.client``, which also pins
    the address it checked."""
    safe_http.resolve(url, allow_private)
