"""A real local HTTP endpoint for outbound webhooks: a werkzeug server in a thread that records
each request and answers with ``status``; ``stop()`` and ``start()`` take it down and bring it
back on the same port (a receiver that was down)."""
from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


class Receiver:
    def __init__(self, path: str = "/hook"):
        self.got: list[dict[str, Any]] = []
        self.status = 200
        self.lock = threading.Lock()
        self.port, self.server, self.thread = 0, None, None
        self.start()
        self.url = f"http://127.0.0.1:{self.port}{path}"

    def _app(self, environ, start_response):
        request = Request(environ)
        with self.lock:
            self.got.append({"path": request.path, "headers": {k.lower(): v for k, v in request.headers.items()},
                             "body": request.get_data()})
            status = self.status
        return Response("ok", status=status)(environ, start_response)

    def start(self) -> None:
        self.server = make_server("127.0.0.1", self.port, self._app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)
            self.server = None

    def bodies(self) -> list[bytes]:
        with self.lock:
            return [r["body"] for r in self.got]
