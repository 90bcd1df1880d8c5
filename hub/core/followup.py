"""Actions from a worker job that is not an inbound event: a write-back or a hook that must send.

A write-back (``WriteBack``) runs outside any event's transaction; when its work ends in a
message (a fresh payment link, then the reminder carrying it), it hands the actions here and
they are executed exactly as a handler's would be — same pipeline, idempotency and routing —
in their own transaction, with the jobs enqueued after the commit.
"""
from __future__ import annotations

import logging
from typing import Any

from hub.core.actions import Action
from hub.core.connectors import Context

log = logging.getLogger(__name__)


def run_actions(ctx: Context, actions: list[Action]) -> dict[str, Any]:
    """Execute ``actions`` for ``ctx``'s workspace and installation; returns the outcome
    (``sends``, ``skipped``…). Give sends an ``idempotency_key``: a retried job then sends once."""
    from hub.core.execute import Executor
    from hub.core.models import Installation
    from hub.core.processing import enqueue_all
    from hub.core.runtime import current

    rt = current()
    with rt.db.session() as session:
        installation = session.get(Installation, ctx.installation_id) if ctx.installation_id else None
        executor = Executor(session, ctx.workspace_id, installation=installation)
        outcome = executor.run(actions)
        jobs = executor.jobs
    enqueue_all(rt, jobs)
    log.info("follow-up actions run for installation %s: %s", ctx.installation_id,
             {k: v for k, v in outcome.items() if v})
    return outcome
