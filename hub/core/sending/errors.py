"""What to do with each Graph API error code (the reference table, as data)."""
from __future__ import annotations

from dataclasses import dataclass

from hub.core.whatsapp.graph import GraphError

RETRY, FAIL, PAUSE = "retry", "fail", "pause"


@dataclass(frozen=True)
class Decision:
    action: str  # retry|fail|pause
    reason: str
    base_delay: float = 5.0  # seconds; grows with attempts
    growth: float = 2.0
    opt_out_marketing: bool = False
    flag_template: str | None = None  # new template status
    pause_hours: float | None = None
    limit_marketing: bool = False  # Meta's per-user marketing limit: the contact's cool-down starts


TABLE: dict[int, Decision] = {
    130429: Decision(RETRY, "throughput exceeded", 1.0),
    131056: Decision(RETRY, "pair rate limit", 4.0, 4.0),
    4: Decision(RETRY, "app API-call rate limit", 30.0),
    80007: Decision(RETRY, "WABA API-call rate limit", 30.0),
    131016: Decision(RETRY, "service unavailable", 5.0),
    131000: Decision(RETRY, "something went wrong at Meta", 5.0),
    2: Decision(RETRY, "temporary API error", 5.0),
    131057: Decision(RETRY, "account in maintenance", 60.0),
    131047: Decision(FAIL, "outside the 24-hour window: a template is needed"),
    131026: Decision(FAIL, "message undeliverable"),
    131049: Decision(FAIL, "per-user marketing limit reached (Meta); not retried, the contact's marketing "
                           "cool-down starts", limit_marketing=True),
    131050: Decision(FAIL, "the user stopped marketing messages", opt_out_marketing=True),
    131051: Decision(FAIL, "unsupported message type"),
    131048: Decision(PAUSE, "spam rate limit: number paused", pause_hours=6),
    190: Decision(PAUSE, "access token invalid or expired: re-authenticate"),
    368: Decision(PAUSE, "number temporarily blocked for policy violations"),
    131031: Decision(PAUSE, "account locked"),
    132015: Decision(FAIL, "template paused", flag_template="PAUSED"),
    132016: Decision(FAIL, "template disabled", flag_template="DISABLED"),
}


def classify(error: GraphError) -> Decision:
    if error.code in TABLE:
        return TABLE[error.code]
    if error.code is not None and 132000 <= error.code <= 132016:
        return Decision(FAIL, f"template error {error.code}: {error}", flag_template="FLAGGED")
    if error.timeout or (error.http_status or 0) >= 500:
        return Decision(RETRY, f"service trouble: {error}", 5.0)
    return Decision(FAIL, str(error) or f"error {error.code}")
