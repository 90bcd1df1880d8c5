"""Portfolio messaging limits: unique users reached by business-initiated sends, per business
portfolio, in a rolling 24 hours (Meta's tiers 250, 2,000, 10,000, 100,000, unlimited since
October 2025; shared by every number of the portfolio). See docs/whatsapp.md section 9.

Counted exactly in Redis: one sorted set per portfolio, recipient → when last reached. A Lua
script trims what fell out of the window, then either finds the recipient already counted
(costs nothing; its time moves on) or adds it if a slot is free — atomically, so two workers
never both take the last slot. One round trip per business-initiated send.

Who may use the slots: utility and authentication templates the whole tier; marketing at most
``MARKETING_SHARE`` of it (the rest stays for transactional messages), halved while the number's
quality is ``FLAGGED`` or ``RED``. A send over its share is deferred — never failed — to when
enough recipients leave the window (``hold_reason`` says so).
"""
from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from typing import Any

from hub.core.logs import event
from hub.core.models import Connection, iso_utc, utcnow

log = logging.getLogger(__name__)
WINDOW = dt.timedelta(hours=24)
UNLIMITED = -1
MARKETING_SHARE, LOW_QUALITY_FACTOR = 0.9, 0.5
LOW_QUALITY = {"FLAGGED", "RED"}
TIERS = {"TIER_50": 50, "TIER_250": 250, "TIER_1K": 1000, "TIER_2K": 2000, "TIER_10K": 10000,
         "TIER_100K": 100000, "TIER_UNLIMITED": UNLIMITED}
TIER_NAMES = {v: k for k, v in TIERS.items()}

# KEYS: the portfolio's zset. ARGV: now_ms, window_ms, cap (slots this send may use), member
_TAKE = """
local now, window, cap, member = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], member) then
  redis.call('ZADD', KEYS[1], 'GT', now, member)
  return {1, 0, count}
end
if count >= cap then
  local frees = redis.call('ZRANGE', KEYS[1], count - cap, count - cap, 'WITHSCORES')
  local at = now + window
  if #frees > 0 then at = tonumber(frees[2]) + window end
  return {0, at, count}
end
redis.call('ZADD', KEYS[1], now, member)
redis.call('PEXPIRE', KEYS[1], window)
return {1, 0, count + 1}
"""


@dataclass(frozen=True)
class Slot:
    granted: bool
    free_at: dt.datetime | None = None  # when refused: when a slot frees for this send
    used: int = 0  # recipients counted in the window (after this one, when granted)


def parse_limit(value: Any) -> int | None:
    """A tier as Meta writes it (``TIER_2K``, ``2000``, ``-1``/``TIER_UNLIMITED``) → an int
    (``UNLIMITED`` = -1), or None when it is not one."""
    if isinstance(value, str) and value.strip().upper() in TIERS:
        return TIERS[value.strip().upper()]
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number == UNLIMITED or number > 0 else None


def tier_name(limit: int | None) -> str | None:
    return None if limit is None else TIER_NAMES.get(limit, str(limit))


def key_of(conn: Connection) -> str:
    """The portfolio a number counts against (its WABA while the portfolio is not known)."""
    return conn.portfolio_id or f"waba-{conn.waba_id}"


def governed(conn: Connection) -> bool:
    """True when the portfolio has a known, finite tier (unknown or unlimited: not governed)."""
    return conn.messaging_limit is not None and conn.messaging_limit != UNLIMITED


def cap(conn: Connection, category: str | None) -> int:
    """The slots a send of ``category`` may use: the whole tier for utility/authentication,
    ``MARKETING_SHARE`` of it for marketing (halved on FLAGGED/RED quality)."""
    limit = int(conn.messaging_limit or 0)
    if category != "marketing":
        return limit
    share = MARKETING_SHARE * (LOW_QUALITY_FACTOR if low_quality(conn) else 1.0)
    return math.floor(limit * share)


def low_quality(conn: Connection) -> bool:
    quality = conn.quality or {}
    return str(quality.get("event") or "").upper() in LOW_QUALITY or \
        str(quality.get("rating") or "").upper() in LOW_QUALITY


