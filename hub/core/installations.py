"""A per-process cache of what webhook ingest needs to know about an installation.

Ingest must answer in milliseconds, so it does not load the installation row on every
request. Entries live ``TTL`` seconds; a failed signature check reloads the entry once, so a
rotated secret takes effect on the next delivery.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hub.core.models import Installation

TTL = 10.0


@dataclass(frozen=True)
class Route:
    id: str
    connector: str
    workspace_id: str
    enabled: bool
    secrets: dict[str, Any]
    expires: float


_cache: dict[str, Route | None] = {}
_expiry: dict[str, float] = {}


def lookup(rt, installation_id: str, *, fresh: bool = False) -> Route | None:
    now = time.monotonic()
    if not fresh and _expiry.get(installation_id, 0) > now:
        return _cache[installation_id]
    with rt.db.sessions() as session:
        inst = session.get(Installation, installation_id)
        route = Route(inst.id, inst.connector, inst.workspace_id, inst.enabled, dict(inst.secrets or {}),
                      now + TTL) if inst else None
    if len(_cache) > 50_000:
        _cache.clear(), _expiry.clear()
    _cache[installation_id], _expiry[installation_id] = route, now + TTL
    return route


def forget(installation_id: str) -> None:
    """Drop an entry (the API calls this after changing an installation in this process)."""
    _expiry.pop(installation_id, None)
