"""``POST /webhooks/<connector>/<installation_id>``: verify, store, enqueue, answer 200."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from hub.api.errors import ApiError
from hub.core import ingest, installations
from hub.core.metrics import count
from hub.core.verifiers import IncomingRequest, Rejected, SharedToken

bp = Blueprint("webhooks", __name__)


@bp.post("/webhooks/<connector_name>/<installation_id>")
def receive(connector_name: str, installation_id: str):
    rt = current_app.extensions["coexhub"]
    connector = rt.plugins.connector(connector_name)
    if connector is None:
        raise ApiError(404, "unknown_connector", f"no connector named {connector_name!r}")
    inst = installations.lookup(rt, installation_id)
    if inst is None or inst.connector != connector_name:
        raise ApiError(404, "unknown_installation", f"no {connector_name} installation {installation_id}")
    if not inst.enabled:
        raise ApiError(404, "installation_disabled", f"installation {installation_id} is disabled")
    body = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH
    incoming = IncomingRequest(request.headers, body, request.args)
    if connector.is_ping(incoming):
        return jsonify(ok=True, ping=True)
    try:
        genuine = connector.verify.verify(incoming, inst.secrets) or \
            connector.verify.verify(incoming, installations.lookup(rt, installation_id, fresh=True).secrets)
    except Rejected as exc:  # signed, but refused for a stated reason (too old: a replay)
        count(rt.redis, rt.settings.key_prefix, "ingest", provider=connector_name, result="rejected")
        raise ApiError(401, "rejected", str(exc)) from exc
    if not genuine:
        count(rt.redis, rt.settings.key_prefix, "ingest", provider=connector_name, result="bad_signature")
        raise ApiError(401, "bad_signature", "the webhook signature is missing or wrong")
    try:
        connector.parse(body)
        dedupe_key = connector.event_id(incoming) or ingest.body_hash(body)
        topic = connector.topic(incoming) if connector.topic else None
    except (ValueError, UnicodeDecodeError) as exc:
        count(rt.redis, rt.settings.key_prefix, "ingest", provider=connector_name, result="malformed")
        raise ApiError(400, "malformed_body", f"the body cannot be decoded: {exc}") from exc
    event_id, duplicate = ingest.store(rt, provider=connector_name, scope=installation_id,
                                       dedupe_key=dedupe_key, body=body, headers=_kept_headers(connector),
                                       topic=topic, workspace_id=inst.workspace_id)
    return jsonify(ok=True, event_id=event_id, duplicate=duplicate)


def _kept_headers(connector) -> dict[str, str]:
    """Request headers worth keeping with the event; a shared token is a secret, so it is not."""
    token = getattr(connector.verify, "header", None) if isinstance(connector.verify, SharedToken) else None
    return {k: v for k, v in request.headers.items() if not token or k.lower() != token.lower()}
