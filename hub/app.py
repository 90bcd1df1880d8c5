"""The Flask application factory."""
from __future__ import annotations

import logging
import time

from flask import Flask, g, request
from flask_smorest import Api

from hub.api import ids, request_log
from hub.config import Settings
from hub.core.metrics import registry_for
from hub.core.runtime import Runtime, install

API_BLUEPRINTS = ("hub.api.workspaces:admin", "hub.api.workspaces:own", "hub.api.installations:bp",
                  "hub.api.events:bp", "hub.api.connections:bp", "hub.api.contacts:bp", "hub.api.sending:bp",
                  "hub.api.broadcasts:bp", "hub.api.analytics:bp", "hub.api.pricing:bp",
                  "hub.api.subscriptions:bp", "hub.api.reads:bp", "hub.api.conversations:bp")
PLAIN_BLUEPRINTS = ("hub.api.health:bp", "hub.core.whatsapp.webhook:bp", "hub.api.webhooks:bp")


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    """Build the hub's web app. ``runtime`` (tests) or ``settings`` (default: the environment)."""
    rt = install(runtime or Runtime(settings or Settings.from_env()))
    app = Flask("hub")
    app.config.update(
        MAX_CONTENT_LENGTH=rt.settings.max_body_bytes, JSON_SORT_KEYS=False,
        API_TITLE="coexhub", API_VERSION="v1", OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1", OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs", OPENAPI_SWAGGER_UI_URL="/api/v1/docs/assets/",  # hub.web.apidocs
        API_SPEC_OPTIONS={"components": {"securitySchemes": {
            "apiKey": {"type": "http", "scheme": "bearer", "description": "workspace API key"}}},
            "security": [{"apiKey": []}]})
    app.extensions["coexhub"] = rt
    app.extensions["coexhub.metrics"] = registry_for(rt)
    api = Api(app)
    ids.install(app, api)  # the <pid(…):…> converter, before any route uses it
    for path in API_BLUEPRINTS:
        api.register_blueprint(_load(path))
    for path in PLAIN_BLUEPRINTS:
        app.register_blueprint(_load(path))
    from flask_smorest import Blueprint as ApiBlueprint

    for batch in rt.plugins.hook.coexhub_blueprints(app=app):
        for blueprint in batch or ():  # a plugin's flask-smorest blueprints join the OpenAPI document
            (api if isinstance(blueprint, ApiBlueprint) else app).register_blueprint(blueprint)
    from hub import web
    from hub.api import errors, guards

    web.install(app)  # the console: session cookie, CSRF, pages
    errors.register(app)  # after Api(): our JSON error shape wins over flask-smorest's

    @app.before_request
    def _start_timer():
        g.started = time.perf_counter()

    app.before_request(guards.check_request)  # odd input (NUL, non-JSON, deep JSON…) is a 4xx

    _log_requests(app)
    logging.getLogger("hub").setLevel(logging.INFO)
    return app


def _log_requests(app: Flask) -> None:
    """A request id for every request (``X-Request-Id`` honoured, else generated, always returned;
    jobs the request enqueues carry it), the request metrics and one log line per request
    (``request_log``); webhook rejections say why."""
    from hub.core import logs

    logs.configure_once()

    def _bind_request_id():
        g.request_id = logs.new_request_id(request.headers.get(logs.REQUEST_ID_HEADER))
        g.request_id_token = logs.request_id_var.set(g.request_id)

    # first of all: a request another hook refuses (a guard's 4xx) is logged and has its id too
    app.before_request_funcs.setdefault(None, []).insert(0, _bind_request_id)

    @app.after_request
    def _log_request(response):
        if "request_id" not in g:
            return response
        response.headers[logs.REQUEST_ID_HEADER] = g.request_id
        status = response.status_code
        request_log.finished(request.method, request.url_rule.rule if request.url_rule else "unmatched",
                             request.path, status, g.started,  # _start_timer's
                             workspace_id=g.get("workspace_id"),
                             error_code=_error_code(response) if status >= 400 else None,
                             content_length=request.content_length)
        return response

    @app.teardown_request
    def _unbind_request_id(_exc):
        token = g.pop("request_id_token", None)
        try:
            logs.request_id_var.reset(token) if token is not None else None
        except ValueError:  # torn down in another context than the request began in
            logs.request_id_var.set(None)


def _error_code(response) -> str | None:
    """The ``error.code`` of one of our JSON error bodies (e.g. ``bad_signature``)."""
    body = response.get_json(silent=True) if response.is_json else None
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def _load(path: str):
    import importlib

    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
