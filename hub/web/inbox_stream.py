"""Live inbox: ``GET /inbox/stream``, server-sent events for the viewer's workspace.

The generator polls the database every ``TICK`` seconds for rows newer than its cursor: new
``messages`` (customer, API/connector sends, phone-app echoes) and recorded ``outbound_events``
of status changes, edits and opt-outs. Each poll opens a session and closes it before sleeping,
so an idle stream holds no database connection. A stream lasts at most ``MAX_SECONDS`` (it ties
one web thread: gunicorn's gthread workers have ``--threads`` of them), then ends; the browser's
``EventSource`` reconnects by itself with ``Last-Event-ID`` (``m<message id>.t<epoch ms>``), so
nothing is missed. A client that went away is noticed at the next write (an event or the
heartbeat comment) and the generator is closed. The page falls back to polling its fragments
every 5 s when ``EventSource`` is missing or keeps failing (``static/inbox.js``).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections.abc import Iterator

from flask import Response, request
from sqlalchemy import func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from hub.api import ids
from hub.core.models import Message, OutboundEvent, utcnow
from hub.web.access import console_page, current
from hub.web.inbox import bp, rt

log = logging.getLogger(__name__)
TICK = 1.0  # seconds between polls
MAX_SECONDS = 55.0  # then the browser reconnects (Last-Event-ID)
HEARTBEAT = 10.0  # a comment line this often: finds a client that went away
MARGIN = dt.timedelta(seconds=5)  # rows committed late with an earlier stamp are still seen
EVENT_TYPES = ("message.status", "message.echoed", "contact.opted_out", "contact.opted_in")
CURSOR = re.compile(r"^m(\d{1,19})\.t(\d{1,15})$")


def parse_cursor(value: str | None) -> tuple[int, dt.datetime] | None:
    """``m<message id>.t<epoch ms>`` → (message id, naive UTC time); None when absent or malformed."""
    match = CURSOR.match(value or "")
    if not match:
        return None
    try:
        at = dt.datetime.fromtimestamp(int(match.group(2)) / 1000, dt.timezone.utc).replace(tzinfo=None)
    except (OverflowError, ValueError, OSError):
        return None
    return int(match.group(1)), at


def format_cursor(message_id: int, at: dt.datetime) -> str:
    return f"m{message_id}.t{int(at.replace(tzinfo=dt.timezone.utc).timestamp() * 1000)}"


def _frame(event: str, data: dict, cursor: str) -> str:
    return f"id: {cursor}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def poll(db, workspace_id: str, message_id: int, at: dt.datetime, seen: set[str], codec=None
         ) -> tuple[list[tuple[str, dict]], int, dt.datetime]:
    """One look at the database: the events newer than the cursor, and the cursor after them
    (``codec``: the public ids' codec, taken while the app context exists)."""
    codec = codec or ids.codec()
    out: list[tuple[str, dict]] = []
    now = utcnow()
    with db.session() as session:
        rows = session.execute(select(Message.id, Message.contact_id, Message.connection_id, Message.direction,
                                      Message.origin, Message.created_at)
                               .where(Message.workspace_id == workspace_id,
                                      or_(Message.id > message_id, Message.created_at > now - MARGIN))
                               .order_by(Message.id).limit(200)).all()
        for row in rows:
            key = f"msg:{row.id}"
            if key in seen:
                continue
            seen.add(key)
            message_id = max(message_id, row.id)
            out.append(("message", {"id": codec.encode("msg", row.id), "contact_id": codec.encode("ct", row.contact_id)
                                    if row.contact_id else None, "connection_id": row.connection_id,
                                    "direction": row.direction, "origin": row.origin}))
        events = session.scalars(select(OutboundEvent).where(
            OutboundEvent.workspace_id == workspace_id, OutboundEvent.type.in_(EVENT_TYPES),
            OutboundEvent.created_at > at - MARGIN).order_by(OutboundEvent.created_at).limit(200)).all()
        for evt in events:
            at = max(at, evt.created_at)
            if evt.id in seen:
                continue
            seen.add(evt.id)
            data = evt.data or {}
            out.append(("status" if evt.type == "message.status" else evt.type.replace("message.", "").replace(
                "contact.", ""), {"type": evt.type, "wamid": data.get("wamid"), "status": data.get("status"),
                                  "connection_id": data.get("connection_id")}))
    return out, message_id, at


def events(db, workspace_id: str, cursor: tuple[int, dt.datetime] | None, *, max_seconds: float = MAX_SECONDS,
           tick: float = TICK, codec=None) -> Iterator[str]:
    """The stream's text, until ``max_seconds`` have passed or the client has gone."""
    codec = codec or ids.codec()
    if cursor is None:  # a new stream starts from now
        with db.session() as session:
            start = session.scalar(select(func.max(Message.id)).where(Message.workspace_id == workspace_id)) or 0
        cursor = (start, utcnow())
    message_id, at = cursor
    seen: set[str] = set()
    begun = last_write = time.monotonic()
    yield "retry: 2000\n: coexhub inbox stream\n\n"
    try:
        while time.monotonic() - begun < max_seconds:
            try:
                found, message_id, at = poll(db, workspace_id, message_id, at, seen, codec)
            except SQLAlchemyError as exc:  # the database is away: end; the browser retries (or polls)
                log.warning("inbox stream of %s ended: database error %s", workspace_id, type(exc).__name__)
                return
            position = format_cursor(message_id, at)
            for name, data in found:
                yield _frame(name, data, position)
                last_write = time.monotonic()
            if time.monotonic() - last_write >= HEARTBEAT:
                yield ": ping\n\n"
                last_write = time.monotonic()
            if len(seen) > 5000:
                seen.clear()
            time.sleep(tick)
    except GeneratorExit:  # the client went away (the server closed the generator)
        log.debug("inbox stream of %s closed by the client", workspace_id)
        raise
    yield f"id: {format_cursor(message_id, at)}\nevent: bye\ndata: {{}}\n\n"


@bp.get("/inbox/stream")
@console_page("agent")
def stream():
    """Server-sent events for the viewer's workspace (see the module's docstring)."""
    workspace_id = current().workspace_id
    cursor = parse_cursor(request.headers.get("Last-Event-ID") or request.args.get("after"))
    log.info("inbox stream opened for workspace %s", workspace_id)
    return Response(events(rt().db, workspace_id, cursor, codec=ids.codec()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