def apply_limit(conn: Connection, value: Any, *, portfolio_id: str | None = None, source: str) -> bool:
    """Record a tier (and portfolio) learnt from ``source``; True when something changed."""
    limit = parse_limit(value)
    changed = False
    if portfolio_id and portfolio_id != conn.portfolio_id:
        conn.portfolio_id, changed = str(portfolio_id), True
    if limit is not None and limit != conn.messaging_limit:
        event(log, "portfolio limit changed", connection_id=conn.id, portfolio=key_of(conn),
              old=tier_name(conn.messaging_limit), new=tier_name(limit), source=source)
        conn.messaging_limit, changed = limit, True
    if limit is not None or portfolio_id:
        conn.limit_updated_at = utcnow()
    return changed


def limit_of_webhook(value: dict) -> Any:
    """The tier an ``account_update`` / ``phone_number_quality_update`` value carries, if any."""
    for name in ("max_daily_conversations_per_business", "current_limit", "messaging_limit"):
        if value.get(name) is not None and parse_limit(value.get(name)) is not None:
            return value[name]
    return None


def refresh(conn: Connection, graph) -> None:
    """Read the portfolio id and tier from the Graph API (best effort: an error is logged and
    the values known so far stay)."""
    try:
        portfolio_id, limit = graph.messaging_limit(conn.waba_id, conn.phone_number_id, conn.access_token)
    except Exception as exc:  # an older Graph version or a missing permission must not stop onboarding
        event(log, "portfolio limit unreadable", level=logging.WARNING, connection_id=conn.id, error=str(exc)[:300])
        return
    apply_limit(conn, limit, portfolio_id=portfolio_id, source="graph")


def _ms(when: dt.datetime) -> int:
    return int(when.replace(tzinfo=dt.UTC).timestamp() * 1000)


def _at(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).replace(tzinfo=None)


class Reach:
    """The per-portfolio counters in Redis (``prefix``: the hub's key prefix)."""

    def __init__(self, redis, prefix: str):
        self.redis, self.prefix = redis, prefix
        self._take = redis.register_script(_TAKE)

    def key(self, portfolio: str) -> str:
        return f"{self.prefix}:portfolio:{portfolio}:reach"

    def take(self, conn: Connection, recipient: str, category: str | None, now: dt.datetime | None = None) -> Slot:
        """Count ``recipient`` for the portfolio of ``conn`` (a business-initiated send), or
        refuse with the time a slot frees."""
        now = now or utcnow()
        granted, free_at, used = self._take(keys=[self.key(key_of(conn))],
                                            args=[_ms(now), int(WINDOW.total_seconds() * 1000),
                                                  cap(conn, category), recipient])
        return Slot(bool(granted), None if granted else _at(int(free_at)), int(used))

    def used(self, conn: Connection, now: dt.datetime | None = None) -> int:
        """Recipients counted in the window now (read only)."""
        start = _ms(now or utcnow()) - int(WINDOW.total_seconds() * 1000)
        return int(self.redis.zcount(self.key(key_of(conn)), f"({start}", "+inf"))


def hold_reason(conn: Connection, category: str | None, free_at: dt.datetime) -> str:
    """What a deferred send shows: the tier, the share it may use, when the next slot frees."""
    share = "" if category != "marketing" else f" (marketing share {cap(conn, category)})"
    return f"portfolio limit {conn.messaging_limit}/24h reached{share}; next slot at {iso_utc(free_at)}"[:200]


def plan(conn: Connection, used: int, business_initiated: int, category: str | None) -> dict[str, Any]:
    """Headroom and windows for ``business_initiated`` more recipients (broadcast ETA, dry run):
    ``windows`` 0 when they fit in what is free now, else how many further 24 h windows."""
    if not governed(conn):
        return {"limit": tier_name(conn.messaging_limit), "used": used, "headroom": None, "windows": 0}
    usable = max(cap(conn, category), 1)
    headroom = max(usable - used, 0)
    beyond = max(business_initiated - headroom, 0)
    return {"limit": conn.messaging_limit, "used": used, "headroom": headroom,
            "windows": math.ceil(beyond / usable)}
