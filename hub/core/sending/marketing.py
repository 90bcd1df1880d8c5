"""Marketing frequency: the workspace's own cap, and Meta's per-user marketing limit (131049).

* ``marketing_cap`` (workspace setting, off by default): at most ``max`` marketing templates per
  contact in a rolling ``days`` days. Counted from the hub's own sends (``category`` marketing,
  ``sent``, or attempted and still waiting for Meta's answer). A send over the cap is refused
  before Meta: 422 through the API, ``failed`` with the reason for connector sends, excluded
  (``marketing_cap``) from broadcasts.
* Meta's 131049 ("not delivered to maintain healthy ecosystem engagement": the user got too many
  marketing messages from businesses lately) is never retried: the contact gets
  ``marketing_limited_until`` = now + ``marketing_limit_cooldown_hours`` (default 24) and no
  marketing template leaves for them until then (422 / ``failed`` / broadcast exclusion
  ``marketing_limited``). Utility and authentication templates are not affected.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from hub.core.logs import event
from hub.core.models import Contact, Send, Workspace, iso_utc, utcnow

log = logging.getLogger(__name__)
DEFAULT_COOLDOWN_HOURS = 24.0
MARKETING = "marketing"


class MarketingProblem(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def settings_of(session: Session, workspace_id: str) -> dict[str, Any]:
    workspace = session.get(Workspace, workspace_id)
    return (workspace.settings or {}) if workspace is not None else {}


def cap_of(settings: dict[str, Any]) -> tuple[int, float] | None:
    """``(max, days)`` of the workspace's cap, or None when it has none."""
    cap = settings.get("marketing_cap")
    if not isinstance(cap, dict) or cap.get("max") is None or not cap.get("days"):
        return None
    return int(cap["max"]), float(cap["days"])


def cooldown(settings: dict[str, Any]) -> dt.timedelta:
    hours = settings.get("marketing_limit_cooldown_hours")
    return dt.timedelta(hours=float(DEFAULT_COOLDOWN_HOURS if hours is None else hours))


def recent_counts(session: Session, contact_ids: list[int], since: dt.datetime,
                  exclude_send_id: int | None = None) -> dict[int, int]:
    """Marketing sends per contact since ``since``: sent ones, and attempted ones whose answer
    is not in yet (a send claimed but not attempted is not counted: it is being judged now)."""
    if not contact_ids:
        return {}
    counted = or_(and_(Send.status == "sent", Send.sent_at >= since),
                  and_(Send.status == "sending", Send.attempted_at.is_not(None)))
    query = select(Send.contact_id, func.count()).where(Send.contact_id.in_(contact_ids),
                                                        Send.category == MARKETING, counted)
    if exclude_send_id is not None:
        query = query.where(Send.id != exclude_send_id)
    return dict(session.execute(query.group_by(Send.contact_id)).all())


def limited_problem(contact: Contact | None, now: dt.datetime) -> MarketingProblem | None:
    """Meta answered 131049 for this contact lately: no marketing until the cool-down ends."""
    until = contact.marketing_limited_until if contact is not None else None
    if until is not None and until > now:
        return MarketingProblem("marketing_limited", (
            f"Meta refused a marketing message to this contact (131049, per-user marketing limit): no marketing "
            f"templates to them until {iso_utc(until)} (workspace setting marketing_limit_cooldown_hours)"))
    return None


def cap_problem(settings: dict[str, Any], sent: int) -> MarketingProblem | None:
    """``sent`` marketing messages in the cap's window already: is one more over the cap?"""
    cap = cap_of(settings)
    if cap is None or sent < cap[0]:
        return None
    return MarketingProblem("marketing_cap", (
        f"marketing frequency cap: the contact got {sent} marketing message(s) in the last {cap[1]:g} days "
        f"(workspace setting marketing_cap: at most {cap[0]} per {cap[1]:g} days)"))


def problem(session: Session, workspace_id: str, contact: Contact | None, category: str | None,
            now: dt.datetime | None = None, *, exclude_send_id: int | None = None,
            pending: int = 0) -> MarketingProblem | None:
    """The first marketing-frequency problem of one send (None for non-marketing sends).
    ``pending``: marketing sends to this contact already passed in the same batch."""
    if category != MARKETING or contact is None:
        return None
    now = now or utcnow()
    found = limited_problem(contact, now)
    if found:
        return found
    settings = settings_of(session, workspace_id)
    cap = cap_of(settings)
    if cap is None or contact.id is None:
        return None
    sent = recent_counts(session, [contact.id], now - dt.timedelta(days=cap[1]), exclude_send_id).get(contact.id, 0)
    return cap_problem(settings, sent + pending)


def note_limited(session: Session, contact: Contact | None, *, send_id: int | None = None,
                 now: dt.datetime | None = None) -> None:
    """Meta answered 131049: start the contact's marketing cool-down (visible on the contact)."""
    if contact is None:
        return
    now = now or utcnow()
    until = now + cooldown(settings_of(session, contact.workspace_id))
    if contact.marketing_limited_until is None or contact.marketing_limited_until < until:
        contact.marketing_limited_until = until
    event(log, "contact marketing limited", level=logging.WARNING, contact_id=contact.id, send_id=send_id,
          meta_code=131049, until=contact.marketing_limited_until)
