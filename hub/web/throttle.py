"""Failed sign-ins are counted in Redis per email and per client address; past ``LIMIT`` in
``WINDOW`` seconds the login form answers 429 until the window ends (fixed windows, so the
time to wait is exact). Emails are hashed in the key names; nothing else is stored. While Redis
is unreachable sign-in is not throttled (logged as a warning) rather than impossible."""
from __future__ import annotations

import functools
import hashlib
import logging

from redis.exceptions import RedisError

log = logging.getLogger(__name__)
LIMIT = 10
WINDOW = 15 * 60


def _keys(rt, email: str, ip: str) -> list[str]:
    digest = hashlib.sha256((email or "").strip().lower().encode()).hexdigest()[:32]
    return [rt.key("login-fail", "email", digest), rt.key("login-fail", "ip", ip or "unknown")]


def _fail_open(f):
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except RedisError as exc:
            log.warning("sign-in throttling skipped: Redis unavailable (%s)", type(exc).__name__)
            return None
    return wrapper


@_fail_open
def retry_after(rt, email: str, ip: str) -> int | None:
    """Seconds until sign-in may be tried again for this email or address, or None if allowed."""
    keys = _keys(rt, email, ip)
    pipe = rt.redis.pipeline()
    for key in keys:
        pipe.get(key)
        pipe.ttl(key)
    values = pipe.execute()
    waits = [max(int(ttl), 1) for count, ttl in zip(values[::2], values[1::2])
             if count is not None and int(count) >= LIMIT]
    return max(waits) if waits else None


@_fail_open
def failed(rt, email: str, ip: str) -> None:
    """Count a failed sign-in (the window starts at the first failure)."""
    pipe = rt.redis.pipeline()
    for key in _keys(rt, email, ip):
        pipe.set(key, 0, ex=WINDOW, nx=True)
        pipe.incr(key)
    pipe.execute()


@_fail_open
def succeeded(rt, email: str) -> None:
    """A right password clears the email's count (the address keeps its own)."""
    rt.redis.delete(_keys(rt, email, "")[0])
