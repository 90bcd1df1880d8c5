"""Console: the send queue — scheduled, held, queued, failed and dead sends with their reasons,
cancel and replay (``/api/v1/sends/…``), and per number its pacing rate and current use,
quality, portfolio messaging limit and headroom, and why it is paused with what to do.

Reads go through the ORM, filtered by the viewer's workspace; the numbers' live figures come
from Redis (two cheap reads per number) and show "unknown" when Redis does not answer.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import render_template, request
from sqlalchemy import and_, func, or_, select

from hub.api import ids
from hub.api.connections import ConnectionOut
from hub.api.events import public_text
from hub.core.models import Connection, Contact, Send, utcnow
from hub.core.sending import portfolio
from hub.web import reasons
from hub.web.access import console_blueprint, console_page, current, rt

log = logging.getLogger(__name__)
bp = console_blueprint("queue", __name__)
PAGE = 50

# tab → (label, filter); "held" are waiting sends with a hold reason, "scheduled" the rest
TABS: dict[str, tuple[str, Any]] = {
    "scheduled": ("Scheduled", lambda: [Send.status == "scheduled", Send.hold_reason.is_(None)]),
    "held": ("Held", lambda: [Send.status.in_(("scheduled", "queued")), Send.hold_reason.is_not(None)]),
    "queued": ("Queued", lambda: [or_(Send.status == "sending", and_(Send.status == "queued", Send.hold_reason.is_(None)))]),
    "failed": ("Failed", lambda: [Send.status == "failed"]),
    "dead": ("Dead", lambda: [Send.status == "dead"]),
}


def _counts(session, workspace_id: str) -> dict[str, int]:
    rows = session.execute(select(Send.status, Send.hold_reason.is_not(None), func.count()).where(
        Send.workspace_id == workspace_id, Send.status.in_(("scheduled", "queued", "sending", "failed", "dead")))
        .group_by(Send.status, Send.hold_reason.is_not(None))).all()
    counts = dict.fromkeys(TABS, 0)
    for status, held, n in rows:
        if held and status in ("scheduled", "queued"):
            counts["held"] += n
        elif status in ("queued", "sending"):
            counts["queued"] += n
        elif status in counts:
            counts[status] += n
    return counts


def send_view(send: Send, numbers: dict[str, str], names: dict[int, str]) -> dict[str, Any]:
    """A send as a queue row: what, to whom, from which number, why it is here."""
    what = f"template {send.template_name}" if send.kind == "template" else (send.text or "")[:80]
    return {"id": ids.encode("snd", send.id), "to": send.to, "name": names.get(send.contact_id or 0),
            "what": what, "origin": send.origin, "status": send.status,
            "number": numbers.get(send.connection_id or "", "—"), "when": send.not_before or send.created_at,
            "attempts": send.attempts, "error": public_text(send.last_error),
            "reason": reasons.send_reason(send.status, send.hold_reason, send.error_code, public_text(send.last_error)),
            "cancellable": send.status in ("scheduled", "queued"), "replayable": send.status in ("failed", "dead")}


def governor_use(conn: Connection) -> int | None:
    """Sends of this number in flight or finished within the last second (the governor's Redis
    sets), or None when Redis cannot be read."""
    r = rt()
    keys = [f"{r.settings.key_prefix}:gov:{conn.phone_number_id}:{k}" for k in ("inflight", "done")]
    try:
        seconds, micros = r.redis.time()
        now = int(seconds) * 1_000_000 + int(micros)
        pipe = r.redis.pipeline(transaction=False)
        pipe.zcount(keys[0], now - 60_000_000, "+inf")
        pipe.zcount(keys[1], now - 1_000_000, "+inf")
        inflight, done = pipe.execute()
        return int(inflight) + int(done)
    except Exception as exc:  # the page still renders without the live figure
        log.warning("governor use unreadable for %s: %s", conn.id, exc)
        return None


def number_view(conn: Connection) -> dict[str, Any]:
    """A number's sending state: rate and use, quality, messaging limit and headroom, status."""
    r = rt()
    try:
        used = portfolio.Reach(r.redis, r.settings.key_prefix).used(conn)
    except Exception as exc:
        log.warning("portfolio use unreadable for %s: %s", conn.id, exc)
        used = None
    plan = portfolio.plan(conn, used or 0, 0, None)
    quality = conn.quality or {}
    rating = quality.get("rating") or quality.get("event")
    warning = ConnectionOut().inactivity(conn)
    return {"id": conn.id, "display": conn.display_phone_number or conn.phone_number_id,
            "verified_name": conn.verified_name, "mode": conn.mode, "status": conn.status,
            "rate": conn.messages_per_second, "use": governor_use(conn), "quality": rating,
            "quality_tone": reasons.quality_tone(rating), "quality_at": quality.get("at"),
            "tier": portfolio.tier_name(conn.messaging_limit), "governed": portfolio.governed(conn),
            "reach_used": used, "headroom": plan["headroom"], "paused_at": conn.paused_at,
            "pause": reasons.pause_reason(conn.status, conn.pause_reason),
            "inactivity": warning, "inactivity_what_to_do": reasons.INACTIVITY_WHAT_TO_DO if warning else None,
            "last_app_activity_at": conn.last_app_activity_at}


@bp.get("/queue")
@console_page(role="agent")
def index():
    viewer = current()
    tab = request.args.get("tab", "dead")
    tab = tab if tab in TABS else "dead"
    with rt().db.session() as s:
        counts = _counts(s, viewer.workspace_id)
        if request.args.get("tab") is None:  # open on the first tab that needs attention
            tab = next((t for t in ("dead", "failed", "held", "queued", "scheduled") if counts[t]), "scheduled")
        query = select(Send).where(Send.workspace_id == viewer.workspace_id, *TABS[tab][1]())
        order = (Send.not_before.asc(), Send.id.asc()) if tab in ("scheduled", "held") else (Send.id.desc(),)
        rows = s.scalars(query.order_by(*order).limit(PAGE)).all()
        conns = s.scalars(select(Connection).where(Connection.workspace_id == viewer.workspace_id)
                          .order_by(Connection.created_at)).all()
        numbers = {c.id: c.display_phone_number or c.phone_number_id for c in conns}
        contact_ids = {r.contact_id for r in rows if r.contact_id}
        names = dict(s.execute(select(Contact.id, func.coalesce(Contact.full_name, Contact.profile_name))
                               .where(Contact.id.in_(contact_ids))).all()) if contact_ids else {}
        sends = [send_view(r, numbers, names) for r in rows]
        number_views = [number_view(c) for c in conns]
    return render_template("console/queue/index.html", tabs=TABS, tab=tab, counts=counts, sends=sends,
                           numbers=number_views, page=PAGE, now=utcnow())
