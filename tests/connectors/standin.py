"""A tiny HTTP stand-in for a provider's API: a Flask app served on 127.0.0.1:0 in a thread that
records every request and answers with whatever the test put in ``routes``."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.serving import make_server


class StandIn:
    def __init__(self):
        self.requests: list[dict[str, Any]] = []
        self.routes: dict[tuple[str, str], Callable[[dict], tuple[Any, int]]] = {}
        self.lock = threading.Lock()
        app = Flask("standin")

        @app.route("/<path:path>", methods=["GET", "POST", "PUT", "DELETE"])
        def any_route(path):
            record = {"method": request.method, "path": "/" + path, "args": request.args.to_dict(),
                      "headers": dict(request.headers), "json": request.get_json(silent=True),
                      "form": request.form.to_dict(),
                      "authorization": request.authorization}
            with self.lock:
                self.requests.append(record)
                handler = self.routes.get((request.method, "/" + path))
            if handler is None:
                return jsonify({"error": "no route in the stand-in"}), 404
            body, status = handler(record)
            return jsonify(body), status

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def on(self, method: str, path: str, handler: Callable[[dict], tuple[Any, int]] | Any, status: int = 200):
        """Answer ``method path`` with ``handler(record)`` or, for a plain value, that JSON body."""
        self.routes[(method, path)] = handler if callable(handler) else (lambda _r, b=handler, s=status: (b, s))

    def seen(self, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if (method is None or r["method"] == method)
                    and (path is None or r["path"] == path)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
