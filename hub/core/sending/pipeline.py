"""The ``deliver`` job: checks, governor, Graph call, error classification, status.

Checks run in order before Meta sees anything: connection active → not opted out →
approved template with valid parameters (or free-form inside the 24-hour window) →
echo-aware hold for automated sends → pair rate → the per-number governor.
"""
from __future__ import annotations

import datetime as dt
import logging
import time

from sqlalchemy import select

from hub.core import contacts
from hub.core.metrics import count
from hub.core.models import Connection, Contact, Message, Send, utcnow
from hub.core.runtime import current
from hub.core.sending import errors
from hub.core.sending.governor import Governor
from hub.core.sending.templates import TemplateProblem, build_template, find_template
from hub.core.whatsapp.account import pause
from hub.core.whatsapp.graph import Graph, GraphError

log = logging.getLogger(__name__)
WINDOW = dt.timedelta(hours=24)
AUTOMATED = ("connector", "automation", "broadcast")
MAX_ATTEMPTS = 6


class Hold(Exception):
    """Not now: try again at ``until`` (None: when the connection is active again)."""

    def __init__(self, reason: str, until: dt.datetime | None = None):
        super().__init__(reason)
        self.reason, self.until = reason, until


class Refuse(Exception):
    """Never: the send fails with this reason."""


def deliver(send_id: int) -> str:
    """RQ job: deliver one send (idempotent: only a ``queued`` send is attempted)."""
    rt = current()
    governor = Governor(rt.redis, rt.settings.key_prefix)
    with rt.db.session() as session:
        query = select(Send).where(Send.id == send_id)
        send = session.scalars(query if rt.db.is_sqlite else query.with_for_update(skip_locked=True)).first()
        if send is None or send.status != "queued":
            return "skipped"
        try:
            conn, payload = prepare(session, send, governor)
        except Hold as hold:
            send.status, send.hold_reason, send.not_before = "scheduled", hold.reason, hold.until
            return _done(rt, "held")
        except Refuse as refuse:
            send.status, send.last_error = "failed", str(refuse)
            return _done(rt, "refused")
        send.status, send.attempts, send.hold_reason = "sending", send.attempts + 1, None
        token, number, rate = conn.access_token, conn.phone_number_id, conn.messages_per_second
    token_id = f"{send_id}:{time.monotonic_ns()}"
    slot = governor.reserve(number, rate, token_id)
    while not slot.granted and slot.wait <= 0.05:  # a slot frees up in a moment
        time.sleep(slot.wait)
        slot = governor.reserve(number, rate, token_id)
    if not slot.granted:  # the number is booked further ahead than a worker should sleep
        with rt.db.session() as session:
            send = session.get(Send, send_id)
            send.status, send.attempts = "scheduled", send.attempts - 1
            send.not_before = utcnow() + dt.timedelta(seconds=slot.wait)
        return _done(rt, "deferred")
    time.sleep(slot.wait)
    try:
        wamid = Graph.from_settings(rt.settings).send_message(number, token, payload)
    except GraphError as exc:
        governor.release(number, token_id)
        with rt.db.session() as session:
            outcome = _failed(session, session.get(Send, send_id), exc)
        return _done(rt, outcome)
    governor.release(number, token_id)
    with rt.db.session() as session:
        _sent(session, session.get(Send, send_id), wamid, payload)
    return _done(rt, "sent")


def _done(rt, outcome: str) -> str:
    count(rt.redis, rt.settings.key_prefix, "jobs", job="deliver", outcome=outcome)
    return outcome


def prepare(session, send: Send, governor: Governor) -> tuple[Connection, dict]:
    """Run the checks; return the connection and the Graph payload, or raise Hold/Refuse."""
    conn = session.get(Connection, send.connection_id) if send.connection_id else None
    if conn is None:
        raise Refuse("no WhatsApp connection")
    if conn.status != "active":
        raise Hold("connection_paused")
    contact = session.get(Contact, send.contact_id) if send.contact_id else None
    now = utcnow()
    if contact is not None and contact.opted_out and send.origin != "system":
        raise Refuse("contact opted out")
    if send.kind == "template":
        template = find_template(session, send.workspace_id, conn.waba_id, send.template_name,
                                 send.template_language)
        send.category = send.category or (template.category.lower() if template and template.category else None)
        if contact is not None and send.category == "marketing" and contact.marketing_opted_out:
            raise Refuse("contact opted out of marketing messages")
        try:
            component_payload = build_template(template, send.template_name, send.template_language, send.params)
        except TemplateProblem as problem:
            raise Refuse(str(problem)) from problem
        payload = {"messaging_product": "whatsapp", "to": send.to, "type": "template",
                   "biz_opaque_callback_data": f"send:{send.id}", "template": component_payload}
    else:
        if contact is None or not contact.last_inbound_at or now - contact.last_inbound_at > WINDOW:
            raise Refuse("outside the 24-hour customer service window: send a template")
        payload = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": send.to,
                   "type": "text", "text": {"body": send.text or "", "preview_url": False}}
    if send.origin in AUTOMATED and contact is not None and contact.hold_until and contact.hold_until > now:
        raise Hold("human_took_over", contact.hold_until)
    pair = governor.pair(conn.phone_number_id, send.to)
    if not pair.granted:
        raise Hold("pair_rate", now + dt.timedelta(seconds=pair.wait))
    return conn, payload


def _sent(session, send: Send, wamid: str, payload: dict) -> None:
    now = utcnow()
    send.status, send.wamid, send.sent_at, send.last_error, send.error_code = "sent", wamid, now, None, None
    body = {payload["type"]: payload[payload["type"]]}
    existing = session.scalars(select(Message).where(Message.connection_id == send.connection_id,
                                                     Message.wamid == wamid)).first()
    if existing is not None:  # a status webhook arrived before this commit
        existing.type, existing.body, existing.send_id = payload["type"], body, send.id
        existing.contact_id = existing.contact_id or send.contact_id
        return
    session.add(Message(workspace_id=send.workspace_id, connection_id=send.connection_id,
                        contact_id=send.contact_id, wamid=wamid, direction="out", origin="api",
                        type=payload["type"], body=body, status="accepted", timestamp=now, send_id=send.id))


def _failed(session, send: Send, exc: GraphError) -> str:
    decision = errors.classify(exc)
    send.error_code, send.last_error = exc.code, f"{decision.reason} ({exc})"[:2000]
    conn = session.get(Connection, send.connection_id)
    if decision.opt_out_marketing and send.contact_id:
        contacts.opt_out(session.get(Contact, send.contact_id), marketing_only=True)
    if decision.flag_template:
        template = find_template(session, send.workspace_id, conn.waba_id, send.template_name, send.template_language)
        if template is not None:
            template.status, template.status_reason = decision.flag_template, decision.reason
    if decision.action == errors.PAUSE:
        pause(conn, f"{exc.code}: {decision.reason}")
        send.status, send.hold_reason, send.not_before = "scheduled", "connection_paused", None
        send.attempts -= 1  # not the send's fault; it waits with the connection's queue
        return "paused"
    if decision.action == errors.RETRY:
        if send.attempts >= MAX_ATTEMPTS:
            send.status = "dead"
            return "dead"
        delay = decision.base_delay * decision.growth ** (send.attempts - 1)
        send.status, send.not_before = "scheduled", utcnow() + dt.timedelta(seconds=delay)
        send.hold_reason = "retry"
        return "retry"
    send.status = "failed"
    return "failed"
