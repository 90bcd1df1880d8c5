"""The Flask application factory."""
from __future__ import annotations

import logging
import time

from flask import Flask, g, request
from flask_smorest import Api

from hub.config import Settings
from hub.core.metrics import observe, registry_for
from hub.core.runtime import Runtime, install

API_BLUEPRINTS = ("hub.api.workspaces:admin", "hub.api.workspaces:own", "hub.api.installations:bp",
                  "hub.api.events:bp", "hub.api.connections:bp", "hub.api.contacts:bp", "hub.api.sending:bp",
                  "hub.api.broadcasts:bp", "hub.api.analytics:bp")
PLAIN_BLUEPRINTS = ("hub.api.health:bp", "hub.core.whatsapp.webhook:bp", "hub.api.webhooks:bp")


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    """Build the hub's web app. ``runtime`` (tests) or ``settings`` (default: the environment)."""
    rt = install(runtime or Runtime(settings or Settings.from_env()))
    app = Flask("hub")
    app.config.update(
        MAX_CONTENT_LENGTH=rt.settings.max_body_bytes, JSON_SORT_KEYS=False,
        API_TITLE="coexhub", API_VERSION="v1", OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1", OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={"components": {"securitySchemes": {
            "apiKey": {"type": "http", "scheme": "bearer", "description": "workspace API key"}}},
            "security": [{"apiKey": []}]})
    app.extensions["coexhub"] = rt
    app.extensions["coexhub.metrics"] = registry_for(rt)
    api = Api(app)
    for path in API_BLUEPRINTS:
        api.register_blueprint(_load(path))
    for path in PLAIN_BLUEPRINTS:
        app.register_blueprint(_load(path))
    for batch in rt.plugins.hook.coexhub_blueprints(app=app):
        for blueprint in batch or ():
            app.register_blueprint(blueprint)
    from hub.api import errors, guards

    errors.register(app)  # after Api(): our JSON error shape wins over flask-smorest's

    @app.before_request
    def _start_timer():
        g.started = time.perf_counter()

    app.before_request(guards.check_request)  # odd input (NUL, non-JSON, deep JSON…) is a 4xx

    @app.after_request
    def _observe(response):
        if "started" in g:
            observe(request.method, request.url_rule.rule if request.url_rule else "unmatched",
                    response.status_code, g.started)
        return response

    logging.getLogger("hub").setLevel(logging.INFO)
    return app


def _load(path: str):
    import importlib

    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
