"""``POST /webhooks/<connector>/<installation_id>``: verify, store, enqueue, answer 200.

A verified body the connector cannot read (not JSON, nested too deeply, an extractor failing
on its shape) is stored as a ``rejected`` event with the reason and answered 200: nothing
signed is lost, and it is listed by ``GET /api/v1/events?status=rejected``. Only connectors
that do not verify at all (``NoVerification``) still answer 400 to an unreadable body.

The steps are plain functions (``installation``, ``intake``, ``answer``) shared by the Flask
view below and by ``hub.api.fast_webhooks`` (the same route served outside Flask).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from hub.api import ids
from hub.api.errors import ApiError
from hub.core import ingest, installations
from hub.core.metrics import count
from hub.core.verifiers import IncomingRequest, NoVerification, Rejected, SharedToken

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)
RULE = "/webhooks/<connector_name>/<installation_id>"


@dataclass
class Intake:
    """A verified webhook ready to store (``fields`` for ``ingest.store``), or a ping to answer."""
    fields: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None
    ping: bool = False


@bp.post(RULE)
def receive(connector_name: str, installation_id: str):
    rt = current_app.extensions["coexhub"]
    connector, inst = installation(rt, connector_name, installation_id)
    g.workspace_id = inst.workspace_id  # for the request's log line
    body = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH
    found = intake(rt, connector, inst, IncomingRequest(request.headers, body, request.args))
    if found.ping:
        return jsonify(answer(found))
    return jsonify(answer(found, *ingest.store(rt, **found.fields)))


def installation(rt, connector_name: str, installation_id: str):
    """``(connector, installation route)``; ``ApiError`` 404 for an unknown or disabled one.
    The caller has the installation's workspace for its log line even when disabled."""
    connector = rt.plugins.connector(connector_name)
    if connector is None:
        raise ApiError(404, "unknown_connector", f"no connector named {connector_name!r}")
    inst = installations.lookup(rt, installation_id)
    if inst is None or inst.connector != connector_name:
        raise ApiError(404, "unknown_installation", f"no {connector_name} installation {installation_id}")
    return connector, inst


def intake(rt, connector, inst, incoming: IncomingRequest) -> Intake:
    """Verify and read a webhook for ``inst`` (enabled or 404); ``ApiError`` 401/400 if refused."""
    name, installation_id = inst.connector, inst.id
    if not inst.enabled:
        raise ApiError(404, "installation_disabled", f"installation {installation_id} is disabled")
    if _safely(connector.is_ping, incoming):
        return Intake(ping=True)
    try:
        genuine = _verified(rt, connector, incoming, installation_id, inst.secrets)
    except Rejected as exc:  # signed, but refused for a stated reason (too old: a replay)
        count(rt.redis, rt.settings.key_prefix, "ingest", provider=name, result="rejected")
        log.warning("%s webhook for %s refused: %s", name, installation_id, exc)
        raise ApiError(401, "rejected", str(exc)) from exc
    if not genuine:
        count(rt.redis, rt.settings.key_prefix, "ingest", provider=name, result="bad_signature")
        log.warning("%s webhook for %s refused: bad signature", name, installation_id)
        raise ApiError(401, "bad_signature", "the webhook signature is missing or wrong")
    dedupe_key, topic, problem = _read(connector, incoming)
    if problem and isinstance(connector.verify, NoVerification):  # nobody vouches for these bytes
        count(rt.redis, rt.settings.key_prefix, "ingest", provider=name, result="malformed")
        raise ApiError(400, "malformed_body", f"the body cannot be decoded: {problem}")
    if problem:
        log.warning("signed %s webhook for %s kept as rejected: %s", name, installation_id, problem)
    return Intake(problem=problem, fields={
        "provider": name, "scope": installation_id, "dedupe_key": dedupe_key, "body": incoming.body,
        "headers": _kept_headers(connector, incoming.headers), "topic": topic,
        "workspace_id": inst.workspace_id, "status": ingest.REJECTED if problem else "pending", "error": problem})


def answer(found: Intake, event_id: int | None = None, duplicate: bool = False) -> dict[str, Any]:
    """The 200 answer's JSON body."""
    return {"ok": True, "ping": True} if found.ping else stored_answer(event_id, duplicate, found.problem)


def stored_answer(event_id: int | None, duplicate: bool, problem: str | None) -> dict[str, Any]:
    """The 200 answer to a stored webhook (this route's and Meta's): its public event id,
    whether it was a duplicate, and why it was kept as rejected."""
    return {"ok": True, "event_id": event_id and ids.encode("evt", event_id), "duplicate": duplicate,
            **({"rejected": problem} if problem else {})}


def _safely(check, incoming: IncomingRequest) -> bool:
    """A connector's yes/no check; an exception (odd input, a plugin bug) counts as no."""
    try:
        return bool(check(incoming))
    except Rejected:  # a stated refusal (a replay), not a failure of the check
        raise
    except Exception:
        log.exception("%s raised on a webhook; treated as false", getattr(check, "__qualname__", check))
        return False


def _verified(rt, connector, incoming: IncomingRequest, installation_id: str, secrets) -> bool:
    """The signature checks with the cached secrets, or with fresh ones (a secret just rotated)."""
    if _safely(lambda req: connector.verify.verify(req, secrets), incoming):
        return True
    fresh = installations.lookup(rt, installation_id, fresh=True)
    return fresh is not None and _safely(lambda req: connector.verify.verify(req, fresh.secrets), incoming)


def _read(connector, incoming: IncomingRequest) -> tuple[str, str | None, str | None]:
    """``(dedupe_key, topic, None)``, or ``(body hash, topic if known, reason)`` for an unreadable body."""
    fallback = ingest.body_hash(incoming.body)
    try:
        connector.read(incoming)
    except RecursionError:
        return fallback, None, "the body is nested too deeply"
    except (ValueError, UnicodeDecodeError) as exc:
        return fallback, None, f"the body cannot be decoded ({type(exc).__name__})"
    except Exception as exc:  # noqa: BLE001 -- a connector's own parser failing on odd input
        return fallback, None, f"the connector could not parse the body ({type(exc).__name__})"
    try:
        topic = connector.topic(incoming) if connector.topic else None
        dedupe_key = connector.event_id(incoming) or fallback
    except Exception as exc:  # noqa: BLE001 -- an extractor meeting a shape it does not expect
        return fallback, None, f"the event id or topic cannot be read ({type(exc).__name__})"
    return dedupe_key, topic, None


def _kept_headers(connector, headers: Mapping[str, str]) -> dict[str, str]:
    """Request headers worth keeping with the event; a shared token is a secret, so it is not."""
    token = getattr(connector.verify, "header", None) if isinstance(connector.verify, SharedToken) else None
    return {k: v for k, v in headers.items() if not token or k.lower() != token.lower()}
