"""``GET|POST /webhooks/whatsapp``: Meta's verify handshake and signed webhook ingest.

One Meta app webhook serves every workspace. Ingest verifies ``X-Hub-Signature-256`` on the
raw body, stores the envelope (deduped on its SHA-256: Meta redelivers identical bodies),
enqueues it and answers 200; routing to connections by ``phone_number_id`` happens in the job.
The POST's steps (``intake``, ``link_more``; its answer is ``hub.api.webhooks.stored_answer``)
are shared with ``hub.api.fast_webhooks``.
A signed body that is not an envelope is stored as ``rejected`` (visible, never processed) and
still answered 200: nothing Meta signed is lost, and Meta does not retry it for days.
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from sqlalchemy import select

from hub.api.errors import ApiError, error_response
from hub.api.webhooks import stored_answer
from hub.core import ingest, tenancy
from hub.core.metrics import count
from hub.core.models import Connection

log = logging.getLogger(__name__)
bp = Blueprint("whatsapp_webhook", __name__)
MAX_ROUTED_AT_INGEST = 100  # changes routed (cached lookups) at ingest to list a delivery; processing routes all
_ROUTE_CACHE: dict[str, tuple[float, str | None]] = {}
ROUTE_TTL = 30.0
RULE = "/webhooks/whatsapp"


@bp.get(RULE)
def verify_subscription():
    settings = current_app.extensions["coexhub"].settings
    token = request.args.get("hub.verify_token", "")
    if (request.args.get("hub.mode") == "subscribe" and settings.meta_verify_token
            and hmac.compare_digest(token.encode(), settings.meta_verify_token.encode())):
        return Response(request.args.get("hub.challenge", ""), mimetype="text/plain")
    log.warning("webhook verification refused (mode %r)", request.args.get("hub.mode"))
    return error_response(403, "verification_failed",
                          "hub.mode must be 'subscribe' and hub.verify_token must match COEXHUB_META_VERIFY_TOKEN")


def signature_ok(body: bytes, header: str | None, app_secret: str) -> bool:
    if not header or not app_secret or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header[7:].strip().encode())


@bp.post(RULE)
def receive():
    rt = current_app.extensions["coexhub"]
    found = intake(rt, request.get_data(cache=True), request.headers.get("X-Hub-Signature-256"))
    g.workspace_id = found.workspace_id  # also for the request's log line
    event_id, duplicate = ingest.store(rt, **found.fields)
    if needs_link(found, event_id):
        link_more(rt, found, event_id)
    return jsonify(stored_answer(event_id, duplicate, found.problem))


@dataclass
class Intake:
    """A verified envelope ready to store (``fields`` for ``ingest.store``)."""
    fields: dict[str, Any]
    workspaces: list[str]  # the first is the event's; more are linked after the insert
    problem: str | None

    @property
    def workspace_id(self) -> str | None:
        return self.workspaces[0] if self.workspaces else None


def intake(rt, body: bytes, signature: str | None) -> Intake:
    """Verify and read a Meta webhook (shared with ``hub.api.fast_webhooks``); ``ApiError`` 401."""
    if not signature_ok(body, signature, rt.settings.meta_app_secret):
        count(rt.redis, rt.settings.key_prefix, "ingest", provider="whatsapp", result="bad_signature")
        raise ApiError(401, "bad_signature", "X-Hub-Signature-256 is missing or wrong")
    envelope, problem = understood(body)
    if problem:
        log.warning("signed WhatsApp webhook kept as rejected: %s", problem)
    workspaces = _workspaces_of(rt, envelope)
    return Intake(workspaces=workspaces, problem=problem, fields={
        "provider": "whatsapp", "scope": "meta", "dedupe_key": ingest.body_hash(body), "body": body,
        "headers": {}, "topic": _first_field(envelope), "workspace_id": workspaces[0] if workspaces else None,
        "status": ingest.REJECTED if problem else "pending", "error": problem})


def needs_link(found: Intake, event_id: int | None) -> bool:
    """Rare: one delivery, several workspaces' numbers (``link_more`` writes the extra links)."""
    return event_id is not None and len(found.workspaces) > 1


def link_more(rt, found: Intake, event_id: int) -> None:
    """Link the stored event to the other workspaces whose numbers it names."""
    try:
        with rt.db.autocommit.connect() as conn:
            tenancy.link_ids(conn, event_id, found.workspaces[1:])
    except Exception:  # stored is what counts; processing links them again
        log.exception("could not link inbound event %s to workspaces %s", event_id, found.workspaces[1:])


def understood(body: bytes) -> tuple[object, str | None]:
    """``(envelope, None)``, or ``(what was parsed, reason)`` when it is not a WhatsApp envelope."""
    try:
        envelope = json.loads(body)
    except RecursionError:
        return None, "the body is JSON nested too deeply"
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        return None, f"the body is not JSON ({type(exc).__name__})"
    if not isinstance(envelope, dict):
        return envelope, "the body is not a JSON object"
    try:
        _entries(envelope)
    except ValueError as exc:
        return envelope, f"the body is not a WhatsApp webhook envelope: {exc}"
    return envelope, None


def _entries(envelope) -> list[dict]:
    """The envelope's entries, checked to be objects holding lists of change objects."""
    entries = envelope.get("entry") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("entry must be a list of objects")
    for entry in entries:
        changes = entry.get("changes") or []
        if not isinstance(changes, list) or not all(isinstance(c, dict) and isinstance(c.get("value") or {}, dict)
                                                    for c in changes):
            raise ValueError("changes must be a list of objects with object values")
    return entries


def _changes(envelope):
    """``(entry, change)`` pairs of whatever objects the envelope holds (any shape tolerated)."""
    entries = envelope.get("entry") if isinstance(envelope, dict) else None
    for entry in entries if isinstance(entries, list) else ():
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else ():
            if isinstance(change, dict):
                yield entry, change


def _first_field(envelope) -> str | None:
    for _, change in _changes(envelope):
        field = change.get("field")
        return field if isinstance(field, str) else None
    return None


def _workspaces_of(rt, envelope) -> list[str]:
    """The workspaces of the changes (for listing, so a failing delivery is visible to each);
    processing routes each change again and records any workspace found only then."""
    found: dict[str, None] = {}
    for entry, change in itertools.islice(_changes(envelope), MAX_ROUTED_AT_INGEST):  # the rest: at processing
        value = change.get("value")
        metadata = value.get("metadata") if isinstance(value, dict) else None
        number = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
        key = _route_key("pn", number) or _route_key("waba", entry.get("id"))
        workspace = _cached_workspace(rt, key) if key else None
        if workspace:
            found.setdefault(workspace)
    return list(found)


def _route_key(kind: str, value) -> str | None:
    """``kind:id`` when ``value`` can be a Meta id."""
    ident = tenancy.ident(value)
    return f"{kind}:{ident}" if ident else None


def _cached_workspace(rt, key: str) -> str | None:
    now = time.monotonic()
    hit = _ROUTE_CACHE.get(key)
    if hit and hit[0] > now:
        return hit[1]
    kind, _, ident = key.partition(":")
    column = Connection.phone_number_id if kind == "pn" else Connection.waba_id
    with rt.db.engine.connect() as conn:
        workspace_id = conn.execute(select(Connection.workspace_id).where(column == ident).limit(1)).scalar()
    if len(_ROUTE_CACHE) > 10_000:
        _ROUTE_CACHE.clear()
    _ROUTE_CACHE[key] = (now + ROUTE_TTL, workspace_id)
    return workspace_id
