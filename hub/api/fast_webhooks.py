"""The two webhook POST routes served on an event loop, in front of the Flask app (ASGI).

``POST /webhooks/whatsapp`` and ``POST /webhooks/<connector>/<installation_id>`` do the same
steps as their Flask views (``hub.core.whatsapp.webhook`` and ``hub.api.webhooks``: the same
functions), answer with the same JSON bodies and errors (413 past ``COEXHUB_MAX_BODY_BYTES``,
404 unknown or disabled installation, 401 bad signature, 400 malformed, 500 on a defect), the
same ``X-Request-Id`` and metrics, and one log line per request (``request_log``). They wait
for the group commit with ``ingest.store_async``: a worker's requests share batches without a
thread per request. On PostgreSQL the loop commits them itself (asynchronous psycopg and
redis clients, ``group_commit.LoopCommitter``; the ASGI shutdown commits what it holds), on
SQLite the committer thread does (one call into the loop per batch). Either way the 200
leaves only once the row is committed and its batch's job enqueued.

A connector's own code (verification, parsing: plugins) and the installation lookup run in a
worker thread, never on the loop; the Meta route's checks are ours and run on it (its routing
lookup is cached per number for 30 s; a miss is one indexed query). Every other request, and a
webhook path holding a NUL, goes to the Flask app unchanged through ``a2wsgi`` (a thread pool).

Run it with ``gunicorn -k uvicorn_worker.UvicornWorker 'hub.asgi:app'`` (``hub.asgi``).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from a2wsgi import WSGIMiddleware
from flask import Flask
from werkzeug.datastructures import Headers, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from hub.api import request_log, webhooks
from hub.api.errors import ApiError, error_body
from hub.core import ingest, logs
from hub.core.verifiers import IncomingRequest
from hub.core.whatsapp import webhook as whatsapp

log = logging.getLogger("hub.api.errors")  # where the Flask app logs its unhandled errors
Scope = dict[str, Any]
Handler = Callable[[Scope, Callable, dict, dict], Awaitable[tuple[int, dict]]]


class WebhookApp:
    """ASGI app: the webhook POST routes here, everything else to ``flask_app``."""

    def __init__(self, flask_app: Flask, *, threads: int = 32):
        self.flask = flask_app
        self.rt = flask_app.extensions["coexhub"]
        self.limit: int = flask_app.config["MAX_CONTENT_LENGTH"]
        self.fallback = WSGIMiddleware(flask_app, workers=threads)

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and _clean(scope):
            path = scope["path"]
            if path == whatsapp.RULE:
                return await self._serve(scope, receive, send, whatsapp.RULE, self._meta)
            parts = path.split("/")
            if len(parts) == 4 and parts[1] == "webhooks" and parts[2] and parts[3]:
                return await self._serve(scope, receive, send, webhooks.RULE, self._connector)
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        await self.fallback(scope, receive, send)

    async def _serve(self, scope: Scope, receive, send, rule: str, handler: Handler) -> None:
        started = time.perf_counter()
        headers = _headers(scope)
        request_id = logs.new_request_id(headers.get(logs.REQUEST_ID_HEADER))
        token = logs.request_id_var.set(request_id)
        state: dict[str, Any] = {"workspace_id": None}
        try:
            try:
                status, body = await handler(scope, receive, headers, state)
            except ApiError as exc:
                status, body = exc.status, error_body(exc.code, exc.message, **exc.details)
            except Exception:  # a defect still answers JSON, never a traceback (the log has it)
                log.exception("unhandled error on POST %s", scope["path"])
                status, body = 500, error_body("internal_error", "internal error; it has been logged")
            payload = (self.flask.json.dumps(body, indent=None, separators=(",", ":")) + "\n").encode()
            length = headers.get("Content-Length")
            request_log.finished("POST", rule, scope["path"], status, started, workspace_id=state["workspace_id"],
                                 error_code=body["error"]["code"] if status >= 400 else None,
                                 content_length=int(length) if length and length.isdigit() else None)
        finally:
            logs.request_id_var.reset(token)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
            (logs.REQUEST_ID_HEADER.encode(), request_id.encode())]})
        await send({"type": "http.response.body", "body": payload})

    async def _meta(self, scope: Scope, receive, headers: dict[str, str], state: dict) -> tuple[int, dict]:
        body = await self._body(receive, headers)
        found = whatsapp.intake(self.rt, body, headers.get("X-Hub-Signature-256"))
        state["workspace_id"] = found.workspace_id
        event_id, duplicate = await ingest.store_async(self.rt, **found.fields)
        if whatsapp.needs_link(found, event_id):
            await asyncio.to_thread(whatsapp.link_more, self.rt, found, event_id)
        return 200, webhooks.stored_answer(event_id, duplicate, found.problem)

    async def _connector(self, scope: Scope, receive, headers: dict[str, str], state: dict) -> tuple[int, dict]:
        _, _, connector_name, installation_id = scope["path"].split("/")
        connector, inst = await asyncio.to_thread(webhooks.installation, self.rt, connector_name, installation_id)
        state["workspace_id"] = inst.workspace_id
        body = await self._body(receive, headers)
        incoming = IncomingRequest(Headers(headers), body, MultiDict(_query(scope)))  # case-insensitive
        found = await asyncio.to_thread(webhooks.intake, self.rt, connector, inst, incoming)
        if found.ping:
            return 200, webhooks.answer(found)
        return 200, webhooks.answer(found, *await ingest.store_async(self.rt, **found.fields))

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await ingest.stop_loop_committer(self.rt)  # what its requests handed over is committed
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _body(self, receive, headers: dict[str, str]) -> bytes:
        """The request body; 413 (as Flask's ``MAX_CONTENT_LENGTH``) once it is larger than allowed."""
        length = headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.limit:
            raise ApiError(413, "payload_too_large", RequestEntityTooLarge.description)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ApiError(400, "bad_request", "the request body was cut short")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise ApiError(413, "payload_too_large", RequestEntityTooLarge.description)
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


def _clean(scope: Scope) -> bool:
    """No NUL in the path or query (the Flask app's guard answers those)."""
    query = scope.get("query_string", b"")
    return "\x00" not in scope["path"] and b"%00" not in query and b"\x00" not in query


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers named as in WSGI (``X-Hub-Signature-256``), repeated ones joined."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        key, text = name.decode("latin-1").title(), value.decode("latin-1")
        found[key] = f"{found[key]},{text}" if key in found else text
    return found


def _query(scope: Scope) -> list[tuple[str, str]]:
    return parse_qsl(scope.get("query_string", b"").decode("utf-8", "replace"), keep_blank_values=True)
