"""``connection.inactivity_warning``: Meta may disconnect a Coexistence number whose WhatsApp
Business app was not opened for 14 days. The scheduler checks (at most once a minute) for
active Coexistence numbers without app activity (echoes, contact syncs) for ``WARN_AFTER``
and publishes one warning per idle spell (a new warning only after new activity)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub.core.events import emit
from hub.core.models import Connection

WARN_AFTER = dt.timedelta(days=10)
EVERY = dt.timedelta(minutes=1)
_last: dt.datetime | None = None


def due(now: dt.datetime) -> bool:
    """True when a check is due (once a minute; always when the clock went back, as in tests)."""
    global _last
    if _last is None or now - _last >= EVERY or now < _last:
        _last = now
        return True
    return False


def warn_idle(session: Session, now: dt.datetime, limit: int = 1000) -> int:
    """Publish a warning for each idle number not yet warned for this idle spell."""
    seen = func.coalesce(Connection.last_app_activity_at, Connection.created_at)
    conns = session.scalars(select(Connection).where(
        Connection.mode == "coexistence", Connection.status == "active", seen < now - WARN_AFTER,
        (Connection.inactivity_warned_at.is_(None)) | (Connection.inactivity_warned_at < seen))
        .order_by(Connection.id).limit(limit)).all()
    for conn in conns:
        idle = (now - (conn.last_app_activity_at or conn.created_at)).days
        conn.inactivity_warned_at = now
        emit.inactivity_warning(session, conn, idle, f"no WhatsApp Business app activity for {idle} days: open the "
                                "app on the phone before day 14 or Meta may disconnect the number")
    return len(conns)
