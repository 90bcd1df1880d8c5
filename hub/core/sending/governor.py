"""Per-number throughput and per-recipient pair rate, shared by every worker (Redis, server time).

A send reserves a slot on its number before calling the Graph API and releases it when the
call returns. Slots are spaced ``1/rate`` apart (smooth pacing), and a slot is only granted
when fewer than ``rate`` sends are in flight or finished within the second before it. Since
Meta sees a request after its slot and before we hear back, no one-second window at Meta can
hold more than ``rate`` requests, however workers are delayed; time comes from Redis, so the
workers' own clocks do not matter.
"""
from __future__ import annotations

from dataclasses import dataclass

# KEYS: last slot, in-flight zset, finished zset. ARGV: interval_us, limit, member, max_wait_us
_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, limit, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60000000)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 2000000)
local inflight = redis.call('ZCARD', KEYS[2])
if inflight >= limit then return {0, 20000} end
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0') + interval)
local need = limit - inflight
local ends = redis.call('ZREVRANGE', KEYS[3], need - 1, need - 1, 'WITHSCORES')
if #ends > 0 then slot = math.max(slot, tonumber(ends[2]) + 1000000) end
if slot - now > max_wait then return {0, slot - now} end
redis.call('SET', KEYS[1], slot, 'PX', 60000)
redis.call('ZADD', KEYS[2], slot, ARGV[3])
return {1, slot - now}
"""
_RELEASE = """
local t = redis.call('TIME')
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[2], tonumber(t[1]) * 1000000 + tonumber(t[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[2], 5000)
end
return 1
"""
# GCRA with a burst: allow now if the theoretical arrival time is within the burst
_PAIR = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local allowance = (burst - 1) * period
if tat - now > allowance then return {0, tat - now - allowance} end
redis.call('SET', KEYS[1], tat + period, 'PX', math.floor((tat + period - now) / 1000) + 1000)
return {1, 0}
"""


@dataclass
class Slot:
    granted: bool
    wait: float  # seconds to wait before sending (granted) or before trying again


class Governor:
    def __init__(self, redis, prefix: str):
        self.redis, self.prefix = redis, prefix
        self._slot = redis.register_script(_SLOT)
        self._release = redis.register_script(_RELEASE)
        self._pair = redis.register_script(_PAIR)

    def _keys(self, number: str) -> list[str]:
        return [f"{self.prefix}:gov:{number}:{k}" for k in ("last", "inflight", "done")]

    def reserve(self, phone_number_id: str, rate: int, token: str, max_wait: float = 5.0) -> Slot:
        """Reserve this number's next send slot (``rate`` messages/second) for ``token``
        (unique per attempt); ``release`` it once the Graph call has returned or failed."""
        granted, wait_us = self._slot(keys=self._keys(phone_number_id),
                                      args=[int(1_000_000 / rate), int(rate), token, int(max_wait * 1_000_000)])
        return Slot(bool(granted), wait_us / 1_000_000)

    def release(self, phone_number_id: str, token: str) -> None:
        self._release(keys=self._keys(phone_number_id)[1:], args=[token])

    def pairs(self, pairs: list[tuple[str, str]], period: float = 6.0, burst: int = 3) -> list[Slot]:
        """Pair rate for ``(phone_number_id, recipient)`` pairs in one round trip: about one
        message per ``period`` seconds to one user, with bursts of ``burst``."""
        pipe = self.redis.pipeline(transaction=False)
        for number, recipient in pairs:
            self._pair(keys=[f"{self.prefix}:pair:{number}:{recipient}"], args=[int(period * 1_000_000), burst],
                       client=pipe)
        return [Slot(bool(granted), wait_us / 1_000_000) for granted, wait_us in pipe.execute()]
