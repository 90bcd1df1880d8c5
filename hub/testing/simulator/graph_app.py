"""The simulator's Flask app: the send route, onboarding (code exchange, subscription, syncs,
registration), number and template listings, the ``/_sim`` control API, and Graph's errors."""
from __future__ import annotations

import json
import logging
import re
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, jsonify, request
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.serving import WSGIRequestHandler

from hub.testing.graph_errors import GraphError
from hub.testing.simulator.common import SYNC_TYPES, _Version


_ACCESS_LOG = logging.getLogger("werkzeug")
_SEND = re.compile(r"/v\d+\.\d+/([^/]+)/messages")


class AppMixin:
    """``GraphSimulator``'s Graph API routes (``sim.app``)."""

    def wsgi(self, environ: dict, start_response):
        """``sim.app`` with the send route answered before Flask (what a load run mostly calls:
        the same ``handle_send``, without Flask's request context, routing and ``jsonify``)."""
        found = _SEND.fullmatch(environ.get("PATH_INFO", "")) if environ["REQUEST_METHOD"] == "POST" else None
        if found is None:
            return self.app(environ, start_response)
        try:
            raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        except ValueError:
            raw = b""
        status, data = self.answer_send(found.group(1), raw, environ.get("CONTENT_TYPE", ""),
                                        environ.get("HTTP_AUTHORIZATION", ""))
        start_response(f"{status} {HTTP_STATUS_CODES.get(status, '')}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def answer_send(self, phone_number_id: str, raw: bytes, content_type: str, authorization: str) -> tuple[int, bytes]:
        """The send route from raw request parts: ``(HTTP status, JSON body)``."""
        mimetype = content_type.split(";")[0].strip().lower()
        try:  # as Flask's get_json(silent=True): JSON content types only
            body = json.loads(raw) if mimetype == "application/json" or mimetype.endswith("+json") else None
        except ValueError:
            body = None
        response, status = self.handle_send(phone_number_id, body, authorization)
        return status, json.dumps(response, separators=(",", ":")).encode()

    def _record(self, params: Any = None) -> None:
        if params is None:
            params = (request.get_json(silent=True) if request.method != "GET" else None) \
                or dict(request.values)
        with self.lock:
            self.calls.append((request.method, request.path, params))

    def _called_number(self, object_id: str) -> dict:
        """Record the call, then the number it names, its token checked (Graph's errors otherwise)."""
        self._record()
        number = self.numbers.get(object_id)
        if number is None:
            raise GraphError(100, 400, f"Object with ID '{object_id}' does not exist")
        self._check_token(number)
        return number

    def _build_app(self) -> Flask:
        app = Flask("coexhub-graph-simulator", static_folder=None)
        app.url_map.converters["ver"] = _Version

        @app.errorhandler(GraphError)
        def graph_error(e: GraphError):
            return jsonify(e.body()), e.http_status

        @app.post("/<ver:version>/<phone_number_id>/messages")
        def messages(version, phone_number_id):
            return self._send(phone_number_id)

        @app.get("/<ver:version>/oauth/access_token")
        def access_token(version):
            self._record()
            args = request.args
            if args.get("client_id") != self.app_id or args.get("client_secret") != self.app_secret:
                raise GraphError(101, 400, "Error validating client secret.",
                                 "Error validating client secret.")
            code = args.get("code", "")
            with self.lock:
                found = self.signup_codes.pop(code, None)
                if found:  # a new onboarding: the one-time syncs may be requested again
                    self.used_codes.add(code)
                    for sync_type in SYNC_TYPES:
                        self.sync_requests.pop((found[1], sync_type), None)
            if not found and code in self.used_codes:
                raise GraphError(100, 400, "This authorization code has been used.",
                                 "This authorization code has been used.", subcode=36009)
            if not found:
                raise GraphError(100, 400, "Invalid verification code format.",
                                 "Invalid verification code format.")
            return jsonify({"access_token": found[2], "token_type": "bearer"})

        @app.get("/<ver:version>/<object_id>")
        def node(version, object_id):
            if object_id not in self.numbers and any(n["waba_id"] == object_id for n in self.numbers.values()):
                self._record()
                self._check_token(None)  # a WABA: its owner (the business portfolio)
                return jsonify({"id": object_id, "owner_business_info": {
                    "id": self.portfolio_of(object_id), "name": "Test Shop portfolio"}})
            number = self._called_number(object_id)
            return jsonify(self._number_view(number))

        @app.get("/<ver:version>/<waba_id>/phone_numbers")
        def phone_numbers(version, waba_id):
            self._record()
            self._check_token(None)
            data = [self._number_view(n) for n in self.numbers.values() if n["waba_id"] == waba_id]
            return jsonify({"data": data, "paging": {"cursors": {"before": "QVFIUm", "after": "QVFIUm"}}})

        @app.get("/<ver:version>/<waba_id>/message_templates")
        def message_templates(version, waba_id):
            self._record()
            self._check_token(None)
            items = list(self.templates.get(waba_id, []))
            limit = max(1, int(request.args.get("limit", 25)))
            start = int(request.args.get("after") or 0)
            page = items[start:start + limit]
            paging: dict[str, Any] = {"cursors": {"before": str(start), "after": str(start + len(page))}}
            if start + limit < len(items):
                paging["next"] = f"{request.base_url}?limit={limit}&after={start + limit}"
            return jsonify({"data": page, "paging": paging})

        @app.route("/<ver:version>/<waba_id>/subscribed_apps", methods=["GET", "POST"])
        def subscribed_apps(version, waba_id):
            self._record()
            self._check_token(None)
            if request.method == "GET":
                data = [{"whatsapp_business_api_data": {"id": self.app_id}}] \
                    if waba_id in self.subscribed else []
                return jsonify({"data": data})
            with self.lock:
                self.subscribed.add(waba_id)
            return jsonify({"success": True})

        @app.post("/<ver:version>/<phone_number_id>/smb_app_data")
        def smb_app_data(version, phone_number_id):
            self._called_number(phone_number_id)
            body = request.get_json(silent=True) or dict(request.values)
            sync_type = body.get("sync_type")
            if sync_type not in SYNC_TYPES:
                raise GraphError(100, details="sync_type must be smb_app_state_sync or history")
            with self.lock:
                key = (phone_number_id, sync_type)
                if key in self.sync_requests:
                    raise GraphError(100, 400, f"{sync_type} synchronization was already requested "
                                               "for this phone number; it can be requested only once.")
                self.sync_requests[key] = request_id = f"req_{self.random.getrandbits(64):x}"
            return jsonify({"request_id": request_id})

        @app.post("/<ver:version>/<phone_number_id>/register")
        def register(version, phone_number_id):
            self._record()
            return jsonify({"success": True})

        from hub.testing.sim_control import register_control

        register_control(app, self)

        @app.route("/<path:rest>", methods=["GET", "POST", "DELETE"])
        def unknown(rest):
            self._record()
            raise GraphError(100, 400, f"Unsupported {request.method.lower()} request.")

        return app

    def _number_view(self, n: dict) -> dict:
        return {"verified_name": n["verified_name"], "display_phone_number": n["display_phone_number"],
                "id": n["id"], "quality_rating": n["quality_rating"], "platform_type": "CLOUD_API",
                "throughput": {"level": "STANDARD"},
                "whatsapp_business_manager_messaging_limit": self.portfolio_tier(n["waba_id"])}


class KeepAliveHandler(WSGIRequestHandler):
    """werkzeug's request handler, but a send keeps its connection open (werkzeug closes every
    connection after its response, so each send would cost a TCP connection and a thread on
    both sides); every other route goes through ``run_wsgi`` as before (and closes)."""

    def do_POST(self) -> None:
        found = _SEND.fullmatch(urlsplit(self.path).path)
        if found is None:
            return self.run_wsgi()
        try:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, data = self.server.app.__self__.answer_send(
                found.group(1), raw, self.headers.get("Content-Type", ""), self.headers.get("Authorization", ""))
            head = (f"{self.protocol_version} {status} {HTTP_STATUS_CODES.get(status, '')}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")
            self.wfile.write(head.encode() + data)  # one write: no Nagle wait between head and body
            if _ACCESS_LOG.isEnabledFor(logging.INFO):
                self.log_request(status, len(data))
        except (ConnectionError, TimeoutError, ValueError):  # the client gave up (a timeout fault) or sent junk
            self.close_connection = True
