"""Catch-up polling for providers that drop webhooks (``Connector.poll_every``/``poll``).

The scheduler enqueues ``poll_installation`` when an installation's poll is due; every
``PolledEvent`` goes through the same store-and-dedupe path as a pushed webhook.
"""
from __future__ import annotations

import datetime as dt
import json
import logging

from sqlalchemy import select

from hub.core import ingest
from hub.core.connectors import Context
from hub.core.models import Installation, utcnow
from hub.core.runtime import Runtime, current

log = logging.getLogger(__name__)


def due_installations(rt: Runtime, session) -> list[str]:
    pollers = {name for name, cls in rt.plugins.connectors.items() if cls.poll_every}
    if not pollers:
        return []
    now, due = utcnow(), []
    for inst in session.scalars(select(Installation).where(Installation.connector.in_(pollers),
                                                           Installation.enabled.is_(True))).all():
        last = (inst.state or {}).get("last_poll_at")
        every = rt.plugins.connectors[inst.connector].poll_every
        if not last or (now - _parse(last)).total_seconds() >= every:
            due.append(inst.id)
    return due


def poll_installation(installation_id: str) -> int:
    """RQ job: poll one installation; returns how many new events were stored."""
    rt = current()
    with rt.db.session() as session:
        inst = session.get(Installation, installation_id)
        connector = rt.plugins.connector(inst.connector) if inst else None
        if inst is None or connector is None or not inst.enabled:
            return 0
        ctx = Context(workspace_id=inst.workspace_id, installation_id=inst.id,
                      config={**(inst.config or {}), **(inst.secrets or {})}, state=dict(inst.state or {}))
        workspace_id, name = inst.workspace_id, inst.connector
    stored, error = 0, None
    try:
        events = connector.poll(ctx)
    except Exception as exc:  # the provider is down: try again at the next interval
        log.warning("poll of %s failed: %s", installation_id, exc)
        events, error = [], f"{type(exc).__name__}: {exc}"[:500]
    for event in events:
        _, duplicate = ingest.store(rt, provider=name, scope=installation_id, dedupe_key=event.dedupe_key,
                                    body=json.dumps(event.payload).encode(), headers={"X-Coexhub-Polled": "1"},
                                    topic=event.topic, workspace_id=workspace_id)
        stored += not duplicate
    with rt.db.session() as session:
        inst = session.get(Installation, installation_id)
        if inst is not None:
            inst.state = {**ctx.state, "last_poll_at": utcnow().isoformat(), "last_poll_error": error,
                          "last_poll_new": stored}
    return stored


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)
