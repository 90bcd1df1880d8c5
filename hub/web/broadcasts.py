"""The console's Broadcasts pages: past and running broadcasts with their progress, the compose
form (number, approved template, audience by tags, parameters) whose "Preview" is the API's dry
run (per-recipient text, exclusions with reasons, cost, portfolio headroom) and whose "Send" is
``POST /api/v1/broadcasts``; a broadcast's page polls its progress with htmx until it is done.
"""
from __future__ import annotations

from collections import Counter

from flask import abort, render_template
from sqlalchemy import func, select

from hub.api.broadcast_preview import body_text
from hub.core.models import Broadcast, Connection, Contact, Message, Send, Template
from hub.core.sending.templates import placeholders
from hub.web.access import console_blueprint, console_page, current, rt

bp = console_blueprint("console_broadcasts", __name__)  # "broadcasts" is the API's

REASONS = {"opted_out": "Opted out of all messages", "marketing_opted_out": "Opted out of marketing",
           "no_marketing_consent": "No marketing consent", "marketing_limited": "Meta limits marketing to them "
           "for now (131049)", "marketing_cap": "Marketing frequency cap / cool-down reached",
           "missing_value": "A parameter field is empty for them", "authentication_needs_phone":
           "Authentication templates need a phone number"}
WAITING = ("queued", "scheduled", "sending")
POLL_SECONDS = 3


def progress_of(session, workspace_id: str, broadcast_ids: list[str]) -> dict[str, dict]:
    """Per broadcast: recipients, waiting, sent (accepted by Meta), delivered, read, failed, and
    ``done`` once nothing waits; one grouped query for all of ``broadcast_ids``."""
    rows = session.execute(select(Send.broadcast_id, Send.status, Message.status, func.count())
                           .select_from(Send).outerjoin(Message, Message.send_id == Send.id)
                           .where(Send.workspace_id == workspace_id, Send.broadcast_id.in_(broadcast_ids))
                           .group_by(Send.broadcast_id, Send.status, Message.status)).all()
    out = {bid: Counter() for bid in broadcast_ids}
    for bid, send_status, message_status, n in rows:
        tally = out[bid]
        tally["recipients"] += n
        if send_status in WAITING:
            tally["waiting"] += n
        elif send_status in ("failed", "dead") or message_status == "failed":
            tally["failed"] += n
        elif send_status == "sent":
            tally["sent"] += n
            tally["delivered"] += n if message_status in ("delivered", "read") else 0
            tally["read"] += n if message_status == "read" else 0
        else:  # cancelled…
            tally["other"] += n
    result = {}
    for bid, tally in out.items():
        recipients = tally["recipients"]
        finished = recipients - tally["waiting"]
        result[bid] = {**{k: tally[k] for k in ("recipients", "waiting", "sent", "delivered", "read", "failed",
                                                 "other")},
                       "done": bool(recipients) and not tally["waiting"],
                       "percent": round(100 * finished / recipients) if recipients else 100}
    return result


def _templates(session, workspace_id: str) -> list[dict]:
    rows = session.scalars(select(Template).where(Template.workspace_id == workspace_id,
                                                  Template.status == "APPROVED")
                           .order_by(Template.name, Template.language)).all()
    return [{"name": t.name, "language": t.language, "waba_id": t.waba_id, "category": (t.category or "").lower(),
             "params": len(placeholders(body_text(t))), "body": body_text(t)} for t in rows]


def _tags(session, workspace_id: str) -> list[tuple[str, int]]:
    counts: Counter = Counter()
    for tags in session.scalars(select(Contact.tags).where(Contact.workspace_id == workspace_id)):
        counts.update(set(tags or []))
    return sorted(counts.items())


@bp.get("/broadcasts")
@console_page("admin")
def index():
    """Past and running broadcasts, and the compose form."""
    ws = current().workspace_id
    with rt().db.session() as session:
        broadcasts = session.scalars(select(Broadcast).where(Broadcast.workspace_id == ws)
                                     .order_by(Broadcast.created_at.desc()).limit(50)).all()
        progress = progress_of(session, ws, [b.id for b in broadcasts])
        connections = session.scalars(select(Connection).where(Connection.workspace_id == ws)
                                      .order_by(Connection.created_at)).all()
        templates = _templates(session, ws)
        tags = _tags(session, ws)
        session.expunge_all()
    return render_template("console/broadcasts/index.html", broadcasts=broadcasts, progress=progress,
                           connections=connections, templates=templates, tags=tags,
                           max_params=max([t["params"] for t in templates] + [1]))


def _owned(session, broadcast_id: str) -> Broadcast:
    bc = session.get(Broadcast, broadcast_id)
    if bc is None or bc.workspace_id != current().workspace_id:
        abort(404)
    return bc


@bp.get("/broadcasts/<broadcast_id>")
@console_page("admin")
def detail(broadcast_id: str):
    """One broadcast: what it sends, to whom, who was left out and why, and its progress."""
    with rt().db.session() as session:
        bc = _owned(session, broadcast_id)
        conn = session.get(Connection, bc.connection_id)
        template = session.scalars(select(Template).where(
            Template.workspace_id == bc.workspace_id, Template.waba_id == conn.waba_id,
            Template.name == bc.template_name, Template.language == bc.template_language)).first()
        progress = progress_of(session, bc.workspace_id, [bc.id])[bc.id]
        people = _people(session, bc.workspace_id, (bc.audience or {}).get("exclusions", []))
        session.expunge_all()
    return render_template("console/broadcasts/detail.html", bc=bc, conn=conn, template=template,
                           body=body_text(template) if template else "", progress=progress, reasons=REASONS,
                           poll=POLL_SECONDS, people=people)


def _people(session, workspace_id: str, exclusions: list[dict]) -> dict[str, str]:
    """Public contact id → a name (or number) for the listed exclusions, in one query."""
    from hub.api import ids

    wanted = {ids.decode("ct", e.get("contact_id")): e.get("contact_id") for e in exclusions}
    wanted.pop(None, None)
    rows = session.scalars(select(Contact).where(Contact.workspace_id == workspace_id,
                                                 Contact.id.in_(list(wanted)))).all() if wanted else []
    return {wanted[c.id]: c.profile_name or c.full_name or c.first_name or (f"+{c.wa_id}" if c.wa_id else "")
            for c in rows}


@bp.get("/broadcasts/<broadcast_id>/progress")
@console_page("admin")
def progress(broadcast_id: str):
    """The progress fragment (htmx polls it every few seconds; it stops polling once done)."""
    with rt().db.session() as session:
        bc = _owned(session, broadcast_id)
        shown = progress_of(session, bc.workspace_id, [bc.id])[bc.id]
        session.expunge_all()
    return render_template("console/broadcasts/_progress.html", bc=bc, progress=shown, poll=POLL_SECONDS)
