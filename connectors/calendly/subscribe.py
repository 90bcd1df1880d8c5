"""Create the Calendly webhook subscription of an installation (``POST /webhook_subscriptions``).

Shared by ``coexhub calendly subscribe`` and ``POST /api/v1/installations/<id>/calendly/subscribe``.
Calendly's errors come back as ``SubscribeError`` with an HTTP status for our API and Calendly's own
words: 422 for what the seller can fix (no token, a token or parameters Calendly refuses), 409 when
the URL is subscribed already, 502 when Calendly cannot be reached or answers 5xx.
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select

from hub.connector import outbound_url

log = logging.getLogger(__name__)
TIMEOUT = 15.0


class SubscribeError(Exception):
    """Why the subscription was not created; ``status`` is what our API answers."""

    def __init__(self, status: int, code: str, message: str, calendly: Any = None):
        super().__init__(message)
        self.status, self.code, self.message, self.calendly = status, code, message, calendly


def _calendly_reason(response: httpx.Response) -> tuple[str, Any]:
    """Calendly's ``title: message (parameter: message…)`` and its JSON body, for the error."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase, None
    if not isinstance(body, dict):
        return str(body)[:300], body
    words = ": ".join(str(body[k]) for k in ("title", "message") if body.get(k))
    details = body.get("details") if isinstance(body.get("details"), list) else []
    extra = "; ".join(f"{d.get('parameter', '')} {d.get('message', '')}".strip() for d in details if isinstance(d, dict))
    return (f"{words} ({extra})" if extra else words) or response.reason_phrase, body


def _call(client: httpx.Client, method: str, url: str, **kwargs) -> dict:
    try:
        response = client.request(method, outbound_url(url), **kwargs)
    except httpx.HTTPError as exc:
        raise SubscribeError(502, "calendly_unreachable", f"could not reach Calendly at {url}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - outbound_url refused the address (SSRF guard)
        raise SubscribeError(422, "invalid_api_base", f"api_base is not usable: {exc}") from exc
    if response.status_code >= 400:
        reason, body = _calendly_reason(response)
        where = f"Calendly answered {response.status_code} to {method} {url.split('?')[0]}: {reason}"
        if response.status_code >= 500:
            raise SubscribeError(502, "calendly_error", where, body)
        if response.status_code == 409:
            raise SubscribeError(409, "already_subscribed", where + " — the subscription exists already "
                                 "(delete it in Calendly to create it again with this installation's signing key)",
                                 body)
        if response.status_code in (401, 403):
            raise SubscribeError(422, "calendly_token_refused", where + " — check the personal_access_token", body)
        raise SubscribeError(422, "calendly_refused", where, body)
    try:
        body = response.json()
    except ValueError as exc:
        raise SubscribeError(502, "calendly_error", f"Calendly answered {method} {url} with no JSON") from exc
    return body if isinstance(body, dict) else {}


def _unreachable(url: str) -> bool:
    """True for a callback Calendly can never reach (localhost, a loopback address)."""
    host = (urlsplit(url).hostname or "").lower()
    if host in ("", "localhost") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def subscribe(config: dict[str, Any], callback_url: str, events: tuple[str, ...],
              scope: str | None = None) -> dict[str, Any]:
    """Create the subscription for ``callback_url``; returns what Calendly says it created."""
    if _unreachable(callback_url):
        raise SubscribeError(422, "public_url_not_public", f"the webhook URL {callback_url} is not reachable from "
                             "Calendly: set COEXHUB_PUBLIC_URL to the hub's public HTTPS address")
    token = config.get("personal_access_token")
    if not token:
        raise SubscribeError(422, "missing_token", "this installation has no personal_access_token: add one "
                             "(Calendly → Integrations → API & Webhooks) and try again")
    if not config.get("signing_key"):
        raise SubscribeError(422, "missing_signing_key", "this installation has no signing_key")
    base = str(config.get("api_base") or "https://api.calendly.com").rstrip("/")
    scope = scope or config.get("subscription_scope") or "user"
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False, headers=headers) as client:
        me = _call(client, "GET", f"{base}/users/me").get("resource") or {}
        user, organization = me.get("uri"), me.get("current_organization")
        if not organization or (scope == "user" and not user):
            raise SubscribeError(502, "calendly_error", "Calendly's /users/me has no uri or current_organization")
        body = {"url": callback_url, "events": list(events), "organization": organization, "scope": scope,
                "signing_key": config["signing_key"]}
        if scope == "user":
            body["user"] = user
        created = _call(client, "POST", f"{base}/webhook_subscriptions", json=body).get("resource") or {}
    return {"subscription": created.get("uri"), "state": created.get("state"), "callback_url": callback_url,
            "events": list(events), "scope": scope, "organization": organization,
            "user": user if scope == "user" else None}


def subscribe_installation(rt, installation_id: str, workspace_id: str | None = None,
                           scope: str | None = None) -> dict[str, Any]:
    """Subscribe a Calendly installation (of ``workspace_id`` when given) to its webhook URL."""
    from connectors.calendly import EVENTS
    from hub.core.models import Installation

    with rt.db.session() as session:
        inst = session.scalars(select(Installation).where(Installation.id == installation_id)).first()
        if inst is None or (workspace_id is not None and inst.workspace_id != workspace_id):
            raise SubscribeError(404, "not_found", f"no installation {installation_id}")
        if inst.connector != "calendly":
            raise SubscribeError(422, "not_calendly", f"installation {installation_id} is a {inst.connector} "
                                 "installation, not a calendly one")
        config = {**(inst.config or {}), **(inst.secrets or {})}
    url = f"{rt.settings.public_url.rstrip('/')}/webhooks/calendly/{installation_id}"
    try:
        result = subscribe(config, url, EVENTS, scope)
    except SubscribeError as exc:
        log.warning("calendly subscription for %s not created: %s", installation_id, exc.message)
        raise
    log.info("calendly subscription %s created for %s (%s scope, %s)", result["subscription"], installation_id,
             result["scope"], url)
    return result
