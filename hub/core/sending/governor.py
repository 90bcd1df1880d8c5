"""Per-number throughput and per-recipient pair rate, shared by every worker (Redis, server time).

The governor hands out send slots per phone number spaced ``1/rate`` seconds apart (GCRA with
no burst), so no worker, process or machine can push a number past its limit in any
one-second window. Time comes from Redis (``TIME``), so clocks on worker machines do not matter.
"""
from __future__ import annotations

from dataclasses import dataclass

# reserve the next slot unless it is more than max_wait away; returns {reserved, wait_us}
_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now, last + tonumber(ARGV[1]))
if slot - now > tonumber(ARGV[2]) then return {0, slot - now} end
redis.call('SET', KEYS[1], slot, 'PX', 60000)
return {1, slot - now}
"""
# GCRA with a burst: allow now if the theoretical arrival time is within the burst
_PAIR = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
if tat - now > burst * period then return {0, tat - now - burst * period} end
redis.call('SET', KEYS[1], tat + period, 'PX', math.floor((tat + period - now) / 1000) + 1000)
return {1, 0}
"""
SAFETY = 0.98  # pace at 98 % of the limit: network jitter must not push a second over it


@dataclass
class Slot:
    granted: bool
    wait: float  # seconds to wait before sending (granted) or before trying again


class Governor:
    def __init__(self, redis, prefix: str):
        self.redis, self.prefix = redis, prefix
        self._slot = redis.register_script(_SLOT)
        self._pair = redis.register_script(_PAIR)

    def reserve(self, phone_number_id: str, rate: float, max_wait: float = 5.0) -> Slot:
        """Reserve this number's next send slot (``rate`` messages/second)."""
        interval_us = int(1_000_000 / (rate * SAFETY))
        granted, wait_us = self._slot(keys=[f"{self.prefix}:gov:{phone_number_id}"],
                                      args=[interval_us, int(max_wait * 1_000_000)])
        return Slot(bool(granted), wait_us / 1_000_000)

    def pair(self, phone_number_id: str, recipient: str, period: float = 6.0, burst: int = 3) -> Slot:
        """Pair rate: about one message per ``period`` seconds to one user, bursts of ``burst``."""
        granted, wait_us = self._pair(keys=[f"{self.prefix}:pair:{phone_number_id}:{recipient}"],
                                      args=[int(period * 1_000_000), burst])
        return Slot(bool(granted), wait_us / 1_000_000)
