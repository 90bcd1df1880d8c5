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

_RELEASE = """
local t = redis.call('TIME')
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[2], tonumber(t[1]) * 1000000 + tonumber(t[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[2], 5000)
end
return 1
"""
# Slots for one or more sends, decided one after the other in one round trip. KEYS, three per
# send: last slot, in-flight zset, finished zset. ARGV: max_wait_us, then interval_us, limit,
# member per send. Returns granted, wait_us pairs, in order.
_SLOTS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max_wait = tonumber(ARGV[1])
local out = {}
for i = 0, (#KEYS / 3) - 1 do
  local last, inflight_key, done = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local interval, limit, member = tonumber(ARGV[3 * i + 2]), tonumber(ARGV[3 * i + 3]), ARGV[3 * i + 4]
  redis.call('ZREMRANGEBYSCORE', inflight_key, '-inf', now - 60000000)
  redis.call('ZREMRANGEBYSCORE', done, '-inf', now - 2000000)
  local inflight = redis.call('ZCARD', inflight_key)
  if inflight >= limit then
    out[#out + 1] = 0
    out[#out + 1] = 20000
  else
    local slot = math.max(now, tonumber(redis.call('GET', last) or '0') + interval)
    local need = limit - inflight
    local ends = redis.call('ZREVRANGE', done, need - 1, need - 1, 'WITHSCORES')
    if #ends > 0 then slot = math.max(slot, tonumber(ends[2]) + 1000000) end
    if slot - now > max_wait then
      out[#out + 1] = 0
      out[#out + 1] = slot - now
    else
      redis.call('SET', last, slot, 'PX', 60000)
      redis.call('ZADD', inflight_key, slot, member)
      out[#out + 1] = 1
      out[#out + 1] = slot - now
    end
  end
end
return out
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
        self._release = redis.register_script(_RELEASE)
        self._pair = redis.register_script(_PAIR)
        self._slots = redis.register_script(_SLOTS)

    def _keys(self, number: str) -> list[str]:
        return [f"{self.prefix}:gov:{number}:{k}" for k in ("last", "inflight", "done")]

    def reserve(self, phone_number_id: str, rate: int, token: str, max_wait: float = 5.0) -> Slot:
        """Reserve this number's next send slot (``rate`` messages/second) for ``token``
        (unique per attempt); ``release`` it once the Graph call has returned or failed."""
        return self.reserve_many([(phone_number_id, rate, token)], max_wait)[0]

    def release(self, phone_number_id: str, token: str) -> None:
        self._release(keys=self._keys(phone_number_id)[1:], args=[token])

    def reserve_many(self, wanted: list[tuple[str, int, str]], max_wait: float = 5.0) -> list[Slot]:
        """Slots for several ``(phone_number_id, rate, token)`` in one round trip (a batch),
        decided one after the other exactly as separate ``reserve`` calls would be."""
        if not wanted:
            return []
        keys, args = [], [int(max_wait * 1_000_000)]
        for number, rate, token in wanted:
            keys += self._keys(number)
            args += [int(1_000_000 / rate), int(rate), token]
        flat = self._slots(keys=keys, args=args)
        return [Slot(bool(flat[i]), flat[i + 1] / 1_000_000) for i in range(0, len(flat), 2)]

    def release_many(self, released: list[tuple[str, str]]) -> None:
        """``release`` several ``(phone_number_id, token)`` slots in one round trip."""
        if not released:
            return
        pipe = self.redis.pipeline(transaction=False)
        for number, token in released:
            self._release(keys=self._keys(number)[1:], args=[token], client=pipe)
        pipe.execute()

    def pairs(self, pairs: list[tuple[str, str]], period: float = 6.0, burst: int = 3) -> list[Slot]:
        """Pair rate for ``(phone_number_id, recipient)`` pairs in one round trip: about one
        message per ``period`` seconds to one user, with bursts of ``burst``."""
        pipe = self.redis.pipeline(transaction=False)
        for number, recipient in pairs:
            self._pair(keys=[f"{self.prefix}:pair:{number}:{recipient}"], args=[int(period * 1_000_000), burst],
                       client=pipe)
        return [Slot(bool(granted), wait_us / 1_000_000) for granted, wait_us in pipe.execute()]
