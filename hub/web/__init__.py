"""The web console: server-rendered pages (Jinja + htmx, no build step) over the same core as
``/api/v1``. Pages read through the core; actions go through the JSON API with the session
cookie and a CSRF header (``hub.api.auth``), so the console and machines share every check.
"""
from __future__ import annotations

import importlib
import logging
import re

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
BLUEPRINTS = ("hub.web.access:bp", "hub.web.apidocs:bp", "hub.web.team:bp", "hub.web.account:bp",
              "hub.web.account:instance", "hub.web.inbox:bp",
              "hub.web.connectors:bp", "hub.web.queue:bp",
              "hub.web.broadcasts:bp", "hub.web.analytics:bp")


class RedactInviteLinks(logging.Filter):
    """The development server logs request lines: an invitation link's token becomes ``[redacted]``."""
    TOKEN = re.compile(r"(/|%2F)invite(/|%2F)inv_[A-Za-z0-9_-]+", re.IGNORECASE)  # also in ?next=

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "inv_" in text:
            record.msg, record.args = self.TOKEN.sub(r"\1invite\2inv_[redacted]", text), ()
        return True


def _session_key(secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"coexhub console sessions v1").derive(secret.encode())


def install(app: Flask) -> None:
    """Session cookie, CSRF and the console's blueprints on ``app``."""
    settings = app.extensions["coexhub"].settings
    keys = [_session_key(k) for k in settings.secret_keys] or [_session_key(settings.admin_token or "dev")]
    app.config.update(
        SECRET_KEY=keys[0], SECRET_KEY_FALLBACKS=keys[1:],  # rotation: old cookies stay valid
        SESSION_COOKIE_NAME="coexhub_session", SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=12 * 3600,
        WTF_CSRF_CHECK_DEFAULT=False,  # checked by the console's blueprints and session-authenticated API calls
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        WTF_CSRF_SSL_STRICT=False)
    csrf.init_app(app)
    access_log = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactInviteLinks) for f in access_log.filters):
        access_log.addFilter(RedactInviteLinks())
    for path in BLUEPRINTS:
        module, _, attr = path.partition(":")
        app.register_blueprint(getattr(importlib.import_module(module), attr))
